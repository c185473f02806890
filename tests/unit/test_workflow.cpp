// Workflow files: what parses, the defaults, and every kind of error with its
// file, line, column and key.

#include <gtest/gtest.h>

#include <cstdlib>

#include "config/workflow.hpp"
#include "support/temp_dir.hpp"
#include "tandem/error.hpp"
#include "tandem/tensor.hpp"

using tandem::config_error;
using tandem::detail::Bind;
using tandem::detail::Launcher;
using tandem::detail::manages_gpus;
using tandem::detail::parse_workflow;
using tandem::detail::TaskKind;
using tandem::detail::Workflow;
using tandem::test::TempDir;

namespace {

// Parses @p text expecting a config_error at @p line for @p key whose message
// contains @p words.
void expect_error(const std::string& text, int line, const std::string& key,
                  const std::string& words) {
  try {
    parse_workflow(text, "/work/flows/wf.toml", /*check_files=*/false);
    ADD_FAILURE() << "no error for:\n" << text;
  } catch (const config_error& e) {
    EXPECT_EQ(e.file(), "/work/flows/wf.toml");
    EXPECT_EQ(e.line(), line) << e.what();
    EXPECT_GT(e.column(), 0) << e.what();
    EXPECT_EQ(e.key(), key) << e.what();
    EXPECT_NE(std::string(e.what()).find(words), std::string::npos)
        << "message '" << e.what() << "' lacks '" << words << "'";
    // The message a person sees starts with file:line:column.
    EXPECT_EQ(std::string(e.what()).rfind("/work/flows/wf.toml:" + std::to_string(line) + ":", 0),
              0u)
        << e.what();
  }
}

}  // namespace

TEST(Workflow, ParsesTasksWithDefaults) {
  const auto wf = parse_workflow(R"(
[job]
name = "demo"
[[task]]
name = "prep"
command = ["/bin/echo", "hi"]
[[task]]
name = "sim"
function = "heat"
count = 8
after = ["prep"]
args = { dt = 0.5, steps = 10, label = "x" }
)",
                                 "/work/flows/wf.toml", false);
  ASSERT_EQ(wf.tasks.size(), 2u);
  EXPECT_EQ(wf.job.name, "demo");
  EXPECT_EQ(wf.job.run_root, "/work/flows/runs");
  EXPECT_EQ(wf.layout.workers, -1);
  const auto& prep = wf.tasks[0];
  EXPECT_EQ(prep.kind, TaskKind::command);
  EXPECT_EQ(prep.count, 1);
  EXPECT_EQ(prep.ranks, 1);
  EXPECT_EQ(prep.retries, 0);
  EXPECT_EQ(prep.timeout_s, 0);
  EXPECT_EQ(prep.cwd, "/work/flows");
  const auto& sim = wf.tasks[1];
  EXPECT_EQ(sim.kind, TaskKind::function);
  EXPECT_EQ(sim.function, "heat");
  EXPECT_EQ(sim.count, 8);
  ASSERT_EQ(sim.after_index.size(), 1u);
  EXPECT_EQ(sim.after_index[0], 0);
  EXPECT_NE(sim.args_json.find("\"dt\":0.5"), std::string::npos) << sim.args_json;
  EXPECT_EQ(wf.instance_count(), 9);
}

TEST(Workflow, JobNameDefaultsToFileStem) {
  const auto wf = parse_workflow("[[task]]\nname='a'\nfunction='f'\n", "/x/my-flow.toml", false);
  EXPECT_EQ(wf.job.name, "my-flow");
}

TEST(Workflow, CommandAsStringIsSplit) {
  const auto wf =
      parse_workflow("[[task]]\nname='a'\ncommand='/bin/echo a  b'\n", "/x/wf.toml", false);
  ASSERT_EQ(wf.tasks[0].command.size(), 3u);
  EXPECT_EQ(wf.tasks[0].command[2], "b");
}

TEST(Workflow, InvalidTomlNamesLine) {
  expect_error("[job]\nname = \"x\"\n[[task]\nname='a'\n", 3, "", "not valid TOML");
}

TEST(Workflow, UnknownKeysAreRejectedWithSuggestion) {
  expect_error("[job]\nnmae = 'x'\n[[task]]\nname='a'\nfunction='f'\n", 2, "job.nmae",
               "did you mean 'name'");
  expect_error("[[task]]\nname='a'\nfunction='f'\ncuont = 3\n", 4, "task[0].cuont",
               "did you mean 'count'");
  expect_error("[[task]]\nname='a'\nfunction='f'\n[bogus]\nx=1\n", 4, "bogus", "unknown key");
  expect_error("[layout]\nworkers = 2\nservers = 1\n[[task]]\nname='a'\nfunction='f'\n", 3,
               "layout.servers", "unknown key");
}

TEST(Workflow, WrongTypesAreRejected) {
  expect_error("[[task]]\nname='a'\nfunction='f'\ncount = '3'\n", 4, "task[0].count",
               "must be an integer, not a string");
  expect_error("[[task]]\nname='a'\nfunction='f'\nafter = 'b'\n", 4, "task[0].after",
               "array of strings");
  expect_error("[[task]]\nname='a'\nfunction='f'\nafter = ['b', 3]\n", 4, "task[0].after",
               "element 1 must be a string");
  expect_error("[[task]]\nname='a'\nfunction='f'\ntimeout = 'soon'\n", 4, "task[0].timeout",
               "must be a number");
  expect_error("[[task]]\nname='a'\nfunction='f'\nclean_mpi_env = 1\n", 4, "task[0].clean_mpi_env",
               "true or false");
  expect_error("job = 3\n[[task]]\nname='a'\nfunction='f'\n", 1, "job", "must be a table");
  expect_error("[layout]\nworkers = 0\n[[task]]\nname='a'\nfunction='f'\n", 2, "layout.workers",
               "positive integer");
}

