#include "exec/mpi_launch.hpp"

#include <numeric>

#include <fmt/format.h>

#include "base/files.hpp"

namespace tandem::detail {

// The rank comes from the launcher: Open MPI's mpirun, PMIx, or srun.
const char* const kRankWrapper = R"(r=${OMPI_COMM_WORLD_RANK:-${PMIX_RANK:-${SLURM_PROCID:-0}}}
pick() { printf '%s\n' "$1" | cut -d';' -f$((r + 1)); }
if [ -n "${TANDEM_RANK_GPUS+set}" ]; then
  CUDA_VISIBLE_DEVICES=$(pick "$TANDEM_RANK_GPUS")
  TANDEM_TASK_GPUS=$CUDA_VISIBLE_DEVICES
  export CUDA_VISIBLE_DEVICES TANDEM_TASK_GPUS
  unset TANDEM_RANK_GPUS
fi
if [ -n "${TANDEM_RANK_CPUS:-}" ]; then
  cpus=$(pick "$TANDEM_RANK_CPUS")
  unset TANDEM_RANK_CPUS
  if [ -n "$cpus" ] && command -v taskset >/dev/null; then exec taskset -c "$cpus" "$@"; fi
fi
exec "$@")";

std::string find_launcher(Launcher launcher, const std::vector<std::string>& env) {
  const char* path = env_value(env, "PATH");
  return find_program(launcher == Launcher::srun ? "srun" : "mpirun", path);
}

std::string find_parent_death_guard(const std::vector<std::string>& env) {
  return find_program("setpriv", env_value(env, "PATH"));
}

Launcher resolve_launcher(Launcher wanted, const std::vector<std::string>& env) {
  if (wanted != Launcher::automatic) return wanted;
  const char* job = env_value(env, "SLURM_JOB_ID");
  if (job && *job && !find_launcher(Launcher::srun, env).empty()) return Launcher::srun;
  return Launcher::mpirun;
}

int launch_ranks(const std::vector<LaunchHost>& hosts) {
  return std::accumulate(hosts.begin(), hosts.end(), 0,
                         [](int n, const LaunchHost& h) { return n + h.ranks; });
}

std::string slurm_hostfile_text(const std::vector<LaunchHost>& hosts) {
  std::string text;
  for (const LaunchHost& h : hosts) {
    for (int i = 0; i < h.ranks; ++i) text += h.name + "\n";
  }
  return text;
}

std::vector<std::string> launch_argv(const MpiLaunch& launch,
                                     const std::vector<std::string>& program) {
  std::vector<std::string> argv;
  if (!launch.parent_death_guard.empty()) {
    argv = {launch.parent_death_guard, "--pdeathsig", "TERM", "--"};
  }
  argv.push_back(launch.program_launcher);
  const int ranks = launch_ranks(launch.hosts);
  if (launch.launcher == Launcher::srun) {
    // A step of its own in the allocation. --overlap: the job's own step
    // holds every CPU, and these ranks run on the reserved workers' cores
    // while those workers sleep. The hosts come rank by rank from
    // SLURM_HOSTFILE (the caller writes it); a rank that fails ends the
    // step, as mpirun ends its job.
    argv.insert(argv.end(),
                {"--overlap", fmt::format("--ntasks={}", ranks),
                 fmt::format("--nodes={}", launch.hosts.size()), "--distribution=arbitrary",
                 fmt::format("--cpus-per-task={}", launch.cores_per_rank), "--cpu-bind=none",
                 "--kill-on-bad-exit=1", "--quiet"});
  } else {
    std::string hosts;
    for (const LaunchHost& h : launch.hosts) {
      if (!hosts.empty()) hosts += ',';
      hosts += fmt::format("{}:{}", h.name, h.ranks);
    }
    // The reserved workers' cores are already the job's ranks' cores:
    // oversubscribe them, and bind nothing, since the job's own binding
    // is not ours to give away twice.
    argv.insert(argv.end(), {"-n", std::to_string(ranks), "--host", hosts, "--map-by", "slot",
                             "--oversubscribe", "--bind-to", "none"});
    for (const std::string& name : launch.forward_env) argv.insert(argv.end(), {"-x", name});
  }
  argv.insert(argv.end(), launch.extra_args.begin(), launch.extra_args.end());
  if (launch.per_rank_resources) argv.insert(argv.end(), {"/bin/sh", "-c", kRankWrapper, "sh"});
  argv.insert(argv.end(), program.begin(), program.end());
  return argv;
}

}  // namespace tandem::detail
