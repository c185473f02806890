"""Python function tasks for tests/python/test_newcomer.py."""
import time

import numpy as np


def first_request(ctx):
    """A task's first request, with no wait_ready, while the model loads."""
    t0 = time.monotonic()
    x = np.full((2, 4), ctx.index, np.float32)
    y = ctx.client.infer("slow", {"x": x})["y"]
    return {"sum": float(y.sum()), "waited_s": time.monotonic() - t0}


def summarize(ctx):
    """Runs after `first`: reads its instances' results."""
    found = ctx.results("first")
    return {"indices": [r.index for r in found], "states": sorted({r.state for r in found}),
            "total": sum(r.result["sum"] for r in found)}


def echo_args(ctx):
    """A swept instance's args, as the function sees them."""
    return ctx.args


def exit_with(ctx):
    """sys.exit(args.code), as a script would."""
    import sys
    print("leaving")
    sys.exit(ctx.args["code"])
