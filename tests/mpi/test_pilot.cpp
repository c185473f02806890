// The pilot end to end under mpiexec: every rank calls run_workflow on a
// workflow written for the test; rank 0 checks the run directory.

#include <gtest/gtest.h>
#include <mpi.h>

#include <climits>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "support/temp_dir.hpp"
#include "tandem/tandem.hpp"

namespace fs = std::filesystem;
using nlohmann::json;
using tandem::test::slurp;

namespace {

int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

int world_size() {
  int n = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

// A directory shared by all ranks of the test (they are on one node).
class SharedDir {
 public:
  SharedDir() {
    std::string path;
    if (world_rank() == 0) {
      dir_ = std::make_unique<tandem::test::TempDir>();
      path = dir_->path().string();
    }
    int n = static_cast<int>(path.size());
    MPI_Bcast(&n, 1, MPI_INT, 0, MPI_COMM_WORLD);
    path.resize(n);
    MPI_Bcast(path.data(), n, MPI_CHAR, 0, MPI_COMM_WORLD);
    path_ = path;
  }
  ~SharedDir() { MPI_Barrier(MPI_COMM_WORLD); }
  const fs::path& path() const { return path_; }

 private:
  std::unique_ptr<tandem::test::TempDir> dir_;
  fs::path path_;
};

struct RunResult {
  int code = -1;
  fs::path dir;
  json summary;
  std::map<std::pair<std::string, int>, json> journal;  // the last line per instance
  int journal_lines = 0;
  int submissions = 0;  // "submitted" lines (adaptive workflows)
};

// Writes the workflow (with the test task library) and runs it on all ranks.
RunResult run_flow(const SharedDir& shared, const std::string& body, bool resume = false,
                   const std::string& name = "wf") {
  const fs::path file = shared.path() / (name + ".toml");
  if (world_rank() == 0) {
    std::ofstream(file) << "[job]\nname = \"" << name << "\"\nlibraries = [\""
                        << TANDEM_TEST_TASKS_LIB << "\"]\n"
                        << body;
  }
  MPI_Barrier(MPI_COMM_WORLD);
  tandem::RunOptions opts;
  opts.workflow = file.string();
  opts.run_dir = (shared.path() / ("run-" + name)).string();
  opts.resume = resume;
  opts.log_level = "warn";
  RunResult run;
  run.code = tandem::run_workflow(MPI_COMM_WORLD, opts);
  run.dir = opts.run_dir;
  if (world_rank() == 0 && fs::exists(run.dir / "summary.json")) {
    run.summary = json::parse(slurp(run.dir / "summary.json"));
    std::ifstream in(run.dir / "journal.jsonl");
    for (std::string line; std::getline(in, line);) {
      const json j = json::parse(line);
      if (j.contains("submitted")) {
        ++run.submissions;
        continue;
      }
      run.journal[{j["task"].get<std::string>(), j["index"].get<int>()}] = j;
      ++run.journal_lines;
    }
  }
  return run;
}

int workers() {
  return world_size() - 1;
}

}  // namespace

TEST(Pilot, ManyTasksAllDoneAndJournaled) {
  SharedDir shared;
  const RunResult run = run_flow(shared, R"(
[[task]]
name = "null"
function = "tandem.null"
count = 3000
[[task]]
name = "rec"
function = "test_record"
count = 40
args = { tag = "hello" }
)");
  EXPECT_EQ(run.code, 0);
  if (world_rank() != 0) return;
  EXPECT_EQ(run.summary["tasks"]["done"], 3040);
  EXPECT_EQ(run.summary["tasks"]["failed"], 0);
  EXPECT_EQ(run.summary["workers"], workers());
  EXPECT_EQ(run.journal_lines, 3040);
  for (int i = 0; i < 40; ++i) {
    EXPECT_EQ(slurp(run.dir / "tasks" / "rec" / ("rec." + std::to_string(i))),
              std::to_string(i) + " 1 hello\n");
  }
  for (const auto& [key, line] : run.journal) {
    EXPECT_EQ(line["state"], "DONE");
    EXPECT_LE(line["scheduled_us"].get<std::int64_t>(), line["started_us"].get<std::int64_t>());
    EXPECT_LE(line["started_us"].get<std::int64_t>(), line["ended_us"].get<std::int64_t>());
  }
  EXPECT_TRUE(fs::exists(run.dir / "workflow.resolved.toml"));
  EXPECT_TRUE(fs::exists(run.dir / "logs" / "rank-00000.log"));
  EXPECT_TRUE(fs::exists(run.dir / "logs" / ("rank-" + [] {
                           char b[8];
                           std::snprintf(b, sizeof b, "%05d", world_size() - 1);
                           return std::string(b);
                         }() + ".log")));
}

TEST(Pilot, RolesFollowTheLayoutAndEveryRankLogsItsRole) {
  SharedDir shared;
  // One worker; any further rank has no role and waits, sleeping, to the end.
  const RunResult run = run_flow(shared,
                                 "[layout]\nworkers = 1\n[[task]]\nname='rec'\n"
                                 "function='test_record'\ncount=5\n");
  EXPECT_EQ(run.code, 0);
  if (world_rank() != 0) return;
  EXPECT_EQ(run.summary["workers"], 1);
  for (const auto& [key, line] : run.journal) EXPECT_EQ(line["worker"], 0);
  for (int r = 0; r < world_size(); ++r) {
    char name[32];
    std::snprintf(name, sizeof name, "rank-%05d.log", r);
    const std::string role = r == 0 ? "coordinator" : r == 1 ? "worker" : "idle";
    const std::string log = slurp(run.dir / "logs" / name);
    EXPECT_NE(log.find("[rank " + std::to_string(r) + " " + role + "]"), std::string::npos)
        << name << ":\n"
        << log;
  }
}

TEST(Pilot, WorkSpreadsOverEveryWorker) {
  SharedDir shared;
  const RunResult run =
      run_flow(shared, "[[task]]\nname='nap'\nfunction='tandem.sleep'\ncount=" +
                           std::to_string(4 * workers()) + "\nargs = { seconds = 0.05 }\n");
  EXPECT_EQ(run.code, 0);
  if (world_rank() != 0) return;
  std::map<int, int> per_worker;
  for (const auto& [key, line] : run.journal) ++per_worker[line["worker"].get<int>()];
  EXPECT_EQ(static_cast<int>(per_worker.size()), workers());
  EXPECT_GT(run.summary["worker_utilisation"].get<double>(), 0.3);
}

TEST(Pilot, MultiRankTasksGetTheirOwnCommunicator) {
  SharedDir shared;
  const int width = workers();
  const RunResult run = run_flow(shared,
                                 "[[task]]\nname='wide'\nfunction='test_collective'\ncount=3\n"
                                 "ranks=" +
                                     std::to_string(width) +
                                     "\n[[task]]\nname='narrow'\nfunction='tandem.null'\n"
                                     "count=20\n");
  EXPECT_EQ(run.code, 0);
  if (world_rank() != 0) return;
  for (int i = 0; i < 3; ++i) {
    const std::string seen =
        slurp(run.dir / "tasks" / "wide" / ("collective." + std::to_string(i)));
    EXPECT_EQ(seen.substr(0, seen.find('\n') + 1),  // then one "host H" line per rank
              std::to_string(width) + " " + std::to_string(width) + "\n");
  }
  EXPECT_EQ(run.summary["tasks"]["done"], 23);
}

TEST(Pilot, CommandTasksOutputsExitCodesAndTimeouts) {
  SharedDir shared;
  const RunResult run = run_flow(shared, R"(
[[task]]
name = "echo"
command = ["/bin/sh", "-c", "echo task {index} of {count} $TANDEM_TASK_NAME; echo err >&2"]
count = 3
[[task]]
name = "exit3"
command = ["/bin/sh", "-c", "exit 3"]
[[task]]
name = "segv"
command = ["/bin/sh", "-c", "kill -SEGV $$"]
[[task]]
name = "slow"
command = ["/bin/sleep", "30"]
timeout = 0.5
)");
  EXPECT_EQ(run.code, 1);
  if (world_rank() != 0) return;
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(slurp(run.dir / "tasks" / "echo" / (std::to_string(i) + ".out")),
              "task " + std::to_string(i) + " of 3 echo\n");
    EXPECT_EQ(slurp(run.dir / "tasks" / "echo" / (std::to_string(i) + ".err")), "err\n");
  }
  const json& exit3 = run.journal.at({"exit3", 0});
  EXPECT_EQ(exit3["state"], "FAILED");
  EXPECT_EQ(exit3["exit_code"], 3);
  EXPECT_EQ(exit3["reason"], "exited with code 3");
  const json& segv = run.journal.at({"segv", 0});
  EXPECT_EQ(segv["state"], "FAILED");
  EXPECT_EQ(segv["exit_code"], 128 + 11);
  EXPECT_NE(segv["reason"].get<std::string>().find("signal 11"), std::string::npos);
  const json& slow = run.journal.at({"slow", 0});
  EXPECT_EQ(slow["state"], "FAILED");
  EXPECT_NE(slow["reason"].get<std::string>().find("timed out after 0.5 s"), std::string::npos);
  EXPECT_LT(slow["ended_us"].get<std::int64_t>() - slow["started_us"].get<std::int64_t>(),
            10'000'000);
  EXPECT_EQ(run.summary["tasks"]["done"], 3);
  EXPECT_EQ(run.summary["tasks"]["failed"], 3);
}

