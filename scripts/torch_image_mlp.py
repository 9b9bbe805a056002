"""PyTorch peer for shadergan's image-default MLP (`shadergan train` with no flags on 28x28 data):
G 64-512-512-784 (leaky ReLU 0.2, tanh on [-1, 1]), D 784-512-512-1 (leaky ReLU 0.2, dropout 0.3
after each hidden layer), BCE-with-logits, Adam 4e-4 (0.5, 0.999), an EMA of G's weights (0.999)
after each G update. One step = D on [real; detached fake] in one pass + D update, then G on fresh
noise + G update + EMA. Prints: PEER torch-image-mlp batch=B steps_per_s=X"""
import argparse, time
import numpy as np
import torch
import torch.nn as nn

p = argparse.ArgumentParser()
p.add_argument("--threads", type=int, default=0)
p.add_argument("--batch", type=int, default=64)
p.add_argument("--steps", type=int, default=200)
p.add_argument("--warmup", type=int, default=20)
a = p.parse_args()
if a.threads: torch.set_num_threads(a.threads)
torch.manual_seed(0)
B, Z, H = a.batch, 64, 512
data = torch.from_numpy(np.random.default_rng(0).random((10000, 784), dtype=np.float32) * 2 - 1)
lr = lambda: nn.LeakyReLU(0.2)
G = nn.Sequential(nn.Linear(Z, H), lr(), nn.Linear(H, H), lr(), nn.Linear(H, 784), nn.Tanh())
D = nn.Sequential(nn.Linear(784, H), lr(), nn.Dropout(0.3), nn.Linear(H, H), lr(), nn.Dropout(0.3), nn.Linear(H, 1))
ema = [q.detach().clone() for q in G.parameters()]
og = torch.optim.Adam(G.parameters(), lr=4e-4, betas=(0.5, 0.999))
od = torch.optim.Adam(D.parameters(), lr=4e-4, betas=(0.5, 0.999))
bce = nn.BCEWithLogitsLoss()
labels = torch.cat([torch.ones(B, 1), torch.zeros(B, 1)])
ones = torch.ones(B, 1)
nb = data.shape[0] // B

def step(i):
    real = data[(i % nb) * B:(i % nb + 1) * B]
    od.zero_grad(set_to_none=True)
    fake = G(torch.randn(B, Z)).detach()
    bce(D(torch.cat([real, fake])), labels).backward()
    od.step()
    og.zero_grad(set_to_none=True)
    bce(D(G(torch.randn(B, Z))), ones).backward()
    og.step()
    with torch.no_grad():
        for e, q in zip(ema, G.parameters()):
            e.mul_(0.999).add_(q, alpha=0.001)

for i in range(a.warmup): step(i)
t = time.perf_counter()
for i in range(a.steps): step(i)
dt = time.perf_counter() - t
print(f"PEER torch-image-mlp batch={B} steps_per_s={a.steps / dt:.2f}", flush=True)
