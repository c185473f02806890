#pragma once
// Command tasks: posix_spawn in a process group of their own (so that a
// timeout or a stop reaches everything they started), output through pipes
// into files that are created only when there is output, and a wait that
// sleeps in poll() on a pidfd and the pipes instead of spinning.
//
// Why pipes rather than opening the files for the child: creating a file
// costs 20 µs to 1 ms on the development machine's disk, more than spawning
// /bin/true, and most short tasks print nothing. A worker relays the bytes
// as they come, so a task's output is on disk while it runs.

#include <poll.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "protocol/task_state.hpp"

namespace tandem::detail {

struct CommandLaunch {
  std::vector<std::string> argv;
  std::vector<std::string> env;  // "KEY=VALUE"
  std::string cwd;
  std::string stdout_path;
  std::string stderr_path;
  double timeout_s = 0;     // 0: none
  double kill_grace_s = 2;  // SIGTERM, this long, then SIGKILL
  // A session of its own, not only a process group: an MPI launcher puts
  // each rank it starts in a group of its own, but they stay in the
  // session, so that what is left of it can be found and killed at the end.
  bool own_session = false;
  std::vector<int> cpus;  // the CPUs it runs on; empty: the worker's own
};

struct CommandResult {
  Outcome outcome = Outcome::failed;
  int exit_code = 0;  // the exit status, or 128 + signal
  std::string reason;
};

/// One command task from spawn to its result. Not copyable; the destructor
/// kills and reaps a command that is still running.
class RunningCommand {
 public:
  explicit RunningCommand(const CommandLaunch& launch);
  ~RunningCommand();
  RunningCommand(const RunningCommand&) = delete;
  RunningCommand& operator=(const RunningCommand&) = delete;

  /// True once the process has been reaped and its output written.
  bool finished() const { return finished_; }
  /// The result; valid once finished().
  const CommandResult& result() const { return result_; }

  /// Appends the descriptors whose readiness means progress() has work.
  void add_poll_fds(std::vector<pollfd>& fds) const;
  /// Relays output, reaps the process and enforces the timeout. Cheap; call
  /// it after poll() returns or every few milliseconds.
  void progress();
  /// Stops the command (SIGTERM, the grace period, then SIGKILL); its result
  /// will be CANCELED with @p reason, unless it had already ended by itself.
  void cancel(const std::string& reason);
  /// The command's process (and process group).
  pid_t pid() const { return pid_; }

 private:
  enum class Stop { none, timeout, cancel };
  using clock = std::chrono::steady_clock;

  void spawn(const CommandLaunch& launch);
  void drain(int which);
  void signal_group(int sig);
  void make_result();

  std::string argv0_;
  std::string paths_[2];
  int pipes_[2] = {-1, -1};  // read ends for stdout, stderr
  int files_[2] = {-1, -1};  // opened on first output
  pid_t pid_ = -1;
  int pidfd_ = -1;
  int status_ = 0;
  bool exited_ = false;
  bool finished_ = false;
  Stop stop_ = Stop::none;
  std::string stop_reason_;
  double timeout_s_ = 0;
  double grace_s_ = 2;
  clock::time_point deadline_{};
  clock::time_point term_sent_{};
  clock::time_point exited_at_{};
  bool term_sent_flag_ = false;
  bool kill_sent_ = false;
  bool own_session_ = false;
  CommandResult result_;
};

/// Runs a command to its end. @p should_stop is called a few times a second
/// while it runs; when it returns true the command is stopped and CANCELED.
CommandResult run_command(const CommandLaunch& launch, const std::function<bool()>& should_stop);

/// Sends @p sig to every process in session @p sid but its leader, as
/// /proc lists them; returns how many there were.
int signal_session(pid_t sid, int sig);

/// The environment for command tasks: ours, less the variables through which
/// the MPI launcher talks to its own processes (a child that sees them may
/// think it is a rank of this job), when @p clean_mpi is set.
std::vector<std::string> inherited_environment(bool clean_mpi);

}  // namespace tandem::detail
