#!/usr/bin/env bash
# Run `shadergan train --toy TOY` over several seeds and aggregate the eval.json files.
#
#   scripts/toy_table.sh TOY SEEDS OUTDIR [train flags...]
#   e.g. scripts/toy_table.sh ring8 "0 1 2" /tmp/toy/r8 --steps 10000 --batch-size 256 ...
#
# Prints one line per seed, then mean ± std (population) of modes, % HQ and reverse KL, the
# number of seeds with every mode captured, and the median reverse KL. With --g-ema, also the
# same for G's raw weights of the same runs (scripts/drop_g_ema.py, then `eval`): the ablation.
# Needs jq and python3.
set -euo pipefail
toy=$1; seeds=$2; out=$3; shift 3
bin=${SHADERGAN:-target/release/shadergan}
mkdir -p "$out"
for s in $seeds; do
  if [ ! -f "$out/s$s/eval.json" ]; then
    start=$(date +%s)
    "$bin" train --toy "$toy" --backend cpu --seed "$s" --out "$out/s$s" --overwrite -q \
      --sample-every 0 --checkpoint-every 0 "$@"
    echo "seed $s: $(( $(date +%s) - start )) s" >&2
  fi
done
summarise() {  # summarise FILE LABEL
python3 - "$1" "$2" <<'PY'
import json, statistics as st, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for r in rows:
    print(f"seed {r['seed']}: modes {r['modes']}/{r['total']}  HQ {r['hq']:.1f}%  KL {r['kl']:.3f}")
def ms(k):
    v = [r[k] for r in rows]
    return f"{st.mean(v):.2f} ± {st.pstdev(v):.2f}"
full = sum(r['modes'] == r['total'] for r in rows)
print(f"{sys.argv[2]}")
print(f"n={len(rows)}  modes {ms('modes')}  all modes {full}/{len(rows)}  HQ {ms('hq')}  KL {ms('kl')}  (median KL {st.median(r['kl'] for r in rows):.3f})")
PY
}
for s in $seeds; do jq -c --arg s "$s" '{seed: ($s|tonumber), modes: .modes_captured, total: .modes_total, hq: .high_quality_pct, kl: .reverse_kl}' "$out/s$s/eval.json"; done > "$out/summary.jsonl"
summarise "$out/summary.jsonl" "flags: $*"
if jq -e '.g_ema > 0' "$out/s${seeds%% *}/config.json" >/dev/null 2>&1 || grep -q -- "--g-ema" <<<"$*"; then
  for s in $seeds; do
    ck="$out/s$s/checkpoints/latest.safetensors"
    python3 "$(dirname "$0")/drop_g_ema.py" "$ck" "$out/s$s/raw_g.safetensors"
    "$bin" eval "$out/s$s/raw_g.safetensors" --toy "$toy" --backend cpu |
      jq -c --arg s "$s" '{seed: ($s|tonumber), modes: .modes_captured, total: .modes_total, hq: .high_quality_pct, kl: .reverse_kl}'
  done > "$out/summary_raw_g.jsonl"
  summarise "$out/summary_raw_g.jsonl" "the same runs, G's raw weights (no EMA):"
fi
