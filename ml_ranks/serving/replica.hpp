#pragma once
// A service replica: its leader receives requests from any client, batches
// them, runs the model (spread over the replica's ranks) and replies; the
// other ranks of the replica compute the parts of each batch they are sent.

#include <mpi.h>

#include <string>

#include "config/workflow.hpp"
#include "layout/plan.hpp"

namespace tandem::detail {

struct ServeShared {
  const Workflow* wf = nullptr;
  const Plan* plan = nullptr;
  MPI_Comm data = MPI_COMM_NULL;     // requests and replies (a dup of the world)
  MPI_Comm control = MPI_COMM_NULL;  // reports, routing, stop (another dup)
  MPI_Comm replica = MPI_COMM_NULL;  // this replica's ranks; rank 0 leads
  int coordinator = 0;               // world rank
  std::string staging_dir;           // HDF5 replies
  std::string run_dir;               // recordings go to RUN_DIR/services/NAME/
};

/// Serves until the coordinator says stop. Collective over the replica.
void run_replica(const ServeShared& shared, const RankPlacement& me);

}  // namespace tandem::detail
