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
# PBS sends SIGTERM to the job at the walltime (kill_delay seconds before
# SIGKILL). mpirun would answer SIGTERM by killing the ranks, so this script
# hands it on as SIGUSR1, which mpirun forwards to every rank; Tandem then
# drains and keeps its journal.
# Relaunched with --resume if a rank dies (tandem supervise); PBS's
# SIGTERM reaches mpirun as SIGUSR1, which it passes on to the ranks.
exec "$tandem" supervise --max-relaunches "${TANDEM_MAX_RELAUNCHES:-3}" \
  --min-time-left "${TANDEM_MIN_TIME_LEFT:-300}" --signal-as USR1 -- \
  mpirun -np "$np" --hostfile "$PBS_NODEFILE" "$tandem" run "$WORKFLOW"
