#!/usr/bin/env python3
"""Copy a shadergan checkpoint without its G_ema.* tensors (standard library only).

`shadergan eval` of the copy then scores G's raw weights at the same step (loading a checkpoint
without the average starts the average as a copy of G): an ablation of --g-ema on the same run.

    scripts/drop_g_ema.py IN.safetensors OUT.safetensors
"""
import json
import struct
import sys

src, dst = sys.argv[1], sys.argv[2]
raw = open(src, "rb").read()
(n,) = struct.unpack("<Q", raw[:8])
header = json.loads(raw[8 : 8 + n])
data = raw[8 + n :]
meta = header.pop("__metadata__", None)
out, chunks, off = {}, [], 0
for name, t in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
    if name.startswith("G_ema."):
        continue
    a, b = t["data_offsets"]
    chunks.append(data[a:b])
    out[name] = {"dtype": t["dtype"], "shape": t["shape"], "data_offsets": [off, off + b - a]}
    off += b - a
if meta is not None:
    out["__metadata__"] = meta
h = json.dumps(out, separators=(",", ":")).encode()
h += b" " * (-len(h) % 8)
with open(dst, "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + b"".join(chunks))
