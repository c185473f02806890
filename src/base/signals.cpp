#include "base/signals.hpp"

#include <atomic>

#include "base/rank_record.hpp"

namespace tandem::detail {

namespace {
std::atomic<int> g_stop{0};
constexpr int kMaxGroups = 256;
std::atomic<pid_t> g_groups[kMaxGroups];
std::atomic<bool> g_installed{false};

void on_stop(int sig) {
  g_stop.store(sig);
  rank_record::note_stop_signal(sig);
  for (auto& slot : g_groups) {
    const pid_t g = slot.load();
    if (g > 0) ::kill(-g, SIGTERM);  // async-signal-safe
  }
}
}  // namespace

void install_stop_handlers() {
  if (g_installed.exchange(true)) return;
  struct sigaction sa {};
  sa.sa_handler = on_stop;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGUSR1, &sa, nullptr);  // Slurm's --signal=USR1@T warning
}

int stop_signal() {
  return g_stop.load();
}
void request_stop(int signal_number) {
  int expected = 0;
  g_stop.compare_exchange_strong(expected, signal_number);
}
void clear_stop() {
  g_stop.store(0);
}

void add_forward_group(pid_t pgid) {
  for (auto& slot : g_groups) {
    pid_t empty = 0;
    if (slot.compare_exchange_strong(empty, pgid)) return;
  }
  // More commands than slots: those beyond are stopped by the worker's own
  // loop when it sees the stop flag, a few milliseconds later.
}

void remove_forward_group(pid_t pgid) {
  for (auto& slot : g_groups) {
    pid_t expected = pgid;
    if (slot.compare_exchange_strong(expected, 0)) return;
  }
}

}  // namespace tandem::detail
