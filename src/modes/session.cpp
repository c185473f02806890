// SPMD sessions: the same job set-up as the pilot, but the "workers" are the
// application's own ranks, and the coordinator only runs the services
// (run_coordinator in SPMD mode, src/coordinator/session_coordinator.cpp).

#include "tandem/session.hpp"

#include <spdlog/spdlog.h>
#include <boost/mpi/communicator.hpp>

#include "base/access.hpp"
#include "client/client_impl.hpp"
#include "job/job.hpp"
#include "job/roles.hpp"
#include "protocol/tags.hpp"
#include "tandem/error.hpp"

namespace mpi = boost::mpi;

namespace tandem {

namespace detail {

struct SessionImpl {
  std::unique_ptr<Job> job;
  std::shared_ptr<ClientImpl> client_impl;
  std::unique_ptr<Client> client;
  bool finished = false;
};

}  // namespace detail

Session::Session(MPI_Comm comm, const std::string& workflow_file, const SessionOptions& options)
    : impl_(std::make_unique<detail::SessionImpl>()) {
  using namespace detail;
  RunOptions run;
  run.workflow = workflow_file;
  run.run_dir = options.run_dir;
  run.run_root = options.run_root;
  run.log_level = options.log_level;
  impl_->job = start_job(comm, Mode::spmd, run);
  Job& job = *impl_->job;
  const RankPlacement& me = job.me();
  if (me.role == Role::worker) {
    impl_->client_impl = std::make_shared<ClientImpl>(job);
    impl_->client = std::make_unique<Client>(Access::make_client(impl_->client_impl));
    return;
  }
  // Not the application's: serve until the application is done.
  if (me.role == Role::coordinator) {
    run_coordinator(job);
  } else if (me.role == Role::service) {
    run_replica(job);
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
  return is_app() ? impl_->job->workers : MPI_COMM_NULL;
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
  mpi::communicator control(job.control, mpi::comm_attach);
  control.send(detail::Job::kCoordinator, detail::tags::kClientDone, 1);
  detail::end_job(job, 0);
}

}  // namespace tandem