TEST(Workflow, OutOfRangeValuesAreRejected) {
  expect_error("[[task]]\nname='a'\nfunction='f'\ncount = -1\n", 4, "task[0].count",
               "between 0 and");
  expect_error("[[task]]\nname='a'\nfunction='f'\nretries = -1\n", 4, "task[0].retries",
               "between 0 and");
  expect_error(
      "[job]\n[job.backoff]\nmin_sleep_us = 100\nmax_sleep_us = 10\n[[task]]\nname='a'\n"
      "function='f'\n",
      4, "job.backoff.max_sleep_us", "not be less than");
}

TEST(Workflow, MissingRequiredKeysAreRejected) {
  expect_error("[[task]]\nfunction='f'\n", 1, "task[0].name", "is required");
  expect_error("[[task]]\nname='a'\n", 1, "task[0]", "exactly one of 'function'");
  expect_error("[[task]]\nname='a'\nfunction='f'\ncommand=['x']\n", 1, "task[0]", "exactly one of");
  expect_error("[job]\nname='x'\n", 1, "task", "no [[task]]");
  expect_error("[[task]]\nname='a'\ncommand=[]\n", 3, "task[0].command", "must name a program");
}

TEST(Workflow, DuplicateNamesAreRejected) {
  expect_error("[[task]]\nname='a'\nfunction='f'\n[[task]]\nname='a'\nfunction='g'\n", 4,
               "task[1].name", "used twice");
}

TEST(Workflow, UnknownDependencyIsRejectedWithSuggestion) {
  expect_error(
      "[[task]]\nname='prep'\nfunction='f'\n[[task]]\nname='b'\nfunction='f'\n"
      "after=['pre']\n",
      7, "task[1].after", "did you mean 'prep'");
}

TEST(Workflow, DependencyCyclesAreRejected) {
  expect_error(
      "[[task]]\nname='a'\nfunction='f'\nafter=['c']\n"
      "[[task]]\nname='b'\nfunction='f'\nafter=['a']\n"
      "[[task]]\nname='c'\nfunction='f'\nafter=['b']\n",
      4, "task[0].after", "dependency cycle: a -> c -> b -> a");
  expect_error("[[task]]\nname='a'\nfunction='f'\nafter=['a']\n", 4, "task[0].after",
               "waits for itself");
}

TEST(Workflow, MultiRankCommandsAreMpiPrograms) {
  const Workflow wf = parse_workflow(
      "[job]\nlauncher='srun'\nlauncher_args=['--mpi=pmix']\n"
      "[[task]]\nname='a'\ncommand=['/bin/true']\nranks=4\ncores_per_rank=2\n"
      "[[task]]\nname='b'\ncommand=['/bin/true']\n",
      "/x/wf.toml", false);
  EXPECT_EQ(wf.job.launcher, Launcher::srun);
  EXPECT_EQ(wf.job.launcher_args, std::vector<std::string>{"--mpi=pmix"});
  EXPECT_EQ(wf.tasks[0].ranks, 4);
  EXPECT_EQ(wf.tasks[0].workers_needed(), 8);
  EXPECT_TRUE(wf.tasks[0].is_mpi_command());
  EXPECT_FALSE(wf.tasks[1].is_mpi_command());
  EXPECT_EQ(parse_workflow("[[task]]\nname='a'\ncommand=['/bin/true']\n", "/x/wf.toml", false)
                .job.launcher,
            Launcher::automatic);
  expect_error("[[task]]\nname='a'\nfunction='f'\ncores_per_rank=2\n", 4, "task[0].cores_per_rank",
               "is for command tasks");
  expect_error("[job]\nlauncher='flux'\n[[task]]\nname='a'\nfunction='f'\n", 2, "job.launcher",
               "auto");
}

