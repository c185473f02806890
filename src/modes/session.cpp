// SPMD sessions: the same job set-up as the pilot, but the "workers" are the
// application's own ranks, and the coordinator only runs the services
// (run_coordinator in SPMD mode, src/coordinator/session_coordinator.cpp).

#include "tandem/session.hpp"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include <spdlog/spdlog.h>
#include <boost/mpi/communicator.hpp>
#include <nlohmann/json.hpp>

#include "base/access.hpp"
#include "base/clock.hpp"
#include "base/files.hpp"
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
    throw argument_error(
        "tandem::Session::client: this rank serves the job; only application ranks "
        "(is_app()) have a client");
  }
  return *impl_->client;
}

const std::string& Session::run_dir() const noexcept {
  return impl_->job->run_dir;
}

void Session::finalize(int exit_code) {
  if (impl_->finished) return;
  impl_->finished = true;
  detail::Job& job = *impl_->job;
  impl_->client_impl->wait_all();
  mpi::communicator control(job.control, mpi::comm_attach);
  control.send(detail::Job::kCoordinator, detail::tags::kClientDone, exit_code);
  detail::end_job(job, exit_code);
}

void Session::abort(int exit_code, const std::string& why) noexcept {
  const int code = exit_code != 0 ? exit_code : 1;
  detail::Job& job = *impl_->job;
  // The record first: once MPI_Abort is called this process may be gone.
  try {
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    const nlohmann::json line = {
        {"rank", job.rank},  {"host", host},  {"pid", static_cast<long long>(::getpid())},
        {"exit_code", code}, {"reason", why}, {"at_us", detail::now_us()}};
    detail::append_line_durably(job.run_dir + "/aborts.jsonl", line.dump() + "\n");
    spdlog::critical("rank {} ends the job (exit code {}): {}", job.rank, code, why);
    spdlog::default_logger()->flush();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tandem: rank %d could not record its abort: %s\n", job.rank, e.what());
  }
  MPI_Abort(job.control, code);
  std::_Exit(code);  // MPI_Abort does not return; should it, nothing else must run
}

}  // namespace tandem
