// The journal: lines a resumed run can read back, a torn last line, lost
// attempts, and a journal that cannot be written.

#include <gtest/gtest.h>

#include <fstream>

#include "config/workflow.hpp"
#include "coordinator/journal.hpp"
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
