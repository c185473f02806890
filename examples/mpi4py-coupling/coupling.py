"""mpi4py-coupling: an mpi4py stencil code (1-D reaction-diffusion, one slab
per rank, halo exchange with the neighbours) that gets its closure term
from a model served in the same job: the Python twin of spmd-coupling. The
lines marked "Tandem" are all it takes; without them this is an ordinary
mpi4py program.

    PYTHONPATH=PREFIX/lib/tandem/python mpirun -np 5 python3 coupling.py job.toml [--per-rank]

(build/python instead of PREFIX/lib/tandem/python in the build tree.)

Rank 0 coordinates and rank 1 serves the model (see job.toml); ranks 2..4
run the simulation on session.app_comm. Each step asks for the closure of
every rank's cells in one collective call (infer_all_async: one request per
node); --per-rank shows the alternative, each rank sending its own request
(infer_async). Both give the same result.
"""
import sys

import numpy as np
from mpi4py import MPI

import tandem  # Tandem


def simulate(comm, client, per_rank=False, cells=200, steps=400, diffusion=1e-3, a=1.5):
    rank, size = comm.Get_rank(), comm.Get_size()
    dx = 1.0 / (cells * size)
    dt = 0.2 * dx * dx / diffusion
    x = (rank * cells + np.arange(1, cells + 1) - 0.5) * dx
    u = np.zeros(cells + 2)  # u[0] and u[-1] are halo cells
    u[1:-1] = 0.1 + 0.5 * np.exp(-(((x - 0.5) / 0.08) ** 2))
    left, right = (rank - 1) % size, (rank + 1) % size
    inputs = np.empty((cells, 2), np.float32)
    inputs[:, 1] = a
    waited = 0.0
    t0 = MPI.Wtime()
    for _ in range(steps):
        # Ask for the closure first, then exchange halos and apply diffusion
        # while the model computes: the request overlaps the stencil.
        inputs[:, 0] = u[1:-1]
        if per_rank:
            pending = client.infer_async("closure", {"x": inputs})  # Tandem: each rank its own
        else:
            pending = client.infer_all_async(comm, "closure", {"x": inputs})  # Tandem: the node's

        comm.Sendrecv(u[1:2], dest=left, recvbuf=u[-1:], source=right)
        comm.Sendrecv(u[-2:-1], dest=right, recvbuf=u[0:1], source=left)
        lap = (u[:-2] - 2 * u[1:-1] + u[2:]) / (dx * dx)
        w0 = MPI.Wtime()
        r = pending.wait()["r"]  # Tandem
        waited += MPI.Wtime() - w0
        u[1:-1] += dt * (diffusion * lap + r[:, 0])
    mass = comm.reduce(float(u[1:-1].sum() * dx), op=MPI.SUM, root=0)
    slowest = comm.reduce(waited, op=MPI.MAX, root=0)
    if rank == 0:
        print(f"mpi4py-coupling: {size} ranks x {cells} cells, {steps} steps in "
              f"{MPI.Wtime() - t0:.3f} s; mass {mass:.6f}; waited for the surrogate "
              f"{slowest:.3f} s (the rest overlapped); "
              f"{'a request per rank' if per_rank else 'one request per node and step'}",
              flush=True)


def main():
    job = sys.argv[1] if len(sys.argv) > 1 else "job.toml"
    try:
        session = tandem.Session(MPI.COMM_WORLD, job)  # Tandem: collective
    except tandem.TandemError as e:
        # A bad job file or too few ranks: every rank raises the same, rank 0
        # says why, and the job ends cleanly.
        if MPI.COMM_WORLD.Get_rank() == 0:
            print(f"mpi4py-coupling: {e}", file=sys.stderr)
        return 2
    with session:  # Tandem: at the end, the services drain and stop
        if session.is_app:
            session.client.wait_ready("closure")  # Tandem
            # Tandem: app_comm, not COMM_WORLD
            simulate(session.app_comm, session.client, per_rank="--per-rank" in sys.argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
