#!/usr/bin/env bash
# Writes tests/fixtures/dcgan-8af5826/: a small convolutional run (28x28, G's weight average,
# packing 2) trained by shadergan at commit 8af5826, before the DCGAN gained --d-norm and the
# hidden linear layers (their config.json has neither field), kept so that every later version is
# tested against what that version wrote (tests/compat.rs). Run once, with that binary, then
# bless the expected hashes with the same binary:
#   SHADERGAN_COMPAT_BIN=OLD SHADERGAN_BLESS_COMPAT=1 cargo test --release --test compat dcgan
# Never regenerate either with a newer one.
set -euo pipefail
bin=${1:?usage: make_dcgan_compat_fixture.sh SHADERGAN_AT_8af5826}
dst=tests/fixtures/dcgan-8af5826
mkdir -p "$dst"
python3 - "$dst/data.npy" <<'PY'
import sys
import numpy as np
rng = np.random.RandomState(5)
y, x = np.mgrid[0:28, 0:28]
imgs = [((np.abs(x - 14 - (i % 5)) < 3) | (np.abs(y - 8 - i % 11) < 2)) * 200 + rng.randint(0, 40, (28, 28))
        for i in range(24)]
np.save(sys.argv[1], np.array(imgs, dtype=np.uint8))
PY
export SHADERGAN_CPU_REFERENCE=1
tmp=$(mktemp -d)
"$bin" train "$dst/data.npy" --arch dcgan --g-channels 4 --d-channels 4 --latent-dim 8 --batch-size 8 \
  --g-ema 0.9 --steps 4 --seed 13 --checkpoint-every 4 --log-every 2 --sample-every 0 --backend cpu \
  --classifier none --quiet --out "$tmp/dcgan-ema"
mkdir -p "$dst/dcgan-ema/checkpoints"
cp "$tmp/dcgan-ema/config.json" "$tmp/dcgan-ema/metrics.csv" "$dst/dcgan-ema/"
cp "$tmp/dcgan-ema/checkpoints/latest.safetensors" "$dst/dcgan-ema/checkpoints/"
rm -rf "$tmp"
