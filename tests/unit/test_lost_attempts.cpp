// The black boxes of a job that died, read back: who is charged for what.

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "base/rank_record.hpp"
#include "job/lost_attempts.hpp"
#include "support/temp_dir.hpp"

using namespace tandem::detail;
namespace rr = tandem::detail::rank_record;
using tandem::test::TempDir;

namespace {

// A rank's page as the rank would have left it.
struct FakeRank {
  rr::Page page{};
  FakeRank(int rank, tandem::detail::Role role) {
    std::memcpy(page.magic, "TNDMREC1", 8);
    page.rank = rank;
    page.role = static_cast<std::int32_t>(role);
    std::strcpy(page.host, "node7");
  }
  FakeRank& running(int slot, const char* task, int index, int attempt,
                    rr::SlotKind kind = rr::kFunction) {
    rr::Slot& s = page.slots[slot];
    s.kind = kind;
    std::strcpy(s.task, task);
    s.index = index;
    s.attempt = attempt;
    return *this;
  }
  void write(const std::filesystem::path& dir) const {
    std::filesystem::create_directories(dir);
    const auto path = dir / ("rank-0000" + std::to_string(page.rank) + ".rec");
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, &page, sizeof page), static_cast<ssize_t>(sizeof page));
    ::close(fd);
  }
};

}  // namespace

TEST(LostAttempts, AFatalSignalChargesTheFunctionTaskOnThatRank) {
  TempDir dir;
  FakeRank crashed(2, tandem::detail::Role::worker);
  crashed.running(0, "simulate", 17, 1);
  crashed.page.fatal_signal = SIGSEGV;
  crashed.page.cause = rr::kFatalSignal;
  crashed.write(dir.path());
  FakeRank bystander(3, tandem::detail::Role::worker);
  bystander.running(0, "simulate", 18, 1);
  bystander.page.stop_signal = SIGTERM;  // the launcher stopped it
  bystander.write(dir.path());
  const auto lost = find_lost_attempts(dir.path().string());
  ASSERT_EQ(lost.size(), 1u);
  EXPECT_EQ(lost[0].task, "simulate");
  EXPECT_EQ(lost[0].index, 17);
  EXPECT_EQ(lost[0].attempt, 1);
  EXPECT_EQ(lost[0].reason,
            "worker rank 2 on node7 died with SIGSEGV while running simulate[17] (attempt 1)");
}

TEST(LostAttempts, ASilentRankIsChargedOnlyWhenOthersWereStopped) {
  TempDir dir;
  FakeRank killed(1, tandem::detail::Role::worker);
  killed.running(0, "sim", 4, 2);
  killed.write(dir.path());
  // Alone it could be a node lost with everything: nobody is charged.
  EXPECT_TRUE(find_lost_attempts(dir.path().string()).empty());
  FakeRank stopped(2, tandem::detail::Role::worker);
  stopped.page.stop_signal = SIGTERM;
  stopped.write(dir.path());
  const auto lost = find_lost_attempts(dir.path().string());
  ASSERT_EQ(lost.size(), 1u);
  EXPECT_EQ(lost[0].index, 4);
  EXPECT_EQ(lost[0].attempt, 2);
  EXPECT_NE(lost[0].reason.find("SIGKILL"), std::string::npos) << lost[0].reason;
}

TEST(LostAttempts, CommandTasksAndCleanRanksAreNotCharged) {
  TempDir dir;
  FakeRank worker(1, tandem::detail::Role::worker);
  worker.running(0, "cmd", 1, 1, rr::kCommand);  // its own process; the worker's crash is ours
  worker.page.fatal_signal = SIGABRT;
  worker.page.cause = rr::kFatalSignal;
  worker.write(dir.path());
  FakeRank clean(2, tandem::detail::Role::worker);
  clean.running(0, "sim", 1, 1);
  clean.page.ended_cleanly = 1;
  clean.write(dir.path());
  EXPECT_TRUE(find_lost_attempts(dir.path().string()).empty());
}

