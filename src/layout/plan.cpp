#include "layout/plan.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "tandem/error.hpp"

namespace tandem::detail {

const char* role_name(Role r) {
  switch (r) {
    case Role::coordinator:
      return "coordinator";
    case Role::worker:
      return "worker";
    case Role::idle:
      return "idle";
  }
  return "?";
}

void check_fits(const Workflow& wf, int world_size) {
  const SourcePos wp = wf.layout.workers_pos;
  if (world_size < 2) {
    throw config_error(wf.path, wp.line, wp.column, "layout",
                       fmt::format("the job has {} rank; Tandem needs at least 2 (one coordinator "
                                   "and one worker): start it with mpirun -np 2 or more",
                                   world_size));
  }
  const int available = world_size - 1;
  if (wf.layout.workers > available) {
    throw config_error(
        wf.path, wp.line, wp.column, "layout.workers",
        fmt::format("asks for {} workers but a job of {} ranks has only {} ranks "
                    "after the coordinator: start at least {} ranks",
                    wf.layout.workers, world_size, available, wf.layout.workers + 1));
  }
  const int workers = wf.layout.workers > 0 ? wf.layout.workers : available;
  for (std::size_t i = 0; i < wf.tasks.size(); ++i) {
    const TaskSpec& t = wf.tasks[i];
    if (t.ranks > workers) {
      throw config_error(wf.path, t.ranks_pos.line, t.ranks_pos.column,
                         fmt::format("task[{}].ranks", i),
                         fmt::format("task '{}' needs {} ranks but the layout has {} workers",
                                     t.name, t.ranks, workers));
    }
  }
}

Plan make_plan(const Workflow& wf, const std::vector<int>& node_of_rank) {
  const int n = static_cast<int>(node_of_rank.size());
  check_fits(wf, n);
  Plan plan;
  plan.world_size = n;
  plan.node_count = n == 0 ? 0 : *std::max_element(node_of_rank.begin(), node_of_rank.end()) + 1;
  plan.workers = wf.layout.workers > 0 ? wf.layout.workers : n - 1;
  plan.worker_slots = wf.layout.worker_slots;
  plan.ranks.resize(n);
  int next_worker = 0;
  for (int r = 0; r < n; ++r) {
    RankPlacement& p = plan.ranks[r];
    p.rank = r;
    p.node = node_of_rank[r];
    if (r == 0) {
      p.role = Role::coordinator;
    } else if (next_worker < plan.workers) {
      p.role = Role::worker;
      p.role_index = next_worker++;
    } else {
      p.role = Role::idle;
    }
  }
  const int idle = n - 1 - plan.workers;
  if (idle > 0) {
    plan.notes.push_back(
        fmt::format("{} rank(s) have no role and will wait idle; start {} ranks "
                    "or set [layout] workers = \"rest\"",
                    idle, n - idle));
  }
  return plan;
}

std::vector<int> block_nodes(int world_size, int ranks_per_node) {
  std::vector<int> nodes(std::max(world_size, 0));
  const int per = std::max(ranks_per_node, 1);
  for (int r = 0; r < world_size; ++r) nodes[r] = r / per;
  return nodes;
}

std::string format_plan(const Plan& plan) {
  std::string out = fmt::format("{:>6}  {:>5}  {:<12} {}\n", "rank", "node", "role", "index");
  for (const RankPlacement& p : plan.ranks) {
    out += fmt::format("{:>6}  {:>5}  {:<12} {}\n", p.rank, p.node, role_name(p.role),
                       p.role == Role::idle ? std::string("-") : std::to_string(p.role_index));
  }
  out += fmt::format("{} ranks on {} node(s): 1 coordinator, {} worker(s)", plan.world_size,
                     plan.node_count, plan.workers);
  if (plan.worker_slots > 1) {
    out += fmt::format(", each running up to {} command tasks at once", plan.worker_slots);
  }
  out += "\n";
  for (const std::string& note : plan.notes) out += "note: " + note + "\n";
  return out;
}

}  // namespace tandem::detail
