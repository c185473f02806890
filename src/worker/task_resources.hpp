#pragma once
// What each rank of a task's attempt is given: its GPUs, as the
// CUDA_VISIBLE_DEVICES value, and the CPUs its processes run on (`bind`,
// docs/user-guide.md#cores-and-binding).

#include <string>
#include <vector>

#include "config/workflow.hpp"
#include "job/job.hpp"

namespace tandem::detail {

struct RankResources {
  std::string gpus;            // ids, comma-separated; "" = no GPU
  std::vector<int> cpus;       // empty: as the worker's own
  std::vector<int> node_cpus;  // every CPU of the job's ranks on the rank's node
};

/// One entry per rank of @p spec. @p members are the worker indices the
/// coordinator reserved (cores_per_rank per rank, in rank order; empty for
/// a task of one worker, @p self); @p gpus the GPU indices it gave, each
/// rank's in turn; @p worker_world the world rank of every worker index.
std::vector<RankResources> task_resources(const Job& job, const TaskSpec& spec,
                                          const std::vector<int>& members, int self,
                                          const std::vector<int>& gpus,
                                          const std::vector<int>& worker_world);

}  // namespace tandem::detail
