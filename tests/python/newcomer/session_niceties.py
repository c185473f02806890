"""The client's niceties from an mpi4py program (tests/python/test_newcomer.py
runs it under mpiexec with a workflow of echo, slow and llm services and
checks that it prints OK): per-request options, Request.wait(timeout),
tandem.wait and as_completed, call_async, __version__, help(Session)."""
import concurrent.futures
import io
import json
import sys
import time
from contextlib import redirect_stdout

import numpy as np
from mpi4py import MPI

import tandem

with tandem.Session(MPI.COMM_WORLD, sys.argv[1]) as session:
    if session.is_app:
        c = session.client
        x = np.arange(8, dtype=np.float32).reshape(2, 4)
        # Per-request transport, as in C++; a bad name is an ArgumentError.
        for transport in ("inline", "shm"):
            assert np.array_equal(c.infer("echo", {"x": x}, transport=transport)["x"], x)
        try:
            c.infer("echo", {"x": x}, transport="carrier-pigeon")
            raise AssertionError("a bad transport was taken")
        except tandem.ArgumentError as e:
            assert "carrier-pigeon" in str(e)
        # A version the service does not have is the service's error.
        try:
            c.infer("echo", {"x": x}, version=7)
            raise AssertionError("version 7 was served")
        except tandem.RequestError as e:
            assert "7" in str(e), e

        # wait(timeout): too soon raises WaitTimeout (a TimeoutError), and
        # the request can be waited for again.
        slow = c.infer_async("slow", {"x": x})
        try:
            slow.wait(timeout=0.01)
            raise AssertionError("a 300 ms request answered in 10 ms")
        except TimeoutError as e:
            assert isinstance(e, tandem.WaitTimeout) and "slow" in str(e)
        assert np.array_equal(slow.wait(timeout=30)["x"], x)

        # tandem.wait and as_completed, like concurrent.futures'.
        quick = c.infer_async("echo", {"x": x})
        late = c.infer_async("slow", {"x": x})
        done, not_done = tandem.wait([late, quick], return_when=tandem.FIRST_COMPLETED)
        assert quick in done and late in not_done, (done, not_done)
        done, not_done = tandem.wait([late, quick], timeout=30)
        assert len(done) == 2 and not not_done
        order = [r.service for r in tandem.as_completed(
            [c.infer_async("slow", {"x": x}), c.infer_async("echo", {"x": x})], timeout=30)]
        assert order == ["echo", "slow"], order
        # Waiting does not spin: a 300 ms wait uses far less than 300 ms of CPU.
        cpu0 = time.process_time()
        tandem.wait([c.infer_async("slow", {"x": x})])
        assert time.process_time() - cpu0 < 0.15, time.process_time() - cpu0

        # call_async, for JSON services.
        pending = c.call_async("llm", {"model": "m", "messages": [{"role": "user",
                                                                   "content": "hi"}]})
        assert "choices" in json.loads(pending.wait(timeout=60))

        assert tandem.__version__.count(".") == 2
        text = io.StringIO()
        with redirect_stdout(text):
            help(tandem.Session)
        assert "is_app" in text.getvalue() and "run_dir" in text.getvalue()
        print("OK")
