#!/usr/bin/env python3
"""shadergan's generator in PyTorch: builds the module for a checkpoint's G from the checkpoint's
own metadata, loads its tensors with load_state_dict(strict=True), and writes what
`shadergan generate CHECKPOINT --z Z.npy --out OUT.npy` writes, computed by PyTorch.

    python3 scripts/torch_generator.py runs/001/checkpoints/latest.safetensors z.npy out.npy [labels.npy]

Z.npy: float32 (N, latent_dim). A conditional run's G (--conditional) also takes LABELS.npy, the
class of each row (integers (N,)), and writes what `generate CHECKPOINT --z Z.npy --labels
LABELS.npy` (or `--class K` for all K) writes: the MLP's nn.Embedding(C, C) joined to z as
cat((embed(y), z)), and the DCGAN's the same with conditional batch norms (BatchNorm2d(c,
affine=False), then per-class gamma and beta, nn.Embedding(C, c) each). OUT.npy: the samples in the
training data's scale, uint8 (N, D) for uint8 data (rounded and clamped like shadergan), float32
otherwise. Like `generate`, it runs G in eval mode (batch norm from its running statistics) with G's weight average when the
checkpoint keeps one (G_ema.*), else G.*. Needs torch and numpy; reads safetensors itself.
"""
import json
import struct
import sys
from collections import OrderedDict

import numpy as np
import torch
import torch.nn as nn


def read_safetensors(path):
    """(tensors by name as float32 numpy arrays, metadata) of a safetensors file."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    body = data[8 + n:]
    tensors = {}
    for name, t in header.items():
        assert t["dtype"] == "F32", f"{name}: {t['dtype']}"
        lo, hi = t["data_offsets"]
        tensors[name] = np.frombuffer(body[lo:hi], dtype="<f4").reshape(t["shape"])
    return tensors, meta


def activation(name):
    return {
        "identity": nn.Identity(),
        "relu": nn.ReLU(),
        "leaky-relu": nn.LeakyReLU(0.2),
        "sigmoid": nn.Sigmoid(),
        "tanh": nn.Tanh(),
    }[name]


class View(nn.Module):
    def __init__(self, *shape):
        super().__init__()
        self.shape = shape

    def forward(self, t):
        return t.view(t.shape[0], *self.shape)


def mlp_generator(m, inputs=None):
    sizes = [inputs or m["latent_dim"]] + m["g_hidden"] + [m["data_dim"]]
    layers = []
    for i in range(len(sizes) - 1):
        last = i + 2 == len(sizes)
        layers.append((f"fc{i + 1}", nn.Linear(sizes[i], sizes[i + 1])))
        layers.append((f"act{i + 1}", activation(m["g_output"] if last else m["g_activation"])))
    return nn.Sequential(OrderedDict(layers))


class ConditionalGenerator(nn.Module):
    """A conditional MLP G: the class embedding (embed.weight, C x C) joined before z, then the
    MLP, its layers under the checkpoint's names (fc1, ...)."""

    def __init__(self, m):
        super().__init__()
        classes = m["classes"]
        self.embed = nn.Embedding(classes, classes)
        for name, layer in mlp_generator(m, classes + m["latent_dim"]).named_children():
            self.add_module(name, layer)

    def forward(self, z, y):
        h = torch.cat((self.embed(y), z), 1)
        for name, layer in self.named_children():
            if name != "embed":
                h = layer(h)
        return h


class ClassAffine:
    """Conditional batch norm's second half, mixed into BatchNorm1d/2d(c, affine=False): per-class
    gamma and beta, nn.Embedding(C, c) each (`bnI.gamma.weight`, `bnI.beta.weight` beside the
    batch norm's own `bnI.running_mean`, `bnI.running_var`), y = x_hat gamma[y] + beta[y]."""

    def add_tables(self, c, classes):
        self.gamma = nn.Embedding(classes, c)
        self.beta = nn.Embedding(classes, c)

    def forward(self, x, y):
        shape = (x.shape[0], -1) + (1,) * (x.dim() - 2)
        return super().forward(x) * self.gamma(y).view(shape) + self.beta(y).view(shape)


class ConditionalBatchNorm1d(ClassAffine, nn.BatchNorm1d):
    def __init__(self, c, classes):
        super().__init__(c, affine=False)
        self.add_tables(c, classes)


