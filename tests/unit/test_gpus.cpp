// GPUs without GPUs: where a node's list comes from (a faked allocation
// environment, a stand-in nvidia-smi), what the plan gives each replica and
// leaves to tasks, layouts that ask for more than there is, and the pool the
// coordinator hands out from.

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>

#include "config/workflow.hpp"
#include "coordinator/gpu_pool.hpp"
#include "job/resources.hpp"
#include "layout/plan.hpp"
#include "tandem/error.hpp"

using namespace tandem::detail;

namespace {

// Sets (or, with nullopt, unsets) environment variables for one test and
// puts them back after it.
class ScopedEnv {
 public:
  ScopedEnv(std::map<std::string, std::optional<std::string>> vars) {
    for (const auto& [name, value] : vars) {
      const char* old = std::getenv(name.c_str());
      saved_[name] = old ? std::optional<std::string>(old) : std::nullopt;
      if (value) {
        ::setenv(name.c_str(), value->c_str(), 1);
      } else {
        ::unsetenv(name.c_str());
      }
    }
  }
  ~ScopedEnv() {
    for (const auto& [name, value] : saved_) {
      if (value) {
        ::setenv(name.c_str(), value->c_str(), 1);
      } else {
        ::unsetenv(name.c_str());
      }
    }
  }

