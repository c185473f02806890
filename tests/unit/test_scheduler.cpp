// The scheduler's logic without MPI: order, dependencies, retries, failures
// cancelling what depends on them, multi-rank attempts and resume.

#include <gtest/gtest.h>

#include <algorithm>

#include "config/workflow.hpp"
#include "coordinator/scheduler.hpp"
#include "tandem/error.hpp"

using namespace tandem::detail;

namespace {

Workflow flow(const std::string& text) {
  return parse_workflow(text, "/x/wf.toml", false);
}

// Runs every ready one-rank instance to the given outcome; returns the ids
// in the order they were handed out.
std::vector<int> drain(Scheduler& s, Outcome outcome = Outcome::done, int worker = 0) {
  std::vector<int> order;
  std::vector<int> finals;
  for (;;) {
    std::vector<int> got;
    s.take(1000, worker, 1, got);
    if (got.empty()) break;
    for (int id : got) {
      order.push_back(id);
      s.report(id, s.instance(id).attempt, outcome, outcome == Outcome::done ? 0 : 1, 2, 3,
               outcome == Outcome::done ? "" : "boom", finals);
    }
  }
  return order;
}

}  // namespace

TEST(Scheduler, PriorityThenFileOrder) {
  const auto wf = flow(
      "[[task]]\nname='low'\nfunction='f'\ncount=2\n"
      "[[task]]\nname='high'\nfunction='f'\ncount=2\npriority=5\n");
  Scheduler s(wf);
  s.start();
  std::vector<int> got;
  s.take(10, 0, 1, got);
  EXPECT_EQ(got, (std::vector<int>{2, 3, 0, 1}));
  EXPECT_EQ(s.count(TaskState::SCHEDULED), 4);
}

