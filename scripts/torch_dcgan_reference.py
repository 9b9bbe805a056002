"""PyTorch's DCGAN recipe at 28x28 (the DCGAN issue's reference), to score on shadergan's scale.

The module is ../shared/peers/torch_dcgan.py's: G z64 -> Linear(64, 128*7*7, no bias) ->
BatchNorm2d(128) -> ReLU -> ConvTranspose2d(128, 64, 4, 2, 1, no bias) -> BatchNorm2d(64) -> ReLU
-> ConvTranspose2d(64, 1, 4, 2, 1, no bias) -> tanh; D Conv2d(1, 64, 4, 2, 1, no bias) ->
LeakyReLU(0.2) -> Conv2d(64, 128, 4, 2, 1, no bias) -> BatchNorm2d(128) -> LeakyReLU(0.2) ->
Linear(6272, 1). The example's recipe: weights N(0, 0.02), batch-norm weight N(1, 0.02), bias 0;
BCE-with-logits; Adam 2e-4 (0.5, 0.999); D on the real batch and on the detached fake batch as
separate passes, then G through the updated D on the same fakes; batch 64, shuffled epochs; data
scaled to [-1, 1]. Writes 10,000 samples of G in eval mode as uint8 (10000, 784):

  python3 scripts/torch_dcgan_reference.py --data mnist_train_images.npy --epochs 5 --out t.npy
  shadergan eval t.npy --data mnist_train_images.npy
"""
import argparse
import time

import numpy as np
import torch
import torch.nn as nn

p = argparse.ArgumentParser()
p.add_argument("--data", required=True, help="uint8 (N, 784) or (N, 28, 28) .npy")
p.add_argument("--out", required=True, help="where to write 10,000 uint8 samples")
p.add_argument("--epochs", type=int, default=5)
p.add_argument("--batch", type=int, default=64)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--threads", type=int, default=0)
a = p.parse_args()
if a.threads:
    torch.set_num_threads(a.threads)
torch.manual_seed(a.seed)

x = torch.from_numpy(np.load(a.data).reshape(-1, 1, 28, 28).astype(np.float32) / 127.5 - 1.0)
n, b, nz, g, d = x.shape[0], a.batch, 64, 64, 64


class View(nn.Module):
    def __init__(s, *shape):
        super().__init__()
        s.shape = shape

    def forward(s, t):
        return t.view(t.shape[0], *s.shape)


G = nn.Sequential(nn.Linear(nz, 2 * g * 7 * 7, bias=False), View(2 * g, 7, 7), nn.BatchNorm2d(2 * g), nn.ReLU(True),
                  nn.ConvTranspose2d(2 * g, g, 4, 2, 1, bias=False), nn.BatchNorm2d(g), nn.ReLU(True),
                  nn.ConvTranspose2d(g, 1, 4, 2, 1, bias=False), nn.Tanh())
D = nn.Sequential(nn.Conv2d(1, d, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True),
                  nn.Conv2d(d, 2 * d, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * d), nn.LeakyReLU(0.2, True),
                  nn.Flatten(), nn.Linear(2 * d * 7 * 7, 1))


def weights_init(m):
    # PyTorch's examples/dcgan: conv (here also linear) weights N(0, 0.02); batch norm N(1, 0.02), 0.
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


G.apply(weights_init)
D.apply(weights_init)
opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
bce = nn.BCEWithLogitsLoss()
ones, zeros = torch.ones(b, 1), torch.zeros(b, 1)
t0 = time.time()
for epoch in range(a.epochs):
    perm = torch.randperm(n)
    for i in range(n // b):
        real = x[perm[i * b:(i + 1) * b]]
        fake = G(torch.randn(b, nz))
        opt_d.zero_grad()
        loss_d = bce(D(real), ones) + bce(D(fake.detach()), zeros)
        loss_d.backward()
        opt_d.step()
        opt_g.zero_grad()
        loss_g = bce(D(fake), ones)
        loss_g.backward()
        opt_g.step()
    print(f"epoch {epoch + 1}: D {loss_d.item():.3f} G {loss_g.item():.3f} ({time.time() - t0:.0f} s)",
          flush=True)
G.eval()
with torch.no_grad():
    y = torch.cat([G(torch.randn(1000, nz)) for _ in range(10)])
np.save(a.out, np.clip(np.rint((y.reshape(10000, 784).numpy() + 1.0) * 127.5), 0, 255).astype(np.uint8))
print(f"wrote {a.out}")
