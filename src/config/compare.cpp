// What changed between the workflow a run began with and the one a resume
// brings, and whether the finished results still mean the same.

#include <fmt/format.h>

#include "config/workflow.hpp"

namespace tandem::detail {

namespace {

std::string joined(const std::vector<std::string>& v) {
  return fmt::format("[{}]", fmt::join(v, ", "));
}

// Timeouts compare with 0 meaning none, the longest of all.
bool shorter(double after, double before) {
  if (before == 0) return after != 0;
  return after != 0 && after < before;
}

void compare_task(const TaskSpec& b, const TaskSpec& a, std::vector<std::string>& out) {
  auto changed = [&](const char* key, const std::string& was, const std::string& is) {
    if (was != is)
      out.push_back(fmt::format("task '{}': {} changed from {} to {}", b.name, key, was, is));
  };
  // `function` holds a Python task's "module:function" too.
  changed(b.is_python() || a.is_python() ? "python" : "function", b.function, a.function);
  changed("command", joined(b.command), joined(a.command));
  changed("cwd", b.cwd, a.cwd);
  changed("args", b.args_json, a.args_json);
  changed("sweep", joined(b.instance_args), joined(a.instance_args));
  changed("after", joined(b.after), joined(a.after));
  changed("ranks", std::to_string(b.ranks), std::to_string(a.ranks));
  changed("cores_per_rank", std::to_string(b.cores_per_rank), std::to_string(a.cores_per_rank));
  changed("clean_mpi_env", b.clean_mpi_env ? "true" : "false", a.clean_mpi_env ? "true" : "false");
  if (b.env != a.env) out.push_back(fmt::format("task '{}': env changed", b.name));
  if (a.count < b.count) {
    out.push_back(
        fmt::format("task '{}': count went down from {} to {}", b.name, b.count, a.count));
  }
  if (a.retries < b.retries) {
    out.push_back(
        fmt::format("task '{}': retries went down from {} to {}", b.name, b.retries, a.retries));
  }
  if (shorter(a.timeout_s, b.timeout_s)) {
    out.push_back(fmt::format("task '{}': timeout went down from {:g} s to {:g} s", b.name,
                              b.timeout_s, a.timeout_s));
  }
}

// What a service computes; its replicas, batching and timeouts may change.
void compare_service(const ServiceSpec& b, const ServiceSpec& a, std::vector<std::string>& out) {
  auto changed = [&](const char* key, const std::string& was, const std::string& is) {
    if (was != is) {
      out.push_back(fmt::format("service '{}': {} changed from {} to {}", b.name, key, was, is));
    }
  };
  changed("backend", std::string(name_of(b.backend)), std::string(name_of(a.backend)));
  changed("model", b.model, a.model);
  changed("model_dir", b.model_dir, a.model_dir);
  changed("command", joined(b.command), joined(a.command));
  changed("url", b.url, a.url);
  changed("model_name", b.model_name, a.model_name);
  changed("factor", fmt::format("{:g}", b.factor), fmt::format("{:g}", a.factor));
}

}  // namespace

std::vector<std::string> unsafe_changes(const Workflow& before, const Workflow& after) {
  std::vector<std::string> out;
  for (const TaskSpec& b : before.tasks) {
    const int t = after.find_task(b.name);
    if (t < 0) {
      out.push_back(fmt::format("task '{}' was removed", b.name));
      continue;
    }
    compare_task(b, after.tasks[t], out);
  }
  for (const ServiceSpec& b : before.services) {
    const int s = after.find_service(b.name);
    if (s < 0) {
      out.push_back(fmt::format("service '{}' was removed", b.name));
      continue;
    }
    compare_service(b, after.services[s], out);
  }
  return out;
}

}  // namespace tandem::detail
