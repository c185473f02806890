// The batch allocation from the environment, and run directories named
// after the job and found again for --resume.

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <thread>

#include "config/workflow.hpp"
#include "job/allocation.hpp"
#include "job/run_dir.hpp"
#include "support/temp_dir.hpp"

using namespace tandem::detail;

namespace {
struct FakeSlurm {
  FakeSlurm() {
    setenv("SLURM_JOB_ID", "4242", 1);
    setenv("SLURM_JOB_NAME", "ensemble", 1);
    setenv("SLURM_JOB_NODELIST", "node[01-02]", 1);
    setenv("SLURM_JOB_NUM_NODES", "2", 1);
    setenv("SLURM_NTASKS", "64", 1);
    setenv("SLURM_TASKS_PER_NODE", "32(x2)", 1);
  }
  ~FakeSlurm() {
    for (const char* v : {"SLURM_JOB_ID", "SLURM_JOB_NAME", "SLURM_JOB_NODELIST",
                          "SLURM_JOB_NUM_NODES", "SLURM_NTASKS", "SLURM_TASKS_PER_NODE"}) {
      unsetenv(v);
    }
  }
};
}  // namespace

TEST(Allocation, SlurmEnvironmentIsRead) {
  FakeSlurm slurm;
  const Allocation a = read_allocation();
  EXPECT_EQ(a.system, "slurm");
  EXPECT_EQ(a.job_id, "4242");
  EXPECT_EQ(a.nodes, "node[01-02]");
  EXPECT_EQ(a.node_count, "2");
  EXPECT_EQ(a.tasks, "64");
  EXPECT_EQ(a.tasks_per_node, "32(x2)");
  EXPECT_EQ(a.to_json()["job_id"], "4242");
}

TEST(Allocation, OutsideABatchJobThereIsNone) {
  unsetenv("SLURM_JOB_ID");
  unsetenv("PBS_JOBID");
  unsetenv("FLUX_JOB_ID");
  EXPECT_EQ(read_allocation().system, "none");
}

TEST(Allocation, RunDirectoriesAreNamedAfterTheJobAndResumeFindsTheNewest) {
  tandem::test::TempDir dir;
  const auto wf = parse_workflow("[job]\nname='ens'\n[[task]]\nname='a'\nfunction='f'\n",
                                 (dir.path() / "wf.toml").string(), false);
  {
    FakeSlurm slurm;
    const std::string run = choose_run_dir(wf, "", dir.path().string(), false);
    EXPECT_EQ(std::filesystem::path(run).filename(), "ens-4242");
  }
  // Two earlier runs; the one whose journal changed last is resumed, even
  // though its name sorts first.
  for (const char* name : {"ens-999", "ens-1000"}) {
    std::filesystem::create_directories(dir.path() / name);
    std::ofstream(dir.path() / name / "journal.jsonl") << "\n";
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(std::filesystem::path(choose_run_dir(wf, "", dir.path().string(), true)).filename(),
            "ens-1000");
}