TEST(Workflow, CoresGpusAndBinding) {
  const Workflow wf = parse_workflow(
      "[job]\nbind='none'\ngpus_per_node=4\n"
      "[[service]]\nname='m'\nbackend='echo'\ngpus_per_replica=2\ndevice='cuda:1'\n"
      "[[task]]\nname='a'\ncommand=['/bin/true']\ncores_per_task=4\ngpus_per_task=1\n"
      "[[task]]\nname='b'\ncommand=['/bin/true']\nranks=2\ngpus_per_rank=2\nbind='cores'\n"
      "[[task]]\nname='c'\nfunction='f'\ngpus_per_task=1\n",
      "/x/wf.toml", false);
  EXPECT_EQ(wf.job.gpus_per_node, 4);
  EXPECT_EQ(wf.services[0].gpus_per_replica, 2);
  EXPECT_EQ(wf.services[0].device, "cuda:1");
  EXPECT_EQ(wf.tasks[0].cores_per_rank, 4);
  EXPECT_EQ(wf.tasks[0].gpus_per_rank, 1);
  EXPECT_EQ(wf.tasks[0].bind, Bind::none) << "[job] bind is the default";
  EXPECT_TRUE(wf.tasks[0].is_mpi_command()) << "one process on 4 workers' cores";
  EXPECT_EQ(wf.tasks[1].gpus_needed(), 4);
  EXPECT_EQ(wf.tasks[1].bind, Bind::cores);
  EXPECT_EQ(wf.tasks[2].gpus_per_rank, 1);
  EXPECT_TRUE(manages_gpus(wf));
  EXPECT_FALSE(manages_gpus(parse_workflow(
      "[[service]]\nname='m'\nbackend='echo'\ndevice='cuda:0'\n", "/x/wf.toml", false)));
  expect_error("[[task]]\nname='a'\ncommand=['/bin/true']\nranks=2\ngpus_per_task=1\n", 5,
               "task[0].gpus_per_task", "use gpus_per_rank");
  expect_error("[[task]]\nname='a'\ncommand=['/bin/true']\nranks=2\ncores_per_task=2\n", 5,
               "task[0].cores_per_task", "use cores_per_rank");
  expect_error("[[task]]\nname='a'\ncommand=['/bin/true']\ngpus_per_task=1\ngpus_per_rank=1\n", 4,
               "task[0].gpus_per_task", "not both");
  expect_error("[[task]]\nname='a'\nfunction='f'\nbind='cores'\n", 4, "task[0].bind",
               "is for command tasks");
  expect_error("[[task]]\nname='a'\ncommand=['/bin/true']\nbind='socket'\n", 4, "task[0].bind",
               "\"cores\"");
  expect_error("[[service]]\nname='m'\nbackend='echo'\ndevice='cuda:1'\ngpus_per_replica=1\n", 4,
               "service[0].device", "sees only its 1 GPU(s)");
  // Once GPUs are handed out, a service on "cuda" must ask for its own.
  expect_error(
      "[[service]]\nname='m'\nbackend='echo'\ndevice='cuda:0'\n"
      "[[task]]\nname='a'\ncommand=['/bin/true']\ngpus_per_task=1\n",
      1, "service[0].device", "add gpus_per_replica");
}

TEST(Workflow, SteeringTasksAndTasksOnlySubmitted) {
  const Workflow wf = parse_workflow(
      "[[task]]\nname='think'\nfunction='f'\nsteering=true\n"
      "[[task]]\nname='sim'\nfunction='g'\ncount=0\n",
      "/x/wf.toml", false);
  EXPECT_TRUE(wf.tasks[0].steering);
  EXPECT_TRUE(wf.tasks[0].goes_alone());
  EXPECT_EQ(wf.tasks[1].count, 0);
  EXPECT_EQ(wf.instance_count(), 1);
  // Python functions and commands steer too (a command through its
  // worker's proxy, which is then started even without services).
  const Workflow commands = parse_workflow(
      "[[task]]\nname='a'\ncommand=['/bin/true']\nsteering=true\n"
      "[[task]]\nname='b'\npython='m:f'\nsteering=true\n",
      "/x/wf.toml", false);
  EXPECT_TRUE(commands.tasks[0].steering && commands.tasks[1].steering);
  EXPECT_TRUE(needs_proxy(commands));
  expect_error(
      "[job.proxy]\nenabled=false\n[[task]]\nname='a'\ncommand=['/bin/true']\n"
      "steering=true\n",
      6, "task[0].steering", "enabled = false");
  expect_error("[[task]]\nname='a'\nfunction='f'\nisolate=true\nsteering=true\n", 5,
               "task[0].steering", "not isolated");
  expect_error("[[task]]\nname='a'\nfunction='f'\nranks=2\nsteering=true\n", 5, "task[0].steering",
               "of one rank");
}

TEST(Workflow, SteeringCapsAndChildren) {
  const Workflow capped = parse_workflow(
      "[job]\noutstanding_cap=50\n[[task]]\nname='t'\nfunction='f'\nsteering=true\n"
      "cancel_children=true\n[[task]]\nname='u'\nfunction='f'\nsteering=true\n"
      "outstanding_cap=5\n",
      "/x/wf.toml", false);
  EXPECT_EQ(capped.job.outstanding_cap, 50);
  EXPECT_EQ(capped.tasks[0].outstanding_cap, 50) << "the job's, by default";
  EXPECT_TRUE(capped.tasks[0].cancel_children);
  EXPECT_EQ(capped.tasks[1].outstanding_cap, 5);
  expect_error("[[task]]\nname='a'\nfunction='f'\ncancel_children=true\n", 4,
               "task[0].cancel_children", "is for steering tasks");
  expect_error("[[task]]\nname='a'\nfunction='f'\nsteering=true\noutstanding_cap=0\n", 5,
               "task[0].outstanding_cap", "between 1 and");
}

