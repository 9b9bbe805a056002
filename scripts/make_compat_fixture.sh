#!/usr/bin/env bash
# Writes tests/fixtures/v0.1.0/: two small runs trained by shadergan 0.1.0 (commit 75bf3f2 plus
# SHADERGAN_CPU_REFERENCE), kept so that every later version is tested against checkpoints and
# config.json files the first release wrote (tests/compat.rs). Run once, with the 0.1.0 binary;
# never regenerate it with a newer one.
set -euo pipefail
bin=${1:-./target/release/shadergan}
dst=tests/fixtures/v0.1.0
data=$dst/data.npy
[ -f "$data" ] || { echo "needs $data (tests/compat.rs writes the 7x7 image set there)"; exit 1; }
export SHADERGAN_CPU_REFERENCE=1
tmp=$(mktemp -d)
"$bin" train "$data" --g-hidden 16 --d-hidden 16 --steps 6 --batch-size 16 --seed 11 \
  --checkpoint-every 6 --log-every 2 --backend cpu --classifier none --quiet --out "$tmp/image-ema"
"$bin" train --toy ring8 --pack 2 --precision f16 --latent-dim 2 --g-hidden 8 --d-hidden 8 \
  --steps 5 --batch-size 32 --seed 12 --log-every 1 --backend cpu --quiet --out "$tmp/toy-f16"
for run in image-ema toy-f16; do
  mkdir -p "$dst/$run/checkpoints"
  cp "$tmp/$run/config.json" "$tmp/$run/metrics.csv" "$dst/$run/"
  cp "$tmp/$run/checkpoints/latest.safetensors" "$dst/$run/checkpoints/"
done
rm -rf "$tmp"
