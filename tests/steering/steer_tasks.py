"""Python steering, in a function task (tests/steering/test_steering.py)."""
import tandem


def square(ctx):
    x = ctx.args["x"]
    if ctx.args.get("fail"):
        raise ValueError(f"square of {x} refused")
    return {"x": x, "y": x * x}


def prep(ctx):
    return {"prep": ctx.index}


def flaky(ctx):
    if ctx.attempt < 3:
        raise RuntimeError(f"attempt {ctx.attempt} fails")
    return {"attempt": ctx.attempt}


def pair(ctx):
    """A task of two ranks: mpi4py over its communicator."""
    return {"size": ctx.size, "sum": ctx.comm.allreduce(ctx.rank + 1)}


def gpu(ctx):
    return {"gpus": list(ctx.gpus)}


def think(ctx):
    """Three rounds of 20, each round after the one before; a task the
    workflow does not have; one that fails."""
    log = []
    try:
        ctx.submit("nonesuch", {})
    except tandem.ArgumentError as e:
        log.append(["unknown", str(e)])
    previous = []
    rounds = []
    for r in range(3):
        handles = ctx.submit_many("square", [{"x": 100 * r + i, "round": r} for i in range(20)],
                                  after=previous)
        ys = []
        for done in ctx.as_completed(handles):
            assert done.state == "DONE" and done.handle in handles, done
            ys.append(done.result["y"])
        rounds.append(sorted(ys))
        previous = handles
    bad = ctx.submit("square", {"x": 1, "fail": True})
    (result,) = ctx.wait([bad])
    log.append(["failed", result.state, result.reason])
    # Per-submission retries and timeout; `after` by a workflow task's name.
    again = ctx.submit("flaky", {}, retries=2)
    nap = ctx.submit("nap", {}, timeout=0.5)
    late = ctx.submit("square", {"x": 3}, after=["prep"])
    got = ctx.wait([again, nap, late])
    log.append(["own", [r.state for r in got], got[1].reason])
    # Tasks of several ranks and tasks with GPUs are submitted as any.
    wide = ctx.wait(ctx.submit_many("pair", [{}, {}]) + [ctx.submit("gpu", {})])
    log.append(["wide", [r.state for r in wide], [r.result for r in wide]])
    try:
        ctx.submit("think", {})
    except tandem.ArgumentError as e:
        log.append(["steering", str(e)])
    try:
        ctx.submit("square", {"x": 1}, retries=-1)
    except tandem.ArgumentError as e:
        log.append(["retries", str(e)])
    try:
        ctx.submit("square", {"x": 1}, after=["nonesuch"])
    except tandem.ArgumentError as e:
        log.append(["after", str(e)])
    return {"rounds": rounds, "log": log}
