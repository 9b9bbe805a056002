"""The PyTorch reference run of issue 5, to score on shadergan's scale.

The recipe the issue measured with PyTorch: G 64->256->256->784 with LeakyReLU 0.2 and a tanh
output, data scaled to [-1, 1]; D 784->256->256->1 with LeakyReLU 0.2 and dropout 0.3 after each
hidden layer; BCE-with-logits, non-saturating G loss; Adam 2e-4 (0.5, 0.999); batch 64, 30 epochs
of shuffled MNIST; PyTorch's default initialisation. Writes 10,000 samples from G as uint8
(10000, 784), to score with shadergan's classifier and metrics:

  python3 scripts/torch_mnist_reference.py --data mnist_train_images.npy --out torch_samples.npy
  shadergan eval torch_samples.npy --data mnist_train_images.npy
"""
import argparse
import time

import numpy as np
import torch
import torch.nn as nn

p = argparse.ArgumentParser()
p.add_argument("--data", required=True, help="uint8 (N, 784) .npy")
p.add_argument("--out", required=True, help="where to write 10,000 uint8 samples")
p.add_argument("--epochs", type=int, default=30)
p.add_argument("--batch", type=int, default=64)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--threads", type=int, default=0)
a = p.parse_args()
if a.threads:
    torch.set_num_threads(a.threads)
torch.manual_seed(a.seed)

x = torch.from_numpy(np.load(a.data).reshape(-1, 784).astype(np.float32) / 127.5 - 1.0)
n, b, zdim = x.shape[0], a.batch, 64
G = nn.Sequential(nn.Linear(zdim, 256), nn.LeakyReLU(0.2), nn.Linear(256, 256), nn.LeakyReLU(0.2),
                  nn.Linear(256, 784), nn.Tanh())
D = nn.Sequential(nn.Linear(784, 256), nn.LeakyReLU(0.2), nn.Dropout(0.3), nn.Linear(256, 256),
                  nn.LeakyReLU(0.2), nn.Dropout(0.3), nn.Linear(256, 1))
opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
bce = nn.BCEWithLogitsLoss()
ones, zeros = torch.ones(b, 1), torch.zeros(b, 1)
t0 = time.time()
for epoch in range(a.epochs):
    perm = torch.randperm(n)
    for i in range(n // b):
        real = x[perm[i * b:(i + 1) * b]]
        opt_d.zero_grad()
        fake = G(torch.randn(b, zdim)).detach()
        loss_d = bce(D(real), ones) + bce(D(fake), zeros)
        loss_d.backward()
        opt_d.step()
        opt_g.zero_grad()
        loss_g = bce(D(G(torch.randn(b, zdim))), ones)
        loss_g.backward()
        opt_g.step()
    print(f"epoch {epoch + 1}: D {loss_d.item():.3f} G {loss_g.item():.3f} ({time.time() - t0:.0f} s)",
          flush=True)
G.eval()
with torch.no_grad():
    y = G(torch.randn(10000, zdim))
np.save(a.out, np.clip(np.rint((y.numpy() + 1.0) * 127.5), 0, 255).astype(np.uint8))
print(f"wrote {a.out}")
