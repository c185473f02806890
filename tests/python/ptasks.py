"""Python function tasks for tests/python/test_tasks.py."""
import json
import os

import numpy as np


def record(ctx):
    """Writes what the context says, and returns part of it."""
    seen = {"name": ctx.name, "index": ctx.index, "count": ctx.count, "attempt": ctx.attempt,
            "run_dir": ctx.run_dir, "output_dir": ctx.output_dir, "args": ctx.args,
            "rank": ctx.rank, "size": ctx.size, "pid": os.getpid()}
    with open(os.path.join(ctx.output_dir, f"seen-{ctx.index}.json"), "w") as f:
        json.dump(seen, f)
    print(f"record {ctx.index} says hello")
    return {"index": ctx.index, "scaled": ctx.args["scale"] * ctx.index,
            "numpy": np.float32(0.5) * ctx.index}


def flaky(ctx):
    if ctx.attempt < 3:
        raise RuntimeError(f"attempt {ctx.attempt} fails on purpose")
    return ctx.attempt


def fails(ctx):
    helper_that_raises(ctx.index)


def helper_that_raises(i):
    raise ValueError(f"instance {i} cannot go on")


def collective(ctx):
    comm = ctx.comm
    total = comm.allreduce(comm.Get_rank() + 1)
    gathered = comm.allgather(os.getpid())
    return {"size": comm.Get_size(), "total": total, "distinct_pids": len(set(gathered)),
            "rank": ctx.rank}


def inputs(index):
    """The same inputs test_infer_bytes (tests/support/test_tasks.cpp) sends."""
    x32 = (np.arange(6 * 4, dtype=np.float32).reshape(6, 4) * 7 + index) / 8
    x64 = (np.arange(5, dtype=np.float64) * 3 + index) / 16
    return x32, x64


def infer_bytes(ctx):
    x32, x64 = inputs(ctx.index)
    client = ctx.client
    client.wait_ready("scale")
    y32 = client.infer("scale", {"x": x32})["x"]
    y64 = client.infer("scale", {"x": x64})["x"]
    with open(os.path.join(ctx.output_dir, f"py-{ctx.index}.bin"), "wb") as f:
        f.write(y32.tobytes() + y64.tobytes())
    return {"model_version": client.infer("scale", {"x": x64}).model_version}


def isolated(ctx):
    print("from the isolated child")
    return {"pid": os.getpid(), "client": ctx.client is None}


def too_big(ctx):
    return "x" * 20000


def not_json(ctx):
    return object()