TEST(Scheduler, TakeRespectsMax) {
  const auto wf = flow("[[task]]\nname='a'\nfunction='f'\ncount=10\n");
  Scheduler s(wf);
  s.start();
  std::vector<int> got;
  EXPECT_EQ(s.take(3, 0, 1, got), 3);
  EXPECT_EQ(s.take(3, 1, 1, got), 3);
  EXPECT_EQ(got, (std::vector<int>{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(s.instance(4).worker, 1);
}

TEST(Scheduler, DependantsWaitForEveryInstance) {
  const auto wf = flow(
      "[[task]]\nname='a'\nfunction='f'\ncount=3\n"
      "[[task]]\nname='b'\nfunction='f'\nafter=['a']\ncount=2\n");
  Scheduler s(wf);
  s.start();
  std::vector<int> got;
  std::vector<int> finals;
  s.take(10, 0, 1, got);
  ASSERT_EQ(got.size(), 3u);  // b is not ready yet
  s.report(0, 1, Outcome::done, 0, 1, 2, "", finals);
  s.report(1, 1, Outcome::done, 0, 1, 2, "", finals);
  EXPECT_FALSE(s.has_ready());
  s.report(2, 1, Outcome::done, 0, 1, 2, "", finals);
  EXPECT_TRUE(s.has_ready());
  EXPECT_EQ(drain(s), (std::vector<int>{3, 4}));
  EXPECT_TRUE(s.finished());
  EXPECT_EQ(s.count(TaskState::DONE), 5);
}

TEST(Scheduler, RetriesThenFailsForGood) {
  const auto wf = flow("[[task]]\nname='a'\nfunction='f'\nretries=2\n");
  Scheduler s(wf);
  s.start();
  std::vector<int> finals;
  for (int attempt = 1; attempt <= 3; ++attempt) {
    std::vector<int> got;
    ASSERT_EQ(s.take(1, 0, 1, got), 1);
    EXPECT_EQ(s.instance(0).attempt, attempt);
    s.report(0, attempt, Outcome::failed, 7, 1, 2, "exit 7", finals);
  }
  EXPECT_TRUE(s.finished());
  EXPECT_EQ(s.instance(0).state, TaskState::FAILED);
  EXPECT_EQ(s.instance(0).exit_code, 7);
  EXPECT_EQ(s.instance(0).reason, "exit 7");
  EXPECT_EQ(finals, std::vector<int>{0});
}

TEST(Scheduler, RetrySucceeds) {
  const auto wf = flow("[[task]]\nname='a'\nfunction='f'\nretries=1\n");
  Scheduler s(wf);
  s.start();
  std::vector<int> got;
  std::vector<int> finals;
  s.take(1, 0, 1, got);
  s.report(0, 1, Outcome::failed, 1, 1, 2, "x", finals);
  EXPECT_TRUE(finals.empty());
  got.clear();
  s.take(1, 0, 1, got);
  s.report(0, 2, Outcome::done, 0, 3, 4, "", finals);
  EXPECT_EQ(s.instance(0).state, TaskState::DONE);
  EXPECT_EQ(s.instance(0).attempt, 2);
  EXPECT_TRUE(s.instance(0).reason.empty());
}

TEST(Scheduler, FailureCancelsEverythingDownstream) {
  const auto wf = flow(
      "[[task]]\nname='a'\nfunction='f'\n"
      "[[task]]\nname='b'\nfunction='f'\nafter=['a']\ncount=2\n"
      "[[task]]\nname='c'\nfunction='f'\nafter=['b']\n"
      "[[task]]\nname='free'\nfunction='f'\n");
  Scheduler s(wf);
  s.start();
  const auto order = drain(s, Outcome::failed);
  EXPECT_EQ(order, (std::vector<int>{0, 4}));
  EXPECT_TRUE(s.finished());
  EXPECT_EQ(s.count(TaskState::FAILED), 2);
  EXPECT_EQ(s.count(TaskState::CANCELED), 3);
  EXPECT_NE(s.instance(3).reason.find("dependency 'a' failed (a[0]: boom)"), std::string::npos)
      << s.instance(3).reason;
}

TEST(Scheduler, StaleReportsAreIgnored) {
  const auto wf = flow("[[task]]\nname='a'\nfunction='f'\nretries=1\n");
  Scheduler s(wf);
  s.start();
  std::vector<int> got;
  std::vector<int> finals;
  s.take(1, 0, 1, got);
  s.report(0, 5, Outcome::done, 0, 1, 2, "", finals);   // wrong attempt
  s.report(99, 1, Outcome::done, 0, 1, 2, "", finals);  // no such id
  EXPECT_EQ(s.instance(0).state, TaskState::SCHEDULED);
  s.report(0, 1, Outcome::done, 0, 1, 2, "", finals);
  s.report(0, 1, Outcome::failed, 1, 1, 2, "late", finals);  // after final
  EXPECT_EQ(s.instance(0).state, TaskState::DONE);
}

TEST(Scheduler, MultiRankWaitsForEveryMember) {
  const auto wf = flow(
      "[[task]]\nname='one'\nfunction='f'\n"
      "[[task]]\nname='wide'\nfunction='f'\nranks=3\npriority=1\n");
  Scheduler s(wf);
  s.start();
  EXPECT_EQ(s.head_ranks(), 3);
  std::vector<int> got;
  EXPECT_EQ(s.take(5, 0, 1, got), 0);  // a multi-rank head keeps its place
  const int id = s.take_multi(0, 3, 1);
  EXPECT_EQ(id, 1);
  std::vector<int> finals;
  s.report(id, 1, Outcome::done, 0, 1, 2, "", finals);
  s.report(id, 1, Outcome::failed, 3, 1, 2, "rank 1 threw", finals);
  EXPECT_FALSE(is_final(s.instance(id).state));
  s.report(id, 1, Outcome::done, 0, 1, 2, "", finals);
  EXPECT_EQ(s.instance(id).state, TaskState::FAILED);
  EXPECT_EQ(s.instance(id).reason, "rank 1 threw");
  EXPECT_EQ(s.head_ranks(), 1);
}

TEST(Scheduler, ResumeSkipsInstancesDoneEarlier) {
  const auto wf = flow(
      "[[task]]\nname='a'\nfunction='f'\ncount=3\n"
      "[[task]]\nname='b'\nfunction='f'\nafter=['a']\n");
  Scheduler s(wf);
  s.mark_done_earlier(0);
  s.mark_done_earlier(2);
  s.start();
  EXPECT_EQ(drain(s), (std::vector<int>{1, 3}));
  EXPECT_TRUE(s.finished());
  EXPECT_TRUE(s.instance(0).from_earlier_run);
  EXPECT_FALSE(s.instance(1).from_earlier_run);
}

TEST(Scheduler, ResumeWithADependencyFullyDone) {
  const auto wf = flow(
      "[[task]]\nname='a'\nfunction='f'\n"
      "[[task]]\nname='b'\nfunction='f'\nafter=['a']\n");
  Scheduler s(wf);
  s.mark_done_earlier(0);
  s.start();
  EXPECT_EQ(drain(s), std::vector<int>{1});
}

TEST(Scheduler, CancelPendingLeavesHandedOutInstances) {
  const auto wf = flow("[[task]]\nname='a'\nfunction='f'\ncount=4\n");
  Scheduler s(wf);
  s.start();
  std::vector<int> got;
  std::vector<int> finals;
  s.take(1, 0, 1, got);
  s.cancel_pending("interrupted", 5, finals);
  EXPECT_EQ(finals.size(), 3u);
  EXPECT_EQ(s.count(TaskState::CANCELED), 3);
  EXPECT_FALSE(s.finished());
  s.report(0, 1, Outcome::canceled, 143, 1, 6, "stopped", finals);
  EXPECT_TRUE(s.finished());
  EXPECT_EQ(s.instance(0).state, TaskState::CANCELED);
}

// After --resume, an instance an earlier job FAILED (or CANCELED) runs again
// with its retries afresh, its attempts numbered on from the earlier ones,
// so that its output files are new ones (issue 35).
TEST(Scheduler, ARerunAfterAnEarlierFailureIsNumberedOnWithFreshRetries) {
  const auto wf = flow("[[task]]\nname='a'\nfunction='f'\nretries=1\n");
  Scheduler s(wf);
  s.number_after_earlier(0, 2);  // the earlier job used both its attempts
  s.start();
  std::vector<int> got;
  std::vector<int> finals;
  s.take(1, 0, 1, got);
  ASSERT_EQ(got, std::vector<int>{0});
  EXPECT_EQ(s.instance(0).attempt, 3);
  s.report(0, 3, Outcome::failed, 1, 1, 2, "boom", finals);
  EXPECT_EQ(s.instance(0).state, TaskState::NEW);  // retried: this job's retries are its own
  got.clear();
  s.take(1, 0, 1, got);
  EXPECT_EQ(s.instance(0).attempt, 4);
  s.report(0, 4, Outcome::failed, 1, 1, 2, "boom", finals);
  EXPECT_EQ(s.instance(0).state, TaskState::FAILED);
}

TEST(Scheduler, BackfillPassesOverTasksThatWaitForGpus) {
  const auto wf = flow(
      "[[task]]\nname='gpu'\ncommand=['true']\ncount=3\ngpus_per_task=1\npriority=9\n"
      "[[task]]\nname='mpi'\ncommand=['true']\nranks=2\npriority=5\n"
      "[[task]]\nname='cpu'\ncommand=['true']\ncount=4\n");
  Scheduler s(wf);
  s.start();
  std::vector<int> got;
  EXPECT_EQ(s.take(10, 0, 1, got), 0) << "the head waits for a GPU: take hands out nothing";
  EXPECT_EQ(s.head_task(), 0);
  EXPECT_EQ(s.take_backfill(3, 0, 1, got), 3);
  EXPECT_EQ(got, (std::vector<int>{4, 5, 6})) << "CPU tasks of one rank only, in order";
  EXPECT_EQ(s.head_task(), 0) << "the GPU task keeps its place";
  EXPECT_EQ(s.take_backfill(5, 1, 1, got), 1);
  EXPECT_EQ(s.take_backfill(5, 1, 1, got), 0);
  EXPECT_EQ(s.take_multi(2, 1, 1), 0) << "the GPU task goes when a GPU is free";
  EXPECT_EQ(s.instance(0).state, TaskState::SCHEDULED);
  EXPECT_EQ(s.instance(0).worker, 2);
}

TEST(Scheduler, BackfillSkipsInstancesNoLongerNew) {
  const auto wf = flow(
      "[[task]]\nname='gpu'\ncommand=['true']\ngpus_per_task=1\npriority=9\n"
      "[[task]]\nname='cpu'\ncommand=['true']\ncount=3\n");
  Scheduler s(wf);
  s.mark_done_earlier(1);  // cpu[0] finished in an earlier run
  s.start();
  std::vector<int> got;
  EXPECT_EQ(s.take_backfill(10, 0, 1, got), 2);
  EXPECT_EQ(got, (std::vector<int>{2, 3}));
}

// Adaptive workflows (issue 20): instances submitted while the run goes.
TEST(Scheduler, SubmittedInstancesRunAfterWhatTheyWaitFor) {
  const auto wf = flow(
      "[[task]]\nname='think'\nfunction='f'\n"
      "[[task]]\nname='sim'\nfunction='f'\ncount=2\n");
  Scheduler s(wf);
  s.start();
  std::vector<int> finals;
  std::vector<int> got;
  s.take(10, 0, 1, got);  // the thinker and the two sims run
  ASSERT_EQ(got.size(), 3u);
  // Round 1: two more sims; round 2: one that waits for both.
  const int a = s.submit({1, R"({"x":1})", 0, {}, "think[0]#0"}, 1, finals);
  const int b = s.submit({1, R"({"x":2})", 0, {}, "think[0]#1"}, 1, finals);
  const int c = s.submit({1, R"({"x":3})", 5, {a, b}, "think[0]#2"}, 1, finals);
  EXPECT_EQ(a, 3);
  EXPECT_EQ(s.instance(a).index, 2) << "after the task's own instances";
  EXPECT_EQ(s.instance(c).index, 4);
  EXPECT_EQ(*s.submitted_args(b), R"({"x":2})");
  EXPECT_EQ(s.submitted_args(0), nullptr);
  EXPECT_EQ(s.submit({1, "{}", 0, {}, "think[0]#1"}, 1, finals), b)
      << "the same key is the same instance";
  EXPECT_EQ(s.submitted_count(), 3);
  got.clear();
  s.take(10, 1, 1, got);
  EXPECT_EQ(got, (std::vector<int>{a, b})) << "c waits for a and b";
  s.report(a, 1, Outcome::done, 0, 2, 3, "", finals);
  got.clear();
  EXPECT_EQ(s.take(10, 1, 1, got), 0) << "c still waits for b";
  s.report(b, 1, Outcome::done, 0, 2, 3, "", finals);
  got.clear();
  s.take(10, 1, 1, got);
  EXPECT_EQ(got, std::vector<int>{c});
  for (int id : {0, 1, 2, c}) s.report(id, 1, Outcome::done, 0, 2, 3, "", finals);
  EXPECT_TRUE(s.finished());
  EXPECT_EQ(s.count(TaskState::DONE), 6);
}

TEST(Scheduler, ASubmittedInstanceWhoseDependencyFailsIsCanceled) {
  const auto wf = flow("[[task]]\nname='sim'\nfunction='f'\n");
  Scheduler s(wf);
  s.start();
  std::vector<int> finals;
  std::vector<int> got;
  s.take(10, 0, 1, got);
  const int a = s.submit({0, "{}", 0, {0}, ""}, 1, finals);
  const int b = s.submit({0, "{}", 0, {a}, ""}, 1, finals);
  s.report(0, 1, Outcome::failed, 3, 2, 3, "exit 3", finals);
  EXPECT_EQ(s.instance(0).state, TaskState::FAILED);
  EXPECT_EQ(s.instance(a).state, TaskState::CANCELED);
  EXPECT_EQ(s.instance(a).reason, "dependency sim[0] failed: exit 3");
  EXPECT_EQ(s.instance(b).state, TaskState::CANCELED) << "and what waits for it, in turn";
  // Submitted after its dependency failed: canceled at once.
  const int late = s.submit({0, "{}", 0, {0}, ""}, 1, finals);
  EXPECT_EQ(s.instance(late).state, TaskState::CANCELED);
  EXPECT_TRUE(s.finished());
  EXPECT_THROW(s.submit({0, "{}", 0, {99}, ""}, 1, finals), tandem::argument_error);
  EXPECT_THROW(s.submit({7, "{}", 0, {}, ""}, 1, finals), tandem::argument_error);
}
