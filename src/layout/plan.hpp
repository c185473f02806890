#pragma once
// The layout plan: which rank of the job takes which role, on which node.
// Computed identically on every rank from the workflow and the node of each
// rank, so no rank needs to be told its role.

#include <string>
#include <vector>

#include "config/workflow.hpp"

namespace tandem::detail {

enum class Role { coordinator, worker, idle };

const char* role_name(Role r);

struct RankPlacement {
  int rank = 0;
  Role role = Role::idle;
  int node = 0;        // index of the node (node-local group)
  int role_index = 0;  // index among the ranks of the same role
};

struct Plan {
  int world_size = 0;
  int node_count = 0;
  int workers = 0;
  int worker_slots = 1;
  std::vector<RankPlacement> ranks;
  std::vector<std::string> notes;  // things a person should know, e.g. idle ranks
};

/// Places the ranks. @p node_of_rank gives each world rank's node index.
/// @throws tandem::config_error when the layout cannot fit.
Plan make_plan(const Workflow& wf, const std::vector<int>& node_of_rank);

/// Node indices for a job of @p world_size ranks placed @p ranks_per_node at
/// a time on consecutive nodes (how mpirun and srun fill nodes by default).
std::vector<int> block_nodes(int world_size, int ranks_per_node);

/// A table a person reads: one line per rank, then a summary.
std::string format_plan(const Plan& plan);

}  // namespace tandem::detail
