"""One ensemble member of the online-training example: a reaction-diffusion
field whose closure term comes from the served surrogate. Every few steps it
also computes the exact closure on the same cells (a real campaign would do
so now and then to watch the surrogate) and appends the surrogate's relative
error to RUN_DIR/series/closure_error.csv, which `tandem report` plots
against the run's wall time with the model versions marked.

    simulate.py RUN_DIR        (an executable task; TANDEM_TASK_INDEX picks a)
"""
import os
import sys
import time

import numpy as np

import tandem
from closure import exact_closure

CELLS, STEPS, CHECK_EVERY, DT, DIFFUSION = 128, 24, 4, 0.05, 0.2

run_dir = sys.argv[1]
index = int(os.environ.get("TANDEM_TASK_INDEX", "0"))
rng = np.random.default_rng(index)
a = rng.uniform(0.5, 2.0)  # this member's reaction rate
x = np.linspace(0, 1, CELLS)
u = 0.5 + 0.4 * np.sin(2 * np.pi * (x + rng.uniform()))
os.makedirs(f"{run_dir}/series", exist_ok=True)

with tandem.Client() as client:
    client.wait_ready("closure", 120)
    versions = set()
    for step in range(STEPS):
        cells = np.stack([u, np.full(CELLS, a)], axis=1).astype(np.float32)
        reply = client.infer("closure", {"x": cells})
        r = reply["r"][:, 0].astype(np.float64)
        versions.add(reply.model_version)
        if step % CHECK_EVERY == 0:
            exact = exact_closure(u, a)
            error = np.abs(r - exact).max() / np.abs(exact).max()
            # One short line per write with O_APPEND: lines of concurrent
            # members do not interleave.
            with open(f"{run_dir}/series/closure_error.csv", "a") as f:
                f.write(f"{time.time():.6f},{error:.6g}\n")
        lap = np.roll(u, 1) - 2 * u + np.roll(u, -1)
        u = np.clip(u + DT * (DIFFUSION * lap * CELLS / 8 + r), 0.0, 1.0)
print(f"member {index}: a = {a:.3f}, mean u {u.mean():.4f}, model versions {sorted(versions)}")
