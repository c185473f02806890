#pragma once
// What the coordinator and the workers share once the job is split.

#include <mpi.h>

#include <map>
#include <memory>
#include <string>
#include <utility>

#include "config/workflow.hpp"
#include "layout/plan.hpp"
#include "coordinator/scheduler.hpp"

namespace tandem::detail {

class ClientImpl;

struct PilotShared {
  const Workflow* wf = nullptr;
  const Plan* plan = nullptr;
  std::string run_dir;
  bool resume = false;
  double progress_interval_s = 30;     // the coordinator's progress lines; 0: none
  MPI_Comm pilot = MPI_COMM_NULL;      // coordinator (rank 0) + workers (1..W)
  MPI_Comm workers = MPI_COMM_NULL;    // workers only; MPI_COMM_NULL on the coordinator
  MPI_Comm control = MPI_COMM_NULL;    // every rank: service reports, routing, stop
  std::shared_ptr<ClientImpl> client;  // workers: the services' client
};

/// Runs the coordinator to the end of the run; returns the exit code.
int run_coordinator(const PilotShared& shared,
                    const std::map<std::pair<std::string, int>, TaskState>& earlier);

/// Runs a worker until the coordinator stops it.
void run_worker(const PilotShared& shared);

}  // namespace tandem::detail
