#pragma once
// The batch allocation a run is part of, read from the batch system's
// environment (Slurm, PBS/Torque, Flux), for the run directory, the summary
// and the run directory's default name.

#include <string>

#include <nlohmann/json.hpp>

namespace tandem::detail {

struct Allocation {
  std::string system = "none";  // slurm, pbs, flux or none
  std::string job_id;
  std::string job_name;
  std::string nodes;  // the node list as the system writes it
  std::string node_count;
  std::string tasks;
  std::string tasks_per_node;
  std::string partition;  // Slurm partition or PBS queue
  std::string submit_dir;

  nlohmann::json to_json() const;
};

/// Reads the allocation from this process's environment.
Allocation read_allocation();

}  // namespace tandem::detail
