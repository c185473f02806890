#include "worker/watchdog.hpp"

#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "base/rank_record.hpp"

namespace tandem::detail {

Watchdog::Watchdog() : thread_([this] { watch(); }) {}

Watchdog::~Watchdog() {
  {
    std::lock_guard<std::mutex> hold(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void Watchdog::arm(const std::string& label, double timeout_s, OnTimeout action) {
  {
    std::lock_guard<std::mutex> hold(mutex_);
    armed_ = true;
    fired_ = false;
    label_ = label;
    timeout_s_ = timeout_s;
    action_ = action;
    deadline_ = std::chrono::steady_clock::now() +
                std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                    std::chrono::duration<double>(timeout_s));
  }
  wake_.notify_all();
}

void Watchdog::disarm() {
  std::lock_guard<std::mutex> hold(mutex_);
  armed_ = false;
}

void Watchdog::watch() {
  std::unique_lock<std::mutex> hold(mutex_);
  while (!stop_) {
    if (!armed_ || fired_) {
      wake_.wait(hold);
      continue;
    }
    const auto deadline = deadline_;
    if (wake_.wait_until(hold, deadline, [&] { return stop_ || !armed_ || deadline_ != deadline; }))
      continue;
    fired_ = true;
    if (action_ == OnTimeout::warn) {
      spdlog::warn(
          "{} ran past its timeout of {:g} s and goes on: a function task that is not isolated "
          "cannot be stopped without its rank. Set isolate = true to have it killed, or "
          "on_timeout = \"abort\" to end the job and charge the attempt on --resume",
          label_, timeout_s_);
      continue;
    }
    const std::string note = fmt::format(
        "ended the job: the task ran past its timeout of {:g} s (on_timeout = \"abort\")",
        timeout_s_);
    rank_record::note_cause(rank_record::kTimeoutAbort, note);
    spdlog::error(
        "{} ran past its timeout of {:g} s; on_timeout = \"abort\" ends the job. "
        "Resume with --resume: the attempt is charged to it",
        label_, timeout_s_);
    spdlog::default_logger()->flush();
    // Not a crash to debug: no core file.
    const rlimit no_core{0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    ::kill(::getpid(), SIGABRT);
  }
}

}  // namespace tandem::detail