TEST(Pilot, WorkerSlotsRunCommandsSideBySide) {
  SharedDir shared;
  // Every worker gets three slots; 3 x workers sleeps of 0.6 s take one round.
  const RunResult run = run_flow(shared,
                                 "[layout]\nworker_slots = 3\n[[task]]\nname='nap'\n"
                                 "command=['/bin/sleep', '0.6']\ncount=" +
                                     std::to_string(3 * workers()) + "\n");
  EXPECT_EQ(run.code, 0);
  if (world_rank() != 0) return;
  EXPECT_EQ(run.summary["worker_slots"], 3);
  EXPECT_LT(run.summary["makespan_s"].get<double>(), 1.6) << "the slots did not overlap";
  // At some moment three tasks ran on the same worker.
  std::map<int, std::vector<std::pair<std::int64_t, std::int64_t>>> spans;
  for (const auto& [key, line] : run.journal) {
    spans[line["worker"].get<int>()].emplace_back(line["started_us"].get<std::int64_t>(),
                                                  line["ended_us"].get<std::int64_t>());
  }
  int most = 0;
  for (const auto& [w, list] : spans) {
    for (const auto& [s0, e0] : list) {
      int overlapping = 0;
      for (const auto& [s1, e1] : list) overlapping += (s1 <= s0 && s0 < e1);
      most = std::max(most, overlapping);
    }
  }
  EXPECT_EQ(most, 3);
}

