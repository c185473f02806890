// The coordinator's live view: the progress bar on a terminal (a pseudo
// terminal stands in for stderr), its lines in a log, and the metrics text.

#include <fcntl.h>
#include <pty.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include "config/workflow.hpp"
#include "coordinator/live_view.hpp"
#include "coordinator/service_monitor.hpp"
#include "job/logging.hpp"
#include "layout/plan.hpp"
#include "support/mpi_session.hpp"
#include "support/temp_dir.hpp"

using namespace tandem::detail;

namespace {

// Everything the pty's master side has to read now.
std::string drain(int master) {
  std::string out;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(master, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

struct LiveFixture {
  Workflow wf = parse_workflow(
      "[job]\nname = \"live\"\n[job.monitor]\nmetrics_interval = 0\n"
      "[[task]]\nname = \"t\"\nfunction = \"tandem.null\"\ncount = 10\n",
      "live.toml", false);
  Plan plan = make_plan(wf, std::vector<int>(2, 0));
  ServiceMonitor monitor{wf, plan, MPI_COMM_SELF, {}};
};

}  // namespace

TEST(LiveView, DrawsABarInPlaceOnATerminalAndLogLinesWipeIt) {
  if (tandem::test::world_rank() != 0) return;  // one pty is enough
  LiveFixture s;
  int master = -1;
  int slave = -1;
  ASSERT_EQ(openpty(&master, &slave, nullptr, nullptr, nullptr), 0);
  fcntl(master, F_SETFL, O_NONBLOCK);
  const int saved = dup(STDERR_FILENO);
  dup2(slave, STDERR_FILENO);
  std::string shown;
  {
    setup_logging(0, tandem::detail::Role::coordinator, "coordinator",
                  "info");  // Tandem's stderr logger, now on the pty
    tandem::test::TempDir dir;
    LiveView view(s.wf, dir.path().string(), 30);
    TaskCounts counts;
    counts.total = 10;
    counts.done = 3;
    counts.running = 2;
    counts.queued = 4;
    std::this_thread::sleep_for(std::chrono::milliseconds(600));
    view.tick(counts, s.monitor);
    shown += drain(master);
    spdlog::warn("a log line");
    spdlog::default_logger()->flush();
    shown += drain(master);
    counts.done = 10;
    counts.running = 0;
    view.finish(counts, s.monitor);
    fflush(stderr);
    shown += drain(master);
  }
  dup2(saved, STDERR_FILENO);
  close(saved);
  close(slave);
  close(master);
  const auto bar = shown.find("\r\x1b[K[tandem] tasks 3/10 (30.0%) 2 running, 4 queued, 0 failed");
  ASSERT_NE(bar, std::string::npos) << shown;
  const auto wipe = shown.find("\r\x1b[K", bar + 4);
  const auto line = shown.find("a log line");
  ASSERT_NE(line, std::string::npos) << shown;
  EXPECT_LT(wipe, line) << "the bar is wiped before the log line: " << shown;
  const auto last = shown.find("[tandem] tasks 10/10 (100.0%)", line);
  ASSERT_NE(last, std::string::npos) << shown;
  EXPECT_NE(shown.find("ETA 0m00s", last), std::string::npos) << shown;
  EXPECT_EQ(shown.back() == '\n' || shown.substr(shown.size() - 2) == "\r\n", true)
      << "the bar's line is ended at the finish";
}

TEST(LiveView, MetricsTextIsPrometheusFormat) {
  if (tandem::test::world_rank() != 0) return;
  LiveFixture s;
  tandem::test::TempDir dir;
  LiveView view(s.wf, dir.path().string(), 0);
  TaskCounts counts;
  counts.total = 10;
  counts.done = 4;
  counts.failed = 1;
  counts.running = 2;
  counts.queued = 1;
  const std::string text = view.metrics_text(counts, s.monitor, 2.0, 2.5);
  EXPECT_NE(text.find("# TYPE tandem_tasks gauge\n"), std::string::npos) << text;
  EXPECT_NE(text.find("tandem_tasks{state=\"done\"} 4\n"), std::string::npos) << text;
  EXPECT_NE(text.find("tandem_tasks{state=\"queued\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("tandem_tasks{state=\"waiting\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("tandem_tasks_total 10\n"), std::string::npos) << text;
  EXPECT_NE(text.find("tandem_tasks_per_second 2.500\n"), std::string::npos) << text;
}

TEST(LiveView, LatencyQuantileInterpolatesWithinItsBucket) {
  LiveStats before;
  LiveStats now;
  // 100 requests between 64 and 128 us: the median lies half way.
  now.latency[LiveStats::latency_bucket(100)] = 100;
  EXPECT_EQ(LiveStats::latency_bucket(100), 6);
  EXPECT_NEAR(latency_quantile_ms(now, before, 0.5), 0.096, 1e-9);
  EXPECT_LT(latency_quantile_ms(before, before, 0.5), 0) << "no requests: no percentile";
}
