// tandem::run_workflow: the pilot. The coordinator hands out tasks, the
// workers run them, the service ranks serve, idle ranks wait.

#include <memory>

#include "job/job.hpp"
#include "job/roles.hpp"
#include "tandem/error.hpp"
#include "tandem/pilot.hpp"

namespace tandem {

int run_workflow(MPI_Comm comm, const RunOptions& options) {
  using namespace detail;
  std::unique_ptr<Job> job;
  try {
    job = start_job(comm, Mode::pilot, options);
  } catch (const tandem::error&) {
    return 2;  // rank 0 logged why
  }
  int exit_code = 0;
  switch (job->me().role) {
    case Role::coordinator:
      exit_code = run_coordinator(*job);
      break;
    case Role::worker:
      run_worker(*job);
      break;
    case Role::service:
      run_replica(*job);
      break;
    case Role::idle:
      break;
  }
  return end_job(*job, exit_code);
}

}  // namespace tandem
