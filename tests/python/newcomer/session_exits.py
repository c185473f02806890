"""Every application rank leaves the session with sys.exit(CODE)."""
import sys

from mpi4py import MPI

import tandem

workflow, code = sys.argv[1], int(sys.argv[2])
with tandem.Session(MPI.COMM_WORLD, workflow) as session:
    if session.is_app:
        session.client.infer("echo", {"x": [1.0]})
        sys.exit(code if session.app_comm.Get_rank() == 0 else 0)
