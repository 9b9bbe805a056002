#!/bin/bash
# One interleaved benchmark round on the CPU backend (BENCHMARKS.md): two shadergan binaries on
# the benchmark model, then the JAX and PyTorch peers, then the DCGAN against PyTorch's. Every
# figure is steps/s. Run it several times in a row and take medians.
#   scripts/bench_round.sh NEW_BINARY [BASE_BINARY]
# PEERS (default ../shared/peers), JAX_PY and TORCH_PY (the peers' interpreters) can be set.
set -u
NEW=$1
BASE=${2:-}
PEERS=${PEERS:-$(dirname "$0")/../../shared/peers}
JAX_PY=${JAX_PY:-/opt/venv-jax/bin/python}
TORCH_PY=${TORCH_PY:-/opt/venv-torch/bin/python}
for b in $NEW $BASE; do
  echo "$b mlp $($b bench --backends cpu --precision f32 --seconds 4 --batch-sizes 64,256 2>/dev/null \
    | grep '^cpu' | awk '{printf "%s:%s ", $(NF-1), $NF}')"
done
for B in 64 256; do echo "jax $B $(cd "$PEERS" && $JAX_PY jax_gan.py --batch $B 2>/dev/null | grep -o 'steps_per_s=[0-9.]*')"; done
for B in 64 256; do
  echo "torch2 $B $(cd "$PEERS" && $TORCH_PY torch_gan.py --threads 2 --batch $B 2>/dev/null | grep -o 'steps_per_s=[0-9.]*')"
done
for b in $NEW $BASE; do
  echo "$b dcgan $($b bench --arch dcgan --backends cpu --seconds 5 --batch-sizes 64 2>/dev/null \
    | grep '^cpu' | awk '{printf "%s:%s ", $(NF-1), $NF}')"
done
echo "torch_dcgan2 64 $(cd "$PEERS" && $TORCH_PY torch_dcgan.py --device cpu --threads 2 --batch 64 --steps 20 \
  --warmup 3 2>/dev/null | grep -o 'steps_per_s=[0-9.]*')"
