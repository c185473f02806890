"""Two application ranks send 4 requests each at once to a replica that
takes 100 ms per batch of one row: most of each request's time is waiting
for the busy replica, which the report must call queue wait, not transit."""
import sys

import numpy as np
from mpi4py import MPI

import tandem

with tandem.Session(MPI.COMM_WORLD, sys.argv[1]) as session:
    if session.is_app:
        c = session.client
        c.wait_ready("slow", 60)
        session.app_comm.barrier()
        x = np.ones((1, 4), np.float32)
        requests = [c.infer_async("slow", {"x": x}) for _ in range(4)]
        for r in requests:
            r.wait()
