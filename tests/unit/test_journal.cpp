// The journal: lines a resumed run can read back, a torn last line, lost
// attempts, and a journal that cannot be written.

#include <gtest/gtest.h>

#include <fstream>

#include "config/workflow.hpp"
#include "coordinator/journal.hpp"
#include "coordinator/submissions.hpp"
#include "support/temp_dir.hpp"

using namespace tandem::detail;
using tandem::test::TempDir;

namespace {

Workflow three_sims() {
  return parse_workflow("[[task]]\nname='sim'\nfunction='f'\ncount=3\n", "/x/wf.toml", false);
}

Instance done_instance(int index) {
  Instance inst;
  inst.task = 0;
  inst.index = index;
  inst.attempt = 1;
  inst.state = TaskState::DONE;
  return inst;
}

std::vector<std::string> lines_of(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}

}  // namespace

TEST(Journal, WritesAndReadsBackFinalStates) {
  TempDir dir;
  const auto wf = three_sims();
  const std::string path = (dir.path() / "journal.jsonl").string();
  {
    Journal j(path, wf, 0);
    j.append(done_instance(0));
    Instance failed = done_instance(2);
    failed.state = TaskState::FAILED;
    failed.reason = "exited with code 3 \"quoted\"\n";
    j.append(failed);
    EXPECT_TRUE(j.flush());
  }
  std::ofstream(path, std::ios::app) << "{\"task\":\"sim\",\"ind";  // torn by a crash
  const auto entries = read_journal(path);
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries.at({"sim", 0}).state, TaskState::DONE);
  EXPECT_EQ(entries.at({"sim", 2}).state, TaskState::FAILED);
  EXPECT_EQ(entries.at({"sim", 2}).reason, "exited with code 3 \"quoted\"\n");
}

TEST(Journal, CutsATornLastLineBeforeAppending) {
  TempDir dir;
  const auto wf = three_sims();
  const std::string path = (dir.path() / "journal.jsonl").string();
  std::ofstream(path) << "{\"task\":\"sim\",\"index\":0,\"state\":\"DONE\",\"attempts\":1}\n"
                      << "{\"task\":\"sim\",\"ind";
  {
    Journal j(path, wf, 0.01);  // with group commit on
    j.append(done_instance(1));
    EXPECT_TRUE(j.close());
  }
  const auto lines = lines_of(path);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_NE(lines[1].find("\"index\":1"), std::string::npos) << lines[1];
  EXPECT_EQ(read_journal(path).size(), 2u);
}

TEST(Journal, CountsLostAttemptsAgainstAnInstance) {
  TempDir dir;
  const std::string path = (dir.path() / "journal.jsonl").string();
  std::ofstream(path)
      << "{\"task\":\"sim\",\"index\":1,\"lost\":true,\"attempt\":1,\"reason\":\"rank 2 died\"}\n"
      << "{\"task\":\"sim\",\"index\":1,\"lost\":true,\"attempt\":2,\"reason\":\"rank 3 died\"}\n"
      << "{\"task\":\"sim\",\"index\":0,\"state\":\"DONE\",\"attempts\":1}\n";
  const auto entries = read_journal(path);
  const JournalEntry& poison = entries.at({"sim", 1});
  EXPECT_FALSE(poison.state.has_value());
  EXPECT_EQ(poison.lost, 2);
  EXPECT_EQ(poison.attempts, 2);
  EXPECT_EQ(poison.reason, "rank 3 died");
  EXPECT_EQ(entries.at({"sim", 0}).lost, 0);
}

TEST(Journal, AWriteErrorIsReportedAndNothingMoreIsTaken) {
  const auto wf = three_sims();
  // Every write to /dev/full fails with ENOSPC, as on a full disk.
  Journal j("/dev/full", wf, 0);
  j.append(done_instance(0));
  j.append(done_instance(1));
  EXPECT_FALSE(j.flush());
  EXPECT_TRUE(j.failed());
  EXPECT_NE(j.failure().find("/dev/full"), std::string::npos) << j.failure();
  EXPECT_NE(j.failure().find("No space left"), std::string::npos) << j.failure();
  EXPECT_EQ(j.unrecorded(), 2);
  j.append(done_instance(2));
  EXPECT_FALSE(j.flush());
  EXPECT_EQ(j.unrecorded(), 3);
}

// The write can also fail in append, when the buffer is full and must be
// flushed to make room: that line counts as unrecorded too, so that the
// count the coordinator reports is what a resume runs again.
TEST(Journal, EveryLineIsCountedWhenTheBufferFillsOnAFullDisk) {
  const auto wf = three_sims();
  Journal j("/dev/full", wf, 0);
  constexpr long long kLines = 50000;  // several buffers' worth
  for (long long i = 0; i < kLines; ++i) j.append(done_instance(static_cast<int>(i % 3)));
  EXPECT_TRUE(j.failed()) << "a full buffer was flushed, and failed";
  EXPECT_FALSE(j.flush());
  EXPECT_EQ(j.unrecorded(), kLines);
}

