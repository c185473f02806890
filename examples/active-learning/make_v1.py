"""Writes surrogate_v1.pt, what the service holds before the first
training step: an untrained ensemble (the service needs a model to start
with; the thinker trains version 2 from the first simulations).

    /usr/bin/python3 make_v1.py        # writes surrogate_v1.pt here
"""
import os

import torch

from problem import make_ensemble


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "surrogate_v1.pt")
    torch.jit.script(make_ensemble(seed=0).eval()).save(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
