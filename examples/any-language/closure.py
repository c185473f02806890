"""Asks the served closure model for R(u, a) on a grid of n points, from
Python through the worker's proxy, and prints "u a r" lines."""
import sys

import numpy as np

import tandem

n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
i = np.arange(n)
x = np.empty((n, 2), np.float32)
x[:, 0] = i / np.float32(n)
x[:, 1] = np.float32(0.5) + np.float32(1.5) * (i % 7) / np.float32(6)
with tandem.Client() as client:
    client.wait_ready("closure", 120)
    r = client.infer("closure", {"x": x})["r"]
for (u, a), value in zip(x, r[:, 0]):
    print(f"{u:.6f} {a:.6f} {value:.9g}")
