// Command tasks: exit codes, signals, timeouts that stop the whole process
// group, output files, environment and working directory.

#include <gtest/gtest.h>

#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <thread>

#include "exec/command.hpp"
#include "exec/mpi_launch.hpp"
#include "support/temp_dir.hpp"

using namespace tandem::detail;
using tandem::test::slurp;
using tandem::test::TempDir;

namespace {

CommandLaunch sh(const TempDir& dir, const std::string& script) {
  CommandLaunch l;
  l.argv = {"/bin/sh", "-c", script};
  l.env = inherited_environment(true);
  l.cwd = dir.path().string();
  l.stdout_path = (dir.path() / "out").string();
  l.stderr_path = (dir.path() / "err").string();
  l.kill_grace_s = 1;
  return l;
}

// True once @p pid has exited: no such process, or a zombie that nobody has
// reaped yet (in a container, PID 1 may never reap orphans).
bool gone(int pid) {
  for (int i = 0; i < 100; ++i) {
    const std::string stat = slurp("/proc/" + std::to_string(pid) + "/stat");
    if (stat.empty()) return true;
    const auto close = stat.rfind(')');
    if (close != std::string::npos && stat.size() > close + 2 && stat[close + 2] == 'Z')
      return true;
    ::usleep(20'000);
  }
  return false;
}

}  // namespace

TEST(Command, SuccessWritesOutputFiles) {
  TempDir dir;
  const auto r = run_command(sh(dir, "echo hello; echo oops >&2"), nullptr);
  EXPECT_EQ(r.outcome, Outcome::done);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(slurp(dir.path() / "out"), "hello\n");
  EXPECT_EQ(slurp(dir.path() / "err"), "oops\n");
}

TEST(Command, SilentCommandCreatesNoFiles) {
  TempDir dir;
  const auto r = run_command(sh(dir, "true"), nullptr);
  EXPECT_EQ(r.outcome, Outcome::done);
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "out"));
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "err"));
}

TEST(Command, LargeOutputIsRelayedWhole) {
  TempDir dir;
  const auto r =
      run_command(sh(dir, "head -c 3000000 /dev/zero; head -c 70000 /dev/zero >&2"), nullptr);
  EXPECT_EQ(r.outcome, Outcome::done);
  EXPECT_EQ(std::filesystem::file_size(dir.path() / "out"), 3000000u);
  EXPECT_EQ(std::filesystem::file_size(dir.path() / "err"), 70000u);
}

TEST(Command, BackgroundChildHoldingTheOutputDoesNotHang) {
  TempDir dir;
  const auto t0 = std::chrono::steady_clock::now();
  const auto r = run_command(sh(dir, "sleep 30 & echo started"), nullptr);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(r.outcome, Outcome::done);
  EXPECT_EQ(slurp(dir.path() / "out"), "started\n");
  EXPECT_LT(took, 5.0);
}

TEST(Command, ManyAtOnceEachGetTheirOwnResult) {
  TempDir dir;
  std::vector<std::unique_ptr<RunningCommand>> cmds;
  for (int i = 0; i < 8; ++i) {
    auto l = sh(dir, "sleep 0.2; echo " + std::to_string(i) + "; exit " + std::to_string(i));
    l.stdout_path = (dir.path() / (std::to_string(i) + ".out")).string();
    cmds.push_back(std::make_unique<RunningCommand>(l));
  }
  const auto t0 = std::chrono::steady_clock::now();
  for (bool all = false; !all;) {
    all = true;
    std::vector<pollfd> fds;
    for (auto& c : cmds) {
      c->progress();
      all = all && c->finished();
      c->add_poll_fds(fds);
    }
    if (!all) ::poll(fds.data(), fds.size(), 10);
  }
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(took, 1.5) << "the commands did not run at the same time";
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(cmds[i]->result().exit_code, i);
    EXPECT_EQ(slurp(dir.path() / (std::to_string(i) + ".out")), std::to_string(i) + "\n");
  }
}

TEST(Command, NonZeroExitFails) {
  TempDir dir;
  const auto r = run_command(sh(dir, "exit 3"), nullptr);
  EXPECT_EQ(r.outcome, Outcome::failed);
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.reason, "exited with code 3");
}

TEST(Command, CrashIsReportedWithTheSignal) {
  TempDir dir;
  const auto r = run_command(sh(dir, "kill -SEGV $$"), nullptr);
  EXPECT_EQ(r.outcome, Outcome::failed);
  EXPECT_EQ(r.exit_code, 128 + SIGSEGV);
  EXPECT_NE(r.reason.find("killed by signal 11 (Segmentation fault)"), std::string::npos)
      << r.reason;
}

