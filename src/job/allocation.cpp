#include "job/allocation.hpp"

#include <cstdlib>

namespace tandem::detail {

namespace {
std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}
}  // namespace

Allocation read_allocation() {
  Allocation a;
  if (!env("SLURM_JOB_ID").empty()) {
    a.system = "slurm";
    a.job_id = env("SLURM_JOB_ID");
    a.job_name = env("SLURM_JOB_NAME");
    a.nodes = env("SLURM_JOB_NODELIST");
    a.node_count =
        env("SLURM_JOB_NUM_NODES").empty() ? env("SLURM_NNODES") : env("SLURM_JOB_NUM_NODES");
    a.tasks = env("SLURM_NTASKS");
    a.tasks_per_node = env("SLURM_TASKS_PER_NODE");
    a.partition = env("SLURM_JOB_PARTITION");
    a.submit_dir = env("SLURM_SUBMIT_DIR");
  } else if (!env("PBS_JOBID").empty()) {
    a.system = "pbs";
    a.job_id = env("PBS_JOBID");
    a.job_name = env("PBS_JOBNAME");
    a.nodes = env("PBS_NODEFILE");
    a.node_count = env("PBS_NUM_NODES");
    a.tasks = env("PBS_NP");
    a.tasks_per_node = env("PBS_NUM_PPN");
    a.partition = env("PBS_QUEUE");
    a.submit_dir = env("PBS_O_WORKDIR");
  } else if (!env("FLUX_JOB_ID").empty()) {
    a.system = "flux";
    a.job_id = env("FLUX_JOB_ID");
    a.tasks = env("FLUX_JOB_SIZE");
    a.node_count = env("FLUX_JOB_NNODES");
  }
  return a;
}

nlohmann::json Allocation::to_json() const {
  return {{"system", system},
          {"job_id", job_id},
          {"job_name", job_name},
          {"nodes", nodes},
          {"node_count", node_count},
          {"tasks", tasks},
          {"tasks_per_node", tasks_per_node},
          {"partition", partition},
          {"submit_dir", submit_dir}};
}

}  // namespace tandem::detail
