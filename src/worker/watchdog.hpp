#pragma once
// The watchdog of function tasks that are not isolated: they run on the
// worker's own thread, so nothing can stop one that overruns its `timeout`
// without ending the rank. A thread watches the clock; at the timeout it
// warns (on_timeout = "warn", the default), or ends the job with the
// attempt in the rank's black box (on_timeout = "abort"), so that the next
// --resume charges it like a crash.

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "config/workflow.hpp"

namespace tandem::detail {

class Watchdog {
 public:
  Watchdog();
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  /// Watches the attempt now starting; @p label names it ("sim[3]").
  void arm(const std::string& label, double timeout_s, OnTimeout action);
  void disarm();

 private:
  void watch();

  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  bool armed_ = false;
  bool fired_ = false;
  std::chrono::steady_clock::time_point deadline_;
  std::string label_;
  double timeout_s_ = 0;
  OnTimeout action_ = OnTimeout::warn;
  std::thread thread_;
};

}  // namespace tandem::detail
