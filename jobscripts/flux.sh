#!/bin/bash
# Run a Tandem workflow under Flux.
#
#   flux batch -N 2 -n 64 -t 60m jobscripts/flux.sh workflow.toml
#
set -euo pipefail
workflow=${1:?usage: flux batch ... flux.sh workflow.toml}
export OMPI_MCA_mpi_yield_when_idle=1
tandem=${TANDEM:-tandem}
np=$(flux resource list -no '{ncores}' | awk '{s += $1} END {print s}')
"$tandem" plan "$workflow" --np "$np" > /dev/null
# Relaunched with --resume if a rank dies (tandem supervise).
exec "$tandem" supervise --max-relaunches "${TANDEM_MAX_RELAUNCHES:-3}" \
  --min-time-left "${TANDEM_MIN_TIME_LEFT:-300}" -- \
  flux run -n "$np" -o mpi=openmpi "$tandem" run "$workflow"
