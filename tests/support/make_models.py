"""Writes the TorchScript models the serving tests use, with inputs and the
outputs PyTorch itself computes for them, so that the tests can check that
Tandem's answers equal direct libtorch calls.

  /usr/bin/python3 make_models.py OUTDIR
"""
import os
import sys

import torch


class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(64, 256), torch.nn.ReLU(),
            torch.nn.Linear(256, 256), torch.nn.ReLU(),
            torch.nn.Linear(256, 16))

    def forward(self, x):
        return self.net(x)


class TwoHeads(torch.nn.Module):
    """Two inputs, two outputs: checks names and order."""

    def forward(self, a, b):
        return a + b, a * b


class Picky(torch.nn.Module):
    """Fails at run time on inputs with a negative sum."""

    def forward(self, x):
        if bool(x.sum() < 0):
            raise RuntimeError("negative input")
        return x * 2.0


class Times(torch.nn.Module):
    """Model versions of one service (tests/mpi/test_lifecycle.cpp): the
    factor tells which version answered."""

    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


class Heavy(torch.nn.Module):
    """Times(factor) with 64 MiB of weights it does not need: a version
    that takes a while to load, so that a swap under load lasts long enough
    to measure latency during it."""

    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor
        self.register_buffer("ballast", torch.zeros(16 * 1024 * 1024))

    def forward(self, x):
        return x * self.factor


class WrongDtype(torch.nn.Module):
    """Fails the signature check of the Times service: FP64 out."""

    def forward(self, x):
        return x.double() * 5.0


class WrongShape(torch.nn.Module):
    """Fails the signature check of the Times service: 2 columns, not 4."""

    def forward(self, x):
        return x[:, :2] * 5.0


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(7)
    mlp = torch.jit.script(MLP().eval())
    mlp.save(os.path.join(out, "mlp.pt"))
    x = torch.randn(5, 64)
    with torch.no_grad():
        y = mlp(x)
    x.numpy().astype("float32").tofile(os.path.join(out, "mlp_input.bin"))
    y.numpy().astype("float32").tofile(os.path.join(out, "mlp_expected.bin"))
    torch.jit.script(TwoHeads()).save(os.path.join(out, "two_heads.pt"))
    torch.jit.script(Picky()).save(os.path.join(out, "picky.pt"))
    for factor in (2, 3, 4, 5):
        torch.jit.script(Times(float(factor))).save(os.path.join(out, f"times{factor}.pt"))
    torch.jit.script(Heavy(3.0)).save(os.path.join(out, "heavy3.pt"))
    torch.jit.script(WrongDtype()).save(os.path.join(out, "wrong_dtype.pt"))
    torch.jit.script(WrongShape()).save(os.path.join(out, "wrong_shape.pt"))
    with open(os.path.join(out, "not_torchscript.pt"), "w") as f:
        f.write("this is not a TorchScript archive\n")


if __name__ == "__main__":
    main()
