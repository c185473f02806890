"""Baseline for bench/adaptive.py: rounds of null tasks through
mpi4py.futures, submitted one by one and collected with as_completed, as
a Python driver would. Run as
  mpiexec -n W+1 python3 -m mpi4py.futures mpi4py_rounds.py ROUNDS PER_ROUND
Prints one line per round: seconds of the submit calls, seconds of the
round (submit and wait for all)."""
import sys
import time

from mpi4py.futures import MPIPoolExecutor, as_completed


def null(_):
    return None


def main():
    rounds, per_round = int(sys.argv[1]), int(sys.argv[2])
    with MPIPoolExecutor() as pool:
        list(pool.map(null, range(64)))  # start the workers
        for _ in range(rounds):
            t0 = time.perf_counter()
            futures = [pool.submit(null, k) for k in range(per_round)]
            t1 = time.perf_counter()
            for f in as_completed(futures):
                f.result()
            t2 = time.perf_counter()
            print(f"{t1 - t0} {t2 - t0}", flush=True)


if __name__ == "__main__":
    main()
