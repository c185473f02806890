#pragma once
// The run directory: everything a run leaves behind.
//
//   workflow.toml            the file as given
//   workflow.resolved.toml   with every default filled in
//   journal.jsonl            one line per task instance that reached a final
//                            state, appended as they finish (resume reads it)
//   summary.json             counts, makespan, rates, utilisation, failures
//   history.jsonl            one line per job that worked on the run
//   running.json             while a job runs: which one (a job that ends
//                            without removing it ended without a summary)
//   ranks/rank-NNNNN.rec     each rank's black box (base/rank_record.hpp)
//   logs/rank-NNNNN.log      one log per rank
//   tasks/NAME/              per-task outputs: INDEX.out and INDEX.err for
//                            commands; output_dir() of function tasks

#include <string>

#include <nlohmann/json.hpp>

#include "config/workflow.hpp"

namespace tandem::detail {

/// Chooses the run directory: @p explicit_dir if given; with @p resume the
/// newest earlier run of this job under the run root; else a new one named
/// after the job and the time. @throws tandem::error when resuming finds none.
std::string choose_run_dir(const Workflow& wf, const std::string& explicit_dir,
                           const std::string& run_root, bool resume);

/// Creates the directory and its layout, and records the workflow.
/// @throws tandem::io_error when a file cannot be written.
void prepare_run_dir(const std::string& dir, const Workflow& wf);

/// What history.jsonl says of the workflow a job ran: its file and a hash
/// of its text, so that a run resumed with an edited file shows it.
nlohmann::json workflow_fields(const Workflow& wf);

/// Rank 0, as a job starts on @p dir: if the previous job left running.json
/// (it ended without a summary: killed hard, its node lost) a line saying
/// so goes into history.jsonl first; then running.json names this job.
/// @throws tandem::io_error when the files cannot be written.
void job_started(const std::string& dir, const Workflow& wf, bool resume);
/// The job wrote its summary and history line: running.json goes.
void job_ended_with_summary(const std::string& dir);
/// If the job that last ran on @p dir ended without a summary (running.json
/// is still there), appends the line that says so to history.jsonl and
/// removes running.json; returns whether it did. For the next job and for
/// `tandem supervise` when it does not relaunch.
bool record_job_without_summary(const std::string& dir);

}  // namespace tandem::detail
