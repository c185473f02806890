#pragma once
// What hardware the job's ranks have: the GPUs of each node and the CPUs of
// each rank, for the GPUs and the binding of tasks and replicas
// (docs/user-guide.md#gpus, #cores-and-binding).

#include <mpi.h>

#include <string>
#include <vector>

#include "layout/plan.hpp"

namespace tandem::detail {

/// The GPUs this process may use, by the first source that names any:
/// CUDA_VISIBLE_DEVICES (set: even empty, it is the final word), then
/// SLURM_STEP_GPUS and SLURM_JOB_GPUS, then @p gpus_per_node (>= 0: ids
/// 0..n-1), then, when @p probe, the GPUs that `nvidia-smi -L` on PATH lists.
/// Allocation lists come first because the ids a child's CUDA_VISIBLE_DEVICES
/// takes must be the ones this process's view uses.
NodeGpus discover_gpus(int gpus_per_node, bool probe);

/// GPUs 0..@p count-1, named by where the count came from (@p source).
NodeGpus numbered_gpus(int count, std::string source);

/// Splits a GPU list as CUDA_VISIBLE_DEVICES and Slurm write it ("0,1",
/// "0-3,6", "GPU-uuid,..."); "NoDevFiles" and empty items are nothing.
std::vector<std::string> parse_gpu_list(const std::string& text);

/// Collective over @p comm: every node's GPUs, by node index (the union of
/// what its ranks see, the lowest rank's first; only the lowest rank of a
/// node probes with nvidia-smi).
std::vector<NodeGpus> gather_node_gpus(MPI_Comm comm, const std::vector<int>& node_of_rank,
                                       int gpus_per_node);

/// Collective over @p comm: the CPUs each rank may run on (its affinity
/// mask), by rank.
std::vector<std::vector<int>> gather_rank_cpus(MPI_Comm comm);

/// A CPU list as taskset and /proc write it: "0-3,8".
std::string cpu_list_text(const std::vector<int>& cpus);

}  // namespace tandem::detail
