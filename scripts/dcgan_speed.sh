#!/usr/bin/env bash
# Interleaved rounds of the 32x32 and 64x64 DCGAN step: shadergan's CPU backend (bench) and
# PyTorch's (scripts/torch_dcgan_bench.py), 2 threads each. BENCHMARKS.md, 2026-12-07.
#   PYTHON=/path/to/venv/bin/python bash scripts/dcgan_speed.sh [ROUNDS]
set -eu
cd "$(dirname "$0")/.."
B=target/release/shadergan
PY=${PYTHON:-python3}
for r in $(seq 1 "${1:-3}"); do
  for s in 32 64; do
    secs=$([ "$s" = 32 ] && echo 8 || echo 15)
    echo "round $r size $s"
    $B bench --arch dcgan --image-size "$s" --backend cpu --batch-sizes 64 --seconds "$secs" --threads 2 --precision f32 2>&1 | grep -E "^cpu" | tail -1
    $PY scripts/torch_dcgan_bench.py --size "$s" --threads 2 --batch 64 --seconds "$secs" 2>&1 | tail -1
  done
done
