#pragma once
// What the coordinator shows while a run goes on: a progress display on
// stderr (a bar redrawn in place on a terminal, a plain line every
// progress_interval seconds in a batch log) and RUN_DIR/metrics.prom, the
// Prometheus text format rewritten every metrics_interval seconds, for
// `watch cat` or a node exporter's textfile collector.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "config/workflow.hpp"
#include "coordinator/service_monitor.hpp"

namespace tandem::detail {

struct TaskCounts {
  long long total = 0;
  long long done = 0;
  long long failed = 0;
  long long canceled = 0;
  long long done_earlier = 0;  // DONE in the run a resume continues
  long long running = 0;       // started, or about to in a free slot
  long long queued = 0;        // handed to a worker, waiting there for a slot
};

class LiveView {
 public:
  /// @p progress_interval_s: seconds between lines when stderr is no
  /// terminal; 0 turns the display off.
  LiveView(const Workflow& wf, std::string run_dir, double progress_interval_s);
  ~LiveView();
  LiveView(const LiveView&) = delete;
  LiveView& operator=(const LiveView&) = delete;

  /// From the coordinator's loop: redraws or writes what is due. Cheap when
  /// nothing is.
  void tick(const TaskCounts& tasks, const ServiceMonitor& services);
  /// The final metrics file and, on a terminal, ends the bar's line.
  void finish(const TaskCounts& tasks, const ServiceMonitor& services);

  /// The Prometheus text for these counts (exposed for the tests).
  std::string metrics_text(const TaskCounts& tasks, const ServiceMonitor& services,
                           double elapsed_s, double rate) const;
  /// The progress line for these counts.
  std::string progress_line(const TaskCounts& tasks, const ServiceMonitor& services, double rate,
                            double window_s);

 private:
  using clock = std::chrono::steady_clock;
  void show(const TaskCounts& tasks, const ServiceMonitor& services, clock::time_point now);
  void write_metrics(const TaskCounts& tasks, const ServiceMonitor& services,
                     clock::time_point now);

  const Workflow& wf_;
  std::string run_dir_;
  bool terminal_ = false;
  double progress_interval_s_ = 0;
  double metrics_interval_s_ = 0;
  clock::time_point start_;
  clock::time_point next_progress_;
  clock::time_point next_metrics_;
  // The rate and per-service figures cover the time since the last line.
  clock::time_point last_shown_;
  long long last_finished_ = -1;
  double rate_ = 0;
  std::vector<LiveStats> last_services_;
  struct BarSink;
  std::shared_ptr<BarSink> bar_sink_;  // clears the bar before a log line
};

/// Requests per second and the 95th percentile (ms) between two snapshots
/// of a service's counters; the percentile is interpolated within the
/// power-of-two bucket it falls in, -1 when no request was answered.
double latency_quantile_ms(const LiveStats& now, const LiveStats& before, double q);

}  // namespace tandem::detail