class ConditionalBatchNorm2d(ClassAffine, nn.BatchNorm2d):
    def __init__(self, c, classes):
        super().__init__(c, affine=False)
        self.add_tables(c, classes)


class ConditionalSequential(nn.Sequential):
    """The conditional DCGAN's G: the class embedding (embed.weight, C x C) joined before z, as
    the MLP's, then its layers in order, the conditional batch norms also given the classes."""

    def forward(self, z, y):
        h = torch.cat((self.embed(y), z), 1)
        for name, layer in self.named_children():
            if name == "embed":
                continue
            h = layer(h, y) if isinstance(layer, ClassAffine) else layer(h)
        return h


def dcgan_generator(m):
    """config/model.rs's dcgan_generator, in PyTorch: the same layers under the same names; a
    conditional G's batch norms are ConditionalBatchNorm1d/2d."""
    img, g, nz, act = m["image"], m["g_channels"], m["latent_dim"], m["g_activation"]
    classes = m.get("classes", 0)
    bn1d = (lambda c: ConditionalBatchNorm1d(c, classes)) if classes else nn.BatchNorm1d
    bn2d = (lambda c: ConditionalBatchNorm2d(c, classes)) if classes else nn.BatchNorm2d
    size, channels = img["height"], img["channels"]
    linear = size == 28
    doublings = 2 if linear else size.bit_length() - 3
    c = g << (doublings - 1)
    layers = [("embed", nn.Embedding(classes, classes))] if classes else []
    nz += classes
    hidden = m.get("g_fc_hidden", 0)
    if hidden:
        layers += [("hidden", nn.Linear(nz, hidden, bias=False)), ("bn_hidden", bn1d(hidden)),
                   ("relu_hidden", activation(act))]
        nz = hidden
    if linear:
        layers += [("fc", nn.Linear(nz, c * 49, bias=False)), ("view", View(c, 7, 7))]
    else:
        layers += [("view", View(nz, 1, 1)), ("deconv1", nn.ConvTranspose2d(nz, c, 4, 1, 0, bias=False))]
    layers += [("bn1", bn2d(c)), ("relu1", activation(act))]
    for block in range(2, doublings + 2):
        last = block == doublings + 1
        c_out = channels if last else c // 2
        name = f"deconv{block - 1 if linear else block}"
        layers.append((name, nn.ConvTranspose2d(c, c_out, 4, 2, 1, bias=False)))
        if not last:
            layers += [(f"bn{block}", bn2d(c_out)), (f"relu{block}", activation(act))]
        c = c_out
    layers.append(("out", activation(m["g_output"])))
    return (ConditionalSequential if classes else nn.Sequential)(OrderedDict(layers))


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    ckpt, z_path, out_path = sys.argv[1:4]
    tensors, meta = read_safetensors(ckpt)
    cfg = json.loads(meta["config"])
    m = cfg["model"]
    conditional = m.get("classes", 0) > 0
    if conditional != (len(sys.argv) == 5):
        sys.exit("a conditional G takes LABELS.npy, an unconditional one none")
    if m.get("arch", "mlp") == "dcgan":
        g = dcgan_generator(m)
    else:
        g = ConditionalGenerator(m) if conditional else mlp_generator(m)
    prefix = "G_ema." if any(k.startswith("G_ema.") for k in tensors) else "G."
    state = {k[len(prefix):]: torch.from_numpy(v.copy()) for k, v in tensors.items() if k.startswith(prefix)}
    # PyTorch's batch-norm step counter is not a tensor of shadergan's; it is unused in eval mode.
    for name, module in g.named_children():
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            state[f"{name}.num_batches_tracked"] = torch.tensor(int(meta["step"]))
    g.load_state_dict(state, strict=True)
    g.eval()
    z = torch.from_numpy(np.load(z_path).astype(np.float32))
    with torch.no_grad():
        if conditional:
            labels = torch.from_numpy(np.load(sys.argv[4]).astype(np.int64).reshape(-1))
            y = g(z, labels).reshape(z.shape[0], -1).numpy()
        else:
            y = g(z).reshape(z.shape[0], -1).numpy()
    values = (y - np.float32(cfg["data_shift"])) / np.float32(cfg["data_scale"])
    if cfg.get("data_u8", False):
        values = np.clip(np.round(values), 0, 255).astype(np.uint8)
    np.save(out_path, values)


if __name__ == "__main__":
    main()
