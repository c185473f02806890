#pragma once
// The GPUs left to tasks on each node (Plan::task_gpus), handed out as tasks
// start and taken back when their attempt ends, so that no two running
// tasks share a GPU. Free of MPI, for tests.

#include <algorithm>
#include <unordered_map>
#include <utility>
#include <vector>

namespace tandem::detail {

class GpuPool {
 public:
  explicit GpuPool(std::vector<std::vector<int>> free_by_node) : free_(std::move(free_by_node)) {}

  int free_on(int node) const {
    return node < static_cast<int>(free_.size())
               ? static_cast<int>(free_[static_cast<std::size_t>(node)].size())
               : 0;
  }

  /// Gives @p count of node @p node's free GPUs to attempt @p attempt of
  /// instance @p id (the lowest indices first) and returns them.
  std::vector<int> take(int id, int attempt, int node, int count) {
    std::vector<int>& list = free_[static_cast<std::size_t>(node)];
    std::vector<int> taken(list.begin(), list.begin() + count);
    list.erase(list.begin(), list.begin() + count);
    Held& h = held_[id];
    h.attempt = attempt;
    for (int g : taken) h.gpus.emplace_back(node, g);
    return taken;
  }

  /// Takes back what instance @p id holds unless @p still_running (its
  /// attempt @p attempt holds workers yet).
  void settle(int id, int attempt, bool still_running) {
    const auto it = held_.find(id);
    if (it == held_.end() || (still_running && it->second.attempt == attempt)) return;
    for (auto [node, g] : it->second.gpus) {
      std::vector<int>& list = free_[static_cast<std::size_t>(node)];
      list.insert(std::lower_bound(list.begin(), list.end(), g), g);
    }
    held_.erase(it);
  }

  /// GPUs held by running attempts.
  std::size_t held() const {
    std::size_t n = 0;
    for (const auto& [id, h] : held_) n += h.gpus.size();
    return n;
  }

 private:
  struct Held {
    int attempt = 0;
    std::vector<std::pair<int, int>> gpus;  // (node, index)
  };
  std::vector<std::vector<int>> free_;
  std::unordered_map<int, Held> held_;
};

}  // namespace tandem::detail