TEST(LostAttempts, AReplicaCrashChargesTheTasksWhoseRequestsWereInItsBatch) {
  TempDir dir;
  FakeRank replica(3, tandem::detail::Role::service);
  replica.page.fatal_signal = SIGSEGV;
  replica.page.cause = rr::kFatalSignal;
  replica.page.batch_clients = 1;
  replica.page.clients[0] = 1;
  replica.write(dir.path());
  FakeRank client(1, tandem::detail::Role::worker);
  client.running(0, "ask", 5, 1);
  client.page.stop_signal = SIGTERM;
  client.write(dir.path());
  FakeRank other(2, tandem::detail::Role::worker);
  other.running(0, "ask", 6, 1);
  other.page.stop_signal = SIGTERM;
  other.write(dir.path());
  const auto lost = find_lost_attempts(dir.path().string());
  ASSERT_EQ(lost.size(), 1u);
  EXPECT_EQ(lost[0].index, 5);
  EXPECT_NE(lost[0].reason.find("service replica rank 3"), std::string::npos) << lost[0].reason;
}

// A request on the direct path names its task's process: of the command
// tasks its worker was running, only that one is charged, and one stopped
// as the job went down (its worker ended cleanly) still is.
TEST(LostAttempts, ADirectPathRequestChargesOnlyTheTaskThatSentIt) {
  TempDir dir;
  FakeRank replica(3, tandem::detail::Role::service);
  replica.page.fatal_signal = SIGSEGV;
  replica.page.cause = rr::kFatalSignal;
  replica.page.batch_clients = 2;
  replica.page.clients[0] = 1;
  replica.page.client_pids[0] = 4242;
  replica.page.clients[1] = 2;
  replica.page.client_pids[1] = 0;  // through the proxy: the worker's tasks
  replica.write(dir.path());
  FakeRank client(1, tandem::detail::Role::worker);
  client.running(0, "sim", 5, 1, rr::kCommand).page.slots[0].pid = 4141;
  client.running(1, "sim", 6, 2, rr::kCommand).page.slots[1].pid = 4242;
  client.page.stop_signal = SIGTERM;
  client.page.ended_cleanly = 1;
  client.write(dir.path());
  FakeRank other(2, tandem::detail::Role::worker);
  other.running(0, "sim", 7, 1, rr::kCommand).page.slots[0].pid = 4343;
  other.running(1, "sim", 8, 1, rr::kCommand).page.slots[1].pid = 4444;
  other.page.stop_signal = SIGTERM;
  other.write(dir.path());
  auto lost = find_lost_attempts(dir.path().string());
  ASSERT_EQ(lost.size(), 3u);
  std::sort(lost.begin(), lost.end(),
            [](const LostAttempt& a, const LostAttempt& b) { return a.index < b.index; });
  EXPECT_EQ(lost[0].index, 6);
  EXPECT_EQ(lost[0].attempt, 2);
  EXPECT_EQ(lost[1].index, 7);
  EXPECT_EQ(lost[2].index, 8);
}

TEST(LostAttempts, ChargingWritesJournalLinesOnceAndRemovesThePages) {
  TempDir dir;
  FakeRank crashed(2, tandem::detail::Role::worker);
  crashed.running(0, "sim", 9, 1);
  crashed.page.cause = rr::kExitInTask;
  crashed.write(dir.path() / "ranks");
  const std::string journal = (dir.path() / "journal.jsonl").string();
  std::ofstream(journal)
      << "{\"task\":\"sim\",\"index\":0,\"state\":\"DONE\",\"attempts\":1}\n{\"to";
  EXPECT_EQ(charge_lost_attempts((dir.path() / "ranks").string(), journal).size(), 1u);
  EXPECT_TRUE(std::filesystem::is_empty(dir.path() / "ranks"));
  // The same pages again (a job that died before removing them): no second charge.
  crashed.write(dir.path() / "ranks");
  charge_lost_attempts((dir.path() / "ranks").string(), journal);
  std::ifstream in(journal);
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  ASSERT_EQ(lines.size(), 2u);  // the torn line was cut, one charge added
  EXPECT_NE(lines[1].find("\"lost\":true"), std::string::npos);
  EXPECT_NE(lines[1].find("exit()"), std::string::npos) << lines[1];
}
