#!/usr/bin/env bash
# Builds the playground's presets: one `shadergan export-web` per model, into web/presets (or the
# folder given), and web/presets/index.js, which lists them for web/index.html. Each preset is a
# whole training program (what `shadergan train` with those flags runs), for the seeds listed.
# Settings that change shapes (widths, batch, pack, the loss) are presets; learning rates, Adam's
# betas, label smoothing and the weight average's decay change live in the page.
#
#   cargo build --release && bash web/make-presets.sh && python3 -m http.server -d web
#
# (or open web/index.html from the disk). SHADERGAN_BIN picks another binary.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${SHADERGAN_BIN:-target/release/shadergan}
out=${1:-web/presets}
if [ ! -x "$bin" ]; then
  echo "$bin is missing: run cargo build --release first (or set SHADERGAN_BIN)" >&2
  exit 1
fi
mkdir -p "$out"
index="$out/index.js.tmp"
echo "// Written by web/make-presets.sh: the playground's presets." > "$index"
echo "window.SHADERGAN_PRESETS = [" >> "$index"

# preset ID DATA LABEL FLAGS...
preset() {
  local id=$1 data=$2 label=$3
  shift 3
  "$bin" export-web "$@" --out "$out/$id" --overwrite --title "$data: $label" 2> "$out/$id.log" || {
    cat "$out/$id.log" >&2
    exit 1
  }
  rm -f "$out/$id.log"
  echo "  { id: \"$id\", data: \"$data\", label: \"$label\", file: \"presets/$id/program.js\" }," >> "$index"
}

seeds=0,1,2
preset ring8 ring8 "MLP 128,128 · batch 256 · PacGAN 2 · G's weight average (the defaults)" --toy ring8 --seeds $seeds
preset ring8-plain ring8 "MLP 128,128 · batch 256 · no PacGAN, no weight average" --toy ring8 --pack 1 --g-ema 0 --seeds $seeds
preset ring8-hinge ring8 "MLP 128,128 · batch 256 · PacGAN 2 · hinge loss, spectral norm in D" --toy ring8 --loss hinge --d-norm spectral --seeds $seeds
preset ring8-small ring8 "MLP 32,32 · batch 64 · PacGAN 2" --toy ring8 --g-hidden 32,32 --d-hidden 32,32 --batch-size 64 --seeds $seeds
preset grid25 grid25 "MLP 128,128 · batch 256 · PacGAN 2 · G's weight average (the defaults)" --toy grid25 --seeds $seeds
preset grid25-plain grid25 "MLP 128,128 · batch 256 · no PacGAN, no weight average" --toy grid25 --pack 1 --g-ema 0 --seeds $seeds
preset digits digits "MLP 256,256 · batch 64 · the first 2,000 built-in digits" --g-hidden 256,256 --d-hidden 256,256 --samples 2000 --seeds $seeds
preset digits-small digits "MLP 128 · latent 16 · batch 32 · weight average 0.99 · the first 2,000 built-in digits" --g-hidden 128 --d-hidden 128 --latent-dim 16 --batch-size 32 --g-ema 0.99 --samples 2000 --seeds $seeds
preset digits-remedies digits "MLP 256,256 · hinge loss, spectral norm in D, DiffAugment · the first 2,000 built-in digits" --g-hidden 256,256 --d-hidden 256,256 --loss hinge --d-norm spectral --augment translation,cutout --samples 2000 --seeds $seeds
preset digits-dcgan digits "DCGAN, width 16 · batch 32 · the first 2,000 built-in digits" --arch dcgan --g-channels 16 --d-channels 16 --batch-size 32 --samples 2000 --seeds $seeds

echo "];" >> "$index"
mv "$index" "$out/index.js"
du -sh "$out" | sed 's/\t.*//; s/^/presets: /' >&2