TEST(Workflow, MissingFilesAreRejectedWhenChecked) {
  TempDir dir;
  auto check = [&](const std::string& text, const std::string& key, const std::string& words) {
    const std::string path = dir.file("wf.toml", text);
    try {
      tandem::detail::load_workflow(path);
      ADD_FAILURE() << "no error for " << text;
    } catch (const config_error& e) {
      EXPECT_EQ(e.key(), key) << e.what();
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
  };
  check("[[task]]\nname='a'\ncommand=['./nope.sh']\n", "task[0].command", "does not exist");
  check("[[task]]\nname='a'\ncommand=['no-such-program-xyz']\n", "task[0].command",
        "not found on PATH");
  check("[[task]]\nname='a'\ncommand=['/bin/true']\ncwd='missing'\n", "task[0].cwd",
        "does not exist");
  check("[job]\nlibraries=['libnothere.so']\n[[task]]\nname='a'\nfunction='f'\n", "job.libraries",
        "does not exist");
  check("[[task]]\nname='a'\ncommand=['${TANDEM_TEST_UNSET_VAR}/x']\n", "task[0].command",
        "TANDEM_TEST_UNSET_VAR is not set");
  // A relative program is found next to the workflow file.
  dir.file("run.sh", "#!/bin/sh\n");
  std::filesystem::permissions(dir.path() / "run.sh", std::filesystem::perms::owner_all);
  const auto wf = tandem::detail::load_workflow(
      dir.file("wf.toml", "[[task]]\nname='a'\ncommand=['./run.sh', 'x']\n"));
  EXPECT_EQ(wf.tasks[0].command[0], (dir.path() / "run.sh").string());
}

TEST(Workflow, EnvironmentVariablesExpandInPaths) {
  setenv("TANDEM_TEST_ROOT", "/scratch/me", 1);
  const auto wf = parse_workflow(
      "[job]\nrun_root='${TANDEM_TEST_ROOT}/runs'\n"
      "[[task]]\nname='a'\nfunction='f'\n",
      "/x/wf.toml", false);
  EXPECT_EQ(wf.job.run_root, "/scratch/me/runs");
  unsetenv("TANDEM_TEST_UNSET_VAR");
  const auto wf2 = parse_workflow(
      "[job]\nrun_root='${TANDEM_TEST_UNSET_VAR:-/tmp/x}/runs'\n"
      "[[task]]\nname='a'\nfunction='f'\n",
      "/x/wf.toml", false);
  EXPECT_EQ(wf2.job.run_root, "/tmp/x/runs");
}

TEST(Workflow, UnreadableFileIsAnError) {
  try {
    tandem::detail::load_workflow("/nonexistent/wf.toml");
    ADD_FAILURE();
  } catch (const config_error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot read the workflow file"), std::string::npos);
  }
}

TEST(Workflow, ResolvedTomlParsesBackToTheSameWorkflow) {
  const auto wf = parse_workflow(R"(
[job]
name = "demo"
[[task]]
name = "sim"
function = "heat"
count = 3
retries = 2
args = { dt = 0.5, nested = { k = [1, 2] } }
[[task]]
name = "post"
command = ["/bin/echo", "{index}"]
after = ["sim"]
env = { A = "1" }
)",
                                 "/x/wf.toml", false);
  const std::string text = tandem::detail::resolved_toml(wf);
  const auto again = parse_workflow(text, "/x/wf.toml", false);
  ASSERT_EQ(again.tasks.size(), 2u);
  EXPECT_EQ(again.tasks[0].count, 3);
  EXPECT_EQ(again.tasks[0].retries, 2);
  EXPECT_EQ(again.tasks[0].args_json, wf.tasks[0].args_json);
  EXPECT_EQ(again.tasks[1].env.at("A"), "1");
  EXPECT_EQ(again.tasks[1].after_index, std::vector<int>{0});
  EXPECT_EQ(again.job.max_chunk, wf.job.max_chunk);
}

TEST(Workflow, ServicesParseWithSignatures) {
  const auto wf = parse_workflow(R"(
[[service]]
name = "surrogate"
backend = "torchscript"
model = "model.pt"
replicas = 2
ranks_per_replica = 1
placement = "per_node"
max_batch = 128
max_delay_us = 500
device = "cuda:0"
inputs = [{ name = "x", dtype = "FP32", shape = [-1, 64] }]
outputs = [{ name = "y", dtype = "FP32", shape = [-1, 16] }]
[[service]]
name = "doubler"
backend = "scale"
factor = 3.0
)",
                                 "/x/wf.toml", false);
  ASSERT_EQ(wf.services.size(), 2u);
  const auto& s = wf.services[0];
  EXPECT_EQ(s.model, "/x/model.pt");
  EXPECT_EQ(s.replicas, 2);
  EXPECT_EQ(s.placement, tandem::detail::Placement::per_node);
  EXPECT_EQ(s.max_batch, 128);
  EXPECT_EQ(s.max_delay_us, 500);
  EXPECT_EQ(s.device, "cuda:0");
  ASSERT_EQ(s.inputs.size(), 1u);
  EXPECT_EQ(s.inputs[0].shape, (std::vector<long long>{-1, 64}));
  EXPECT_EQ(s.outputs[0].dtype, static_cast<int>(tandem::DType::FP32));
  EXPECT_EQ(wf.services[1].factor, 3.0);
  EXPECT_TRUE(wf.tasks.empty());
}

TEST(Workflow, ModelVersionKeysParse) {
  const std::string sig =
      "inputs = [{ name = 'x', dtype = 'FP32', shape = [-1, 2] }]\n"
      "outputs = [{ name = 'y', dtype = 'FP32', shape = [-1, 1] }]\n";
  const auto wf = parse_workflow(
      "[[service]]\nname='a'\nbackend='torchscript'\nmodel='m.pt'\nmodel_version=7\n"
      "version_policy=3\nkeep_versions=2\nswap='pause'\n" +
          sig +
          "[[service]]\nname='b'\nbackend='torchscript'\nmodel_dir='repo'\npoll_interval=0.5\n"
          "version_policy='latest'\n" +
          sig,
      "/x/wf.toml", false);
  const auto& a = wf.services[0];
  EXPECT_EQ(a.model_version, 7);
  EXPECT_EQ(a.pinned_version, 3);
  EXPECT_EQ(a.keep_versions, 2);
  EXPECT_EQ(a.swap, tandem::detail::SwapMode::pause);
  const auto& b = wf.services[1];
  EXPECT_EQ(b.model_dir, "/x/repo");
  EXPECT_TRUE(b.model.empty());
  EXPECT_EQ(b.poll_interval_s, 0.5);
  EXPECT_EQ(b.pinned_version, 0);
  EXPECT_EQ(b.swap, tandem::detail::SwapMode::beside);
  EXPECT_EQ(b.keep_versions, 1);
}