TEST(Command, TimeoutStopsTheWholeProcessGroup) {
  TempDir dir;
  auto l = sh(dir, "sleep 30 & echo $! > child.pid; wait");
  l.timeout_s = 0.3;
  const auto t0 = std::chrono::steady_clock::now();
  const auto r = run_command(l, nullptr);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(r.outcome, Outcome::failed);
  EXPECT_NE(r.reason.find("timed out after 0.3 s"), std::string::npos) << r.reason;
  EXPECT_LT(took, 5.0);
  // The grandchild was in the group and is gone too.
  const int pid = std::stoi(slurp(dir.path() / "child.pid"));
  EXPECT_TRUE(gone(pid)) << "grandchild " << pid << " survived the timeout";
}

// An MPI launcher puts every rank in a process group of its own, out of
// reach of the group's signal: a session of its own finds them at the end.
TEST(Command, OwnSessionKillsWhatLeftTheGroup) {
  TempDir dir;
  // Job control gives the background job a process group of its own.
  CommandLaunch l = sh(dir, "");
  l.argv = {"/bin/bash", "-c",
            "set -m; sleep 30 & echo $! > child.pid; ps -o pgid= -p $! > child.pgid; "
            "echo $$ > leader.pid"};
  l.own_session = true;
  const auto r = run_command(l, nullptr);
  EXPECT_EQ(r.outcome, Outcome::done) << r.reason;
  const int pid = std::stoi(slurp(dir.path() / "child.pid"));
  ASSERT_GT(pid, 1);
  // Out of the leader's group, so its group's SIGKILL missed it...
  EXPECT_NE(std::stoi(slurp(dir.path() / "child.pgid")),
            std::stoi(slurp(dir.path() / "leader.pid")));
  // ...and the session's sweep did not.
  EXPECT_TRUE(gone(pid)) << "process " << pid << " outlived its session's leader";
}

TEST(Command, TermIgnoringChildIsKilledAfterTheGrace) {
  TempDir dir;
  auto l = sh(dir, "trap '' TERM; sleep 30");
  l.timeout_s = 0.2;
  l.kill_grace_s = 0.3;
  const auto r = run_command(l, nullptr);
  EXPECT_EQ(r.outcome, Outcome::failed);
  EXPECT_NE(r.reason.find("timed out"), std::string::npos);
}

TEST(Command, StopRequestCancels) {
  TempDir dir;
  int calls = 0;
  const auto r = run_command(sh(dir, "sleep 30"), [&] { return ++calls > 3; });
  EXPECT_EQ(r.outcome, Outcome::canceled);
  EXPECT_NE(r.reason.find("interrupted"), std::string::npos);
}

