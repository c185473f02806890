"""What the active-learning example's tasks share: the simulation whose
outcome the surrogate learns, and the surrogate itself.

The simulation is a 1-D reaction-diffusion run with an ignition threshold,

    u_t = D u_xx + r u (u - theta) (1 - u),   D = D(a), theta = theta(b),

from a bump in the middle of [0, 1]; its outcome is the mean of u at the
end. (a, b) in [0, 1]^2 are the parameters the thinker chooses.

The surrogate is an ensemble of small MLPs, each trained on its own
bootstrap sample of the data: their mean is the prediction, their spread
the uncertainty the thinker samples by. Exported as one TorchScript module
that returns (mean, std).
"""
import numpy as np

MEMBERS = 4


def simulate(a, b, cells=64, steps=400):
    """The outcome for parameters (a, b): about 7 ms of numpy."""
    diffusion = 0.5e-3 + 4e-3 * a
    theta = 0.1 + 0.3 * b
    dx = 1.0 / cells
    dt = 0.2 * dx * dx / 5e-3  # stable for the largest diffusion
    x = (np.arange(cells) + 0.5) * dx
    u = np.exp(-((x - 0.5) / 0.12) ** 2)
    for _ in range(steps):
        lap = (np.roll(u, 1) + np.roll(u, -1) - 2 * u) / dx**2
        lap[0] = (u[1] - u[0]) / dx**2  # no flux at the ends
        lap[-1] = (u[-2] - u[-1]) / dx**2
        u = u + dt * (diffusion * lap + 8.0 * u * (u - theta) * (1 - u))
    return float(u.mean())


def make_ensemble(seed):
    """The surrogate's network, untrained; torch is imported here so that
    the simulations need none."""
    import torch

    class Member(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(
                torch.nn.Linear(2, 32), torch.nn.Tanh(),
                torch.nn.Linear(32, 32), torch.nn.Tanh(),
                torch.nn.Linear(32, 1))

        def forward(self, x):
            return self.net(x)

    class Ensemble(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.members = torch.nn.ModuleList([Member() for _ in range(MEMBERS)])

        def forward(self, x):
            # x: [points, 2] = (a, b); returns mean and std, [points, 1] each
            ys = torch.stack([m(x) for m in self.members])
            return ys.mean(0), ys.std(0)

    torch.manual_seed(seed)
    return Ensemble()


def train_ensemble(points, values, seed, steps=400):
    """Each member on its own bootstrap sample of (points, values); returns
    the ensemble, scripted for the service, and the members' last loss."""
    import torch

    torch.set_num_threads(1)  # the ranks share the cores
    ensemble = make_ensemble(seed)
    rng = np.random.default_rng(seed)
    points = np.asarray(points, dtype=np.float32)
    values = np.asarray(values, dtype=np.float32)
    loss = torch.tensor(0.0)
    for member in ensemble.members:
        pick = rng.integers(0, len(points), len(points))
        x = torch.from_numpy(points[pick])
        y = torch.from_numpy(values[pick])[:, None]
        opt = torch.optim.Adam(member.parameters(), lr=1e-2)
        for _ in range(steps):
            loss = torch.nn.functional.mse_loss(member(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return torch.jit.script(ensemble.eval()), float(loss)
