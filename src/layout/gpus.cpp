// The GPUs of the plan: each replica that asks for GPUs gets its own, on its
// node, in the order of the services and replicas; what is left on each node
// is the tasks' pool, which the coordinator hands out as tasks start
// (coordinator/gpu_pool.hpp). Nothing is shared: a GPU is a replica's, or
// one running task's at a time.

#include <algorithm>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "layout/plan.hpp"
#include "tandem/error.hpp"

namespace tandem::detail {

namespace {

// What a person needs to give more GPUs, or find why there are none.
std::string where_gpus_come_from(const Plan& plan, int node) {
  const NodeGpus& g = plan.node_gpus[static_cast<std::size_t>(node)];
  if (g.ids.empty()) {
    return fmt::format(
        "node {} has no GPUs that the job can see (no CUDA_VISIBLE_DEVICES, SLURM_STEP_GPUS or "
        "SLURM_JOB_GPUS, no [job] gpus_per_node, no GPU from nvidia-smi -L)",
        node);
  }
  return fmt::format("node {} has {} GPU(s) ({}, from {})", node, g.ids.size(),
                     fmt::join(g.ids, ","), g.source);
}

std::string task_gpu_key(const TaskSpec& t) {
  return t.ranks > 1 ? "gpus_per_rank" : "gpus_per_task";
}

}  // namespace

void place_gpus(const Workflow& wf, Plan& plan, const std::vector<NodeGpus>& node_gpus) {
  plan.gpus_managed = true;
  const auto nodes = static_cast<std::size_t>(std::max(plan.node_count, 1));
  plan.node_gpus.assign(nodes, NodeGpus{});
  std::vector<std::vector<int>> free(nodes);
  for (std::size_t n = 0; n < nodes; ++n) {
    if (!node_gpus.empty()) plan.node_gpus[n] = node_gpus[node_gpus.size() == 1 ? 0 : n];
    for (int i = 0; i < static_cast<int>(plan.node_gpus[n].ids.size()); ++i) {
      free[n].push_back(i);
    }
  }
  for (const ReplicaPlacement& rp : plan.replicas) {
    const ServiceSpec& spec = wf.services[static_cast<std::size_t>(rp.service)];
    const int want = spec.gpus_per_replica;
    if (want == 0) continue;
    const std::string key = fmt::format("service[{}].gpus_per_replica", rp.service);
    for (int r : rp.ranks) {
      if (plan.ranks[static_cast<std::size_t>(r)].node != rp.node) {
        throw config_error(wf.path, spec.gpus_pos.line, spec.gpus_pos.column, key,
                           fmt::format("service '{}' replica {} has ranks on more than one node, "
                                       "and a replica's GPUs are on one node: use placement = "
                                       "\"per_node\", or start more ranks per node",
                                       spec.name, rp.replica));
      }
    }
    std::vector<int>& left = free[static_cast<std::size_t>(rp.node)];
    if (static_cast<int>(left.size()) < want) {
      throw config_error(wf.path, spec.gpus_pos.line, spec.gpus_pos.column, key,
                         fmt::format("service '{}' replica {} needs {} GPU(s) on node {}, but "
                                     "only {} are left there after the replicas before it: {}",
                                     spec.name, rp.replica, want, rp.node, left.size(),
                                     where_gpus_come_from(plan, rp.node)));
    }
    const std::vector<int> mine(left.begin(), left.begin() + want);
    left.erase(left.begin(), left.begin() + want);
    for (int r : rp.ranks) plan.ranks[static_cast<std::size_t>(r)].gpus = mine;
  }
  plan.task_gpus = free;
  std::vector<int> workers_on_node(nodes);
  for (const RankPlacement& p : plan.ranks) {
    if (p.role == Role::worker) ++workers_on_node[static_cast<std::size_t>(p.node)];
  }
  for (std::size_t i = 0; i < wf.tasks.size(); ++i) {
    const TaskSpec& t = wf.tasks[i];
    if (t.gpus_per_rank == 0) continue;
    // A rank needs its workers and its GPUs on one node.
    int fit = 0;
    std::vector<std::string> per_node;
    for (std::size_t n = 0; n < nodes; ++n) {
      const int by_gpus = static_cast<int>(free[n].size()) / t.gpus_per_rank;
      fit += std::min(workers_on_node[n] / std::max(t.cores_per_rank, 1), by_gpus);
      per_node.push_back(std::to_string(free[n].size()));
    }
    if (fit < t.ranks) {
      throw config_error(
          wf.path, t.gpus_pos.line, t.gpus_pos.column,
          fmt::format("task[{}].{}", i, task_gpu_key(t)),
          fmt::format("task '{}' needs {} rank(s) of {} GPU(s), each rank's on one node, but the "
                      "nodes' GPUs left for tasks ({}) fit only {}: {}",
                      t.name, t.ranks, t.gpus_per_rank, fmt::join(per_node, ", "), fit,
                      where_gpus_come_from(plan, 0)));
    }
  }
}

}  // namespace tandem::detail
