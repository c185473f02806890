// tandem::run_workflow: the pilot. The coordinator hands out tasks, the
// workers run them, the service ranks serve, idle ranks wait.

#include <memory>

#include "client/client_impl.hpp"
#include "job/job.hpp"
#include "job/roles.hpp"
#include "tandem/pilot.hpp"

namespace tandem {

int run_workflow(MPI_Comm comm, const RunOptions& options) {
  using namespace detail;
  std::unique_ptr<Job> job = start_job(comm, Mode::pilot, options);
  if (!job) return 2;
  const RankPlacement& me = job->me();
  PilotShared shared;
  shared.wf = &job->wf;
  shared.plan = &job->plan;
  shared.run_dir = job->run_dir;
  shared.resume = job->resume;
  shared.progress_interval_s = options.progress_interval_s >= 0
                                   ? options.progress_interval_s
                                   : job->wf.job.monitor.progress_interval_s;
  shared.control = job->world;
  shared.pilot = job->pilot;
  shared.workers = job->clients;

  int exit_code = 0;
  if (me.role == Role::coordinator) {
    exit_code = run_coordinator(shared, job->earlier);
  } else if (me.role == Role::worker) {
    shared.client = std::make_shared<ClientImpl>(job->wf, job->plan, job->data, job->world, 0,
                                                 job->staging_dir());
    run_worker(shared);
    shared.client.reset();
  } else if (me.role == Role::service) {
    serve_replica(*job);
  }
  return end_job(*job, exit_code);
}

}  // namespace tandem
