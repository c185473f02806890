#pragma once
/// @file pilot.hpp
/// Running a workflow file from C++: what `tandem run` does, callable from a
/// program of your own that registers its task functions and calls run().

#include <mpi.h>

#include <string>

namespace tandem {

/// How to run a workflow.
struct RunOptions {
  /// The workflow file.
  std::string workflow;
  /// The run directory; empty means a new one under run_root named after the
  /// job and the start time (or the newest such one with resume).
  std::string run_dir;
  /// Overrides `[job] run_root` when not empty.
  std::string run_root;
  /// Skip the tasks that an earlier run in the same directory finished.
  bool resume = false;
  /// With resume: accept a workflow that changed in ways that are not safe
  /// (anything but more instances, higher retries or a longer timeout).
  bool allow_changes = false;
  /// Log level on stderr: trace, debug, info, warn, error, off.
  std::string log_level = "info";
  /// false: no trace, whatever `[job.monitor] trace` says.
  bool trace = true;
  /// Seconds between progress lines on stderr when it is not a terminal;
  /// negative: `[job.monitor] progress_interval`; 0: no progress display.
  double progress_interval_s = -1;
  /// Not empty: an earlier run's directory, whose recorded services
  /// (`record = true`) answer this run from their recordings instead of
  /// their models (`tandem run --replay`).
  std::string replay;
};

/// Runs the workflow over @p comm (duplicated; Tandem never talks on the
/// caller's communicator). Rank 0 coordinates, the others serve in the roles
/// that the layout gives them. Collective over @p comm; MPI must be
/// initialised. Returns the process exit code the run deserves on every rank:
/// 0 when every task finished, 1 when some task failed for good, 2 for a
/// workflow or set-up error, 3 when the run's records (the journal,
/// summary.json) could not be written, 128+N when stopped by signal N.
int run_workflow(MPI_Comm comm, const RunOptions& options);

}  // namespace tandem
