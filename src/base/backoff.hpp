#pragma once
// Every wait loop in Tandem polls through a Backoff: a few cheap polls, then
// yields, then sleeps that double up to a cap. With more ranks than cores a
// rank that spins steals the core from the rank it waits for (an allreduce
// goes from 16 µs to 6 ms on the 2-core development machine), so no loop may
// spin for long. reset() after useful work restarts the cheap polls.

#include <time.h>

#include <sched.h>
#include <algorithm>

namespace tandem::detail {

/// How idle ranks wait: spin a little, then sleep with growing pauses
/// (`[job.backoff]` in the workflow file).
struct BackoffSpec {
  int spin = 100;           // polls before the first pause
  int min_sleep_us = 1;     // first pause
  int max_sleep_us = 1000;  // longest pause
};

class Backoff {
 public:
  explicit Backoff(const BackoffSpec& spec = {})
      : spec_(spec), sleep_ns_(spec.min_sleep_us * 1000L) {}

  /// Waits a little; each call without reset() waits longer, up to the cap.
  void pause() {
    pause_with([](long ns) {
      timespec ts{0, ns};
      nanosleep(&ts, nullptr);
    });
  }

  /// pause(), with the sleeps done by @p sleep(ns): a wait that something
  /// can cut short (the replica's futex, woken by a task's request).
  template <typename Sleep>
  void pause_with(Sleep sleep) {
    if (polls_ < spec_.spin) {
      ++polls_;
      return;
    }
    if (polls_ < spec_.spin + kYields) {
      ++polls_;
      sched_yield();
      return;
    }
    sleep(sleep_ns_);
    sleep_ns_ = std::min(sleep_ns_ * 2, spec_.max_sleep_us * 1000L);
  }

  void reset() {
    polls_ = 0;
    sleep_ns_ = spec_.min_sleep_us * 1000L;
  }

 private:
  static constexpr int kYields = 10;
  BackoffSpec spec_;
  int polls_ = 0;
  long sleep_ns_;
};

/// Calls @p step until it returns true, backing off between calls that
/// return false. The one shape of every "wait for X" loop in Tandem.
template <typename Step>
void wait_until(const BackoffSpec& spec, Step step) {
  Backoff backoff(spec);
  while (!step()) backoff.pause();
}

}  // namespace tandem::detail
