// How idle ranks wait: the mode chosen from a (faked) node's ranks and
// CPUs, the waits of each mode, and the workflow key.

#include <gtest/gtest.h>

#include "config/workflow.hpp"
#include "job/idle_mode.hpp"

using namespace tandem::detail;

TEST(IdleMode, AutoIsDedicatedOnlyWhenEveryRankHasACpu) {
  // One rank per core of an HPC node, bound or not.
  EXPECT_EQ(choose_idle_mode(IdleMode::automatic, 32, 32), IdleMode::dedicated);
  EXPECT_EQ(choose_idle_mode(IdleMode::automatic, 2, 2), IdleMode::dedicated);
  EXPECT_EQ(choose_idle_mode(IdleMode::automatic, 16, 64), IdleMode::dedicated);
  // 4 ranks on a 2-core laptop; a whole job under taskset -c 0; Slurm
  // binding 8 ranks to 4 cores.
  EXPECT_EQ(choose_idle_mode(IdleMode::automatic, 4, 2), IdleMode::shared);
  EXPECT_EQ(choose_idle_mode(IdleMode::automatic, 3, 1), IdleMode::shared);
  EXPECT_EQ(choose_idle_mode(IdleMode::automatic, 8, 4), IdleMode::shared);
  // Asked for by name: as asked, whatever the node.
  EXPECT_EQ(choose_idle_mode(IdleMode::dedicated, 8, 1), IdleMode::dedicated);
  EXPECT_EQ(choose_idle_mode(IdleMode::shared, 1, 64), IdleMode::shared);
}

TEST(IdleMode, DedicatedSpinsSharedSleepsSoonAndAGivenBackoffWins) {
  JobSpec job;
  EXPECT_EQ(backoff_for(IdleMode::shared, job).spin, BackoffSpec{}.spin);
  EXPECT_EQ(backoff_for(IdleMode::dedicated, job).spin, 1'000'000);
  EXPECT_EQ(backoff_for(IdleMode::dedicated, job).max_sleep_us, BackoffSpec{}.max_sleep_us);
  job.backoff.spin = 7;
  job.backoff_given = true;
  EXPECT_EQ(backoff_for(IdleMode::dedicated, job).spin, 7);
}

// The coordinator is never what a task or request waits for: it pauses
// after its first empty poll in either mode, and a given [job.backoff] wins.
TEST(IdleMode, OffPathRanksPauseAtOnceUnlessABackoffIsGiven) {
  JobSpec job;
  EXPECT_EQ(off_path_backoff(job).spin, 0);
  EXPECT_EQ(off_path_backoff(job).max_sleep_us, BackoffSpec{}.max_sleep_us);
  job.backoff.spin = 7;
  job.backoff_given = true;
  EXPECT_EQ(off_path_backoff(job).spin, 7);
}

TEST(IdleMode, TheWorkflowKeyAndItsResolvedFile) {
  const char* tail = "\n[[task]]\nname='a'\nfunction='f'\n";
  auto wf = parse_workflow(std::string("[job]\nidle = \"dedicated\"") + tail, "/x/wf.toml", false);
  EXPECT_EQ(wf.job.idle, IdleMode::dedicated);
  EXPECT_FALSE(wf.job.backoff_given);
  EXPECT_EQ(parse_workflow(std::string("[job]") + tail, "/x/wf.toml", false).job.idle,
            IdleMode::automatic);
  const auto again = parse_workflow(resolved_toml(wf), "/x/wf.toml", false);
  EXPECT_EQ(again.job.idle, IdleMode::dedicated);
  EXPECT_FALSE(again.job.backoff_given) << "the resolved file must not pin the backoff";
  try {
    parse_workflow(std::string("[job]\nidle = \"fast\"") + tail, "/x/wf.toml", false);
    ADD_FAILURE() << "an unknown idle mode was accepted";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("job.idle"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("dedicated"), std::string::npos) << e.what();
  }
}
