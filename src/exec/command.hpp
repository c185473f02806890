#pragma once
// Runs one command task: posix_spawn in a process group of its own (so that a
// timeout or a stop reaches everything it started), output to files, then a
// wait that sleeps in poll() on a pidfd instead of spinning.

#include <functional>
#include <string>
#include <vector>

#include "sched/scheduler.hpp"

namespace tandem::detail {

struct CommandLaunch {
  std::vector<std::string> argv;
  std::vector<std::string> env;  // "KEY=VALUE"
  std::string cwd;
  std::string stdout_path;
  std::string stderr_path;
  double timeout_s = 0;     // 0: none
  double kill_grace_s = 2;  // SIGTERM, this long, then SIGKILL
};

struct CommandResult {
  Outcome outcome = Outcome::failed;
  int exit_code = 0;  // the exit status, or 128 + signal
  std::string reason;
};

/// Runs the command to its end. @p should_stop is called a few times a second
/// while it runs; when it returns true the process group is stopped and the
/// result is CANCELED.
CommandResult run_command(const CommandLaunch& launch, const std::function<bool()>& should_stop);

/// The environment for command tasks: ours, less the variables through which
/// the MPI launcher talks to its own processes (a child that sees them may
/// think it is a rank of this job), when @p clean_mpi is set.
std::vector<std::string> inherited_environment(bool clean_mpi);

}  // namespace tandem::detail
