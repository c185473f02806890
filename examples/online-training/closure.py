"""What the online-training example's scripts share: the exact closure, the
surrogate's network, and where the run's files go.

The exact closure is the surrogate-ensemble example's:
    R(u, a) = a * u * (1 - u) * mean_q exp(-4 (s_q - u)^2),  s_q = (q + 0.5) / Q
an average over Q quadrature points, expensive to evaluate for every cell at
every step. The surrogate is a small MLP (u, a) -> R.
"""
import numpy as np

Q = 2000  # quadrature points


def exact_closure(u, a):
    """R for arrays u and a (any shape, broadcast), in float64."""
    u = np.asarray(u, dtype=np.float64)
    s = (np.arange(Q, dtype=np.float64) + 0.5) / Q
    kernel = np.exp(-4.0 * (s[None, :] - u.reshape(-1, 1)) ** 2).mean(axis=1).reshape(u.shape)
    return a * u * (1.0 - u) * kernel


def make_surrogate():
    """The network; imported lazily so that simulations need no torch."""
    import torch

    class Surrogate(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(
                torch.nn.Linear(2, 32), torch.nn.Tanh(),
                torch.nn.Linear(32, 32), torch.nn.Tanh(),
                torch.nn.Linear(32, 1))

        def forward(self, x):
            # x: [cells, 2] = (u, a); returns [cells, 1]
            return self.net(x)

    return Surrogate()