// A stop that arrives after the command ended on its own, but before the
// worker noticed, must not turn its finished work into a canceled attempt
// (which a resume would run a second time).
TEST(Command, StopAfterTheCommandEndedKeepsItDone) {
  TempDir dir;
  RunningCommand cmd(sh(dir, "echo finished > marker"));
  for (int i = 0; i < 200 && slurp(dir.path() / "marker").empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // it has exited by now
  cmd.cancel("stopped: the run was interrupted");
  while (!cmd.finished()) cmd.progress();
  EXPECT_EQ(cmd.result().outcome, Outcome::done) << cmd.result().reason;
}

TEST(Command, MissingProgramFailsClearly) {
  TempDir dir;
  auto l = sh(dir, "");
  l.argv = {"/nonexistent/program"};
  const auto r = run_command(l, nullptr);
  EXPECT_EQ(r.outcome, Outcome::failed);
  EXPECT_EQ(r.exit_code, 127);
  EXPECT_NE(r.reason.find("cannot start '/nonexistent/program'"), std::string::npos) << r.reason;
}

// A bare program name is found on the PATH the task is given, not in the
// task's working directory (posix_spawn alone would look there).
TEST(Command, BareProgramIsFoundOnTheTasksPath) {
  TempDir dir;
  std::filesystem::create_directories(dir.path() / "bin");
  const auto tool = dir.path() / "bin" / "docs-tool";
  {
    std::ofstream f(tool);
    f << "#!/bin/sh\necho tool ran\n";
  }
  std::filesystem::permissions(tool, std::filesystem::perms::owner_all);
  auto l = sh(dir, "");
  l.argv = {"docs-tool"};
  std::erase_if(l.env, [](const std::string& e) { return e.rfind("PATH=", 0) == 0; });
  l.env.push_back("PATH=/usr/bin:" + (dir.path() / "bin").string());
  auto r = run_command(l, nullptr);
  EXPECT_EQ(r.outcome, Outcome::done) << r.reason;
  EXPECT_EQ(slurp(dir.path() / "out"), "tool ran\n");

  l.argv = {"sh", "-c", "exit 3"};  // the task's PATH, searched in order
  r = run_command(l, nullptr);
  EXPECT_EQ(r.exit_code, 3) << r.reason;

  l.argv = {"no-such-tool-anywhere"};
  r = run_command(l, nullptr);
  EXPECT_EQ(r.outcome, Outcome::failed);
  EXPECT_EQ(r.exit_code, 127);
  EXPECT_NE(r.reason.find("'no-such-tool-anywhere': not found on PATH"), std::string::npos)
      << r.reason;
}

TEST(Command, EnvironmentAndWorkingDirectory) {
  TempDir dir;
  auto l = sh(dir, "echo $MY_VAR; pwd");
  l.env.push_back("MY_VAR=forty-two");
  const auto r = run_command(l, nullptr);
  EXPECT_EQ(r.outcome, Outcome::done);
  EXPECT_EQ(slurp(dir.path() / "out"), "forty-two\n" + dir.path().string() + "\n");
}

TEST(Command, LauncherWiringIsRemovedFromTheEnvironment) {
  setenv("PMIX_RANK", "3", 1);
  setenv("OMPI_COMM_WORLD_RANK", "3", 1);
  setenv("OMPI_MCA_mpi_yield_when_idle", "1", 1);
  // What MPI_Init leaves in the worker's environment: a nested mpirun that
  // sees it exits 1 at once.
  setenv("OMPI_MCA_ess", "pmi", 1);
  const auto clean = inherited_environment(true);
  auto has = [&](const std::string& prefix) {
    for (const auto& e : clean) {
      if (e.rfind(prefix, 0) == 0) return true;
    }
    return false;
  };
  EXPECT_FALSE(has("PMIX_RANK="));
  EXPECT_FALSE(has("OMPI_COMM_WORLD_RANK="));
  EXPECT_FALSE(has("OMPI_MCA_ess="));
  EXPECT_TRUE(has("OMPI_MCA_mpi_yield_when_idle="));
  const auto raw = inherited_environment(false);
  EXPECT_GT(raw.size(), clean.size());
}

// The rank wrapper of an MPI command task: each rank takes its own field of
// TANDEM_RANK_GPUS and TANDEM_RANK_CPUS, whichever launcher numbered it.
TEST(Command, RankWrapperGivesEachRankItsGpusAndCpus) {
  for (const char* rank_var : {"OMPI_COMM_WORLD_RANK", "SLURM_PROCID"}) {
    for (int rank = 0; rank < 2; ++rank) {
      TempDir dir;
      CommandLaunch launch;
      launch.argv = {"/bin/sh",
                     "-c",
                     kRankWrapper,
                     "sh",
                     "/bin/sh",
                     "-c",
                     "echo \"$CUDA_VISIBLE_DEVICES|$TANDEM_TASK_GPUS|${TANDEM_RANK_GPUS-unset}|"
                     "$(taskset -pc $$ | sed 's/.*: //')\""};
      launch.env = {"PATH=/usr/bin:/bin", "TANDEM_RANK_GPUS=2,3;GPU-x", "TANDEM_RANK_CPUS=0;0",
                    std::string(rank_var) + "=" + std::to_string(rank)};
      launch.stdout_path = (dir.path() / "out").string();
      launch.stderr_path = (dir.path() / "err").string();
      const auto r = run_command(launch, nullptr);
      EXPECT_EQ(r.outcome, Outcome::done) << r.reason << slurp(dir.path() / "err");
      EXPECT_EQ(slurp(dir.path() / "out"),
                rank == 0 ? "2,3|2,3|unset|0\n" : "GPU-x|GPU-x|unset|0\n")
          << rank_var;
    }
  }
}

TEST(Command, LaunchLineWrapsRanksOnlyWhenTheyGetResources) {
  MpiLaunch mpi;
  mpi.launcher = Launcher::mpirun;
  mpi.program_launcher = "mpirun";
  mpi.hosts = {{"a", 2}};
  const std::vector<std::string> plain = launch_argv(mpi, {"prog"});
  EXPECT_EQ(plain.back(), "prog");
  EXPECT_EQ(std::count(plain.begin(), plain.end(), std::string("/bin/sh")), 0);
  mpi.per_rank_resources = true;
  const std::vector<std::string> wrapped = launch_argv(mpi, {"prog", "x"});
  const auto sh = std::find(wrapped.begin(), wrapped.end(), std::string("/bin/sh"));
  ASSERT_NE(sh, wrapped.end());
  EXPECT_EQ(std::vector<std::string>(sh, wrapped.end()),
            (std::vector<std::string>{"/bin/sh", "-c", kRankWrapper, "sh", "prog", "x"}));
}

// A command given CPUs runs on them, and the worker keeps its own.
TEST(Command, RunsOnTheCpusItIsGiven) {
  cpu_set_t before;
  ASSERT_EQ(sched_getaffinity(0, sizeof before, &before), 0);
  int first = 0;
  while (!CPU_ISSET(first, &before)) ++first;
  TempDir dir;
  CommandLaunch launch = sh(dir, "taskset -pc $$ | sed 's/.*: //'");
  launch.cpus = {first};
  const auto r = run_command(launch, nullptr);
  EXPECT_EQ(r.outcome, Outcome::done) << r.reason;
  EXPECT_EQ(slurp(dir.path() / "out"), std::to_string(first) + "\n");
  cpu_set_t after;
  ASSERT_EQ(sched_getaffinity(0, sizeof after, &after), 0);
  EXPECT_TRUE(CPU_EQUAL(&before, &after)) << "the worker's own CPUs are as they were";
}
