"""Writes closure_v1.pt, the surrogate the online-training example starts
with: trained on 16 samples only, so that it is poor on purpose and the run
has something to improve.

    /usr/bin/python3 make_v1.py        # writes closure_v1.pt here
"""
import os

import numpy as np
import torch

from closure import exact_closure, make_surrogate


def main():
    torch.manual_seed(1)
    rng = np.random.default_rng(1)
    u = rng.uniform(0, 1, 16)
    a = rng.uniform(0.5, 2.0, 16)
    x = torch.tensor(np.stack([u, a], axis=1), dtype=torch.float32)
    y = torch.tensor(exact_closure(u, a), dtype=torch.float32)[:, None]
    model = make_surrogate()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(100):
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "closure_v1.pt")
    torch.jit.script(model.eval()).save(out)
    print(f"wrote {out} (mse on its 16 samples {loss.item():.2e})")


if __name__ == "__main__":
    main()
