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

/// The GPUs of one node, as the processes there name them (what
/// CUDA_VISIBLE_DEVICES takes: indices, or UUIDs), and where the list came
/// from (job/gpus.hpp).
struct NodeGpus {
  std::vector<std::string> ids;
  std::string source;  // "CUDA_VISIBLE_DEVICES", "SLURM_JOB_GPUS", "[job] gpus_per_node", ...
};

struct RankPlacement {
  int rank = 0;
  Role role = Role::idle;
  int node = 0;           // index of the node (node-local group)
  int role_index = 0;     // workers: index among workers
  int service = -1;       // services: index into Workflow::services
  int replica = -1;       // services: replica index
  int replica_rank = -1;  // services: rank within the replica, 0 = leader
  std::vector<int> gpus;  // services: the replica's GPUs, indices into its node's list
  // A worker that may serve as a replica of an elastic service: service,
  // replica and replica_rank say which; elastic_slot is the replica's
  // index in Plan::replicas (-1: none).
  int elastic_slot = -1;
};

struct ReplicaPlacement {
  int service = 0;
  int replica = 0;
  int node = 0;
  std::vector<int> ranks;  // world ranks; [0] is the leader
  bool elastic = false;    // its ranks are workers until the service grows into it
};

struct Plan {
  int world_size = 0;
  int node_count = 0;
  int workers = 0;
  int worker_slots = 1;
  std::vector<RankPlacement> ranks;
  std::vector<ReplicaPlacement> replicas;  // all services, in order
  std::vector<std::string> notes;          // things a person should know
  // GPUs, when the workflow asks for them (manages_gpus): each node's, and
  // those left on each node for tasks once the replicas have theirs.
  bool gpus_managed = false;
  std::vector<NodeGpus> node_gpus;
  std::vector<std::vector<int>> task_gpus;

  /// World ranks of the clients: workers (pilot) or application ranks (SPMD).
  std::vector<int> client_ranks() const;
  /// Replicas of service @p s.
  std::vector<const ReplicaPlacement*> replicas_of(int s) const;
  /// The index in `replicas` of replica @p replica of service @p s, or -1.
  int replica_index(int s, int replica) const;
  /// How many ranks each node has, by node index.
  std::vector<int> ranks_per_node() const;
  /// The ids of GPUs @p indices of node @p node, comma-separated: a
  /// CUDA_VISIBLE_DEVICES value.
  std::string gpu_ids(int node, const std::vector<int>& indices) const;
};

/// What a rank does, in a word, as log lines and the plan's table say it:
/// its role, except "bridge" for the replicas of remote services and "app"
/// for the application's ranks in SPMD mode (@p spmd).
std::string role_label(const Workflow& wf, const RankPlacement& p, bool spmd);

/// Places the ranks. @p node_of_rank gives each world rank's node index;
/// @p node_gpus each node's GPUs (needed only when the workflow asks for
/// GPUs; one entry stands for every node).
/// @throws tandem::config_error when the layout cannot fit.
Plan make_plan(const Workflow& wf, const std::vector<int>& node_of_rank,
               const std::vector<NodeGpus>& node_gpus = {});

/// Gives each replica that asks for GPUs its own on its node, and leaves
/// the rest of each node's for tasks (layout/gpus.cpp).
/// @throws tandem::config_error when a replica or a task asks for more
/// than the nodes have.
void place_gpus(const Workflow& wf, Plan& plan, const std::vector<NodeGpus>& node_gpus);

/// Node indices for a job of @p world_size ranks placed @p ranks_per_node at
/// a time on consecutive nodes (how mpirun and srun fill nodes by default).
std::vector<int> block_nodes(int world_size, int ranks_per_node);

/// A table a person reads: one line per rank, then a summary.
std::string format_plan(const Workflow& wf, const Plan& plan);

}  // namespace tandem::detail
