// The coordinator in SPMD mode: services' states in, routing out, and the
// stop once every application rank has said it is done.

#include "coordinator/session_coordinator.hpp"

#include <algorithm>
#include <chrono>

#include <boost/mpi/communicator.hpp>
#include <nlohmann/json.hpp>

#include "base/backoff.hpp"
#include "base/clock.hpp"
#include "base/files.hpp"
#include "coordinator/live_view.hpp"
#include "coordinator/service_monitor.hpp"
#include "job/idle_mode.hpp"
#include "protocol/tags.hpp"

namespace mpi = boost::mpi;

namespace tandem::detail {

int coordinate_session(const Job& job) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<int> clients = job.plan.client_ranks();
  ServiceMonitor monitor(job.wf, job.plan, job.control, clients);
  // Progress and metrics for the services (a session has no tasks).
  LiveView live(job.wf, job.run_dir, job.progress_interval_s);
  const TaskCounts no_tasks;
  mpi::communicator control(job.control, mpi::comm_attach);
  // Clients send to replicas directly: this loop is never on a request's
  // path, so it sleeps between looks even on a dedicated node.
  Backoff backoff(off_path_backoff(job.wf.job));
  std::size_t done = 0;
  int exit_code = 0;  // the worst the application's ranks said at finalize
  while (done < clients.size()) {
    bool worked = monitor.poll();
    live.tick(no_tasks, monitor);
    while (auto status = control.iprobe(mpi::any_source, tags::kClientDone)) {
      int code = 0;
      control.recv(status->source(), tags::kClientDone, code);
      exit_code = std::max(exit_code, code);
      monitor.forget_client(status->source());
      ++done;
      worked = true;
    }
    if (worked) {
      backoff.reset();
    } else {
      backoff.pause();
    }
  }
  monitor.stop_all(job.wf.job.backoff);
  live.finish(no_tasks, monitor);
  const nlohmann::json summary = {
      {"job", job.wf.job.name},          {"mode", "spmd"},
      {"workflow", job.wf.path},         {"run_dir", job.run_dir},
      {"exit_code", exit_code},          {"world_size", job.size},
      {"nodes", job.plan.node_count},    {"app_ranks", clients.size()},
      {"makespan_s", seconds_since(t0)}, {"services", monitor.summary()}};
  write_file_atomically(job.run_dir + "/summary.json", summary.dump(2) + "\n");
  return exit_code;
}

}  // namespace tandem::detail