TEST(Pilot, RetriesAndFunctionFailures) {
  SharedDir shared;
  const RunResult run = run_flow(shared, R"(
[[task]]
name = "flaky"
function = "test_flaky"
retries = 2
args = { succeed_on = 3 }
[[task]]
name = "doomed"
function = "tandem.fail"
retries = 1
args = { message = "no convergence" }
[[task]]
name = "weird"
function = "test_throw_int"
[[task]]
name = "exported"
function = "test_exported"
)");
  EXPECT_EQ(run.code, 1);
  if (world_rank() != 0) return;
  EXPECT_EQ(run.journal.at({"flaky", 0})["state"], "DONE");
  EXPECT_EQ(run.journal.at({"flaky", 0})["attempts"], 3);
  const json& doomed = run.journal.at({"doomed", 0});
  EXPECT_EQ(doomed["state"], "FAILED");
  EXPECT_EQ(doomed["attempts"], 2);
  EXPECT_NE(doomed["reason"].get<std::string>().find("no convergence"), std::string::npos);
  EXPECT_NE(run.journal.at({"weird", 0})["reason"].get<std::string>().find("not a std::exception"),
            std::string::npos);
  EXPECT_EQ(run.journal.at({"exported", 0})["state"], "DONE");
  EXPECT_EQ(slurp(run.dir / "tasks" / "exported" / "exported.0"), "ok\n");
}

