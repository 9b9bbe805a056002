#!/usr/bin/env python3
"""Speed peer for `shadergan bench --arch dcgan --image-size 32|64`: PyTorch's examples/dcgan
(its exact G and D at 64x64, nz 100, ngf = ndf = 64, 3 channels; at 32x32 one (de)conv block
fewer, as ../shared/peers/torch_dcgan_folder.py shrinks it), N(0, 0.02) init, BCE with logits,
Adam 2e-4 (0.5, 0.999). One step as shadergan's: D on the real batch and on the detached fakes
(separate passes, so batch norm sees each on its own), D update; then G on fresh noise through the
updated D, G update. Data: random colour images in [-1, 1], gathered per step from a resident
tensor.

  python3 scripts/torch_dcgan_bench.py --size 64 --threads 2 --batch 64

Prints one line: PEER torch-dcgan<size>-cpu batch=B steps_per_s=X
"""
import argparse, time
import torch
import torch.nn as nn

p = argparse.ArgumentParser()
p.add_argument("--size", type=int, default=64, choices=[32, 64])
p.add_argument("--threads", type=int, default=0)
p.add_argument("--batch", type=int, default=64)
p.add_argument("--seconds", type=float, default=20.0)
p.add_argument("--warmup", type=int, default=3)
a = p.parse_args()
if a.threads:
    torch.set_num_threads(a.threads)
torch.manual_seed(0)
nz, g, d, S, B = 100, 64, 64, a.size, a.batch
blocks = {32: [4, 2, 1], 64: [8, 4, 2, 1]}[S]
Gl = [nn.ConvTranspose2d(nz, g * blocks[0], 4, 1, 0, bias=False), nn.BatchNorm2d(g * blocks[0]), nn.ReLU(True)]
for i in range(len(blocks) - 1):
    Gl += [nn.ConvTranspose2d(g * blocks[i], g * blocks[i + 1], 4, 2, 1, bias=False), nn.BatchNorm2d(g * blocks[i + 1]), nn.ReLU(True)]
Gl += [nn.ConvTranspose2d(g, 3, 4, 2, 1, bias=False), nn.Tanh()]
G = nn.Sequential(*Gl)
rb = blocks[::-1]
Dl = [nn.Conv2d(3, d, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
for i in range(len(rb) - 1):
    Dl += [nn.Conv2d(d * rb[i], d * rb[i + 1], 4, 2, 1, bias=False), nn.BatchNorm2d(d * rb[i + 1]), nn.LeakyReLU(0.2, True)]
Dl += [nn.Conv2d(d * rb[-1], 1, 4, 1, 0, bias=False), nn.Flatten()]
D = nn.Sequential(*Dl)
for m in list(G.modules()) + list(D.modules()):
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
    if isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)
og = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
od = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
bce = nn.BCEWithLogitsLoss()
ones, zeros = torch.ones(B, 1), torch.zeros(B, 1)
data = torch.rand(1024, 3, S, S) * 2 - 1


def step(i):
    real = data[torch.randint(0, len(data), (B,))]
    fake = G(torch.randn(B, nz, 1, 1))
    od.zero_grad()
    (bce(D(real), ones) + bce(D(fake.detach()), zeros)).backward()
    od.step()
    og.zero_grad()
    bce(D(G(torch.randn(B, nz, 1, 1))), ones).backward()
    og.step()


for i in range(a.warmup):
    step(i)
t0, n = time.time(), 0
while time.time() - t0 < a.seconds:
    step(n)
    n += 1
print(f"PEER torch-dcgan{S}-cpu batch={B} steps_per_s={n / (time.time() - t0):.3f}", flush=True)
