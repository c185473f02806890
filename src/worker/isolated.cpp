#include "worker/isolated.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <exception>
#include <vector>

#include <fmt/format.h>

#include "base/access.hpp"
#include "base/files.hpp"
#include "base/rank_record.hpp"
#include "base/signals.hpp"
#include "tasks/context_data.hpp"

namespace tandem::detail {

namespace {

using Clock = std::chrono::steady_clock;

// exit() in the child would run the worker's exit handlers, which belong to
// the worker and to MPI (joining threads the child does not have: it
// hangs). Registered last, this one runs first and leaves at once.
void leave_at_once(int status, void* /*unused*/) {
  std::fflush(nullptr);
  ::_exit(status);
}

// The child: run the function, say how it went, leave without running the
// parent's exit handlers (they belong to the worker, and to MPI).
[[noreturn]] void child(TaskFunction fn, TaskContext& ctx, const IsolatedLaunch& launch,
                        int result_fd) {
  rank_record::detach_in_child();
  for (int sig : {SIGTERM, SIGINT, SIGUSR1, SIGPIPE}) ::signal(sig, SIG_DFL);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  ::setpgid(0, 0);  // killed as a group, with anything it starts
  if (launch.set_gpus) ::setenv("CUDA_VISIBLE_DEVICES", launch.gpus.c_str(), 1);
  ::on_exit(leave_at_once, nullptr);
  const int in = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (in >= 0) ::dup2(in, 0);
  const int out =
      ::open(launch.stdout_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (out >= 0) ::dup2(out, 1);
  const int err =
      ::open(launch.stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (err >= 0) ::dup2(err, 2);
  if (launch.after_fork_child) launch.after_fork_child();
  std::string answer = "ok";
  try {
    fn(ctx);
    const std::string& result = Access::data(ctx).result;
    if (!result.empty()) answer += "\n" + result;
  } catch (const std::exception& e) {
    // A Python task's sys.exit(n) travels with the answer: the worker may
    // have the answer before this process's exit status.
    const int code = Access::data(ctx).exit_code;
    answer = code != 0 ? fmt::format("threw[{}]: {}", code, e.what())
                       : fmt::format("threw: {}", e.what());
  } catch (...) {
    answer = "threw an exception that is not a std::exception";
  }
  std::fflush(nullptr);
  write_all(result_fd, answer.data(), answer.size());
  // Closed before the exit, so that the worker need not wait while the
  // kernel tears this copy of its address space down.
  ::close(result_fd);
  ::_exit(0);
}

// Children that answered and are still exiting: reaped on the next call
// (or by reap_isolated_children), with anything left in their group.
std::vector<pid_t>& exiting() {
  static std::vector<pid_t> pids;
  return pids;
}

void reap_exited(bool block) {
  auto& pids = exiting();
  std::erase_if(pids, [block](pid_t pid) {
    int status = 0;
    pid_t got = 0;
    do {
      got = ::waitpid(pid, &status, block ? 0 : WNOHANG);
    } while (got < 0 && errno == EINTR);
    if (got == 0) return false;
    ::kill(-pid, SIGKILL);
    remove_forward_group(pid);
    return true;
  });
}

}  // namespace

void reap_isolated_children() {
  reap_exited(/*block=*/true);
}

IsolatedResult run_isolated(TaskFunction fn, TaskContext& ctx, const IsolatedLaunch& launch) {
  reap_exited(/*block=*/false);
  IsolatedResult r;
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    r.reason = fmt::format("cannot isolate function '{}': pipe: {}", launch.function_name,
                           std::strerror(errno));
    return r;
  }
  std::fflush(nullptr);  // or the child would write the worker's buffered output again
  if (launch.before_fork) launch.before_fork();
  const pid_t pid = ::fork();
  if (pid != 0 && launch.after_fork_parent) launch.after_fork_parent();
  if (pid < 0) {
    r.reason = fmt::format("cannot isolate function '{}': fork: {}", launch.function_name,
                           std::strerror(errno));
    ::close(fds[0]);
    ::close(fds[1]);
    return r;
  }
  if (pid == 0) {
    ::close(fds[0]);
    child(fn, ctx, launch, fds[1]);
  }
  ::close(fds[1]);
  ::setpgid(pid, pid);  // both sides, so that it holds whoever runs first
  add_forward_group(pid);

  const auto start = Clock::now();
  const auto deadline = launch.timeout_s > 0
                            ? start + std::chrono::duration_cast<Clock::duration>(
                                          std::chrono::duration<double>(launch.timeout_s))
                            : Clock::time_point::max();
  enum class Stop { none, timeout, interrupt } stop = Stop::none;
  Clock::time_point kill_at = Clock::time_point::max();
  std::string answer;
  bool eof = false;
  bool reaped = false;
  int status = 0;
  while (!eof) {
    int wait_ms = 100;
    const auto now = Clock::now();
    // Once the child has begun its answer the function has returned: a
    // timeout or a stop arriving now must not undo a finished result.
    const bool answering = !answer.empty();
    if (stop == Stop::none && !answering && now >= deadline) {
      stop = Stop::timeout;
    } else if (stop == Stop::none && !answering && stop_signal() != 0) {
      stop = Stop::interrupt;  // the handler already sent the group SIGTERM
    }
    if (stop != Stop::none && kill_at == Clock::time_point::max()) {
      ::kill(-pid, SIGTERM);
      kill_at = now + std::chrono::duration_cast<Clock::duration>(
                          std::chrono::duration<double>(launch.kill_grace_s));
    }
    if (now >= kill_at) ::kill(-pid, SIGKILL);
    if (deadline != Clock::time_point::max() && stop == Stop::none) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count() + 1;
      wait_ms = static_cast<int>(std::min<long long>(wait_ms, left));
    }
    pollfd p{fds[0], POLLIN, 0};
    if (::poll(&p, 1, wait_ms) <= 0) {
      // A child that ended while something it forked still holds the pipe.
      if (::waitpid(pid, &status, WNOHANG) == pid) {
        reaped = true;
        eof = true;
      }
      continue;
    }
    char buf[4096];
    const ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n > 0) {
      answer.append(buf, static_cast<std::size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      eof = true;
    }
  }
  ::close(fds[0]);
  // A child that answered has told us all we need; its exit status is only
  // wanted when it did not (a signal, exit()).
  const bool returned = answer == "ok" || answer.rfind("ok\n", 0) == 0;
  const bool threw = answer.rfind("threw", 0) == 0;
  const bool answered = stop == Stop::none && (returned || threw);
  if (answered && !reaped) {
    exiting().push_back(pid);
    status = 0;
  } else {
    while (!reaped && ::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    ::kill(-pid, SIGKILL);  // anything it left behind in its group
    remove_forward_group(pid);
  }

  const std::string& fn_name = launch.function_name;
  const bool signalled = WIFSIGNALED(status);
  const int sig = signalled ? WTERMSIG(status) : 0;
  r.exit_code = signalled ? 128 + sig : WEXITSTATUS(status);
  if (stop == Stop::timeout) {
    r.reason = fmt::format("function '{}' ran past its timeout of {:g} s and was killed", fn_name,
                           launch.timeout_s);
  } else if (stop == Stop::interrupt) {
    r.outcome = Outcome::canceled;
    r.reason = "stopped: the run was interrupted";
  } else if (signalled) {
    r.reason = fmt::format("function '{}' died with signal {} ({}) in its isolated process",
                           fn_name, sig, ::strsignal(sig));
  } else if (returned && r.exit_code == 0) {
    r.outcome = Outcome::done;
    if (answer.size() > 3) r.result = answer.substr(3);
  } else if (threw) {
    std::string said = answer;
    int code = 0;
    if (std::sscanf(answer.c_str(), "threw[%d]", &code) == 1 && code != 0) {
      r.exit_code = code;
      said = "threw" + answer.substr(answer.find(']') + 1);
    }
    r.reason = fmt::format("function '{}' {}", fn_name, said);
  } else {
    r.reason =
        fmt::format("function '{}' called exit({}) in its isolated process", fn_name, r.exit_code);
  }
  if (r.outcome == Outcome::failed) {
    if (const std::string tail = tail_of_file(launch.stderr_path); !tail.empty()) {
      r.reason += fmt::format("; its stderr ends: {}", tail);
    }
  }
  return r;
}

}  // namespace tandem::detail
