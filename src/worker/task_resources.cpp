#include "worker/task_resources.hpp"

#include <algorithm>

namespace tandem::detail {

namespace {

void add_cpus(std::vector<int>& into, const std::vector<int>& cpus) {
  for (int c : cpus) {
    const auto at = std::lower_bound(into.begin(), into.end(), c);
    if (at == into.end() || *at != c) into.insert(at, c);
  }
}

}  // namespace

std::vector<RankResources> task_resources(const Job& job, const TaskSpec& spec,
                                          const std::vector<int>& members, int self,
                                          const std::vector<int>& gpus,
                                          const std::vector<int>& worker_world) {
  const std::vector<int> workers = members.empty() ? std::vector<int>{self} : members;
  const int ranks = std::max(spec.ranks, 1);
  const int per = static_cast<int>(workers.size()) / ranks;
  std::vector<RankResources> out(static_cast<std::size_t>(ranks));
  for (int r = 0; r < ranks; ++r) {
    RankResources& res = out[static_cast<std::size_t>(r)];
    // This rank's workers: per of them from the rank's first.
    const auto first = static_cast<std::size_t>(r) * static_cast<std::size_t>(per);
    const int first_world = worker_world[static_cast<std::size_t>(workers[first])];
    const int node = job.plan.ranks[static_cast<std::size_t>(first_world)].node;
    if (job.plan.gpus_managed) {
      const auto begin = static_cast<std::size_t>(r) * static_cast<std::size_t>(spec.gpus_per_rank);
      if (gpus.size() >= begin + static_cast<std::size_t>(spec.gpus_per_rank)) {
        const std::vector<int> mine(
            gpus.begin() + static_cast<std::ptrdiff_t>(begin),
            gpus.begin() + static_cast<std::ptrdiff_t>(begin) + spec.gpus_per_rank);
        res.gpus = job.plan.gpu_ids(node, mine);
      }
    }
    if (job.rank_cpus.empty()) continue;  // not gathered: function tasks only
    for (const RankPlacement& p : job.plan.ranks) {
      if (p.node == node) add_cpus(res.node_cpus, job.rank_cpus[static_cast<std::size_t>(p.rank)]);
    }
    if (spec.bind == Bind::none) {
      res.cpus = res.node_cpus;
      continue;
    }
    for (std::size_t k = 0; k < static_cast<std::size_t>(per); ++k) {
      const int w = workers[first + k];
      add_cpus(res.cpus,
               job.rank_cpus[static_cast<std::size_t>(worker_world[static_cast<std::size_t>(w)])]);
    }
  }
  return out;
}

}  // namespace tandem::detail
