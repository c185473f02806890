#pragma once
// A Tandem job on this rank: the workflow, the plan, the communicators and
// the run directory, set up collectively at the start and torn down at the
// end. Both ways in use it — the pilot (`tandem run`, run_workflow) and
// SPMD sessions (tandem::Session) — and every role gets it by const
// reference (job/roles.hpp): it is the one description of a rank's place in
// the job.

#include <mpi.h>

#include <memory>
#include <string>
#include <vector>

#include "config/workflow.hpp"
#include "layout/plan.hpp"
#include "tandem/pilot.hpp"
#include "trace/trace_output.hpp"

namespace tandem::detail {

enum class Mode { pilot, spmd };

/// The exit status of a job whose records could not be written (a full
/// disk, a vanished directory): finished results may be missing from the
/// journal, so the job must not look like one that failed tasks (1), a
/// bad set-up (2) or an interruption (128 + signal).
constexpr int kExitRecordsLost = 3;

struct Job {
  /// The coordinator's rank in every communicator that has it.
  static constexpr int kCoordinator = 0;

  Mode mode = Mode::pilot;
  // The communicators, each made from a duplicate of the caller's and freed
  // with the Job. Which messages travel on which: protocol/tags.hpp.
  MPI_Comm control = MPI_COMM_NULL;  // every rank: set-up, service lifecycle, routing, trace
  MPI_Comm data = MPI_COMM_NULL;     // every rank: inference requests and replies only
  MPI_Comm pilot = MPI_COMM_NULL;    // pilot mode: the coordinator (0) and the workers (1..W)
  MPI_Comm workers = MPI_COMM_NULL;  // the worker ranks (in SPMD mode the application's)
  MPI_Comm replica = MPI_COMM_NULL;  // service ranks: their replica's ranks, the leader first
  int rank = 0;                      // in control (the caller's communicator)
  int size = 0;
  Workflow wf;
  Plan plan;
  std::vector<int> pids;             // every rank's process id (direct endpoints' names)
  std::vector<std::string> hosts;    // host name by node index, when MPI command tasks need it
  std::vector<std::vector<int>> rank_cpus;  // each rank's CPUs, when command tasks need them
  IdleMode idle = IdleMode::shared;  // how this node's ranks wait (job/idle_mode.hpp)
  std::string run_dir;
  bool resume = false;
  double progress_interval_s = 30;  // the coordinator's progress display; 0: none
  trace::Timeline timeline;

  Job() = default;
  Job(const Job&) = delete;
  Job& operator=(const Job&) = delete;
  ~Job();

  const RankPlacement& me() const { return plan.ranks[rank]; }
  /// What rank @p r does, as its log lines and trace track name it.
  std::string role_of(int r) const;
  /// Where HDF5 staging files go.
  std::string staging_dir() const {
    return wf.job.staging.dir.empty() ? run_dir + "/staging" : wf.job.staging.dir;
  }
};

/// Collective over @p comm. Rank 0 reads and checks the workflow and prepares
/// the run directory; every rank then parses the same text and computes the
/// same plan. When the job cannot start, every rank throws what rank 0
/// found, of its kind: config_error for the workflow, io_error for the run
/// directory, error otherwise (rank 0 also logs it).
std::unique_ptr<Job> start_job(MPI_Comm comm, Mode mode, const RunOptions& options);

/// Collective: writes the trace, flushes this rank's log and gives every
/// rank the largest of the exit codes, waiting without spinning.
int end_job(Job& job, int exit_code);

}  // namespace tandem::detail
