#!/bin/bash
# Run a Tandem workflow under PBS/Torque.
#
#   qsub -v WORKFLOW=workflow.toml jobscripts/pbs.sh
#
#PBS -N tandem
#PBS -l nodes=2:ppn=32
#PBS -l walltime=01:00:00
#PBS -j oe
set -euo pipefail
cd "${PBS_O_WORKDIR:-.}"
export OMPI_MCA_mpi_yield_when_idle=1
tandem=${TANDEM:-tandem}
np=$(wc -l < "$PBS_NODEFILE")
"$tandem" plan "$WORKFLOW" --np "$np" > /dev/null
# PBS sends SIGTERM at the walltime; Tandem drains and keeps its journal.
mpirun -np "$np" --hostfile "$PBS_NODEFILE" "$tandem" run "$WORKFLOW"