// Adaptive workflows (issue 20): submissions are journaled before they are
// acknowledged, and a resumed run adds the same instances again, waiting for
// the same ones, before the earlier jobs' final states are applied.
TEST(Journal, SubmissionsAreDurableAndReplayedInOrder) {
  TempDir dir;
  const auto wf = parse_workflow(
      "[[task]]\nname='think'\nfunction='f'\n[[task]]\nname='sim'\nfunction='f'\ncount=2\n",
      "/x/wf.toml", false);
  const std::string path = (dir.path() / "journal.jsonl").string();
  {
    Journal j(path, wf, 0);
    std::string lines;
    lines += submission_line({"think[0]#0", "sim", 2, 0, {}, R"({"x":1})"});
    lines += submission_line(
        {"think[0]#1", "sim", 3, 7, {{"sim", 2}, {"sim", 0}}, "{}", {"think", 0}, 2, 1234});
    EXPECT_TRUE(j.write_durably(lines));
    Instance first;
    first.task = 1;
    first.index = 2;
    first.attempt = 1;
    first.state = TaskState::DONE;
    j.append(first);  // the first submitted one finished
    EXPECT_TRUE(j.flush());
  }
  std::ofstream(path, std::ios::app) << "{\"submitted\":\"think[0]#2\",\"ta";  // torn by a crash
  const std::vector<SubmissionRecord> records = read_submissions(path);
  ASSERT_EQ(records.size(), 2u) << "the torn one was never acknowledged";
  EXPECT_EQ(records[1].after, (std::vector<std::pair<std::string, int>>{{"sim", 2}, {"sim", 0}}));
  EXPECT_EQ(records[0].args_json, R"({"x":1})");
  // Who submitted it, in which call and when: the report's rounds.
  EXPECT_EQ(records[1].by, (std::pair<std::string, int>{"think", 0}));
  EXPECT_EQ(records[1].call, 2);
  EXPECT_EQ(records[1].at_us, 1234);
  EXPECT_EQ(records[1].retries, -1) << "the task's, when not given";
  {
    SubmissionRecord own{"think[0]#9", "sim", 2, 0, {}, "{}", {"think", 0}, 3, 5};
    own.after_tasks = {"think"};
    own.retries = 2;
    own.timeout_s = 1.5;
    const std::string other = (dir.path() / "other.jsonl").string();
    std::ofstream(other) << submission_line(own);
    const std::vector<SubmissionRecord> back = read_submissions(other);
    ASSERT_EQ(back.size(), 1u);
    EXPECT_EQ(back[0].after_tasks, std::vector<std::string>{"think"});
    EXPECT_EQ(back[0].retries, 2);
    EXPECT_DOUBLE_EQ(back[0].timeout_s, 1.5);
    // Replayed, it waits for every instance of `think` there is then.
    Scheduler alone(wf);
    std::vector<int> none;
    EXPECT_TRUE(replay_submissions(alone, wf, back, none).empty());
    EXPECT_EQ(alone.retries_of(alone.size() - 1), 2);
    EXPECT_DOUBLE_EQ(alone.submitted_timeout(alone.size() - 1), 1.5);
    EXPECT_EQ(alone.instances_of(1), (std::vector<int>{1, 2, 3}));
  }
  // read_journal takes only final states; submissions are not among them.
  const auto entries = read_journal(path);
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries.at({"sim", 2}).state, TaskState::DONE);

  // The resume: the same ids, the old handles for the old keys.
  Scheduler s(wf);
  std::vector<int> finals;
  EXPECT_TRUE(replay_submissions(s, wf, records, finals).empty());
  ASSERT_EQ(s.size(), 5);
  EXPECT_EQ(s.find(1, 2), 3);
  EXPECT_EQ(s.find(1, 3), 4);
  EXPECT_EQ(*s.submitted_args(3), R"({"x":1})");
  s.mark_done_earlier(s.find(1, 2));
  s.start();
  EXPECT_EQ(s.submit({1, "{}", 0, {}, "think[0]#0"}, 1, finals), 3)
      << "a rerun thinker gets its handle back, not a second instance";
  std::vector<int> got;
  s.take(10, 0, 1, got);
  EXPECT_EQ(got, (std::vector<int>{0, 1, 2})) << "sim[3] still waits for sim[0]";
  s.report(1, 1, Outcome::done, 0, 2, 3, "", finals);
  got.clear();
  s.take(10, 0, 1, got);
  EXPECT_EQ(got, std::vector<int>{4});
}

TEST(Journal, ReplayStopsAtATaskTheWorkflowNoLongerHas) {
  const auto wf = parse_workflow("[[task]]\nname='sim'\nfunction='f'\n", "/x/wf.toml", false);
  Scheduler s(wf);
  std::vector<int> finals;
  const auto notes = replay_submissions(
      s, wf, {{"a", "gone", 0, 0, {}, "{}"}, {"b", "sim", 1, 0, {}, "{}"}}, finals);
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_NE(notes[0].find("task 'gone', which the workflow no longer has"), std::string::npos)
      << notes[0];
  EXPECT_EQ(s.size(), 1) << "nothing after it is added, so no id shifts";
}
