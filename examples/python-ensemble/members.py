"""python-ensemble: the surrogate-ensemble example in Python function tasks.

Each member integrates u_t = D u_xx + R(u, a) on a periodic 1-D grid with
numpy. `simulate` gets the closure R from the MLP that the job serves
(ctx.client, straight over the worker's MPI client: no proxy, no socket);
`exact` computes it by quadrature, as the training data was made. `report`
runs after both and compares them. The functions run inside the worker
ranks, not as processes.
"""
import json
import os
import time

import numpy as np

# The midpoint rule of closure.hpp, with 400 points instead of its 2000: on
# this smooth integrand the two agree to 1e-6, and numpy does it 5x sooner.
QUADRATURE = (np.arange(400) + 0.5) / 400


def exact_closure(u, a):
    """R(u, a) = a u (1 - u) mean_s exp(-4 (s - u)^2), per cell."""
    return a * u * (1 - u) * np.exp(-4.0 * (QUADRATURE[None, :] - u[:, None]) ** 2).mean(axis=1)


def member_setup(ctx):
    cells, steps = ctx.args["cells"], ctx.args["steps"]
    a = 0.5 + 1.5 * ctx.index / max(1, ctx.count - 1)  # reaction strengths over [0.5, 2]
    x = (np.arange(cells) + 0.5) / cells
    centre = 0.3 + 0.2 * (ctx.index % 3)
    u = 0.1 + 0.5 * np.exp(-(((x - centre) / 0.08) ** 2))
    return u, a, steps


def integrate(u, a, steps, closure, diffusion=1e-3):
    dx = 1.0 / u.size
    dt = 0.2 * dx * dx / diffusion
    for _ in range(steps):
        lap = (np.roll(u, 1) - 2 * u + np.roll(u, -1)) / (dx * dx)
        u = u + dt * (diffusion * lap + closure(u, a))
    return u


def save(ctx, mode, u, seconds, **extra):
    path = os.path.join(ctx.output_dir, f"member-{ctx.index}.json")
    with open(path, "w") as f:
        json.dump({"mode": mode, "u": u.tolist(), "seconds": seconds, **extra}, f)


def simulate(ctx):
    """A member whose closure comes from the served surrogate."""
    u, a, steps = member_setup(ctx)
    client = ctx.client
    client.wait_ready("closure")
    x = np.empty((u.size, 2), np.float32)  # (u, a) per cell, reused every step
    latencies = []

    def surrogate(u, a):
        x[:, 0] = u
        x[:, 1] = a
        t0 = time.perf_counter()
        r = client.infer("closure", {"x": x})["r"]
        latencies.append(time.perf_counter() - t0)
        return r[:, 0].astype(np.float64)

    t0 = time.perf_counter()
    u = integrate(u, a, steps, surrogate)
    seconds = time.perf_counter() - t0
    save(ctx, "surrogate", u, seconds, closure_seconds=sum(latencies))
    return {"a": a, "seconds": seconds, "requests": len(latencies),
            "median_latency_us": float(np.median(latencies) * 1e6)}


def exact(ctx):
    """The same member with the closure computed exactly."""
    u, a, steps = member_setup(ctx)
    t0 = time.perf_counter()
    u = integrate(u, a, steps, exact_closure)
    seconds = time.perf_counter() - t0
    save(ctx, "exact", u, seconds)
    return {"a": a, "seconds": seconds}


def report(ctx):
    """Compares every surrogate member with its exact twin."""
    tasks = os.path.join(ctx.run_dir, "tasks")
    worst, surrogate_s, exact_s, requests = 0.0, 0.0, 0.0, 0
    for i in range(ctx.args["members"]):
        with open(os.path.join(tasks, "simulate", f"member-{i}.json")) as f:
            s = json.load(f)
        with open(os.path.join(tasks, "exact", f"member-{i}.json")) as f:
            e = json.load(f)
        us, ue = np.array(s["u"]), np.array(e["u"])
        error = float(np.abs(us - ue).max() / np.abs(ue).max())
        worst = max(worst, error)
        surrogate_s += s["seconds"]
        exact_s += e["seconds"]
        print(f"member {i}: surrogate error {error:.2e}, {s['seconds']:.3f} s "
              f"(closure {s['closure_seconds']:.3f} s) vs exact {e['seconds']:.3f} s")
    print(f"surrogate error on the final field: max {worst:.2e}")
    print(f"time, all members: surrogate {surrogate_s:.2f} s, exact closure {exact_s:.2f} s")
    return {"max_error": worst, "surrogate_s": surrogate_s, "exact_s": exact_s}