TEST(Pilot, DependenciesOrderTasksAndFailuresCancelDownstream) {
  SharedDir shared;
  const RunResult run = run_flow(shared, R"(
[[task]]
name = "a"
function = "tandem.sleep"
count = 3
args = { seconds = 0.02 }
[[task]]
name = "b"
function = "tandem.null"
count = 2
after = ["a"]
[[task]]
name = "broken"
command = ["/bin/false"]
[[task]]
name = "downstream"
function = "tandem.null"
after = ["broken", "b"]
)");
  EXPECT_EQ(run.code, 1);
  if (world_rank() != 0) return;
  std::int64_t a_end = 0;
  for (int i = 0; i < 3; ++i) {
    a_end = std::max(a_end, run.journal.at({"a", i})["ended_us"].get<std::int64_t>());
  }
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(run.journal.at({"b", i})["state"], "DONE");
    EXPECT_GE(run.journal.at({"b", i})["started_us"].get<std::int64_t>(), a_end);
  }
  const json& down = run.journal.at({"downstream", 0});
  EXPECT_EQ(down["state"], "CANCELED");
  EXPECT_NE(down["reason"].get<std::string>().find("dependency 'broken' failed"),
            std::string::npos);
}

TEST(Pilot, ResumeRunsOnlyWhatDidNotFinish) {
  SharedDir shared;
  const std::string flow = R"(
[[task]]
name = "count"
command = ["/bin/sh", "-c", "echo x >> {run_dir}/ran.{index}"]
count = 4
[[task]]
name = "gate"
command = ["/bin/sh", "-c", "test -f {run_dir}/open"]
[[task]]
name = "after_gate"
command = ["/bin/sh", "-c", "echo x >> {run_dir}/after"]
after = ["gate"]
)";
  const RunResult first = run_flow(shared, flow, false, "resume");
  EXPECT_EQ(first.code, 1);
  if (world_rank() == 0) {
    EXPECT_EQ(first.journal.at({"gate", 0})["state"], "FAILED");
    EXPECT_EQ(first.journal.at({"after_gate", 0})["state"], "CANCELED");
    std::ofstream(first.dir / "open") << "";
  }
  MPI_Barrier(MPI_COMM_WORLD);
  const RunResult second = run_flow(shared, flow, true, "resume");
  EXPECT_EQ(second.code, 0);
  if (world_rank() != 0) return;
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(slurp(second.dir / ("ran." + std::to_string(i))), "x\n") << "instance " << i;
  }
  EXPECT_EQ(slurp(second.dir / "after"), "x\n");
  EXPECT_EQ(second.summary["tasks"]["done_earlier"], 4);
  EXPECT_EQ(second.summary["tasks"]["done"], 6);
  EXPECT_EQ(second.journal.at({"gate", 0})["state"], "DONE");
}

TEST(Pilot, FunctionTasksReachServicesThroughTheirContext) {
  if (world_size() < 3) GTEST_SKIP() << "needs a service rank and a worker";
  SharedDir shared;
  const RunResult run = run_flow(shared, R"(
[[service]]
name = "double"
backend = "scale"
factor = 2.0
inputs = [{ name = "x", dtype = "FP32", shape = [-1, 4] }]
outputs = [{ name = "y", dtype = "FP32", shape = [-1, 4] }]
[[task]]
name = "ask"
function = "test_infer"
count = 6
args = { service = "double", factor = 2.0, requests = 20, rows = 3 }
)");
  EXPECT_EQ(run.code, 0);
  if (world_rank() != 0) return;
  for (int i = 0; i < 6; ++i) {
    const std::string said = slurp(run.dir / "tasks" / "ask" / ("infer." + std::to_string(i)));
    EXPECT_EQ(said.substr(0, said.find('\n') + 1), "ok 20\n");  // then "host H"
  }
  const json& svc = run.summary["services"]["double"];
  EXPECT_EQ(svc["requests"], 120);
  EXPECT_EQ(svc["rows"], 360);
  EXPECT_EQ(svc["replicas"][0]["state"], "STOPPED");
}

TEST(Pilot, BadWorkflowFailsOnEveryRankBeforeAnythingRuns) {
  SharedDir shared;
  const RunResult run =
      run_flow(shared, "[[task]]\nname='x'\nfunction='not_registered_anywhere'\n", false, "bad");
  EXPECT_EQ(run.code, 2);
  if (world_rank() == 0) {
    EXPECT_FALSE(fs::exists(run.dir / "journal.jsonl"));
  }
}

