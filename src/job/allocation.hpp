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

/// Seconds left before the allocation's time limit, or a negative number
/// when unknown (no batch system, no limit). From TANDEM_END_TIME (Unix
/// seconds) if set, else SLURM_JOB_END_TIME, else asks squeue.
double allocation_seconds_left();

/// Parses Slurm's time-left format ("D-HH:MM:SS", "HH:MM:SS", "MM:SS",
/// "SS"); negative for UNLIMITED, NOT_SET or anything else.
double parse_slurm_time(const std::string& text);

}  // namespace tandem::detail
