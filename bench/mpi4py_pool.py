"""Baseline for bench/pilot_throughput.py: the same null work through
mpi4py.futures.MPIPoolExecutor. Run as
  mpiexec -n W+1 python3 -m mpi4py.futures mpi4py_pool.py KIND N CHUNKSIZE
KIND is 'null' (a function that does nothing) or 'true' (runs /bin/true).
Prints one line: tasks per second, measured around map() after a warm-up,
so pool start-up is excluded as it is for Tandem's makespan."""
import subprocess
import sys
import time

from mpi4py.futures import MPIPoolExecutor


def null(_):
    return None


def true(_):
    subprocess.run(["/bin/true"], check=True)
    return None


def main():
    kind, n, chunksize = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    fn = null if kind == "null" else true
    with MPIPoolExecutor() as pool:
        list(pool.map(fn, range(64), chunksize=chunksize))  # start the workers
        t0 = time.perf_counter()
        list(pool.map(fn, range(n), chunksize=chunksize))
        dt = time.perf_counter() - t0
    print(f"{n / dt:.1f}")


if __name__ == "__main__":
    main()
