#pragma once
// `tandem report RUN_DIR`: where a run's time went, from its summary, its
// journal and its trace. Built once into a Report; printed as text, JSON or
// a self-contained HTML page.

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace tandem::detail::report {

/// Milliseconds at the 50th, 95th and 99th percentile (nearest rank).
struct Percentiles {
  long long count = 0;
  double p50_ms = 0;
  double p95_ms = 0;
  double p99_ms = 0;
  double mean_ms = 0;
};
Percentiles percentiles(std::vector<double> values_ms);

/// One model version a replica held (summary.json's replicas[].versions).
struct VersionFigures {
  int replica = 0;
  int version = 0;
  std::string path;
  double loaded_at_s = 0;  // since the replica was READY
  double load_s = 0;
  double served_from_s = -1;
  double served_until_s = -1;     // -1: served to the end (or never)
  double served_from_run_s = -1;  // since the run started (the wall clock), for plots
  double pause_s = 0;
  long long requests = 0;
};

struct ServiceFigures {
  std::string name;
  std::string backend;
  long long requests = 0;           // answered in the last job, per the summary
  long long requests_all_jobs = 0;  // over every job in history.jsonl
  long long errors = 0;
  long long expired = 0;       // dropped uncomputed: their deadline could not be met
  long long late_replies = 0;  // computed, but after their deadline
  double deadline_ms = 0;
  std::string fallback;
  std::string replay_of;  // backend "replay": the recording it answers from
  long long batches = 0;
  double mean_batch_rows = 0;
  std::map<long long, long long> batch_rows;  // rows per batch -> batches
  long long retries = 0;                      // bridge retries, from the trace
  long long traced_requests = 0;              // requests with every event in the trace
  // Collective calls (infer_all), from the trace: one event per node per
  // call, with the rows and ranks it carried and the requests it took.
  long long collective_calls = 0;
  long long collective_requests = 0;
  long long collective_rows = 0;
  long long collective_ranks = 0;
  // total = transit_out + queue_wait + compute + transit_back, per request:
  // transit_out, client send to the leader taking the request in, less
  // the time the leader was busy with batches meanwhile; queue_wait, that
  // busy time plus the wait in the leader's queue until the request's
  // batch starts; compute, batch start to reply sent; transit_back, reply
  // sent to received. The seed paper's comm_1 is transit_out + queue_wait,
  // its comm_2 transit_back, its reply our compute.
  Percentiles total, transit_out, queue_wait, compute, transit_back, comm_1, comm_2;
  std::vector<double> total_ms;  // per traced request, for the histogram
  std::vector<VersionFigures> versions;
  std::vector<std::string> version_errors;  // loads that failed, "replica R: why"
};

/// One job that worked on the run, from history.jsonl (a resumed run has
/// several).
struct JobFigures {
  long long started_us = 0;
  double makespan_s = 0;
  long long done = 0;
  long long failed = 0;
  long long canceled = 0;
  int exit_code = 0;
  int interrupted_by_signal = 0;
  bool ended_without_summary = false;         // its ranks died; the next job recorded it
  std::string job_id;                         // the batch system's, if any
  std::map<std::string, long long> requests;  // per service
  // Computed once from the above, for every output.
  long long all_requests = 0;  // over the services
  std::string ended;           // "exit code 0", "stopped by signal 15, exit code 143", ...
};

/// A rank that ended the job with Session::abort (RUN_DIR/aborts.jsonl).
struct AbortFigures {
  int rank = 0;
  int exit_code = 0;
  std::string host;
  std::string reason;
  long long at_us = 0;
};

/// An instance whose last state is FAILED or CANCELED, and where its
/// error output is.
struct Unfinished {
  std::string task;
  int index = 0;
  std::string state;
  int attempts = 0;
  int exit_code = 0;
  std::string reason;
  std::string err_file;  // relative to the run directory; empty when there is none
};

struct SlowTask {
  std::string task;
  int index = 0;
  std::string state;
  double seconds = 0;
  int worker = -1;
};

/// A span on the timeline: a task on a worker, a batch on a replica.
struct Span {
  int rank = 0;
  double start_s = 0;
  double end_s = 0;
  int kind = 0;  // 0 task, 1 batch, 2 request (on the client), 3 a worker serving a replica
  std::string label;
};

/// A series a task wrote into RUN_DIR/series/NAME.csv ("unix_seconds,value"
/// lines): plotted against the run's wall time, model switches marked.
struct Series {
  std::string name;
  std::vector<std::pair<double, double>> points;  // (seconds since the run started, value)
};

/// One round of a steering task (adaptive workflows): the instances it
/// labelled with that round when it submitted them (or, unlabelled, those
/// of one submit call), and how they ended, from the journal.
struct SteeringRound {
  std::string submitter;             // "think[0]"
  int call = 0;                      // its round label, or its N-th submit call from 1
  double at_s = 0;                   // when its first was journaled, since the run started
  std::map<std::string, int> tasks;  // instances per workflow task
  int instances = 0, done = 0, failed = 0, canceled = 0;  // the rest have not ended
  double first_start_s = -1, last_end_s = -1;             // of its instances; -1: none
};

struct Report {
  std::string run_dir;
  std::string job;
  int exit_code = 0;
  bool resumed = false;
  std::string replay_of;  // `tandem run --replay`: the run whose recordings answered
  int world_size = 0;
  int workers = 0;
  bool spmd = false;  // an SPMD session: application ranks, no tasks
  int app_ranks = 0;
  double makespan_s = 0;
  // The last job wrote no summary.json (killed, a rank died or aborted):
  // the figures are what the journal, history and aborts say.
  bool no_summary = false;
  bool journal_present = false;      // the run has a journal (a pilot run)
  std::vector<AbortFigures> aborts;  // ranks that ended the job, oldest first
  // Start-up, in seconds: the slowest rank's process age when Tandem started
  // (launcher + MPI_Init), every rank's role known, the slowest model load,
  // the first and the last replica READY, the first task dispatched; all but
  // the first relative to rank 0 entering Tandem.
  double mpi_start_s = 0;
  double roles_ready_s = 0;
  double model_load_s = 0;
  double first_ready_s = -1;
  double all_ready_s = -1;
  double run_start_s = 0;
  long long tasks_total = 0, tasks_done = 0, tasks_failed = 0, tasks_canceled = 0,
            tasks_done_earlier = 0;
  double tasks_per_s = 0;
  double worker_utilisation = 0;
  std::vector<ServiceFigures> services;  // the last job's; requests_all_jobs over all
  std::vector<JobFigures> jobs;          // every job of the run, oldest first
  std::vector<SlowTask> slowest;
  std::vector<Unfinished> unfinished;  // FAILED and CANCELED instances, by task and index
  bool has_trace = false;
  long long trace_events = 0;
  long long dropped_events = 0;
  std::vector<std::string> tracks;  // per rank
  std::vector<Span> spans;          // at most kMaxSpans, the longest kept
  double trace_end_s = 0;
  std::vector<std::pair<double, std::string>> marks;  // start-up milestones
  std::vector<Series> series;
  std::vector<SteeringRound> rounds;  // by submitter, then call
};

constexpr std::size_t kMaxSpans = 20000;

/// Reads @p run_dir. @throws tandem::error when it holds no summary.json.
Report build(const std::string& run_dir);

/// The rounds of the run's steering tasks, from RUN_DIR/journal.jsonl;
/// times since @p origin_us (report/rounds.cpp).
std::vector<SteeringRound> read_rounds(const std::string& run_dir, long long origin_us);

nlohmann::json to_json(const Report& r);
std::string to_text(const Report& r);
/// One page, no network fetches: numbers, a per-rank timeline and the
/// latency and batch-size histograms as inline SVG.
std::string to_html(const Report& r);

}  // namespace tandem::detail::report
