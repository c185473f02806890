#pragma once
// The run directory: everything a run leaves behind.
//
//   workflow.toml            the file as given
//   workflow.resolved.toml   with every default filled in
//   journal.jsonl            one line per task instance that reached a final
//                            state, appended as they finish (resume reads it)
//   summary.json             counts, makespan, rates, utilisation, failures
//   logs/rank-NNNNN.log      one log per rank
//   tasks/NAME/              per-task outputs: INDEX.out and INDEX.err for
//                            commands; output_dir() of function tasks

#include <string>

#include "config/workflow.hpp"

namespace tandem::detail {

/// Chooses the run directory: @p explicit_dir if given; with @p resume the
/// newest earlier run of this job under the run root; else a new one named
/// after the job and the time. @throws tandem::error when resuming finds none.
std::string choose_run_dir(const Workflow& wf, const std::string& explicit_dir,
                           const std::string& run_root, bool resume);

/// Creates the directory and its layout, and records the workflow.
void prepare_run_dir(const std::string& dir, const Workflow& wf);

}  // namespace tandem::detail
