#!/usr/bin/env python3
"""An independent judge for conditional MNIST samples (docs/conditional.md): a small CNN (two 5x5
convolutions of 32 and 64 channels with max pooling, a 128-wide linear layer with dropout 0.3)
trained on real MNIST's 60,000 digits for 3 epochs (Adam 1e-3, batch 128, seed 0, one thread),
tested on its 10,000 test digits; then, for samples asked for each class, the share the CNN
classifies as that class. The built-in classifier's own test accuracy (98.19%) caps what its
agreement can show; this one's is about 99%.

  python scripts/cnn_judge.py train --data DIR --model cnn.pt
      DIR holds mnist_train_images.npy, mnist_train_labels.npy, mnist_test_images.npy,
      mnist_test_labels.npy (uint8 (N, 784) and (N,))
  python scripts/cnn_judge.py score PREFIX --model cnn.pt
      PREFIX_0.npy ... PREFIX_9.npy: uint8 (n, 784) samples asked for class 0 ... 9, e.g. from
      `shadergan generate RUN --class K --n 1000 --out PREFIX_K.npy`
"""
import argparse
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 32, 5, padding=2)
        self.c2 = nn.Conv2d(32, 64, 5, padding=2)
        self.f1 = nn.Linear(64 * 7 * 7, 128)
        self.f2 = nn.Linear(128, 10)
        self.drop = nn.Dropout(0.3)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.max_pool2d(F.relu(self.c2(x)), 2)
        return self.f2(self.drop(F.relu(self.f1(x.flatten(1)))))


def images(a):
    return torch.from_numpy(a.reshape(-1, 1, 28, 28).astype(np.float32) / 255.0)


def predict(net, x):
    net.eval()
    with torch.no_grad():
        return torch.cat([net(x[i:i + 1000]).argmax(1) for i in range(0, len(x), 1000)]).numpy()


def train(data, model):
    x = images(np.load(f"{data}/mnist_train_images.npy"))
    y = torch.from_numpy(np.load(f"{data}/mnist_train_labels.npy").astype(np.int64))
    net, t0 = Net(), time.time()
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    for epoch in range(3):
        net.train()
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 128):
            idx = perm[i:i + 128]
            opt.zero_grad()
            F.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
        print(f"epoch {epoch + 1} {time.time() - t0:.0f}s", flush=True)
    xt, yt = images(np.load(f"{data}/mnist_test_images.npy")), np.load(f"{data}/mnist_test_labels.npy")
    print(f"test accuracy {(predict(net, xt) == yt).mean():.4f}")
    torch.save(net.state_dict(), model)


def score(prefix, model):
    net = Net()
    net.load_state_dict(torch.load(model))
    shares = [(predict(net, images(np.load(f"{prefix}_{k}.npy"))) == k).mean() for k in range(10)]
    print(prefix, f"agreement {np.mean(shares):.4f}", "per class", " ".join(f"{s:.3f}" for s in shares))


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["train", "score"])
    p.add_argument("prefix", nargs="?")
    p.add_argument("--data", default="data")
    p.add_argument("--model", default="cnn.pt")
    a = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    if a.what == "train":
        train(a.data, a.model)
    else:
        score(a.prefix, a.model)