TEST(Pilot, ExistingRunDirectoryIsNotOverwritten) {
  SharedDir shared;
  const std::string flow = "[[task]]\nname='n'\nfunction='tandem.null'\n";
  EXPECT_EQ(run_flow(shared, flow, false, "twice").code, 0);
  EXPECT_EQ(run_flow(shared, flow, false, "twice").code, 2);
}

// Adaptive workflows (issue 20): a steering task submits 10 rounds of 100
// tasks, each round waiting for the one before; every instance runs exactly
// once, after its round's predecessors, and every submission is journaled.
TEST(Pilot, ASteeringTaskSubmitsRoundsAndWaitsForThem) {
  if (world_size() < 3) GTEST_SKIP() << "needs the thinker's worker and another";
  SharedDir shared;
  const RunResult run = run_flow(shared, R"(
[[task]]
name = "think"
function = "test_thinker"
steering = true
args = { rounds = 10, per_round = 100 }
[[task]]
name = "sim"
function = "test_sim_value"
count = 0
)",
                                 false, "adaptive");
  EXPECT_EQ(run.code, 0);
  if (world_rank() != 0) return;
  EXPECT_EQ(run.submissions, 1000);
  EXPECT_EQ(run.summary["tasks"]["done"], 1001);
  // 100 * 1000 * (0 + ... + 9) + 10 * (0 + ... + 99)
  EXPECT_EQ(run.journal.at({"think", 0})["result"], 4549500);
  std::map<int, std::pair<long long, long long>> span;  // round -> (first start, last end)
  for (int i = 0; i < 1000; ++i) {
    EXPECT_EQ(slurp(run.dir / "tasks" / "sim" / ("ran." + std::to_string(i))), "x\n")
        << "sim[" << i << "] ran exactly once";
    const json& j = run.journal.at({"sim", i});
    EXPECT_EQ(j["state"], "DONE");
    auto& s = span.try_emplace(i / 100, LLONG_MAX, 0).first->second;
    s.first = std::min(s.first, j["started_us"].get<long long>());
    s.second = std::max(s.second, j["ended_us"].get<long long>());
  }
  for (int r = 1; r < 10; ++r) {
    EXPECT_GE(span[r].first, span[r - 1].second) << "round " << r << " waited for round " << r - 1;
  }
}

TEST(Pilot, BadSubmissionsAreErrorsAtSubmit) {
  if (world_size() < 3) GTEST_SKIP() << "needs the thinker's worker and another";
  SharedDir shared;
  const RunResult run = run_flow(shared, R"(
[[task]]
name = "bad"
function = "test_bad_submitter"
steering = true
[[task]]
name = "sim"
function = "test_sim_value"
count = 0
)",
                                 false, "badsubmit");
  EXPECT_EQ(run.code, 0);
  if (world_rank() != 0) return;
  const std::string errors = slurp(run.dir / "tasks" / "bad" / "errors");
  EXPECT_NE(errors.find("the workflow has no task 'no_such_task' (it has: bad, sim)"),
            std::string::npos)
      << errors;
  EXPECT_NE(errors.find("waits for handle 123456, which does not exist"), std::string::npos)
      << errors;
  EXPECT_NE(errors.find("a task cannot wait for its own end"), std::string::npos) << errors;
  EXPECT_EQ(run.submissions, 0);
}

