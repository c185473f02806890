#!/bin/bash
# Run a Tandem workflow on a workstation with mpirun.
#
#   jobscripts/local.sh workflow.toml [ranks] [tandem run options...]
#
# With more ranks than cores, ranks share the cores: --oversubscribe, and
# Open MPI must yield instead of spinning. All ranks are on this machine, so
# they talk through shared memory only (btl self,vader): no rank opens a
# TCP port.
set -euo pipefail
workflow=${1:?usage: local.sh workflow.toml [ranks] [options]}
np=${2:-$(nproc)}
shift $(( $# >= 2 ? 2 : 1 ))
export OMPI_MCA_mpi_yield_when_idle=1
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
tandem=${TANDEM:-tandem}
"$tandem" plan "$workflow" --np "$np" > /dev/null
exec mpirun --oversubscribe --mca btl self,vader -np "$np" "$tandem" run "$workflow" "$@"
