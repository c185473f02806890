"""Python function tasks for tests/python/test_newcomer.py."""
import logging
import os
import time

import numpy as np

# As many scripts do at import: a handler bound to the stderr of the time.
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
log = logging.getLogger("newcomer")


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


def each_rank_prints(ctx):
    """A two-rank task: each rank's print and logging stay its own."""
    print(f"rank {ctx.rank} of {ctx.size} says hi")
    log.info("rank %d logs", ctx.rank)
    ctx.comm.barrier()
    return ctx.rank


def fails_once(ctx):
    """Fails until RUN_DIR/fixed exists: the first job fails, the resumed
    one succeeds."""
    print(f"attempt {ctx.attempt}")
    if not os.path.exists(os.path.join(ctx.run_dir, "fixed")):
        raise RuntimeError("not fixed yet")
    return ctx.attempt
