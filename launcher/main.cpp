// The tandem command: run, validate and plan workflows.

#include <mpi.h>

#include <cstdio>
#include <iostream>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "config/workflow.hpp"
#include "layout/plan.hpp"
#include "tandem/tandem.hpp"
#include "tasks/registry.hpp"

namespace {

int validate(const std::string& file) {
  const auto wf = tandem::detail::load_workflow(file);
  tandem::detail::load_task_functions(wf);
  std::printf("%s: OK: job '%s', %zu task(s), %lld instance(s), %zu service(s)\n", file.c_str(),
              wf.job.name.c_str(), wf.tasks.size(), wf.instance_count(), wf.services.size());
  return 0;
}

int plan(const std::string& file, int np, int ranks_per_node) {
  const auto wf = tandem::detail::load_workflow(file);
  const auto p = tandem::detail::make_plan(
      wf, tandem::detail::block_nodes(np, ranks_per_node > 0 ? ranks_per_node : np));
  std::fputs(tandem::detail::format_plan(wf, p).c_str(), stdout);
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
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  MPI_Finalize();
  return code;
}

}  // namespace

int main(int argc, char** argv) {
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
  run_cmd->add_option("--log-level", run_opts.log_level, "trace, debug, info, warn, error, off")
      ->capture_default_str();

  std::string file;
  auto* validate_cmd = app.add_subcommand("validate", "Check a workflow file without running it");
  validate_cmd->add_option("workflow", file, "Workflow file (TOML)")->required();

  int np = 0;
  int per_node = 0;
  auto* plan_cmd = app.add_subcommand("plan", "Show which rank gets which role, without MPI");
  plan_cmd->add_option("workflow", file, "Workflow file (TOML)")->required();
  plan_cmd->add_option("--np,-n", np, "Number of ranks the job will have")->required();
  plan_cmd->add_option("--ranks-per-node", per_node, "Ranks on each node (default: all on one)");

  CLI11_PARSE(app, argc, argv);
  try {
    if (*validate_cmd) return validate(file);
    if (*plan_cmd) return plan(file, np, per_node);
    if (*run_cmd) return run(run_opts);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tandem: error: %s\n", e.what());
    return 2;
  }
  return 0;
}
