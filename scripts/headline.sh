#!/usr/bin/env bash
# The README's headline figures, measured: the default run (`shadergan train` with no flags: 30
# epochs of the 10,000 built-in digits) on the CPU backend, about 3 CPU-minutes, and its eval.json,
# written to docs/measured/default-run.json with the commit that measured it. Then the fingerprint
# tests/new_user.rs keeps of that run (its losses at step 20, its configuration) is pinned again,
# so that a change to the default run fails that test until this script has run. Copy the new
# figures into the README's headline: the same test compares them.
#
#   bash scripts/headline.sh            # trains the default run (a few minutes)
#   bash scripts/headline.sh RUN_DIR    # reads a finished default run instead
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
run=${1:-}
if [ -z "$run" ]; then
  run=$(mktemp -d)/run
  target/release/shadergan train --backend cpu --out "$run" --quiet
fi
python3 - "$run" "$(git describe --always --dirty)" <<'PY'
import json, sys
run, rev = sys.argv[1], sys.argv[2]
cfg = json.load(open(f"{run}/config.json"))
if cfg["data"]["path"] != "assets/mnist10k.npy.gz (built in)" or cfg["backend"] != "cpu":
    sys.exit(f"{run} is not a default run on the CPU backend")
old = {}
try:
    old = json.load(open("docs/measured/default-run.json"))
except FileNotFoundError:
    pass
out = {
    "command": "shadergan train --backend cpu",
    "measured_with": f"shadergan {cfg['shadergan_version']} at {rev}",
    "steps": cfg["steps"],
    "eval": json.load(open(f"{run}/eval.json")),
    "fingerprint": old.get("fingerprint"),
}
with open("docs/measured/default-run.json", "w") as f:
    json.dump(out, f, indent=2)
    f.write("\n")
PY
SHADERGAN_BLESS=1 cargo test --release --quiet --test new_user the_readme_headline
echo "wrote docs/measured/default-run.json; now quote its figures in the README's headline"
