#include "job/allocation.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>
#include <vector>

#include <fmt/format.h>

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

double parse_slurm_time(const std::string& text) {
  long long days = 0;
  std::string rest = text;
  if (const auto dash = rest.find('-'); dash != std::string::npos) {
    try {
      days = std::stoll(rest.substr(0, dash));
    } catch (const std::exception&) {
      return -1;
    }
    rest = rest.substr(dash + 1);
  }
  std::vector<long long> parts;
  std::size_t pos = 0;
  while (pos <= rest.size()) {
    const auto colon = std::min(rest.find(':', pos), rest.size());
    const std::string part = rest.substr(pos, colon - pos);
    if (part.empty() || part.find_first_not_of("0123456789") != std::string::npos) return -1;
    parts.push_back(std::stoll(part));
    pos = colon + 1;
  }
  if (parts.empty() || parts.size() > 3) return -1;
  long long seconds = 0;
  for (long long p : parts) seconds = seconds * 60 + p;
  if (parts.size() == 2 && days > 0) seconds *= 60;  // D-HH:MM
  return static_cast<double>(days * 86400 + seconds);
}

double allocation_seconds_left() {
  const double now = static_cast<double>(std::time(nullptr));
  for (const char* name : {"TANDEM_END_TIME", "SLURM_JOB_END_TIME"}) {
    if (const char* v = std::getenv(name); v && *v) {
      try {
        return std::max(0.0, std::stod(v) - now);
      } catch (const std::exception&) {
      }
    }
  }
  const char* job = std::getenv("SLURM_JOB_ID");
  if (!job || !*job || std::string(job).find_first_not_of("0123456789_") != std::string::npos) {
    return -1;
  }
  const std::string cmd = fmt::format("squeue -h -j {} -o %L 2>/dev/null", job);
  std::FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return -1;
  char buf[128] = {0};
  const bool got = std::fgets(buf, sizeof buf, p) != nullptr;
  ::pclose(p);
  if (!got) return -1;
  std::string text(buf);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
  return parse_slurm_time(text);
}

}  // namespace tandem::detail
