#include "supervise.hpp"

#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "job/allocation.hpp"
#include "job/run_dir.hpp"

namespace fs = std::filesystem;

namespace tandem::cli {

namespace {

std::atomic<pid_t> g_child{0};
std::atomic<int> g_stopped_by{0};
int g_forward_as = 0;

void forward(int sig) {
  g_stopped_by.store(sig);
  const pid_t child = g_child.load();
  if (child > 0) ::kill(child, g_forward_as ? g_forward_as : sig);
}

void say(const std::string& text) {
  std::fprintf(stderr, "tandem supervise: %s\n", text.c_str());
  std::fflush(stderr);
}

bool has(const std::vector<std::string>& args, const std::string& flag) {
  return std::any_of(args.begin(), args.end(), [&](const std::string& a) {
    return a == flag || a.rfind(flag + "=", 0) == 0;
  });
}

// Runs @p argv to its end; returns its exit status the way a shell does
// (128 + N for a signal).
int run_once(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    say(fmt::format("cannot start {}: {}", argv[0], std::strerror(errno)));
    return 127;
  }
  if (pid == 0) {
    ::execvp(args[0], args.data());
    std::fprintf(stderr, "tandem supervise: cannot run %s: %s\n", args[0], std::strerror(errno));
    ::_exit(127);
  }
  g_child.store(pid);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  g_child.store(0);
  return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}

std::string read_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

// The job's own exit code, from the summary the last launch wrote: a
// launcher reports 1 for a job that its ranks ended with 143 or 3.
int job_exit_code(const std::string& run_dir, long long launched_us, int launcher_code) {
  if (run_dir.empty()) return launcher_code;
  std::ifstream in(run_dir + "/summary.json");
  const auto summary = nlohmann::json::parse(in, nullptr, false);
  if (!summary.is_object() || !summary.contains("exit_code") ||
      summary.value("ended_us", 0LL) < launched_us) {
    return launcher_code;
  }
  return summary["exit_code"].get<int>();
}

}  // namespace

int supervise(const SuperviseOptions& o) {
  if (o.command.empty()) {
    say("nothing to run: give the launch command after --, ending with tandem run WORKFLOW");
    return 2;
  }
  if (!o.signal_as.empty()) {
    const std::string name = o.signal_as.rfind("SIG", 0) == 0 ? o.signal_as.substr(3) : o.signal_as;
    for (int sig = 1; sig < NSIG; ++sig) {
      if (const char* abbrev = sigabbrev_np(sig); abbrev && name == abbrev) g_forward_as = sig;
    }
    if (!g_forward_as) {
      say(fmt::format("unknown signal '{}' for --signal-as", o.signal_as));
      return 2;
    }
  }
  struct sigaction sa {};
  sa.sa_handler = forward;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGTERM, SIGINT, SIGUSR1, SIGUSR2}) sigaction(sig, &sa, nullptr);

  // The job's rank 0 writes its run directory here when it starts.
  char report[] = "/tmp/tandem-supervise-XXXXXX";
  const int fd = ::mkstemp(report);
  if (fd >= 0) ::close(fd);
  ::setenv("TANDEM_REPORT_RUN_DIR", report, 1);

  std::vector<std::string> command = o.command;
  int code = 0;
  std::string last_run_dir;
  long long last_start_us = 0;
  for (int relaunch = 0;; ++relaunch) {
    const auto started = std::chrono::steady_clock::now();
    last_start_us = std::chrono::duration_cast<std::chrono::microseconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();
    code = run_once(command);
    const double took =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    const std::string run_dir = read_line(report);
    last_run_dir = run_dir;
    // Finished, stopped on purpose, a set-up error (2) or records that could
    // not be written (3: a full disk) would end the same way again, and no
    // run directory means no job started: nothing to relaunch.
    if (code == 0 || code == 2 || code == 3 || g_stopped_by.load() != 0 || run_dir.empty()) break;
    if (!fs::exists(run_dir + "/running.json")) break;  // it wrote its summary: nothing was lost
    if (relaunch >= o.max_relaunches) {
      detail::record_job_without_summary(run_dir);
      say(
          fmt::format("the job ended without a summary (exit {}); not relaunching: it has been "
                      "relaunched {} time(s), the most --max-relaunches allows. Continue with "
                      "--resume --run-dir {}",
                      code, relaunch, run_dir));
      break;
    }
    const double left = detail::allocation_seconds_left();
    if (left >= 0 && left < o.min_time_left_s) {
      detail::record_job_without_summary(run_dir);
      say(
          fmt::format("the job ended without a summary (exit {}); not relaunching: {:.0f} s left "
                      "in the allocation, less than --min-time-left {:.0f} s. Continue in the "
                      "next job with --resume --run-dir {}",
                      code, left, o.min_time_left_s, run_dir));
      break;
    }
    if (!has(command, "--run-dir")) {
      command.push_back("--run-dir");
      command.push_back(run_dir);
    }
    if (!has(command, "--resume")) command.push_back("--resume");
    say(fmt::format(
        "the job ended without a summary after {:.1f} s (exit {}): a rank died. "
        "Relaunching with --resume in {} ({} of {}{})",
        took, code, run_dir, relaunch + 1, o.max_relaunches,
        left >= 0 ? fmt::format(", {:.0f} s left in the allocation", left) : std::string()));
  }
  std::remove(report);
  return job_exit_code(last_run_dir, last_start_us, code);
}

}  // namespace tandem::cli
