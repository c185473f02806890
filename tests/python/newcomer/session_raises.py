"""An mpi4py program where one application rank raises inside the session
while the other waits for it in a collective: the job must end, not hang."""
import sys

from mpi4py import MPI

import tandem

workflow = sys.argv[1]
with tandem.Session(MPI.COMM_WORLD, workflow) as session:
    if session.is_app:
        comm = session.app_comm
        if comm.Get_rank() == 1:
            raise RuntimeError("the solver diverged at step 7")
        comm.barrier()  # waits forever for rank 1
