#pragma once
// The layout plan: which rank of the job takes which role, on which node.
// Computed identically on every rank from the workflow and the node of each
// rank, so no rank needs to be told its role.
//
// Rank 0 coordinates. Service replicas come next: `spread` services take the
// lowest free ranks in order, `per_node` services put replica r on node
// r % nodes. The remaining ranks are workers (pilot mode) or the
// application's ranks (SPMD mode); past `[layout] workers`, ranks idle.

#include <string>
#include <vector>

#include "base/enum_names.hpp"
#include "base/role.hpp"
#include "config/workflow.hpp"

namespace tandem::detail {

struct RankPlacement {
  int rank = 0;
  Role role = Role::idle;
  int node = 0;           // index of the node (node-local group)
  int role_index = 0;     // workers: index among workers
  int service = -1;       // services: index into Workflow::services
  int replica = -1;       // services: replica index
  int replica_rank = -1;  // services: rank within the replica, 0 = leader
};

struct ReplicaPlacement {
  int service = 0;
  int replica = 0;
  int node = 0;
  std::vector<int> ranks;  // world ranks; [0] is the leader
};

struct Plan {
  int world_size = 0;
  int node_count = 0;
  int workers = 0;
  int worker_slots = 1;
  std::vector<RankPlacement> ranks;
  std::vector<ReplicaPlacement> replicas;  // all services, in order
  std::vector<std::string> notes;          // things a person should know

  /// World ranks of the clients: workers (pilot) or application ranks (SPMD).
  std::vector<int> client_ranks() const;
  /// Replicas of service @p s.
  std::vector<const ReplicaPlacement*> replicas_of(int s) const;
  /// How many ranks each node has, by node index.
  std::vector<int> ranks_per_node() const;
};

/// What a rank does, in a word, as log lines and the plan's table say it:
/// its role, except "bridge" for the replicas of remote services and "app"
/// for the application's ranks in SPMD mode (@p spmd).
std::string role_label(const Workflow& wf, const RankPlacement& p, bool spmd);

/// Places the ranks. @p node_of_rank gives each world rank's node index.
/// @throws tandem::config_error when the layout cannot fit.
Plan make_plan(const Workflow& wf, const std::vector<int>& node_of_rank);

/// Node indices for a job of @p world_size ranks placed @p ranks_per_node at
/// a time on consecutive nodes (how mpirun and srun fill nodes by default).
std::vector<int> block_nodes(int world_size, int ranks_per_node);

/// A table a person reads: one line per rank, then a summary.
std::string format_plan(const Workflow& wf, const Plan& plan);

}  // namespace tandem::detail
