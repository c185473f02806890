#include "exec/command.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include <fmt/format.h>

#include "util/signals.hpp"

extern char** environ;

namespace tandem::detail {

namespace {

int open_pidfd(pid_t pid) {
#ifdef SYS_pidfd_open
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
#else
  (void)pid;
  return -1;
#endif
}

bool starts_with(const char* s, const char* prefix) {
  return std::strncmp(s, prefix, std::strlen(prefix)) == 0;
}

// Waits up to @p ms for the child to exit; true when it has (and is reaped).
bool wait_exit(pid_t pid, int pidfd, int ms, int& status) {
  if (pidfd >= 0) {
    pollfd p{pidfd, POLLIN, 0};
    const int rc = ::poll(&p, 1, ms);
    if (rc <= 0) return false;
    return ::waitpid(pid, &status, 0) == pid;
  }
  // No pidfd (old kernel): poll waitpid with short sleeps.
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  do {
    if (::waitpid(pid, &status, WNOHANG) == pid) return true;
    ::usleep(1000);
  } while (std::chrono::steady_clock::now() < end);
  return false;
}

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

std::vector<std::string> inherited_environment(bool clean_mpi) {
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    if (clean_mpi) {
      const char* v = *e;
      // Keep the settings a person chose (OMPI_MCA_*, OMPI_ALLOW_*) and drop
      // the launcher's wiring: PMIx/PMI, the job's identity and Open MPI's
      // per-process values.
      const bool launcher_wiring =
          starts_with(v, "PMIX_") || starts_with(v, "PMI_") || starts_with(v, "OMPI_COMM_WORLD_") ||
          starts_with(v, "OMPI_MCA_ess_") || starts_with(v, "OMPI_MCA_orte_") ||
          starts_with(v, "OMPI_MCA_pmix") || starts_with(v, "OMPI_FIRST_RANKS") ||
          starts_with(v, "OMPI_APP_CTX") || starts_with(v, "OMPI_NUM_APP_CTX") ||
          starts_with(v, "OMPI_UNIVERSE_SIZE") || starts_with(v, "OMPI_FILE_LOCATION") ||
          starts_with(v, "OMPI_MCA_initial_wdir") ||
          starts_with(v, "OMPI_MCA_shmem_RUNTIME_QUERY_hint") || starts_with(v, "OMPI_ARGV") ||
          starts_with(v, "OMPI_COMMAND") || starts_with(v, "OMPI_MCA_num_procs") ||
          starts_with(v, "OMPI_MCA_ompi_") || starts_with(v, "OMPI_MCA_mpi_oversubscribe") ||
          starts_with(v, "SLURM_PROCID") || starts_with(v, "SLURM_LOCALID") ||
          starts_with(v, "SLURM_STEP_");
      if (launcher_wiring) continue;
    }
    env.emplace_back(*e);
  }
  return env;
}

CommandResult run_command(const CommandLaunch& launch, const std::function<bool()>& should_stop) {
  CommandResult result;
  std::vector<char*> argv;
  for (const auto& a : launch.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (const auto& e : launch.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, launch.stdout_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, launch.stderr_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  // The MPI library's sockets and shared memory stay with the worker.
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  if (!launch.cwd.empty()) posix_spawn_file_actions_addchdir_np(&actions, launch.cwd.c_str());

  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                      POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_USEVFORK);
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, argv[0], &actions, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    result.exit_code = 127;
    result.reason = fmt::format("cannot start '{}': {}", launch.argv[0], std::strerror(rc));
    return result;
  }
  set_forward_group(pid);
  Fd pidfd{open_pidfd(pid)};

  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  const bool has_timeout = launch.timeout_s > 0;
  const auto deadline = t0 + std::chrono::duration_cast<clock::duration>(
                                 std::chrono::duration<double>(launch.timeout_s));
  int status = 0;
  bool exited = false;
  bool timed_out = false;
  bool stopped = false;
  // Short first waits catch quick commands without a 100 ms nap.
  int slice_ms = 1;
  while (!exited) {
    int ms = slice_ms;
    if (has_timeout) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
      ms = static_cast<int>(std::max<long long>(0, std::min<long long>(ms, left.count() + 1)));
    }
    exited = wait_exit(pid, pidfd.fd, ms, status);
    if (exited) break;
    slice_ms = std::min(slice_ms * 2, 100);
    if (has_timeout && clock::now() >= deadline) {
      timed_out = true;
      break;
    }
    if (should_stop && should_stop()) {
      stopped = true;
      break;
    }
  }
  if (!exited) {
    // Stop the whole group: TERM, a grace period, then KILL.
    ::kill(-pid, SIGTERM);
    const int grace_ms = static_cast<int>(launch.kill_grace_s * 1000);
    exited = wait_exit(pid, pidfd.fd, grace_ms, status);
    if (!exited) {
      ::kill(-pid, SIGKILL);
      exited = wait_exit(pid, pidfd.fd, 10'000, status);
    }
  }
  // Anything left in the group (children that outlived the leader) goes too.
  ::kill(-pid, SIGKILL);
  set_forward_group(0);

  if (timed_out) {
    result.exit_code = WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
    result.reason = fmt::format("timed out after {:g} s and was stopped", launch.timeout_s);
    return result;
  }
  if (stopped) {
    result.outcome = Outcome::canceled;
    result.exit_code = WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
    result.reason = "stopped: the run was interrupted";
    return result;
  }
  if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
    if (result.exit_code == 0) {
      result.outcome = Outcome::done;
    } else {
      result.reason = fmt::format("exited with code {}", result.exit_code);
    }
  } else if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    result.exit_code = 128 + sig;
    result.reason = fmt::format("killed by signal {} ({})", sig, ::strsignal(sig));
    if (stop_signal() != 0) {
      result.outcome = Outcome::canceled;
      result.reason += " when the run was interrupted";
    }
  }
  return result;
}

}  // namespace tandem::detail