 private:
  std::map<std::string, std::optional<std::string>> saved_;
};

const std::map<std::string, std::optional<std::string>> kNoAllocation = {
    {"CUDA_VISIBLE_DEVICES", std::nullopt},
    {"SLURM_STEP_GPUS", std::nullopt},
    {"SLURM_JOB_GPUS", std::nullopt}};

Workflow flow(const std::string& text) {
  return parse_workflow(text, "/x/wf.toml", false);
}

NodeGpus gpus(int n) {
  NodeGpus g{{}, "test"};
  for (int i = 0; i < n; ++i) g.ids.push_back(std::to_string(i));
  return g;
}

std::string layout_error(const Workflow& wf, int np, int per_node, std::vector<NodeGpus> g) {
  try {
    make_plan(wf, block_nodes(np, per_node), g);
  } catch (const tandem::config_error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(GpuList, ParsesWhatAllocationsWrite) {
  EXPECT_EQ(parse_gpu_list("0,1,3"), (std::vector<std::string>{"0", "1", "3"}));
  EXPECT_EQ(parse_gpu_list("0-2,6"), (std::vector<std::string>{"0", "1", "2", "6"}));
  EXPECT_EQ(parse_gpu_list("GPU-ab12,GPU-cd34"),
            (std::vector<std::string>{"GPU-ab12", "GPU-cd34"}));
  EXPECT_TRUE(parse_gpu_list("").empty());
  EXPECT_TRUE(parse_gpu_list("NoDevFiles").empty());
}

TEST(GpuDiscovery, AllocationFirstThenConfigThenNvidiaSmi) {
  {
    ScopedEnv env({{"CUDA_VISIBLE_DEVICES", "2,3"}, {"SLURM_JOB_GPUS", "0,1,2,3"}});
    const NodeGpus g = discover_gpus(8, true);
    EXPECT_EQ(g.ids, (std::vector<std::string>{"2", "3"}));
    EXPECT_EQ(g.source, "CUDA_VISIBLE_DEVICES");
  }
  {
    // Set but empty: the process may use no GPU, whatever else says so.
    ScopedEnv env({{"CUDA_VISIBLE_DEVICES", ""}, {"SLURM_JOB_GPUS", "0,1"}});
    EXPECT_TRUE(discover_gpus(4, true).ids.empty());
  }
  auto env = kNoAllocation;
  env["SLURM_JOB_GPUS"] = "4,5";
  {
    ScopedEnv scoped(env);
    const NodeGpus g = discover_gpus(8, true);
    EXPECT_EQ(g.ids, (std::vector<std::string>{"4", "5"}));
    EXPECT_EQ(g.source, "SLURM_JOB_GPUS");
  }
  {
    ScopedEnv scoped(kNoAllocation);
    const NodeGpus g = discover_gpus(3, true);
    EXPECT_EQ(g.ids, (std::vector<std::string>{"0", "1", "2"}));
    EXPECT_EQ(g.source, "[job] gpus_per_node");
  }
}

TEST(GpuDiscovery, StandInNvidiaSmiOnPath) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("tandem-fake-smi-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto smi = dir / "nvidia-smi";
  {
    std::ofstream out(smi);
    out << "#!/bin/sh\n"
           "[ \"$1\" = -L ] || exit 2\n"
           "echo 'GPU 0: Fake GPU (UUID: GPU-0000)'\n"
           "echo '  MIG 1g.10gb Device 0: (UUID: MIG-0000)'\n"
           "echo 'GPU 1: Fake GPU (UUID: GPU-1111)'\n"
           "echo 'GPU 2: Fake GPU (UUID: GPU-2222)'\n";
  }
  ::chmod(smi.c_str(), 0755);
  auto env = kNoAllocation;
  env["PATH"] = dir.string() + ":/usr/bin:/bin";
  {
    ScopedEnv scoped(env);
    const NodeGpus g = discover_gpus(-1, true);
    EXPECT_EQ(g.ids, (std::vector<std::string>{"0", "1", "2"}));
    EXPECT_EQ(g.source, "nvidia-smi -L");
    EXPECT_TRUE(discover_gpus(-1, false).ids.empty()) << "probes only when asked";
  }
  std::filesystem::remove_all(dir);
}

TEST(GpuPlan, ReplicasTakeTheirOwnAndTasksShareTheRest) {
  const Workflow wf = flow(
      "[[service]]\nname='m'\nbackend='echo'\nreplicas=2\ngpus_per_replica=1\n"
      "[[task]]\nname='t'\ncommand=['true']\ngpus_per_task=1\n"
      "[[task]]\nname='cpu'\ncommand=['true']\n");
  EXPECT_EQ(wf.services[0].device, "cuda:0") << "a replica with GPUs runs on its first";
  const Plan p = make_plan(wf, block_nodes(6, 6), {gpus(4)});
  ASSERT_TRUE(p.gpus_managed);
  ASSERT_EQ(p.replicas.size(), 2u);
  EXPECT_EQ(p.ranks[static_cast<std::size_t>(p.replicas[0].ranks[0])].gpus, std::vector<int>{0});
  EXPECT_EQ(p.ranks[static_cast<std::size_t>(p.replicas[1].ranks[0])].gpus, std::vector<int>{1});
  EXPECT_EQ(p.task_gpus[0], (std::vector<int>{2, 3}));
  const std::string text = format_plan(wf, p);
  EXPECT_NE(text.find("m replica 0 leader, GPU 0"), std::string::npos) << text;
  EXPECT_NE(text.find("m replica 1 leader, GPU 1"), std::string::npos) << text;
  EXPECT_NE(text.find("node 0 GPUs: 0,1,2,3 (from test); for tasks: 2,3"), std::string::npos)
      << text;
  EXPECT_NE(text.find("task 't': 1 GPU(s) per instance"), std::string::npos) << text;
  EXPECT_NE(text.find("CUDA_VISIBLE_DEVICES=\"\""), std::string::npos) << text;
}

TEST(GpuPlan, EachNodeItsOwnList) {
  const Workflow wf = flow(
      "[[service]]\nname='m'\nbackend='echo'\nplacement='per_node'\ngpus_per_replica=2\n"
      "[[task]]\nname='t'\ncommand=['true']\nranks=2\ngpus_per_rank=1\n");
  // Two nodes of four ranks, each with its own GPU names.
  const Plan p = make_plan(wf, block_nodes(8, 4),
                           {NodeGpus{{"a0", "a1", "a2"}, "x"}, NodeGpus{{"b0", "b1", "b2"}, "x"}});
  ASSERT_EQ(p.replicas.size(), 2u);
  EXPECT_EQ(p.gpu_ids(1, p.ranks[static_cast<std::size_t>(p.replicas[1].ranks[0])].gpus), "b0,b1");
  EXPECT_EQ(p.gpu_ids(0, p.task_gpus[0]), "a2");
  EXPECT_EQ(p.gpu_ids(1, p.task_gpus[1]), "b2");
}

TEST(GpuPlan, OverAskingIsALayoutErrorNamingTheKey) {
  const std::string replica =
      layout_error(flow("[[service]]\nname='m'\nbackend='echo'\nreplicas=3\ngpus_per_replica=1\n"
                        "[[task]]\nname='t'\ncommand=['true']\n"),
                   5, 5, {gpus(2)});
  EXPECT_NE(replica.find("service[0].gpus_per_replica"), std::string::npos) << replica;
  EXPECT_NE(replica.find("replica 2 needs 1 GPU(s) on node 0, but only 0 are left"),
            std::string::npos)
      << replica;
  const std::string task =
      layout_error(flow("[[service]]\nname='m'\nbackend='echo'\ngpus_per_replica=1\n"
                        "[[task]]\nname='t'\ncommand=['true']\ngpus_per_task=2\n"),
                   4, 4, {gpus(2)});
  EXPECT_NE(task.find("task[0].gpus_per_task"), std::string::npos) << task;
  EXPECT_NE(task.find("fit only 0"), std::string::npos) << task;
  const std::string none =
      layout_error(flow("[[task]]\nname='t'\ncommand=['true']\ngpus_per_task=1\n"), 3, 3, {{}});
  EXPECT_NE(none.find("no GPUs that the job can see"), std::string::npos) << none;
  // The ranks of a multi-rank task need GPUs on their own node.
  const std::string ranks =
      layout_error(flow("[[task]]\nname='t'\ncommand=['true']\nranks=3\ngpus_per_rank=1\n"), 6, 3,
                   {NodeGpus{{"0"}, "x"}, NodeGpus{{"0"}, "x"}});
  EXPECT_NE(ranks.find("task[0].gpus_per_rank"), std::string::npos) << ranks;
  EXPECT_NE(ranks.find("fit only 2"), std::string::npos) << ranks;
}

TEST(GpuPlan, WithoutGpuKeysNothingIsManaged) {
  const Plan p = make_plan(flow("[[task]]\nname='t'\ncommand=['true']\n"), block_nodes(3, 3));
  EXPECT_FALSE(p.gpus_managed);
  EXPECT_EQ(format_plan(flow("[[task]]\nname='t'\ncommand=['true']\n"), p).find("GPU"),
            std::string::npos);
}

TEST(GpuPool, NoGpuIsHeldTwiceAndEndedAttemptsGiveThemBack) {
  GpuPool pool({{0, 1, 2}, {0}});
  EXPECT_EQ(pool.take(7, 1, 0, 2), (std::vector<int>{0, 1}));
  EXPECT_EQ(pool.free_on(0), 1);
  EXPECT_EQ(pool.take(8, 1, 0, 1), std::vector<int>{2});
  EXPECT_EQ(pool.free_on(0), 0);
  pool.settle(7, 1, /*still_running=*/true);
  EXPECT_EQ(pool.free_on(0), 0) << "a running attempt keeps its GPUs";
  pool.settle(7, 1, false);
  EXPECT_EQ(pool.free_on(0), 2);
  EXPECT_EQ(pool.take(9, 1, 0, 1), std::vector<int>{0}) << "the lowest free first";
  // A report of an attempt that is no longer the instance's (a retry runs)
  // settles what the old one held.
  pool.settle(8, 2, true);
  EXPECT_EQ(pool.free_on(0), 2);
  EXPECT_EQ(pool.held(), 1u);
  EXPECT_EQ(pool.free_on(5), 0) << "a node that does not exist has none";
}

TEST(CpuList, AsTasksetWritesIt) {
  EXPECT_EQ(cpu_list_text({0, 1, 2, 3, 8}), "0-3,8");
  EXPECT_EQ(cpu_list_text({5, 1, 3, 2}), "1-3,5");
  EXPECT_EQ(cpu_list_text({}), "");
}
