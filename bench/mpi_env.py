"""The environment every benchmark driver runs its MPI jobs under: ranks
often outnumber the cores here, so Open MPI must yield instead of spinning,
and root needs Open MPI's explicit consent (as in scripts/env.sh)."""
import os


def setup():
    os.environ.setdefault("OMPI_MCA_mpi_yield_when_idle", "1")
    if os.geteuid() == 0:
        os.environ["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        os.environ["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
