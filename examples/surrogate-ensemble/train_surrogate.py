"""Trains the closure surrogate of the surrogate-ensemble example and
exports it as TorchScript (closure_mlp.pt).

The exact closure (closure.hpp, same formula) is
    R(u, a) = a * u * (1 - u) * mean_q exp(-4 (s_q - u)^2),  s_q = (q + 0.5) / Q
an average over Q quadrature points: cheap to write, expensive to evaluate
for every cell at every step. The surrogate is a small MLP (u, a) -> R.

    /usr/bin/python3 train_surrogate.py            # writes closure_mlp.pt here
"""
import os

import torch

Q = 2000  # quadrature points, as in closure.hpp


def exact_closure(u, a):
    s = (torch.arange(Q, dtype=torch.float64) + 0.5) / Q
    kernel = torch.exp(-4.0 * (s[None, :] - u[:, None]) ** 2).mean(dim=1)
    return a * u * (1.0 - u) * kernel


class Surrogate(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(2, 64), torch.nn.Tanh(),
            torch.nn.Linear(64, 64), torch.nn.Tanh(),
            torch.nn.Linear(64, 1))

    def forward(self, x):
        # x: [cells, 2] = (u, a); returns [cells, 1]
        return self.net(x)


def main():
    torch.manual_seed(0)
    n = 20000
    u = torch.rand(n, dtype=torch.float64) * 1.2 - 0.1   # a little beyond [0, 1]
    a = torch.rand(n, dtype=torch.float64) * 1.5 + 0.5   # a in [0.5, 2]
    y = exact_closure(u, a).float()[:, None]
    x = torch.stack([u, a], dim=1).float()
    model = Surrogate()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1500, gamma=0.3)
    for step in range(4500):
        idx = torch.randint(0, n, (512,))
        loss = torch.nn.functional.mse_loss(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 500 == 0:
            print(f"step {step:5d}  mse {loss.item():.3e}")
    with torch.no_grad():
        err = (model(x) - y).abs().max().item()
        print(f"max abs error on the training set: {err:.2e} (closure values up to {y.abs().max().item():.3f})")
    scripted = torch.jit.script(model.eval())
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "closure_mlp.pt")
    scripted.save(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