TEST(Workflow, BadModelVersionKeysNameTheKey) {
  const std::string head = "[[service]]\nname='m'\nbackend='torchscript'\n";
  expect_error(head + "model='a.pt'\nmodel_dir='d'\n", 5, "service[0].model_dir", "not both");
  expect_error(head + "model_dir='d'\nmodel_version=2\n", 5, "service[0].model_version",
               "only with `model`");
  expect_error(head + "model='a.pt'\npoll_interval=1\n", 5, "service[0].poll_interval",
               "only with `model_dir`");
  expect_error(head + "model='a.pt'\nversion_policy='newest'\n", 5, "service[0].version_policy",
               "\"latest\"");
  expect_error(head + "model='a.pt'\nversion_policy=0\n", 5, "service[0].version_policy", "N >= 1");
  expect_error(head + "model='a.pt'\nswap='now'\n", 5, "service[0].swap",
               "\"beside\" or \"pause\"");
  expect_error(head + "model='a.pt'\nkeep_versions=0\n", 5, "service[0].keep_versions",
               "between 1");
  expect_error("[[service]]\nname='m'\nbackend='echo'\nmodel_dir='d'\n", 4, "service[0].model_dir",
               "only to backend \"torchscript\"");
}

TEST(Workflow, BadServicesAreRejected) {
  const std::string head = "[[service]]\nname='m'\n";
  expect_error(head + "backend='torchscrpit'\n", 3, "service[0].backend",
               "did you mean 'torchscript'");
  expect_error(head + "backend='torchscript'\n", 1, "service[0].model", "is required");
  expect_error(head + "backend='echo'\nplacement='everywhere'\n", 4, "service[0].placement",
               "\"spread\" or \"per_node\"");
  expect_error(head + "backend='echo'\ndevice='gpu0'\n", 4, "service[0].device", "cuda:N");
  expect_error(head + "backend='echo'\ninputs=[{name='x', dtype='FLOAT', shape=[-1]}]\n", 4,
               "service[0].inputs[0].dtype", "unknown dtype 'FLOAT'");
  expect_error(head + "backend='echo'\ninputs=[{name='x', dtype='FP32', shape=[4, 2]}]\n", 4,
               "service[0].inputs[0].shape", "must be -1");
  expect_error(head + "backend='echo'\nfactor=2.0\n", 4, "service[0].factor",
               "only to backend \"scale\"");
  expect_error(head + "backend='echo'\nreplicas=0\n", 4, "service[0].replicas", "between 1");
  expect_error(head + "backend='echo'\n[[service]]\nname='m'\nbackend='echo'\n", 4,
               "service[1].name", "used twice");
}

TEST(Workflow, MonitorAndProxyKeysParseAndAreChecked) {
  const auto wf = parse_workflow(R"(
[job]
[job.monitor]
trace = false
trace_max_events = 5000
chrome_trace = false
metrics_interval = 2.5
progress_interval = 0
[job.proxy]
socket_dir = "sock"
[[service]]
name = "m"
backend = "echo"
[[task]]
name = "t"
command = ["/bin/true"]
)",
                                 "/x/wf.toml", false);
  EXPECT_FALSE(wf.job.monitor.trace);
  EXPECT_EQ(wf.job.monitor.trace_max_events, 5000);
  EXPECT_FALSE(wf.job.monitor.chrome_trace);
  EXPECT_DOUBLE_EQ(wf.job.monitor.metrics_interval_s, 2.5);
  EXPECT_DOUBLE_EQ(wf.job.monitor.progress_interval_s, 0);
  EXPECT_EQ(wf.job.proxy.socket_dir, "/x/sock") << "relative to the workflow file";
  EXPECT_TRUE(tandem::detail::needs_proxy(wf));
  EXPECT_EQ(tandem::detail::proxy_socket_dir(wf, "/runs/r1"), "/x/sock");
  // The resolved file keeps them.
  const auto again = parse_workflow(tandem::detail::resolved_toml(wf), "/x/wf.toml", false);
  EXPECT_EQ(again.job.monitor.trace_max_events, 5000);
  EXPECT_EQ(again.job.proxy.socket_dir, "/x/sock");

  expect_error("[job.monitor]\ntrace_max_events = 0\n[[task]]\nname='a'\nfunction='f'\n", 2,
               "job.monitor.trace_max_events", "between 1 and");
  expect_error("[job.monitor]\ntrace = \"yes\"\n[[task]]\nname='a'\nfunction='f'\n", 2,
               "job.monitor.trace", "must be true or false");
  expect_error("[job.proxy]\nsocket_dri = \"/tmp\"\n[[task]]\nname='a'\nfunction='f'\n", 2,
               "job.proxy.socket_dri", "did you mean 'socket_dir'");
}

