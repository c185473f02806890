// SPMD sessions: the same job set-up as the pilot, but the "workers" are the
// application's own ranks, and the coordinator only runs the services.

#include "tandem/session.hpp"

#include <filesystem>
#include <fstream>

#include <spdlog/spdlog.h>
#include <boost/mpi/communicator.hpp>
#include <nlohmann/json.hpp>

#include "client/client_impl.hpp"
#include "job/job.hpp"
#include "coordinator/live_view.hpp"
#include "coordinator/service_monitor.hpp"
#include "tandem/error.hpp"
#include "base/backoff.hpp"
#include "base/clock.hpp"

namespace mpi = boost::mpi;

namespace tandem {

namespace detail {

struct SessionImpl {
  std::unique_ptr<Job> job;
  std::shared_ptr<ClientImpl> client_impl;
  std::unique_ptr<Client> client;
  bool finished = false;
};

namespace {

// The coordinator of a session: services' states in, routing out, and the
// stop once every application rank has said it is done.
void coordinate(Job& job) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<int> clients = job.plan.client_ranks();
  ServiceMonitor monitor(job.wf, job.plan, job.world, clients);
  // Progress and metrics for the services (a session has no tasks).
  LiveView live(job.wf, job.run_dir, job.wf.job.monitor.progress_interval_s);
  const TaskCounts no_tasks;
  mpi::communicator control(job.world, mpi::comm_attach);
  Backoff backoff(job.wf.job.backoff);
  std::size_t done = 0;
  while (done < clients.size()) {
    bool worked = monitor.poll();
    live.tick(no_tasks, monitor);
    while (auto status = control.iprobe(mpi::any_source, kTagClientDone)) {
      int unused = 0;
      control.recv(status->source(), kTagClientDone, unused);
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
  const nlohmann::json summary = {{"job", job.wf.job.name},       {"mode", "spmd"},
                                  {"workflow", job.wf.path},      {"run_dir", job.run_dir},
                                  {"world_size", job.size},       {"nodes", job.plan.node_count},
                                  {"app_ranks", clients.size()},  {"makespan_s", seconds_since(t0)},
                                  {"services", monitor.summary()}};
  std::ofstream(job.run_dir + "/summary.json") << summary.dump(2) << "\n";
}

}  // namespace
}  // namespace detail

Session::Session(MPI_Comm comm, const std::string& workflow_file, const SessionOptions& options)
    : impl_(std::make_unique<detail::SessionImpl>()) {
  using namespace detail;
  RunOptions run;
  run.workflow = workflow_file;
  run.run_dir = options.run_dir;
  run.run_root = options.run_root;
  run.log_level = options.log_level;
  std::string why;
  impl_->job = start_job(comm, Mode::spmd, run, &why);
  if (!impl_->job) throw error("tandem::Session could not start: " + why);
  Job& job = *impl_->job;
  const RankPlacement& me = job.me();
  if (me.role == Role::worker) {
    impl_->client_impl =
        std::make_shared<ClientImpl>(job.wf, job.plan, job.data, job.world, 0, job.staging_dir());
    impl_->client = std::make_unique<Client>(impl_->client_impl);
    return;
  }
  // Not the application's: serve until the application is done.
  if (me.role == Role::coordinator) {
    coordinate(job);
  } else if (me.role == Role::service) {
    serve_replica(job);
  }
  end_job(job, 0);
  impl_->finished = true;
}

Session::~Session() {
  try {
    finalize();
  } catch (const std::exception& e) {
    spdlog::error("tandem::Session: finalize failed: {}", e.what());
  }
}

bool Session::is_app() const noexcept {
  return impl_->client != nullptr;
}

MPI_Comm Session::app_comm() const noexcept {
  return is_app() ? impl_->job->clients : MPI_COMM_NULL;
}

Client& Session::client() {
  if (!impl_->client) {
    throw error(
        "tandem::Session::client: this rank serves the job; only application ranks "
        "(is_app()) have a client");
  }
  return *impl_->client;
}

const std::string& Session::run_dir() const noexcept {
  return impl_->job->run_dir;
}

void Session::finalize() {
  if (impl_->finished) return;
  impl_->finished = true;
  detail::Job& job = *impl_->job;
  impl_->client_impl->wait_all();
  mpi::communicator control(job.world, mpi::comm_attach);
  control.send(0, detail::kTagClientDone, 1);
  detail::end_job(job, 0);
}

}  // namespace tandem
