#include "job/resources.hpp"

#include <sched.h>
#include <stdio.h>

#include <algorithm>
#include <cstdlib>
#include <set>
#include <utility>

#include <fmt/format.h>

#include "base/files.hpp"
#include "base/mpi_check.hpp"

namespace tandem::detail {

namespace {

// The indices of the GPUs that `nvidia-smi -L` lists ("GPU 0: NVIDIA H100
// (UUID: ...)"); MIG devices, listed indented under their GPU, are not
// handed out one by one.
std::vector<std::string> probe_nvidia_smi() {
  const std::string smi = find_program("nvidia-smi", std::getenv("PATH"));
  if (smi.empty()) return {};
  std::vector<std::string> ids;
  FILE* out = ::popen(fmt::format("'{}' -L 2>/dev/null", smi).c_str(), "r");
  if (!out) return {};
  char line[512];
  while (std::fgets(line, sizeof line, out)) {
    if (std::string_view(line).starts_with("GPU ")) ids.push_back(std::to_string(ids.size()));
  }
  ::pclose(out);
  return ids;
}

}  // namespace

NodeGpus numbered_gpus(int count, std::string source) {
  NodeGpus g{{}, std::move(source)};
  g.ids.reserve(static_cast<std::size_t>(std::max(count, 0)));
  for (int i = 0; i < count; ++i) g.ids.push_back(std::to_string(i));
  return g;
}

std::vector<std::string> parse_gpu_list(const std::string& text) {
  std::vector<std::string> ids;
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t end = std::min(text.find(',', start), text.size());
    std::string item = text.substr(start, end - start);
    std::erase_if(item, [](char c) { return c == ' '; });
    const std::size_t dash = item.find('-');
    const bool range = dash != std::string::npos && dash > 0 &&
                       item.find_first_not_of("0123456789-") == std::string::npos;
    if (range) {
      const int first = std::atoi(item.c_str());
      const int last = std::atoi(item.c_str() + dash + 1);
      for (int i = first; i <= last; ++i) ids.push_back(std::to_string(i));
    } else if (!item.empty() && item != "NoDevFiles") {
      ids.push_back(item);
    }
    start = end + 1;
  }
  return ids;
}

NodeGpus discover_gpus(int gpus_per_node, bool probe) {
  for (const char* name : {"CUDA_VISIBLE_DEVICES", "SLURM_STEP_GPUS", "SLURM_JOB_GPUS"}) {
    const char* v = std::getenv(name);
    if (!v) continue;
    const bool final_word = std::string_view(name) == "CUDA_VISIBLE_DEVICES";
    std::vector<std::string> ids = parse_gpu_list(v);
    if (!ids.empty() || final_word) return {std::move(ids), name};
  }
  if (gpus_per_node >= 0) return numbered_gpus(gpus_per_node, "[job] gpus_per_node");
  if (probe) {
    std::vector<std::string> ids = probe_nvidia_smi();
    if (!ids.empty()) return {std::move(ids), "nvidia-smi -L"};
  }
  return {};
}

std::vector<NodeGpus> gather_node_gpus(MPI_Comm comm, const std::vector<int>& node_of_rank,
                                       int gpus_per_node) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  const int node = node_of_rank[static_cast<std::size_t>(rank)];
  const bool lowest_of_node =
      std::find(node_of_rank.begin(), node_of_rank.end(), node) - node_of_rank.begin() == rank;
  const NodeGpus mine = discover_gpus(gpus_per_node, lowest_of_node);
  // "source|id,id,...", in a fixed-size slot.
  constexpr std::size_t kSlot = 2048;
  std::string text = mine.source + "|";
  for (std::size_t i = 0; i < mine.ids.size(); ++i) text += (i ? "," : "") + mine.ids[i];
  text.resize(kSlot - 1, '\0');
  text.push_back('\0');
  const auto size = node_of_rank.size();
  std::vector<char> all(size * kSlot);
  TANDEM_MPI_CHECK(MPI_Allgather(text.data(), static_cast<int>(kSlot), MPI_CHAR, all.data(),
                                 static_cast<int>(kSlot), MPI_CHAR, comm));
  const int nodes = *std::max_element(node_of_rank.begin(), node_of_rank.end()) + 1;
  std::vector<NodeGpus> out(static_cast<std::size_t>(nodes));
  for (std::size_t r = 0; r < size; ++r) {
    const std::string slot(all.data() + r * kSlot);
    const std::size_t bar = slot.find('|');
    NodeGpus& g = out[static_cast<std::size_t>(node_of_rank[r])];
    for (std::string& id : parse_gpu_list(slot.substr(bar + 1))) {
      if (std::find(g.ids.begin(), g.ids.end(), id) == g.ids.end()) g.ids.push_back(std::move(id));
    }
    if (g.source.empty()) g.source = slot.substr(0, bar);
  }
  return out;
}

std::vector<std::vector<int>> gather_rank_cpus(MPI_Comm comm) {
  int size = 0;
  MPI_Comm_size(comm, &size);
  cpu_set_t mine;
  CPU_ZERO(&mine);
  if (sched_getaffinity(0, sizeof mine, &mine) != 0) CPU_SET(0, &mine);
  std::vector<cpu_set_t> all(static_cast<std::size_t>(size));
  TANDEM_MPI_CHECK(
      MPI_Allgather(&mine, sizeof mine, MPI_BYTE, all.data(), sizeof mine, MPI_BYTE, comm));
  std::vector<std::vector<int>> out(static_cast<std::size_t>(size));
  for (std::size_t r = 0; r < all.size(); ++r) {
    for (int c = 0; c < CPU_SETSIZE; ++c) {
      if (CPU_ISSET(c, &all[r])) out[r].push_back(c);
    }
  }
  return out;
}

std::string cpu_list_text(const std::vector<int>& cpus) {
  const std::set<int> sorted(cpus.begin(), cpus.end());
  std::string out;
  for (auto it = sorted.begin(); it != sorted.end();) {
    const int first = *it;
    int last = first;
    while (++it != sorted.end() && *it == last + 1) ++last;
    if (!out.empty()) out += ',';
    out += last == first ? std::to_string(first) : fmt::format("{}-{}", first, last);
  }
  return out;
}

}  // namespace tandem::detail
