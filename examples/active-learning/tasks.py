"""The active-learning example's tasks, Python functions the workers call.

`learn` is the thinker (steering = true): it holds the loop, submits the
simulations and the training steps as it decides them, asks the surrogate
service which candidates it is least sure of, and stops when the error on a
validation grid is below the target. `simulate` and `train` are submitted
by it (count = 0 in the workflow: none run otherwise).
"""
import json
import os
import time

import numpy as np

import problem


def simulate(ctx):
    """One simulation at the parameters ctx.args["p"] = [a, b]."""
    a, b = ctx.args["p"]
    return {"p": [a, b], "y": problem.simulate(a, b)}


def train(ctx):
    """Trains the surrogate on the data file the thinker wrote, exports it
    and swaps it in as model version ctx.args["version"] (load_model: the
    service goes on serving meanwhile)."""
    with open(ctx.args["data"]) as f:
        data = json.load(f)
    model, loss = problem.train_ensemble(data["points"], data["values"], seed=ctx.args["seed"])
    version = ctx.args["version"]
    path = os.path.join(ctx.output_dir, f"surrogate_v{version}.pt")
    model.save(path)
    ctx.client.load_model("surrogate", path, version)
    return {"version": version, "points": len(data["points"]), "loss": loss}


def _ys(results, what):
    """The outcomes, in order; an instance that did not end DONE stops the
    thinker with its reason."""
    for r in results:
        if not r.ok:
            raise RuntimeError(f"{what}: {r.task}[{r.index}] {r.state}: {r.reason}")
    return [r.result["y"] for r in results]


def learn(ctx):
    """The thinker. Round 0 simulates a validation grid and a first random
    sample; each round then trains a new surrogate version, measures it on
    the grid, and, short of the target, simulates the `batch` candidates
    the ensemble disagrees on most."""
    args = ctx.args
    target = args.get("target", 0.01)
    batch = args.get("batch", 12)
    max_rounds = args.get("max_rounds", 10)
    rng = np.random.default_rng(args.get("seed", 0))
    grid = np.linspace(0.05, 0.95, 8)
    validation = [[float(a), float(b)] for a in grid for b in grid]
    points = rng.uniform(0, 1, (args.get("initial", 12), 2)).tolist()
    candidates = rng.uniform(0, 1, (args.get("candidates", 2000), 2))

    # Round 0: everything known up front, submitted at once.
    # (`round` labels the submissions for `tandem report`'s rounds.)
    first = ctx.submit_many("simulate", [{"p": p} for p in validation + points], round=0)
    ys = _ys(ctx.wait(first), "round 0")
    truth = np.asarray(ys[:len(validation)])
    values = ys[len(validation):]

    client = ctx.client
    client.wait_ready("surrogate", 120)
    series = os.path.join(ctx.run_dir, "series")
    os.makedirs(series, exist_ok=True)
    data_file = os.path.join(ctx.output_dir, "data.json")
    rounds = []
    error = float("inf")
    for r in range(1, max_rounds + 1):
        with open(data_file, "w") as f:
            json.dump({"points": points, "values": values}, f)
        version = r + 1
        step = ctx.submit("train", {"data": data_file, "version": version, "seed": r}, round=r)
        (trained,) = ctx.wait([step])
        if not trained.ok:
            raise RuntimeError(f"training version {version} {trained.state}: {trained.reason}")
        # The service serves the new version from here on (load_model
        # returned in the training step).
        x = np.asarray(validation, dtype=np.float32)
        served = client.infer("surrogate", {"x": x})
        error = float(np.sqrt(np.mean((served["mean"][:, 0] - truth) ** 2)))
        with open(os.path.join(series, "validation_error.csv"), "a") as f:
            f.write(f"{time.time():.6f},{error:.6g}\n")
        rounds.append({"round": r, "points": len(points), "version": version, "error": error})
        print(f"round {r}: {len(points)} points, surrogate v{version}, "
              f"validation error {error:.4f}", flush=True)
        if error < target:
            break
        spread = client.infer("surrogate", {"x": candidates.astype(np.float32)})["std"][:, 0]
        pick = np.argsort(-spread)[:batch]
        chosen = ctx.submit_many("simulate", [{"p": candidates[i].tolist()} for i in pick],
                                 round=r)
        for done in ctx.as_completed(chosen):  # each as it ends
            (y,) = _ys([done], f"round {r}")
            points.append(done.result["p"])
            values.append(y)
        candidates = np.delete(candidates, pick, axis=0)
    met = error < target
    print(f"{'met' if met else 'missed'} the target {target} after {len(rounds)} rounds "
          f"with {len(points)} simulations (+{len(validation)} for validation)", flush=True)
    return {"met": met, "target": target, "error": error, "points": len(points),
            "rounds": rounds}
