#pragma once
// Multi-rank command tasks: the command line that starts an MPI program on
// the workers the coordinator reserved for it, through the job's own
// launcher. Under Slurm that is a job step in the allocation (`srun
// --overlap`, the ranks placed host by host with --distribution=arbitrary);
// elsewhere a nested `mpirun` with a clean environment and the reserved
// hosts. Why not MPI_Comm_spawn: with Open MPI 4.1 a spawned program that
// dies takes the whole job down with it, and its ranks are children of the
// job's daemons, out of reach of the worker's timeout and kill
// (docs/architecture.md, "MPI programs as tasks").

#include <string>
#include <vector>

#include "config/workflow.hpp"

namespace tandem::detail {

/// One host of a launch and how many of the program's ranks it runs.
struct LaunchHost {
  std::string name;
  int ranks = 0;
};

struct MpiLaunch {
  Launcher launcher = Launcher::mpirun;  // resolved: mpirun or srun
  std::vector<LaunchHost> hosts;         // in rank order
  int cores_per_rank = 1;
  std::vector<std::string> extra_args;   // [job] launcher_args
  std::vector<std::string> forward_env;  // mpirun: names passed to other hosts with -x
  std::string program_launcher;          // the mpirun or srun to run (a path)
  // setpriv (util-linux), when found: the launcher gets SIGTERM if the
  // worker dies (PR_SET_PDEATHSIG), so that it stops its ranks rather than
  // leave them running without anyone to stop them.
  std::string parent_death_guard;
  // Each rank's own GPUs and CPUs, when it has them: the ranks start
  // through a small shell wrapper that picks theirs by rank from
  // TANDEM_RANK_GPUS and TANDEM_RANK_CPUS (the caller sets both in the
  // launch's environment; kRankWrapper).
  bool per_rank_resources = false;
};

/// The shell text that starts each rank of an MPI command task: it takes
/// the rank's field of TANDEM_RANK_GPUS (";"-separated, as
/// CUDA_VISIBLE_DEVICES) and of TANDEM_RANK_CPUS (as taskset -c), then
/// execs the program.
extern const char* const kRankWrapper;

/// The launcher `auto` means in @p env ("KEY=VALUE" entries): srun when the
/// job runs in a Slurm allocation and srun is on its PATH, else mpirun.
Launcher resolve_launcher(Launcher wanted, const std::vector<std::string>& env);

/// The launcher program's path on @p env's PATH; empty when there is none.
std::string find_launcher(Launcher launcher, const std::vector<std::string>& env);

/// setpriv on @p env's PATH (MpiLaunch::parent_death_guard); empty if none.
std::string find_parent_death_guard(const std::vector<std::string>& env);

/// The whole command line: the guard, the launcher, its options, then
/// @p program.
std::vector<std::string> launch_argv(const MpiLaunch& launch,
                                     const std::vector<std::string>& program);

/// srun's arbitrary distribution reads the host of every rank from a file
/// (SLURM_HOSTFILE): its text, one host per line in rank order.
std::string slurm_hostfile_text(const std::vector<LaunchHost>& hosts);

/// Total ranks of @p hosts.
int launch_ranks(const std::vector<LaunchHost>& hosts);

}  // namespace tandem::detail
