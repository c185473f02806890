#pragma once
// The roles of a rank and the one way into each. A rank's role comes from
// the plan (layout/plan.hpp); its entry point gets the Job and returns when
// the coordinator ends the run. Each is defined in its own layer, above
// this one:
//
//   run_coordinator   src/coordinator/   tasks and services (pilot), or
//                                        services only (SPMD sessions)
//   run_worker        src/worker/        function and executable tasks, and
//                                        the local proxy for executables
//   run_replica       ml_ranks/serving/  a service replica, or the bridge to
//                                        a remote endpoint
//
// The ways in (src/modes/) call them through this header alone, so nothing
// below the serving layer includes a serving header; the linker joins the
// layers in libtandem. A rank that changes role at run time goes through
// the same doors.

#include "job/job.hpp"

namespace tandem::detail {

/// Runs the coordinator to the end of the run; returns the exit code
/// (0, 1 when a task failed for good, 128+N after signal N).
int run_coordinator(const Job& job);

/// Runs a worker until the coordinator stops it (pilot mode).
void run_worker(const Job& job);

/// Serves this rank's part of a service replica until the coordinator stops
/// it. Collective over job.replica.
void run_replica(const Job& job);

}  // namespace tandem::detail
