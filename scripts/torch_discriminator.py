#!/usr/bin/env python3
"""shadergan's discriminator in PyTorch: builds the module for a checkpoint's D from the
checkpoint's own metadata (MLP or DCGAN; --d-norm batch, none or spectral, --pack, --d-fc-hidden),
with torch.nn.utils.parametrizations.spectral_norm where D is spectrally normalised, and loads
D.* with load_state_dict(strict=True): the names and shapes are PyTorch's. With spectral
normalisation it prints each layer's sigma = u^T W v from the stored u and v beside W's largest
singular value. DiffAugment and dropout hold no tensors and are left out (eval mode).

    python3 scripts/torch_discriminator.py runs/001/checkpoints/latest.safetensors
"""
import json
import os
import sys
from collections import OrderedDict

import torch
import torch.nn as nn
from torch.nn.utils.parametrizations import spectral_norm

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_generator import activation, read_safetensors  # noqa: E402


def maybe_sn(layer, spectral):
    return spectral_norm(layer) if spectral else layer


def mlp_discriminator(m):
    spectral = m.get("d_norm") == "spectral"
    sizes = [m["data_dim"] * m.get("pack", 1)] + m["d_hidden"] + [1]
    layers = []
    for i in range(len(sizes) - 1):
        layers.append((f"fc{i + 1}", maybe_sn(nn.Linear(sizes[i], sizes[i + 1]), spectral)))
        if i + 2 < len(sizes):
            layers.append((f"act{i + 1}", activation(m["d_activation"])))
    return nn.Sequential(OrderedDict(layers))


def dcgan_discriminator(m):
    """config/model.rs's dcgan_discriminator, in PyTorch: the same layers under the same names."""
    img, d, act = m["image"], m["d_channels"], m["d_activation"]
    norm = m.get("d_norm", "batch")
    spectral, batch = norm == "spectral", norm == "batch"
    c, h = img["channels"] * m.get("pack", 1), img["height"]
    end = 7 if h == 28 else 4
    layers, i = [], 1
    while h > end:
        c_out = d if i == 1 else 2 * c
        conv = nn.Conv2d(c, c_out, 4, 2, 1, bias=i > 1 and not batch)
        layers.append((f"conv{i}", maybe_sn(conv, spectral)))
        if i > 1 and batch:
            layers.append((f"bn{i}", nn.BatchNorm2d(c_out)))
        layers.append((f"lrelu{i}", activation(act)))
        c, h, i = c_out, h // 2, i + 1
    features = c * h * h
    hidden = m.get("d_fc_hidden", 0)
    if hidden:
        layers.append(("flatten", nn.Flatten()))
        if spectral:
            layers.append(("hidden", maybe_sn(nn.Linear(features, hidden), True)))
        else:
            layers += [("hidden", nn.Linear(features, hidden, bias=False)), ("bn_hidden", nn.BatchNorm1d(hidden))]
        layers.append(("lrelu_hidden", activation(act)))
        features = hidden
    if img["height"] == 28:
        if not hidden:
            layers.append(("flatten", nn.Flatten()))
        layers.append(("fc", maybe_sn(nn.Linear(features, 1), spectral)))
    else:
        layers.append((f"conv{i}", maybe_sn(nn.Conv2d(c, 1, 4, 1, 0, bias=False), spectral)))
    return nn.Sequential(OrderedDict(layers))


@torch.no_grad()
def main():
    tensors, meta = read_safetensors(sys.argv[1])
    m = json.loads(meta["config"])["model"]
    D = dcgan_discriminator(m) if m.get("arch") == "dcgan" else mlp_discriminator(m)
    state = {k[2:]: torch.from_numpy(v.copy()) for k, v in tensors.items() if k.startswith("D.")}
    D.load_state_dict(state, strict=True)
    print(f"D: {len(state)} tensors loaded with strict=True into {type(D).__name__} of {len(D)} modules")
    for name, mod in D.named_modules():
        if hasattr(mod, "parametrizations"):
            w = mod.parametrizations.weight.original
            w = w.reshape(w.shape[0], -1)
            sn = mod.parametrizations.weight[0]
            sigma = float(sn._u @ w @ sn._v)
            print(f"  {name}: sigma from u, v {sigma:.6f}, largest singular value {float(torch.linalg.matrix_norm(w, 2)):.6f}")


if __name__ == "__main__":
    main()
