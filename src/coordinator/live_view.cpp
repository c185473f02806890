#include "coordinator/live_view.hpp"

#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

namespace tandem::detail {

// Sits first among the logger's sinks: a log line first wipes the bar, which
// the next redraw brings back, so lines and bar never share a row.
struct LiveView::BarSink : spdlog::sinks::base_sink<spdlog::details::null_mutex> {
  std::atomic<bool> visible{false};

 protected:
  void sink_it_(const spdlog::details::log_msg&) override {
    if (visible.exchange(false)) std::fputs("\r\033[K", stderr);
  }
  void flush_() override {}
};

double latency_quantile_ms(const LiveStats& now, const LiveStats& before, double q) {
  std::int64_t counts[kLatencyBuckets];
  std::int64_t total = 0;
  for (int b = 0; b < kLatencyBuckets; ++b) {
    counts[b] = now.latency[b] - before.latency[b];
    total += counts[b];
  }
  if (total <= 0) return -1;
  const double want = q * static_cast<double>(total);
  double seen = 0;
  for (int b = 0; b < kLatencyBuckets; ++b) {
    if (counts[b] == 0) continue;
    if (seen + static_cast<double>(counts[b]) >= want) {
      const double lo = b == 0 ? 0.0 : std::ldexp(1.0, b);
      const double hi = std::ldexp(1.0, b + 1);
      const double f = (want - seen) / static_cast<double>(counts[b]);
      return (lo + f * (hi - lo)) / 1000.0;
    }
    seen += static_cast<double>(counts[b]);
  }
  return std::ldexp(1.0, kLatencyBuckets) / 1000.0;
}

LiveView::LiveView(const Workflow& wf, std::string run_dir, double progress_interval_s)
    : wf_(wf),
      run_dir_(std::move(run_dir)),
      terminal_(isatty(STDERR_FILENO) == 1),
      progress_interval_s_(progress_interval_s),
      metrics_interval_s_(wf.job.monitor.metrics_interval_s),
      start_(clock::now()),
      last_shown_(start_),
      last_services_(wf.services.size()) {
  // On a terminal the bar moves twice a second; in a log, a line per interval.
  next_progress_ =
      start_ + std::chrono::duration_cast<clock::duration>(
                   std::chrono::duration<double>(terminal_ ? 0.5 : progress_interval_s_));
  next_metrics_ = start_;
  if (terminal_ && progress_interval_s_ > 0) {
    bar_sink_ = std::make_shared<BarSink>();
    auto& sinks = spdlog::default_logger()->sinks();
    sinks.insert(sinks.begin(), bar_sink_);
  }
}

LiveView::~LiveView() {
  if (!bar_sink_) return;
  auto& sinks = spdlog::default_logger()->sinks();
  std::erase(sinks, std::static_pointer_cast<spdlog::sinks::sink>(bar_sink_));
}

void LiveView::tick(const TaskCounts& tasks, const ServiceMonitor& services) {
  const auto now = clock::now();
  if (progress_interval_s_ > 0 && now >= next_progress_) show(tasks, services, now);
  if (metrics_interval_s_ > 0 && now >= next_metrics_) write_metrics(tasks, services, now);
}

void LiveView::finish(const TaskCounts& tasks, const ServiceMonitor& services) {
  const auto now = clock::now();
  if (progress_interval_s_ > 0 && terminal_) {
    show(tasks, services, now);
    if (bar_sink_->visible.exchange(false)) std::fputs("\n", stderr);
  }
  if (metrics_interval_s_ > 0) write_metrics(tasks, services, now);
}

std::string LiveView::progress_line(const TaskCounts& tasks, const ServiceMonitor& services,
                                    double rate, double window_s) {
  const long long finished = tasks.done + tasks.failed + tasks.canceled;
  const long long left = tasks.total - finished;
  const double percent =
      tasks.total > 0 ? 100.0 * static_cast<double>(finished) / static_cast<double>(tasks.total)
                      : 100.0;
  const long long eta_s = left == 0  ? 0
                          : rate > 0 ? static_cast<long long>(static_cast<double>(left) / rate)
                                     : -1;
  const std::string eta = eta_s < 0       ? std::string("-")
                          : eta_s >= 3600 ? fmt::format("{}h{:02}m", eta_s / 3600, eta_s / 60 % 60)
                                          : fmt::format("{}m{:02}s", eta_s / 60, eta_s % 60);
  // An SPMD session has services but no tasks.
  std::string line =
      tasks.total == 0
          ? std::string("services")
          : fmt::format(
                "tasks {}/{} ({:.1f}%) {} running, {} queued, {} failed | {:.1f}/s | ETA {}",
                finished, tasks.total, percent, tasks.running, tasks.queued, tasks.failed, rate,
                eta);
  for (std::size_t s = 0; s < wf_.services.size(); ++s) {
    const LiveStats now = services.live(static_cast<int>(s));
    const LiveStats& before = last_services_[s];
    const double rps =
        window_s > 0 ? static_cast<double>(now.requests - before.requests) / window_s : 0.0;
    const double p95 = latency_quantile_ms(now, before, 0.95);
    line += fmt::format(" | {} {:.0f} req/s p95 {}", wf_.services[s].name, rps,
                        p95 < 0 ? std::string("-") : fmt::format("{:.2f} ms", p95));
    // An elastic service's split: replicas READY now, of its min to max.
    const ServiceSpec& spec = wf_.services[s];
    if (spec.elastic()) {
      line += fmt::format(" {}/{}-{} replicas", services.ready_replicas(static_cast<int>(s)),
                          spec.replicas, spec.replicas_max);
    }
    last_services_[s] = now;
  }
  return line;
}

void LiveView::show(const TaskCounts& tasks, const ServiceMonitor& services,
                    clock::time_point now) {
  const long long finished = tasks.done + tasks.failed + tasks.canceled;
  const double window = std::chrono::duration<double>(now - last_shown_).count();
  if (last_finished_ >= 0 && window > 0) {
    rate_ = static_cast<double>(finished - last_finished_) / window;
  } else if (window > 0) {
    rate_ = static_cast<double>(finished - tasks.done_earlier) / window;
  }
  const std::string line = progress_line(tasks, services, rate_, window);
  last_finished_ = finished;
  last_shown_ = now;
  if (terminal_) {
    // In place: carriage return, clear the row, no newline.
    std::fprintf(stderr, "\r\033[K[tandem] %s", line.c_str());
    std::fflush(stderr);
    bar_sink_->visible = true;
    next_progress_ = now + std::chrono::milliseconds(500);
  } else {
    spdlog::info("progress: {}", line);
    next_progress_ = now + std::chrono::duration_cast<clock::duration>(
                               std::chrono::duration<double>(progress_interval_s_));
  }
}

std::string LiveView::metrics_text(const TaskCounts& tasks, const ServiceMonitor& services,
                                   double elapsed_s, double rate) const {
  std::string m;
  auto family = [&](const char* name, const char* type, const char* help) {
    m += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  };
  const long long finished = tasks.done + tasks.failed + tasks.canceled;
  family("tandem_tasks", "gauge", "Task instances of the run by state.");
  m += fmt::format("tandem_tasks{{state=\"done\"}} {}\n", tasks.done);
  m += fmt::format("tandem_tasks{{state=\"failed\"}} {}\n", tasks.failed);
  m += fmt::format("tandem_tasks{{state=\"canceled\"}} {}\n", tasks.canceled);
  m += fmt::format("tandem_tasks{{state=\"running\"}} {}\n", tasks.running);
  m += fmt::format("tandem_tasks{{state=\"queued\"}} {}\n", tasks.queued);
  m += fmt::format("tandem_tasks{{state=\"waiting\"}} {}\n",
                   tasks.total - finished - tasks.running - tasks.queued);
  family("tandem_tasks_total", "gauge", "Task instances in the workflow.");
  m += fmt::format("tandem_tasks_total {}\n", tasks.total);
  family("tandem_tasks_per_second", "gauge", "Tasks finished per second since the run started.");
  m += fmt::format("tandem_tasks_per_second {:.3f}\n", rate);
  family("tandem_elapsed_seconds", "gauge", "Seconds since the coordinator started the run.");
  m += fmt::format("tandem_elapsed_seconds {:.3f}\n", elapsed_s);
  if (wf_.services.empty()) return m;
  family("tandem_service_ready_replicas", "gauge", "Replicas of the service that are READY.");
  for (std::size_t s = 0; s < wf_.services.size(); ++s) {
    m += fmt::format("tandem_service_ready_replicas{{service=\"{}\"}} {}\n", wf_.services[s].name,
                     services.ready_replicas(static_cast<int>(s)));
  }
  family("tandem_service_replica_moves_total", "counter",
         "Elastic services: ranks that became replicas (grow) or went back to tasks (shrink).");
  for (std::size_t s = 0; s < wf_.services.size(); ++s) {
    if (!wf_.services[s].elastic()) continue;
    for (const bool grow : {true, false}) {
      m += fmt::format("tandem_service_replica_moves_total{{service=\"{}\",direction=\"{}\"}} {}\n",
                       wf_.services[s].name, grow ? "grow" : "shrink",
                       services.moves(static_cast<int>(s), grow));
    }
  }
  family("tandem_service_model_version", "gauge",
         "The model version each replica serves (the version is also a label).");
  for (std::size_t s = 0; s < wf_.services.size(); ++s) {
    for (const auto& [replica, version] : services.served_versions(static_cast<int>(s))) {
      m += fmt::format(
          "tandem_service_model_version{{service=\"{}\",replica=\"{}\",version=\"{}\"}} {}\n",
          wf_.services[s].name, replica, version, version);
    }
  }
  std::vector<LiveStats> live;
  for (std::size_t s = 0; s < wf_.services.size(); ++s) {
    live.push_back(services.live(static_cast<int>(s)));
  }
  auto counter = [&](const char* name, const char* help, auto field) {
    family(name, "counter", help);
    for (std::size_t s = 0; s < wf_.services.size(); ++s) {
      m += fmt::format("{}{{service=\"{}\"}} {}\n", name, wf_.services[s].name, field(live[s]));
    }
  };
  counter("tandem_service_requests_total", "Requests the service's replicas received.",
          [](const LiveStats& l) { return l.requests; });
  counter("tandem_service_errors_total", "Requests answered with an error.",
          [](const LiveStats& l) { return l.errors; });
  // Deadlines, per replica: the ones dropped uncomputed and the ones
  // answered after the client had given up.
  for (const bool expired : {true, false}) {
    const char* name =
        expired ? "tandem_service_expired_total" : "tandem_service_late_replies_total";
    family(name, "counter",
           expired ? "Requests dropped uncomputed because their deadline could not be met."
                   : "Requests computed but answered after their deadline (discarded).");
    for (const LiveStats& l : services.live_by_replica()) {
      m += fmt::format("{}{{service=\"{}\",replica=\"{}\"}} {}\n", name,
                       wf_.services[static_cast<std::size_t>(l.service)].name, l.replica,
                       expired ? l.expired : l.late);
    }
  }
  counter("tandem_service_batches_total", "Batches the replicas computed.",
          [](const LiveStats& l) { return l.batches; });
  counter("tandem_service_rows_total", "Rows (samples) the replicas computed.",
          [](const LiveStats& l) { return l.rows; });
  family("tandem_service_latency_seconds", "histogram",
         "Time a request spent at the replica, from arrival to reply.");
  for (std::size_t s = 0; s < wf_.services.size(); ++s) {
    const std::string& name = wf_.services[s].name;
    long long cumulative = 0;
    for (int b = 0; b < kLatencyBuckets - 1; ++b) {
      cumulative += live[s].latency[b];
      m += fmt::format("tandem_service_latency_seconds_bucket{{service=\"{}\",le=\"{:g}\"}} {}\n",
                       name, std::ldexp(1.0, b + 1) / 1e6, cumulative);
    }
    cumulative += live[s].latency[kLatencyBuckets - 1];
    m += fmt::format("tandem_service_latency_seconds_bucket{{service=\"{}\",le=\"+Inf\"}} {}\n",
                     name, cumulative);
    m += fmt::format("tandem_service_latency_seconds_sum{{service=\"{}\"}} {:.6f}\n", name,
                     static_cast<double>(live[s].latency_sum_us) / 1e6);
    m += fmt::format("tandem_service_latency_seconds_count{{service=\"{}\"}} {}\n", name,
                     cumulative);
  }
  return m;
}

void LiveView::write_metrics(const TaskCounts& tasks, const ServiceMonitor& services,
                             clock::time_point now) {
  next_metrics_ = now + std::chrono::duration_cast<clock::duration>(
                            std::chrono::duration<double>(metrics_interval_s_));
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  // Written aside and renamed, so that a reader never sees half a file.
  const std::string path = run_dir_ + "/metrics.prom";
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    const double rate =
        elapsed > 0
            ? static_cast<double>(tasks.done + tasks.failed + tasks.canceled - tasks.done_earlier) /
                  elapsed
            : 0.0;
    out << metrics_text(tasks, services, elapsed, rate);
    if (!out.flush()) return;
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
}

}  // namespace tandem::detail