// The thinker fails after round 4, with round 5 submitted; its children go
// on. The resumed thinker submits in the same order, gets its old handles
// back by key, and only rounds 6-9 are new: nothing runs twice, nothing is
// lost, and no submission is journaled twice.
TEST(Pilot, AResumedSteeringTaskSubmitsNothingTwice) {
  if (world_size() < 3) GTEST_SKIP() << "needs the thinker's worker and another";
  SharedDir shared;
  const std::string flow = R"(
[[task]]
name = "think"
function = "test_thinker"
steering = true
args = { rounds = 10, per_round = 20, fail_after_round = 4 }
[[task]]
name = "sim"
function = "test_sim_value"
count = 0
)";
  const RunResult first = run_flow(shared, flow, false, "resumed");
  EXPECT_EQ(first.code, 1);
  if (world_rank() == 0) {
    EXPECT_EQ(first.journal.at({"think", 0})["state"], "FAILED");
    EXPECT_EQ(first.submissions, 120) << "rounds 0-5";
    EXPECT_EQ(first.journal.at({"sim", 119})["state"], "DONE") << "round 5 went on";
  }
  MPI_Barrier(MPI_COMM_WORLD);
  const RunResult second = run_flow(shared, flow, true, "resumed");
  EXPECT_EQ(second.code, 0);
  if (world_rank() != 0) return;
  EXPECT_EQ(second.submissions, 200) << "rounds 6-9 added, none twice";
  // 20 * 1000 * (0 + ... + 9) + 10 * (0 + ... + 19)
  EXPECT_EQ(second.journal.at({"think", 0})["result"], 901900);
  for (int i = 0; i < 200; ++i) {
    EXPECT_EQ(slurp(second.dir / "tasks" / "sim" / ("ran." + std::to_string(i))), "x\n")
        << "sim[" << i << "] ran exactly once over both jobs";
  }
  EXPECT_EQ(second.summary["tasks"]["done_earlier"], 120);
}

// A submitter past its outstanding_cap waits in submit and loses nothing.
TEST(Pilot, ASubmitterPastItsCapWaits) {
  if (world_size() < 3) GTEST_SKIP() << "needs the submitter's worker and another";
  SharedDir shared;
  const RunResult run = run_flow(shared, R"(
[[task]]
name = "submit"
function = "test_submit_calls"
steering = true
outstanding_cap = 10
args = { calls = 3, per_call = 10, child = "nap" }
[[task]]
name = "nap"
function = "tandem.sleep"
count = 0
args = { seconds = 0.1 }
)",
                                 false, "capped");
  EXPECT_EQ(run.code, 0);
  if (world_rank() != 0) return;
  EXPECT_EQ(run.summary["tasks"]["done"], 31);
  std::ifstream in(run.dir / "tasks" / "submit" / "calls");
  std::vector<double> seconds;
  for (double s = 0; in >> s;) seconds.push_back(s);
  ASSERT_EQ(seconds.size(), 3u);
  EXPECT_LT(seconds[0], 0.1) << "the first call fits";
  // 10 naps of 0.1 s on the other workers must end before 10 more fit.
  const double one_round = 0.1 * std::ceil(10.0 / (world_size() - 2));
  EXPECT_GE(seconds[1], 0.8 * one_round) << "the second waited for the first ten";
  EXPECT_GE(seconds[2], 0.8 * one_round) << "and the third for the second";
}

// Children go on when their submitter fails, unless it says
// cancel_children: then those not yet started are CANCELED.
TEST(Pilot, ChildrenOfAFailedSubmitterGoOnOrAreCanceled) {
  if (world_size() < 3) GTEST_SKIP() << "needs the submitter's worker and another";
  for (const bool cancel : {false, true}) {
    SharedDir shared;
    const RunResult run = run_flow(shared,
                                   std::string(R"(
[[task]]
name = "submit"
function = "test_submit_calls"
steering = true
args = { calls = 1, per_call = 20, child = "nap", fail = true }
cancel_children = )") + (cancel ? "true" : "false") +
                                       R"(
[[task]]
name = "nap"
function = "tandem.sleep"
count = 0
args = { seconds = 0.05 }
)",
                                   false, cancel ? "cancel" : "goon");
    EXPECT_EQ(run.code, 1);
    if (world_rank() != 0) continue;
    EXPECT_EQ(run.journal.at({"submit", 0})["state"], "FAILED");
    int done = 0;
    int canceled = 0;
    for (int i = 0; i < 20; ++i) {
      const json& j = run.journal.at({"nap", i});
      done += j["state"] == "DONE";
      if (j["state"] == "CANCELED") {
        ++canceled;
        EXPECT_NE(j["reason"].get<std::string>().find("its submitter submit[0] ended FAILED"),
                  std::string::npos)
            << j;
      }
    }
    if (cancel) {
      EXPECT_GT(canceled, 0) << "those not started are canceled";
      EXPECT_EQ(done + canceled, 20);
    } else {
      EXPECT_EQ(done, 20) << "all children go on";
    }
  }
}