TEST(Workflow, TheProxyRunsOnlyForServicesAndExecutables) {
  const auto functions_only =
      parse_workflow("[[service]]\nname='m'\nbackend='echo'\n[[task]]\nname='t'\nfunction='f'\n",
                     "/x/wf.toml", false);
  EXPECT_FALSE(tandem::detail::needs_proxy(functions_only));
  const auto no_services =
      parse_workflow("[[task]]\nname='t'\ncommand=['/bin/true']\n", "/x/wf.toml", false);
  EXPECT_FALSE(tandem::detail::needs_proxy(no_services));
  const auto off = parse_workflow(
      "[job.proxy]\nenabled = false\n[[service]]\nname='m'\nbackend='echo'\n[[task]]\nname='t'\n"
      "command=['/bin/true']\n",
      "/x/wf.toml", false);
  EXPECT_FALSE(tandem::detail::needs_proxy(off));
  EXPECT_EQ(tandem::detail::proxy_socket_dir(off, "/runs/r1"), "/runs/r1/sockets");
}

TEST(Workflow, IsolationAndTimeoutsHaveJobDefaults) {
  const auto wf = parse_workflow(
      "[job]\nisolate = true\non_timeout = 'abort'\njournal_sync_interval = 0.5\n"
      "[[task]]\nname='a'\nfunction='f'\n"
      "[[task]]\nname='b'\nfunction='f'\nisolate = false\non_timeout = 'warn'\n",
      "/x/wf.toml", false);
  EXPECT_TRUE(wf.tasks[0].isolate);
  EXPECT_EQ(wf.tasks[0].on_timeout, tandem::detail::OnTimeout::abort);
  EXPECT_FALSE(wf.tasks[1].isolate);
  EXPECT_EQ(wf.tasks[1].on_timeout, tandem::detail::OnTimeout::warn);
  EXPECT_DOUBLE_EQ(wf.job.journal_sync_s, 0.5);
  const auto defaults = parse_workflow("[[task]]\nname='a'\nfunction='f'\n", "/x/wf.toml", false);
  EXPECT_FALSE(defaults.tasks[0].isolate);
  EXPECT_EQ(defaults.tasks[0].on_timeout, tandem::detail::OnTimeout::warn);
  EXPECT_DOUBLE_EQ(defaults.job.journal_sync_s, 0.1);
}

TEST(Workflow, IsolationIsCheckedAgainstWhatATaskIs) {
  expect_error("[[task]]\nname='a'\ncommand='/bin/true'\nisolate = true\n", 4, "task[0].isolate",
               "always runs in a process of its own");
  expect_error("[[task]]\nname='a'\nfunction='f'\nranks = 2\nisolate = true\n", 5,
               "task[0].isolate", "cannot span several ranks");
  expect_error("[job]\nisolate = true\n[[task]]\nname='a'\nfunction='f'\nranks = 2\n", 6,
               "task[0].ranks", "cannot span several ranks");
  expect_error("[[task]]\nname='a'\nfunction='f'\non_timeout = 'kill'\n", 4, "task[0].on_timeout",
               "warn");
}

TEST(Workflow, SafeAndUnsafeChangesForAResume) {
  const auto before = parse_workflow(
      "[[task]]\nname='a'\nfunction='f'\ncount=10\nretries=1\ntimeout=5\nargs={n=1}\n"
      "[[service]]\nname='s'\nbackend='scale'\nfactor=2.0\n",
      "/x/wf.toml", false);
  const auto safe = parse_workflow(
      "[[task]]\nname='a'\nfunction='f'\ncount=12\nretries=3\ntimeout=9\nargs={n=1}\n"
      "priority=4\n[[task]]\nname='new'\nfunction='f'\n"
      "[[service]]\nname='s'\nbackend='scale'\nfactor=2.0\nreplicas=3\n",
      "/x/wf.toml", false);
  EXPECT_TRUE(unsafe_changes(before, safe).empty());
  const auto unsafe = parse_workflow(
      "[[task]]\nname='a'\nfunction='g'\ncount=8\nretries=0\ntimeout=1\nargs={n=2}\n"
      "[[service]]\nname='s'\nbackend='scale'\nfactor=3.0\n",
      "/x/wf.toml", false);
  const auto changes = unsafe_changes(before, unsafe);
  ASSERT_EQ(changes.size(), 6u);
  EXPECT_EQ(changes[0], "task 'a': function changed from f to g");
  EXPECT_EQ(changes[1], "task 'a': args changed from {\"n\":1} to {\"n\":2}");
  EXPECT_EQ(changes[2], "task 'a': count went down from 10 to 8");
  EXPECT_EQ(changes[3], "task 'a': retries went down from 1 to 0");
  EXPECT_EQ(changes[4], "task 'a': timeout went down from 5 s to 1 s");
  EXPECT_EQ(changes[5], "service 's': factor changed from 2 to 3");
  const auto removed = parse_workflow("[[task]]\nname='b'\nfunction='f'\n", "/x/wf.toml", false);
  EXPECT_EQ(unsafe_changes(before, removed)[0], "task 'a' was removed");
}

