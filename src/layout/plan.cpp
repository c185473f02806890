#include "layout/plan.hpp"

#include <algorithm>
#include <map>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "tandem/error.hpp"

namespace tandem::detail {

std::string role_label(const Workflow& wf, const RankPlacement& p, bool spmd) {
  if (spmd && p.role == Role::worker) return "app";
  if (p.role == Role::service && wf.services[p.service].is_bridge()) return "bridge";
  return std::string(name_of(p.role));
}

std::vector<int> Plan::client_ranks() const {
  std::vector<int> out;
  for (const RankPlacement& p : ranks) {
    if (p.role == Role::worker) out.push_back(p.rank);
  }
  return out;
}

std::vector<const ReplicaPlacement*> Plan::replicas_of(int s) const {
  std::vector<const ReplicaPlacement*> out;
  for (const ReplicaPlacement& r : replicas) {
    if (r.service == s) out.push_back(&r);
  }
  return out;
}

int Plan::replica_index(int s, int replica) const {
  for (std::size_t i = 0; i < replicas.size(); ++i) {
    if (replicas[i].service == s && replicas[i].replica == replica) return static_cast<int>(i);
  }
  return -1;
}

std::vector<int> Plan::ranks_per_node() const {
  std::vector<int> n(static_cast<std::size_t>(std::max(node_count, 1)), 0);
  for (const RankPlacement& p : ranks) ++n[p.node];
  return n;
}

namespace {

int service_ranks(const Workflow& wf) {
  int n = 0;
  // One replica per node needs at least one node's worth.
  for (const ServiceSpec& s : wf.services) n += std::max(s.replicas, 1) * s.ranks_per_replica;
  return n;
}

std::string replica_count(const ServiceSpec& s) {
  return s.replicas > 0 ? std::to_string(s.replicas) : std::string("1 per node");
}

[[noreturn]] void layout_error(const Workflow& wf, const std::string& key, SourcePos p,
                               const std::string& why) {
  throw config_error(wf.path, p.line, p.column, key, why);
}

// The workers that an elastic service may grow into: replicas min to
// max - 1 of each, taken from the highest-numbered workers (per_node: of
// the replica's node), so that the lowest stay workers for good. At least
// as many workers as the largest task needs are never lent.
void place_elastic_slots(const Workflow& wf, Plan& plan) {
  std::vector<int> free;  // workers in no slot, highest last
  for (const RankPlacement& p : plan.ranks) {
    if (p.role == Role::worker) free.push_back(p.rank);
  }
  int keep = 1;
  for (const TaskSpec& t : wf.tasks) keep = std::max(keep, t.workers_needed());
  for (int s = 0; s < static_cast<int>(wf.services.size()); ++s) {
    const ServiceSpec& spec = wf.services[s];
    if (!spec.elastic()) continue;
    for (int rep = spec.replicas; rep < spec.replicas_max; ++rep) {
      const int node = rep % std::max(plan.node_count, 1);
      std::vector<int> mine;
      for (auto it = free.rbegin();
           it != free.rend() && static_cast<int>(mine.size()) < spec.ranks_per_replica; ++it) {
        if (spec.placement != Placement::per_node || plan.ranks[*it].node == node)
          mine.push_back(*it);
      }
      if (static_cast<int>(mine.size()) < spec.ranks_per_replica ||
          static_cast<int>(free.size()) - spec.ranks_per_replica < keep) {
        layout_error(
            wf, "service.replicas", spec.replicas_pos,
            fmt::format("service '{}' may grow to {} replicas, but the job's workers run out at "
                        "replica {}{} ({} worker(s) always stay workers): start more ranks or "
                        "lower max",
                        spec.name, spec.replicas_max, rep,
                        spec.placement == Placement::per_node ? fmt::format(" on node {}", node)
                                                              : std::string(),
                        keep));
      }
      std::sort(mine.begin(), mine.end());
      ReplicaPlacement rp;
      rp.service = s;
      rp.replica = rep;
      rp.ranks = mine;
      rp.node = plan.ranks[mine[0]].node;
      rp.elastic = true;
      for (int i = 0; i < static_cast<int>(mine.size()); ++i) {
        RankPlacement& p = plan.ranks[mine[i]];
        p.service = s;
        p.replica = rep;
        p.replica_rank = i;
        p.elastic_slot = static_cast<int>(plan.replicas.size());
        std::erase(free, mine[i]);
      }
      plan.replicas.push_back(std::move(rp));
    }
  }
}

}  // namespace

void check_fits(const Workflow& wf, int world_size) {
  const SourcePos wp = wf.layout.workers_pos;
  const int for_services = service_ranks(wf);
  const int needed = 1 + for_services + 1;
  if (world_size < needed) {
    std::string parts = "1 coordinator";
    for (const ServiceSpec& s : wf.services) {
      parts += fmt::format(", {} for service '{}' ({} x {})",
                           std::max(s.replicas, 1) * s.ranks_per_replica, s.name, replica_count(s),
                           s.ranks_per_replica);
    }
    // A file with services only is an SPMD session's: its clients are the
    // application's ranks.
    parts += wf.tasks.empty() && !wf.services.empty() ? ", at least 1 application rank"
                                                      : ", at least 1 worker";
    layout_error(wf, wf.services.empty() ? "layout" : "service", wp,
                 fmt::format("the job has {} rank(s) but the layout needs at least {} ({}): start "
                             "it with mpirun -np {} or more",
                             world_size, needed, parts, needed));
  }
  const int available = world_size - 1 - for_services;
  if (wf.layout.workers > available) {
    layout_error(wf, "layout.workers", wp,
                 fmt::format("asks for {} workers but a job of {} ranks has only {} ranks after "
                             "the coordinator and the services: start at least {} ranks",
                             wf.layout.workers, world_size, available,
                             wf.layout.workers + 1 + for_services));
  }
  const int workers = wf.layout.workers > 0 ? wf.layout.workers : available;
  for (std::size_t i = 0; i < wf.tasks.size(); ++i) {
    const TaskSpec& t = wf.tasks[i];
    // A steering task holds its worker while it waits: what it submits
    // needs another one (the coordinator never lets steering tasks take
    // the last worker).
    if (t.steering && workers < 2) {
      layout_error(wf, fmt::format("task[{}].steering", i), t.pos,
                   fmt::format("task '{}' steers: it holds a worker while it waits, and what it "
                               "submits needs another, but the layout has {} worker: start the "
                               "job with one rank more",
                               t.name, workers));
    }
    if (t.workers_needed() > workers) {
      layout_error(wf, fmt::format("task[{}].ranks", i), t.ranks_pos,
                   t.cores_per_rank > 1
                       ? fmt::format("task '{}' needs {} ranks of {} cores, {} workers, but the "
                                     "layout has {} workers",
                                     t.name, t.ranks, t.cores_per_rank, t.workers_needed(), workers)
                       : fmt::format("task '{}' needs {} ranks but the layout has {} workers",
                                     t.name, t.ranks, workers));
    }
  }
}

Plan make_plan(const Workflow& wf, const std::vector<int>& node_of_rank,
               const std::vector<NodeGpus>& node_gpus) {
  const int n = static_cast<int>(node_of_rank.size());
  check_fits(wf, n);
  Plan plan;
  plan.world_size = n;
  plan.node_count = n == 0 ? 0 : *std::max_element(node_of_rank.begin(), node_of_rank.end()) + 1;
  plan.worker_slots = wf.layout.worker_slots;
  plan.ranks.resize(n);
  std::map<int, std::vector<int>> free_on_node;  // node -> free ranks, ascending
  for (int r = 0; r < n; ++r) {
    plan.ranks[r].rank = r;
    plan.ranks[r].node = node_of_rank[r];
    if (r > 0) free_on_node[node_of_rank[r]].push_back(r);
  }
  plan.ranks[0].role = Role::coordinator;
  auto take_lowest = [&](int count) {
    std::vector<int> all;
    for (auto& [node, list] : free_on_node) all.insert(all.end(), list.begin(), list.end());
    std::sort(all.begin(), all.end());
    all.resize(count);
    for (auto& [node, list] : free_on_node) {
      std::erase_if(list, [&](int r) { return std::binary_search(all.begin(), all.end(), r); });
    }
    return all;
  };
  for (int s = 0; s < static_cast<int>(wf.services.size()); ++s) {
    const ServiceSpec& spec = wf.services[s];
    const int replicas = spec.replicas > 0 ? spec.replicas : plan.node_count;
    for (int rep = 0; rep < replicas; ++rep) {
      ReplicaPlacement rp;
      rp.service = s;
      rp.replica = rep;
      if (spec.placement == Placement::per_node) {
        const int node = rep % plan.node_count;
        auto& list = free_on_node[node];
        if (static_cast<int>(list.size()) < spec.ranks_per_replica) {
          layout_error(wf, "service.placement", spec.pos,
                       fmt::format("service '{}' replica {} goes on node {} (per_node) but that "
                                   "node has only {} free rank(s) for its {} rank(s)",
                                   spec.name, rep, node, list.size(), spec.ranks_per_replica));
        }
        rp.ranks.assign(list.begin(), list.begin() + spec.ranks_per_replica);
        list.erase(list.begin(), list.begin() + spec.ranks_per_replica);
      } else {
        rp.ranks = take_lowest(spec.ranks_per_replica);
      }
      rp.node = node_of_rank[rp.ranks[0]];
      for (int i = 0; i < static_cast<int>(rp.ranks.size()); ++i) {
        RankPlacement& p = plan.ranks[rp.ranks[i]];
        p.role = Role::service;
        p.service = s;
        p.replica = rep;
        p.replica_rank = i;
      }
      plan.replicas.push_back(std::move(rp));
    }
  }
  std::vector<int> rest;
  for (auto& [node, list] : free_on_node) rest.insert(rest.end(), list.begin(), list.end());
  std::sort(rest.begin(), rest.end());
  // A replica on every node takes a rank per node, which check_fits could
  // not count before the nodes were known.
  int needed_clients = std::max(1, wf.layout.workers);
  for (const TaskSpec& t : wf.tasks) needed_clients = std::max(needed_clients, t.workers_needed());
  if (static_cast<int>(rest.size()) < needed_clients) {
    layout_error(wf, "service.placement", wf.layout.workers_pos,
                 fmt::format("after a replica on each of the {} nodes, {} rank(s) are left but "
                             "the layout needs {} {}: start more ranks per node",
                             plan.node_count, rest.size(), needed_clients,
                             wf.tasks.empty() ? "application rank(s)" : "worker(s)"));
  }
  const int wanted = wf.layout.workers > 0 ? wf.layout.workers : static_cast<int>(rest.size());
  for (int r : rest) {
    RankPlacement& p = plan.ranks[r];
    if (plan.workers < wanted) {
      p.role = Role::worker;
      p.role_index = plan.workers++;
    } else {
      p.role = Role::idle;
    }
  }
  place_elastic_slots(wf, plan);
  // A rank of an MPI command task takes cores_per_rank workers of one node.
  std::vector<int> workers_on_node(static_cast<std::size_t>(plan.node_count));
  for (const RankPlacement& p : plan.ranks) {
    if (p.role == Role::worker) ++workers_on_node[static_cast<std::size_t>(p.node)];
  }
  for (std::size_t i = 0; i < wf.tasks.size(); ++i) {
    const TaskSpec& t = wf.tasks[i];
    if (t.cores_per_rank <= 1) continue;
    int fit = 0;
    for (int w : workers_on_node) fit += w / t.cores_per_rank;
    if (fit < t.ranks) {
      layout_error(
          wf, fmt::format("task[{}].cores_per_rank", i), t.ranks_pos,
          fmt::format("task '{}' needs {} ranks of {} cores, each on one node, but the "
                      "nodes' workers ({}) fit only {}: start more ranks per node or "
                      "ask for fewer cores per rank",
                      t.name, t.ranks, t.cores_per_rank, fmt::join(workers_on_node, ", "), fit));
    }
  }
  if (manages_gpus(wf)) place_gpus(wf, plan, node_gpus);
  const int idle = static_cast<int>(rest.size()) - plan.workers;
  if (idle > 0) {
    plan.notes.push_back(
        fmt::format("{} rank(s) have no role and will wait idle; start {} ranks "
                    "or set [layout] workers = \"rest\"",
                    idle, n - idle));
  }
  return plan;
}

std::string Plan::gpu_ids(int node, const std::vector<int>& indices) const {
  std::string out;
  const std::vector<std::string>& ids = node_gpus[static_cast<std::size_t>(node)].ids;
  for (int i : indices) {
    if (!out.empty()) out += ',';
    out += ids[static_cast<std::size_t>(i)];
  }
  return out;
}

std::vector<int> block_nodes(int world_size, int ranks_per_node) {
  std::vector<int> nodes(std::max(world_size, 0));
  const int per = std::max(ranks_per_node, 1);
  for (int r = 0; r < world_size; ++r) nodes[r] = r / per;
  return nodes;
}

// The instances that tasks' sweeps make, with the values each gets (the
// first and last few of a long sweep).
std::string format_sweeps(const Workflow& wf) {
  constexpr int kShown = 8;
  std::string out;
  for (const TaskSpec& t : wf.tasks) {
    if (!t.has_sweep()) continue;
    std::vector<std::string> sizes;
    for (std::size_t k = 0; k < t.sweep_keys.size(); ++k) {
      sizes.push_back(fmt::format("{}[{}]", t.sweep_keys[k], t.sweep_values[k].size()));
    }
    out += fmt::format("task '{}': {} instance(s) from its sweep ({} of {})\n", t.name, t.count,
                       name_of(t.sweep_mode),
                       fmt::join(sizes, t.sweep_mode == SweepMode::zip ? ", " : " x "));
    for (int i = 0; i < t.count; ++i) {
      if (t.count > 2 * kShown && i == kShown) {
        out += fmt::format("  ... {} more\n", t.count - 2 * kShown);
        i = t.count - kShown;
      }
      out += fmt::format("  [{}] {}\n", i, t.args_for(i));
    }
  }
  return out;
}

// Each node's GPUs, which replica holds which, what tasks share, and what
// each task takes.
std::string format_gpus(const Workflow& wf, const Plan& plan) {
  std::string out;
  for (int n = 0; n < static_cast<int>(plan.node_gpus.size()); ++n) {
    const NodeGpus& g = plan.node_gpus[static_cast<std::size_t>(n)];
    const std::vector<int>& pool = plan.task_gpus[static_cast<std::size_t>(n)];
    out += fmt::format("node {} GPUs: {}{}; for tasks: {}\n", n,
                       g.ids.empty() ? "none" : fmt::format("{}", fmt::join(g.ids, ",")),
                       g.source.empty() ? "" : " (from " + g.source + ")",
                       pool.empty() ? "none" : plan.gpu_ids(n, pool));
  }
  for (const TaskSpec& t : wf.tasks) {
    if (t.gpus_per_rank > 0) {
      out += fmt::format("task '{}': {} GPU(s) {}, its own while it runs (CUDA_VISIBLE_DEVICES)\n",
                         t.name, t.gpus_per_rank, t.ranks > 1 ? "per rank" : "per instance");
    }
  }
  if (std::any_of(wf.tasks.begin(), wf.tasks.end(),
                  [](const TaskSpec& t) { return t.gpus_per_rank == 0; })) {
    out += "tasks without gpus_per_task run with CUDA_VISIBLE_DEVICES=\"\" (no GPU)\n";
  }
  return out;
}

std::string format_plan(const Workflow& wf, const Plan& plan) {
  // Services only: an SPMD session's file, whose other ranks are the app.
  const bool spmd = wf.tasks.empty() && !wf.services.empty();
  std::string out = fmt::format("{:>6}  {:>5}  {:<12} {}\n", "rank", "node", "role", "detail");
  for (const RankPlacement& p : plan.ranks) {
    std::string detail = "-";
    if (p.role == Role::worker) {
      detail = fmt::format("{} {}", spmd ? "app_comm rank" : "worker", p.role_index);
      if (p.elastic_slot >= 0) {
        detail += fmt::format(", may serve {} replica {}{}", wf.services[p.service].name, p.replica,
                              p.replica_rank > 0 ? fmt::format(" rank {}", p.replica_rank) : "");
      }
    }
    if (p.role == Role::service) {
      detail = fmt::format("{} replica {} {}", wf.services[p.service].name, p.replica,
                           wf.services[p.service].is_bridge() ? "bridge"
                           : p.replica_rank == 0              ? "leader"
                                                 : fmt::format("rank {}", p.replica_rank));
      if (plan.gpus_managed) {
        detail += p.gpus.empty() ? ", no GPU" : ", GPU " + plan.gpu_ids(p.node, p.gpus);
      }
    }
    out +=
        fmt::format("{:>6}  {:>5}  {:<12} {}\n", p.rank, p.node, role_label(wf, p, spmd), detail);
  }
  out +=
      fmt::format("{} ranks on {} node(s): 1 coordinator, {} {}", plan.world_size, plan.node_count,
                  plan.workers, spmd ? "application rank(s) (SPMD session)" : "worker(s)");
  if (plan.worker_slots > 1) {
    out += fmt::format(", each running up to {} command tasks at once", plan.worker_slots);
  }
  for (const ServiceSpec& s : wf.services) {
    if (s.elastic()) {
      out += fmt::format(", service '{}' ({} to {} x {} rank(s), {}, elastic)", s.name, s.replicas,
                         s.replicas_max, s.ranks_per_replica, name_of(s.placement));
      continue;
    }
    const auto placed = plan.replicas_of(static_cast<int>(&s - wf.services.data())).size();
    out += fmt::format(", service '{}' ({} x {} rank(s), {})", s.name, placed, s.ranks_per_replica,
                       name_of(s.placement));
  }
  out += "\n";
  if (plan.gpus_managed) out += format_gpus(wf, plan);
  for (const std::string& note : plan.notes) out += "note: " + note + "\n";
  out += format_sweeps(wf);
  return out;
}

}  // namespace tandem::detail
