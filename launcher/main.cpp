// The tandem command: run, validate and plan workflows; report on runs.

#include <mpi.h>

#include <cstdio>
#include <fstream>
#include <iostream>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "config/workflow.hpp"
#include "job/resources.hpp"
#include "layout/plan.hpp"
#include "report/report.hpp"
#include "report/results.hpp"
#include "supervise.hpp"
#include "tandem/tandem.hpp"
#include "tasks/python_tasks.hpp"
#include "tasks/registry.hpp"

namespace {

// Each error of Tandem's family says what the process exits with; anything
// else (out of memory, say) is a job that could not go on: 2.
int exit_code_of(const std::exception& e) {
  const auto* ours = dynamic_cast<const tandem::error*>(&e);
  return ours ? ours->exit_code() : 2;
}

int validate(const std::string& file) {
  const auto wf = tandem::detail::load_workflow(file);
  tandem::detail::load_task_functions(wf);
  // Python tasks' modules are imported here as a worker would import them.
  if (tandem::detail::has_python_tasks(wf)) tandem::detail::start_python_tasks(wf);
  if (wf.tasks.empty()) {
    // What each way in needs: tandem run wants tasks, a session services.
    std::printf(
        "%s: OK: job '%s', %zu service(s), no tasks: an SPMD session's file, for an MPI "
        "program that starts tandem::Session or tandem_session_start (tandem run needs "
        "[[task]])\n",
        file.c_str(), wf.job.name.c_str(), wf.services.size());
    return 0;
  }
  std::printf("%s: OK: job '%s', %zu task(s), %lld instance(s), %zu service(s): for tandem run\n",
              file.c_str(), wf.job.name.c_str(), wf.tasks.size(), wf.instance_count(),
              wf.services.size());
  return 0;
}

// Every node is planned with the GPUs this process finds (or
// --gpus-per-node): run it where the job will run, or say how many.
int plan(const std::string& file, int np, int ranks_per_node, int gpus_per_node) {
  const auto wf = tandem::detail::load_workflow(file);
  std::vector<tandem::detail::NodeGpus> gpus;
  if (tandem::detail::manages_gpus(wf)) {
    gpus.push_back(gpus_per_node >= 0
                       ? tandem::detail::numbered_gpus(gpus_per_node, "--gpus-per-node")
                       : tandem::detail::discover_gpus(wf.job.gpus_per_node, true));
  }
  const auto p = tandem::detail::make_plan(
      wf, tandem::detail::block_nodes(np, ranks_per_node > 0 ? ranks_per_node : np), gpus);
  std::fputs(tandem::detail::format_plan(wf, p).c_str(), stdout);
  return 0;
}

int report(const std::string& run_dir, bool as_json, bool as_html) {
  namespace report = tandem::detail::report;
  const report::Report r = report::build(run_dir);
  if (as_html) {
    const std::string path = run_dir + "/report.html";
    std::ofstream out(path);
    out << report::to_html(r);
    if (!out.flush()) throw tandem::io_error(path, "cannot write " + path);
    std::printf("%s\n", path.c_str());
  } else if (as_json) {
    std::printf("%s\n", report::to_json(r).dump(2).c_str());
  } else {
    std::fputs(report::to_text(r).c_str(), stdout);
  }
  return 0;
}

int results(const std::string& run_dir, const std::string& task, bool as_json) {
  namespace report = tandem::detail::report;
  const auto found = report::read_results(run_dir, task);
  if (as_json) {
    std::printf("%s\n", report::results_json(found).dump(2).c_str());
  } else {
    std::fputs(report::results_text(found).c_str(), stdout);
  }
  return 0;
}

int run(const tandem::RunOptions& options) {
  int provided = 0;
  MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
  int code = 2;
  try {
    code = tandem::run_workflow(MPI_COMM_WORLD, options);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tandem: error: %s\n", e.what());
    MPI_Abort(MPI_COMM_WORLD, exit_code_of(e));
  }
  MPI_Finalize();
  return code;
}

int run_command_line(int argc, char** argv) {
  CLI::App app{"Tandem: one MPI job for HPC tasks and ML services"};
  app.require_subcommand(1);
  app.set_version_flag("--version", tandem::version());

  tandem::RunOptions run_opts;
  auto* run_cmd = app.add_subcommand("run", "Run a workflow (under mpirun or srun)");
  run_cmd->add_option("workflow", run_opts.workflow, "Workflow file (TOML)")->required();
  run_cmd->add_option("--run-dir", run_opts.run_dir,
                      "Run directory (default: new, under run_root)");
  run_cmd->add_option("--run-root", run_opts.run_root, "Where new run directories go");
  run_cmd->add_flag("--resume", run_opts.resume,
                    "Continue an earlier run: skip the tasks its journal shows DONE");
  run_cmd->add_flag("--allow-changes", run_opts.allow_changes,
                    "With --resume: accept a workflow edited in ways that are not safe (safe: "
                    "more instances, higher retries, longer timeouts)");
  run_cmd->add_option("--log-level", run_opts.log_level, "trace, debug, info, warn, error, off")
      ->capture_default_str();
  bool no_trace = false;
  run_cmd->add_flag("--no-trace", no_trace, "Record no trace, whatever the workflow says");
  run_cmd->add_option("--replay", run_opts.replay,
                      "Answer every service an earlier run recorded (record = true) from its "
                      "recording in that run directory: no model, no GPU, the same numbers");
  run_cmd->add_option("--progress", run_opts.progress_interval_s,
                      "Seconds between progress lines when stderr is not a terminal; 0: none "
                      "(default: [job.monitor] progress_interval)");

  std::string run_dir;
  bool as_json = false;
  bool as_html = false;
  auto* report_cmd = app.add_subcommand("report", "Where a run's time went (text, --json, --html)");
  report_cmd->add_option("run_dir", run_dir, "Run directory")->required();
  report_cmd->add_flag("--json", as_json, "Print the figures as JSON");
  report_cmd->add_flag("--html", as_html, "Write RUN_DIR/report.html and print its path");

  std::string results_task;
  auto* results_cmd = app.add_subcommand(
      "results", "Each task instance's final state, result and reason, over every job of a run");
  results_cmd->add_option("run_dir", run_dir, "Run directory")->required();
  results_cmd->add_option("--task", results_task, "Only this task's instances");
  results_cmd->add_flag("--json", as_json, "Print them as a JSON array");

  std::string file;
  auto* validate_cmd = app.add_subcommand("validate", "Check a workflow file without running it");
  validate_cmd->add_option("workflow", file, "Workflow file (TOML)")->required();

  int np = 0;
  int per_node = 0;
  auto* plan_cmd = app.add_subcommand("plan", "Show which rank gets which role, without MPI");
  plan_cmd->add_option("workflow", file, "Workflow file (TOML)")->required();
  plan_cmd->add_option("--np,-n", np, "Number of ranks the job will have")->required();
  plan_cmd->add_option("--ranks-per-node", per_node, "Ranks on each node (default: all on one)");
  int plan_gpus = -1;
  plan_cmd->add_option(
      "--gpus-per-node", plan_gpus,
      "GPUs on each node (default: those this machine shows, as a run finds them)");

  tandem::cli::SuperviseOptions sup;
  auto* sup_cmd = app.add_subcommand(
      "supervise",
      "Run a job's launch command (srun/mpirun ... tandem run ...) and relaunch it with --resume "
      "when a rank dies, inside the same allocation");
  sup_cmd->add_option("--max-relaunches", sup.max_relaunches, "Relaunch at most this many times")
      ->capture_default_str();
  sup_cmd
      ->add_option("--min-time-left", sup.min_time_left_s,
                   "Relaunch only with this many seconds left in the allocation")
      ->capture_default_str();
  sup_cmd->add_option(
      "--signal-as", sup.signal_as,
      "Forward SIGTERM/SIGINT/SIGUSR1 to the launcher as this signal (mpirun: USR1)");
  sup_cmd
      ->add_option("command", sup.command,
                   "-- then the launch command, ending with tandem run WORKFLOW [options]")
      ->required();

  CLI11_PARSE(app, argc, argv);
  try {
    if (*validate_cmd) return validate(file);
    if (*plan_cmd) return plan(file, np, per_node, plan_gpus);
    if (*report_cmd) return report(run_dir, as_json, as_html);
    if (*results_cmd) return results(run_dir, results_task, as_json);
    if (*sup_cmd) return tandem::cli::supervise(sup);
    if (*run_cmd) {
      run_opts.trace = !no_trace;
      return run(run_opts);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tandem: error: %s\n", e.what());
    return exit_code_of(e);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run_command_line(argc, argv);
  } catch (const std::exception& e) {
    // Setting up the command line itself failed (out of memory, say).
    std::fprintf(stderr, "tandem: error: %s\n", e.what());
    return 2;
  }
}