// The trace's memory: a node's budget (1 GiB) shared by its ranks, at most
// 1M events (32 MiB) a rank, unless trace_max_events sets it per rank.
TEST(Workflow, TraceBufferIsANodeBudgetSharedByItsRanks) {
  tandem::detail::MonitorSpec m;
  EXPECT_EQ(m.events_per_rank(1), 1'000'000);
  EXPECT_EQ(m.events_per_rank(32), 1'000'000);
  EXPECT_EQ(m.events_per_rank(128), 262'144);  // 8 MiB a rank, 1 GiB the node
  m.trace_node_mb = 64;
  EXPECT_EQ(m.events_per_rank(128), 16'384);
  EXPECT_EQ(m.events_per_rank(100'000), 1024) << "never less than a useful minimum";
  m.trace_max_events = 5000;
  EXPECT_EQ(m.events_per_rank(128), 5000);
}

// Per-instance parameters (issue 35): a sweep expands into instances, each
// with its values merged into args.
TEST(Workflow, ASweepMakesTheProductOfItsValues) {
  const auto wf = parse_workflow(R"(
[[task]]
name = "sim"
function = "heat"
args = { steps = 10 }
sweep = { temperature = [300, 310], seed = [1, 2, 3] }
)",
                                 "/work/flows/wf.toml", false);
  const auto& t = wf.tasks[0];
  ASSERT_EQ(t.count, 6);
  ASSERT_TRUE(t.has_sweep());
  // Keys in alphabetical order (TOML's), the last varying fastest.
  EXPECT_EQ(t.args_for(0), R"({"seed":1,"steps":10,"temperature":300})");
  EXPECT_EQ(t.args_for(1), R"({"seed":1,"steps":10,"temperature":310})");
  EXPECT_EQ(t.args_for(2), R"({"seed":2,"steps":10,"temperature":300})");
  EXPECT_EQ(t.args_for(5), R"({"seed":3,"steps":10,"temperature":310})");
  EXPECT_EQ(t.args_json, R"({"steps":10})");  // the task's own args stay as written
}

TEST(Workflow, ASweepInZipModePairsItsValues) {
  const auto wf = parse_workflow(R"(
[[task]]
name = "sim"
command = ["sim", "--t", "{temperature}", "--label", "{label}"]
count = 3
sweep = { temperature = [300.5, 310, 320], label = ["a", "b", "c"] }
sweep_mode = "zip"
)",
                                 "/work/flows/wf.toml", false);
  const auto& t = wf.tasks[0];
  ASSERT_EQ(t.count, 3);
  EXPECT_EQ(t.args_for(0), R"({"label":"a","temperature":300.5})");
  EXPECT_EQ(t.args_for(2), R"({"label":"c","temperature":320})");
  // The resolved file keeps the sweep, and parses back to the same instances.
  const auto again =
      parse_workflow(tandem::detail::resolved_toml(wf), "/work/flows/wf.toml", false);
  ASSERT_EQ(again.tasks[0].instance_args, t.instance_args);
  EXPECT_EQ(again.tasks[0].sweep_mode, tandem::detail::SweepMode::zip);
}

TEST(Workflow, BadSweepsNameTheKeyAndLine) {
  const std::string head = "[[task]]\nname = \"sim\"\nfunction = \"f\"\n";
  expect_error(head + "sweep = { t = [1, 2] }\ncount = 3\n", 5, "task[0].count",
               "is 3 but the sweep makes 2 instance(s)");
  expect_error(head + "sweep = { t = [1, 2], s = [1, 2, 3] }\nsweep_mode = \"zip\"\n", 4,
               "task[0].sweep.t", "has 2 values but 's' has 3");
  expect_error(head + "sweep = { t = [] }\n", 4, "task[0].sweep.t", "non-empty array");
  expect_error(head + "sweep = { t = 3 }\n", 4, "task[0].sweep.t", "non-empty array");
  expect_error(head + "sweep = { t = [1, \"a\"] }\n", 4, "task[0].sweep.t",
               "mixes numbers and strings");
  expect_error(head + "sweep = { t = [{ a = 1 }] }\n", 4, "task[0].sweep.t",
               "strings, numbers or booleans");
  expect_error(head + "args = { t = 1 }\nsweep = { t = [1, 2] }\n", 5, "task[0].sweep.t",
               "is in args too");
  expect_error(head + "sweep = { index = [1, 2] }\n", 4, "task[0].sweep.index",
               "a name Tandem gives commands");
  expect_error(head + "sweep_mode = \"zip\"\n", 4, "task[0].sweep_mode",
               "applies only with a `sweep` table");
  expect_error(head + "sweep = { t = [1] }\nsweep_mode = \"all\"\n", 5, "task[0].sweep_mode",
               "must be \"product\" or \"zip\"");
}

// A sleep service with a spread: the LLM-like stand-in of bench/paper/.
TEST(Workflow, SleepSpreadParses) {
  const Workflow wf = parse_workflow(
      "[[service]]\nname='llm'\nbackend='sleep'\ndelay_us=4440\ndelay_sd_us=550\n"
      "[[task]]\nname='t'\nfunction='f'\n",
      "/x/wf.toml", false);
  EXPECT_EQ(wf.services[0].delay_us, 4440);
  EXPECT_EQ(wf.services[0].delay_sd_us, 550);
  expect_error(
      "[[service]]\nname='e'\nbackend='echo'\ndelay_sd_us=5\n[[task]]\nname='t'\n"
      "function='f'\n",
      4, "service[0].delay_sd_us", "only to backend \"sleep\"");
}

// Elastic services: replicas = { min, max }, their keys, and [[scale]].
TEST(Workflow, ElasticReplicasAreReadAndChecked) {
  const std::string task = "[[task]]\nname='a'\nfunction='f'\n";
  const Workflow wf = parse_workflow(
      "[[service]]\nname='s'\nbackend='echo'\nreplicas = { min = 2, max = 5 }\n"
      "target_queue_ms = 7.5\nscale_dwell_s = 0\n" +
          task,
      "/work/flows/wf.toml", false);
  ASSERT_EQ(wf.services.size(), 1u);
  EXPECT_EQ(wf.services[0].replicas, 2);
  EXPECT_EQ(wf.services[0].replicas_max, 5);
  EXPECT_TRUE(wf.services[0].elastic());
  EXPECT_DOUBLE_EQ(wf.services[0].target_queue_ms, 7.5);
  EXPECT_DOUBLE_EQ(wf.services[0].scale_dwell_s, 0);
  expect_error("[[service]]\nname='s'\nbackend='echo'\nreplicas = { min = 3, max = 2 }\n" + task, 4,
               "service[0].replicas.max", "less than min = 3");
  expect_error("[[service]]\nname='s'\nbackend='echo'\nreplicas = { max = 2 }\n" + task, 4,
               "service[0].replicas.min", "is required");
  expect_error(
      "[[service]]\nname='s'\nbackend='echo'\nreplicas = { min = 1, max = 2, most = 3 }\n" + task,
      4, "service[0].replicas.most", "unknown key");
  expect_error("[[service]]\nname='s'\nbackend='echo'\nreplicas = 2\ntarget_queue_ms = 5\n" + task,
               5, "service[0].target_queue_ms", "applies only to replicas = { min, max }");
  expect_error(
      "[[service]]\nname='s'\nbackend='echo'\nrecord = true\n"
      "replicas = { min = 1, max = 2 }\n" +
          task,
      4, "service[0].record", "fixed count of replicas");
}

TEST(Workflow, ScaleRulesNameATaskAndAnElasticService) {
  const std::string head =
      "[[service]]\nname='s'\nbackend='echo'\nreplicas = { min = 1, max = 4 }\n"
      "[[service]]\nname='fixed'\nbackend='echo'\n[[task]]\nname='a'\nfunction='f'\n";
  const Workflow wf = parse_workflow(head + "[[scale]]\nafter='a'\nservice='s'\nreplicas=3\n",
                                     "/work/flows/wf.toml", false);
  ASSERT_EQ(wf.scale_rules.size(), 1u);
  EXPECT_EQ(wf.scale_rules[0].task, 0);
  EXPECT_EQ(wf.scale_rules[0].service, 0);
  EXPECT_EQ(wf.scale_rules[0].replicas, 3);
  expect_error(head + "[[scale]]\nafter='b'\nservice='s'\nreplicas=3\n", 12, "scale[0].after",
               "names no task: 'b'");
  expect_error(head + "[[scale]]\nafter='a'\nservice='fixed'\nreplicas=1\n", 13, "scale[0].service",
               "fixed count of replicas");
  expect_error(head + "[[scale]]\nafter='a'\nservice='s'\nreplicas=9\n", 14, "scale[0].replicas",
               "must be between 1 and 4");
}

TEST(Workflow, DeadlinesAndFallbacksAreReadAndAFallbackLoopIsRefusedAtItsLine) {
  const std::string task = "[[task]]\nname='a'\nfunction='f'\n";
  const Workflow wf = parse_workflow(
      "[[service]]\nname='big'\nbackend='echo'\ndeadline_ms = 25\nfallback = 'service:small'\n"
      "[[service]]\nname='small'\nbackend='scale'\nfallback = 'error'\n" +
          task,
      "/work/flows/wf.toml", false);
  EXPECT_EQ(wf.services[0].deadline_ms, 25);
  EXPECT_EQ(wf.services[0].fallback, "small");
  EXPECT_EQ(wf.services[0].fallback_service, 1);
  EXPECT_EQ(wf.services[1].fallback_service, -1);
  // a -> b -> c -> a: refused where the loop is seen first, with the chain.
  expect_error(
      "[[service]]\nname='a'\nbackend='echo'\nfallback='service:b'\n"
      "[[service]]\nname='b'\nbackend='echo'\nfallback='service:c'\n"
      "[[service]]\nname='c'\nbackend='echo'\nfallback='service:a'\n" +
          task,
      4, "service[0].fallback", "the fallbacks go round in a loop: a -> b -> c -> a");
  expect_error("[[service]]\nname='a'\nbackend='echo'\nfallback='service:a'\n" + task, 4,
               "service[0].fallback", "cannot be its own fallback");
  expect_error("[[service]]\nname='a'\nbackend='echo'\nfallback='service:zz'\n" + task, 4,
               "service[0].fallback", "names no service: 'zz'");
  expect_error("[[service]]\nname='a'\nbackend='echo'\nfallback='cheaper'\n" + task, 4,
               "service[0].fallback", "must be \"error\" or \"service:NAME\"");
  expect_error("[[service]]\nname='a'\nbackend='echo'\ndeadline_ms = 0\n" + task, 4,
               "service[0].deadline_ms", "must be between");
}

TEST(Workflow, AReplayServiceNeedsARecordingAndOnlyItTakesOne) {
  const std::string task = "[[task]]\nname='a'\nfunction='f'\n";
  const Workflow wf = parse_workflow(
      "[[service]]\nname='s'\nbackend='replay'\nrecording='runs/r1/services/s'\n" + task,
      "/work/flows/wf.toml", false);
  EXPECT_EQ(wf.services[0].backend, tandem::detail::BackendKind::replay);
  EXPECT_EQ(wf.services[0].recording, "/work/flows/runs/r1/services/s");
  expect_error("[[service]]\nname='s'\nbackend='replay'\n" + task, 1, "service[0].recording",
               "is required for backend \"replay\"");
  expect_error("[[service]]\nname='s'\nbackend='echo'\nrecording='x'\n" + task, 4,
               "service[0].recording", "applies only to backend \"replay\"");
  expect_error("[[service]]\nname='s'\nbackend='replay'\nrecording='x'\nrecord=true\n" + task, 5,
               "service[0].record", "answers from a recording");
}
