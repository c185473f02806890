#pragma once
// A Tandem job on this rank: the workflow, the plan, the communicators and
// the run directory, set up collectively at the start and torn down at the
// end. Both ways in use it: the pilot (`tandem run`, run_workflow) and SPMD
// sessions (tandem::Session).

#include <mpi.h>

#include <map>
#include <memory>
#include <string>
#include <utility>

#include "config/workflow.hpp"
#include "layout/plan.hpp"
#include "coordinator/scheduler.hpp"
#include "tandem/pilot.hpp"
#include "trace/trace_output.hpp"

namespace tandem::detail {

enum class Mode { pilot, spmd };

struct Job {
  Mode mode = Mode::pilot;
  MPI_Comm world = MPI_COMM_NULL;    // a dup of the caller's communicator; control messages
  MPI_Comm data = MPI_COMM_NULL;     // requests and replies
  MPI_Comm replica = MPI_COMM_NULL;  // service ranks: their replica
  MPI_Comm clients = MPI_COMM_NULL;  // workers / application ranks
  MPI_Comm pilot = MPI_COMM_NULL;    // pilot mode: coordinator + workers
  int rank = 0;
  int size = 0;
  Workflow wf;
  Plan plan;
  std::string run_dir;
  bool resume = false;
  std::map<std::pair<std::string, int>, TaskState> earlier;  // rank 0, resume
  trace::Timeline timeline;

  /// What rank @p r does, as its log lines and trace track name it.
  std::string role_of(int r) const;

  const RankPlacement& me() const { return plan.ranks[rank]; }
  /// Where HDF5 staging files go.
  std::string staging_dir() const {
    return wf.job.staging.dir.empty() ? run_dir + "/staging" : wf.job.staging.dir;
  }
  ~Job();
};

/// Collective over @p comm. Rank 0 reads and checks the workflow and prepares
/// the run directory; every rank then parses the same text and computes the
/// same plan. Returns null on every rank when the job cannot start (the
/// error is logged).
/// @p why receives the error on every rank that knows it.
std::unique_ptr<Job> start_job(MPI_Comm comm, Mode mode, const RunOptions& options,
                               std::string* why = nullptr);

/// Collective: flushes this rank's log and gives every rank the largest of
/// the exit codes, waiting without spinning.
int end_job(Job& job, int exit_code);

/// Serves this rank's part of a service replica until the coordinator stops it.
void serve_replica(Job& job);

}  // namespace tandem::detail
