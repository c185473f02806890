"""The online-training example's trainer, an executable task beside the
simulations: it reads the inputs the closure service was asked about from
the service's recording (an HDF5 file the replica keeps readable while it
writes it), labels them with the exact closure, trains the surrogate further,
exports it as TorchScript and calls load_model, so that the next requests of
the simulations already get the better version.

    train.py RUN_DIR [ROUNDS]
"""
import os
import sys
import time

import h5py
import numpy as np
import torch

import tandem
from closure import exact_closure, make_surrogate

run_dir = sys.argv[1]
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 4
recording = f"{run_dir}/services/closure/replica-0.h5"
torch.manual_seed(0)
rng = np.random.default_rng(0)
torch.set_num_threads(1)  # the ranks share the cores


def recorded_inputs(at_least):
    """The (u, a) rows served so far, once there are at_least of them."""
    while True:
        try:
            with h5py.File(recording, "r", libver="latest", swmr=True) as f:
                rows = f["inputs/x"][:]
            if len(rows) >= at_least:
                return rows
        except (OSError, KeyError):
            pass  # not written yet
        time.sleep(0.2)


model = make_surrogate()
opt = torch.optim.Adam(model.parameters(), lr=3e-3)
with tandem.Client() as client:
    client.wait_ready("closure", 120)
    for version in range(2, rounds + 2):
        rows = recorded_inputs(at_least=2048 * (version - 1))
        # Label what the simulations actually asked about: the surrogate
        # learns where it is used. Labels are the expensive part, so a
        # sample of the rows, the newest always among them.
        sample = np.concatenate([rows[-1024:], rows[rng.integers(0, len(rows), 3072)]])
        u, a = sample[:, 0].astype(np.float64), sample[:, 1].astype(np.float64)
        x = torch.tensor(sample, dtype=torch.float32)
        y = torch.tensor(exact_closure(u, a), dtype=torch.float32)[:, None]
        for _ in range(300):
            idx = torch.randint(0, len(x), (256,))
            loss = torch.nn.functional.mse_loss(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        # Triton's layout, <dir>/<version>/model.pt: a service with
        # model_dir pointing here would pick the versions up by itself.
        path = f"{run_dir}/models/closure/{version}/model.pt"
        os.makedirs(os.path.dirname(path), exist_ok=True)
        torch.jit.script(model.eval()).save(path)
        model.train()
        serving = client.load_model("closure", path, version)
        print(f"version {version}: trained on {len(rows)} recorded rows, mse {loss.item():.2e}, "
              f"serving version {serving}", flush=True)
