// The report as text for a terminal and as JSON for programs.

#include <fmt/format.h>

#include "report/report.hpp"

using nlohmann::json;

namespace tandem::detail::report {

namespace {
json percentiles_json(const Percentiles& p) {
  return {{"count", p.count},
          {"p50_ms", p.p50_ms},
          {"p95_ms", p.p95_ms},
          {"p99_ms", p.p99_ms},
          {"mean_ms", p.mean_ms}};
}

std::string ms(const Percentiles& p) {
  return fmt::format("{:9.3f} {:9.3f} {:9.3f}", p.p50_ms, p.p95_ms, p.p99_ms);
}
json versions_json(const ServiceFigures& f) {
  json out = json::array();
  for (const VersionFigures& v : f.versions) {
    out.push_back({{"replica", v.replica},
                   {"version", v.version},
                   {"path", v.path},
                   {"loaded_at_s", v.loaded_at_s},
                   {"load_s", v.load_s},
                   {"served_from_s", v.served_from_s},
                   {"served_until_s", v.served_until_s},
                   {"pause_s", v.pause_s},
                   {"requests", v.requests}});
  }
  return out;
}

std::string served_span(const VersionFigures& v) {
  if (v.served_from_s < 0) return "never served";
  if (v.served_until_s < 0) return fmt::format("served from {:.3f} s", v.served_from_s);
  return fmt::format("served {:.3f}-{:.3f} s", v.served_from_s, v.served_until_s);
}
}  // namespace

json to_json(const Report& r) {
  json services = json::array();
  for (const ServiceFigures& f : r.services) {
    json hist = json::object();
    for (const auto& [rows, n] : f.batch_rows) hist[std::to_string(rows)] = n;
    services.push_back({{"name", f.name},
                        {"backend", f.backend},
                        {"requests", f.requests},
                        {"requests_all_jobs", f.requests_all_jobs},
                        {"errors", f.errors},
                        {"expired", f.expired},
                        {"late_replies", f.late_replies},
                        {"deadline_ms", f.deadline_ms},
                        {"fallback", f.fallback},
                        {"replay_of", f.replay_of},
                        {"batches", f.batches},
                        {"mean_batch_rows", f.mean_batch_rows},
                        {"batch_rows_histogram", hist},
                        {"bridge_retries", f.retries},
                        {"model_versions", versions_json(f)},
                        {"version_errors", f.version_errors},
                        {"traced_requests", f.traced_requests},
                        {"collective",
                         {{"calls", f.collective_calls},
                          {"requests", f.collective_requests},
                          {"rows", f.collective_rows},
                          {"ranks", f.collective_ranks}}},
                        {"latency",
                         {{"total", percentiles_json(f.total)},
                          {"transit_out", percentiles_json(f.transit_out)},
                          {"queue_wait", percentiles_json(f.queue_wait)},
                          {"compute", percentiles_json(f.compute)},
                          {"transit_back", percentiles_json(f.transit_back)},
                          {"comm_1", percentiles_json(f.comm_1)},
                          {"comm_2", percentiles_json(f.comm_2)}}}});
  }
  json series = json::object();
  for (const Series& s : r.series) series[s.name] = s.points;
  json slowest = json::array();
  for (const SlowTask& t : r.slowest) {
    slowest.push_back({{"task", t.task},
                       {"index", t.index},
                       {"state", t.state},
                       {"seconds", t.seconds},
                       {"worker", t.worker}});
  }
  json jobs = json::array();
  for (const JobFigures& f : r.jobs) {
    jobs.push_back({{"started_us", f.started_us},
                    {"makespan_s", f.makespan_s},
                    {"done", f.done},
                    {"failed", f.failed},
                    {"canceled", f.canceled},
                    {"exit_code", f.exit_code},
                    {"interrupted_by_signal",
                     f.interrupted_by_signal ? json(f.interrupted_by_signal) : json(nullptr)},
                    {"ended_without_summary", f.ended_without_summary},
                    {"job_id", f.job_id},
                    {"requests", f.requests},
                    {"ended", f.ended}});
  }
  json aborts = json::array();
  for (const AbortFigures& a : r.aborts) {
    aborts.push_back({{"rank", a.rank},
                      {"host", a.host},
                      {"exit_code", a.exit_code},
                      {"reason", a.reason},
                      {"at_us", a.at_us}});
  }
  json unfinished = json::array();
  for (const Unfinished& u : r.unfinished) {
    unfinished.push_back({{"task", u.task},
                          {"index", u.index},
                          {"state", u.state},
                          {"attempts", u.attempts},
                          {"exit_code", u.exit_code},
                          {"reason", u.reason},
                          {"err_file", u.err_file.empty() ? json(nullptr) : json(u.err_file)}});
  }
  json rounds = json::array();
  for (const SteeringRound& g : r.rounds) {
    rounds.push_back({{"submitter", g.submitter},
                      {"round", g.call},
                      {"at_s", g.at_s},
                      {"tasks", g.tasks},
                      {"instances", g.instances},
                      {"done", g.done},
                      {"failed", g.failed},
                      {"canceled", g.canceled},
                      {"first_start_s", g.first_start_s >= 0 ? json(g.first_start_s) : json()},
                      {"last_end_s", g.last_end_s >= 0 ? json(g.last_end_s) : json()}});
  }
  return {{"run_dir", r.run_dir},
          {"summary_written", !r.no_summary},
          {"steering_rounds", rounds},
          {"failed_and_canceled", unfinished},
          {"aborts", aborts},
          {"jobs", jobs},
          {"job", r.job},
          {"exit_code", r.exit_code},
          {"resumed", r.resumed},
          {"replay_of", r.replay_of},
          {"world_size", r.world_size},
          {"workers", r.workers},
          {"mode", r.spmd ? "spmd" : "pilot"},
          {"app_ranks", r.app_ranks},
          {"makespan_s", r.makespan_s},
          {"startup",
           {{"mpi_start_s", r.mpi_start_s},
            {"roles_ready_s", r.roles_ready_s},
            {"model_load_s", r.model_load_s},
            {"first_ready_s", r.first_ready_s >= 0 ? json(r.first_ready_s) : json(nullptr)},
            {"all_ready_s", r.all_ready_s >= 0 ? json(r.all_ready_s) : json(nullptr)},
            {"run_start_s", r.run_start_s}}},
          {"tasks",
           {{"total", r.tasks_total},
            {"done", r.tasks_done},
            {"done_earlier", r.tasks_done_earlier},
            {"failed", r.tasks_failed},
            {"canceled", r.tasks_canceled},
            {"per_s", r.tasks_per_s},
            {"worker_utilisation", r.worker_utilisation}}},
          {"services", services},
          {"series", series},
          {"slowest_tasks", slowest},
          {"trace",
           {{"present", r.has_trace}, {"events", r.trace_events}, {"dropped", r.dropped_events}}}};
}

namespace {

// One line per round: "think[0] round 3 at 1.234 s: 16 x simulate; 16 done; ran ...".
std::string round_text(const SteeringRound& g) {
  std::string what;
  for (const auto& [task, n] : g.tasks) {
    what += fmt::format("{}{} x {}", what.empty() ? "" : ", ", n, task);
  }
  const int open = g.instances - g.done - g.failed - g.canceled;
  std::string ended = fmt::format("{} done", g.done);
  if (g.failed > 0) ended += fmt::format(", {} failed", g.failed);
  if (g.canceled > 0) ended += fmt::format(", {} canceled", g.canceled);
  if (open > 0) ended += fmt::format(", {} not ended", open);
  std::string ran;
  if (g.first_start_s >= 0 && g.last_end_s >= 0) {
    ran = fmt::format("; ran {:.3f} .. {:.3f} s", g.first_start_s, g.last_end_s);
  }
  return fmt::format("{} round {:>3} at {:8.3f} s: {}; {}{}", g.submitter, g.call, g.at_s, what,
                     ended, ran);
}

}  // namespace

std::string to_text(const Report& r) {
  std::string out;
  auto line = [&](const std::string& s) {
    out += s;
    out += '\n';
  };
  line(fmt::format("run {}  ({}exit code {}{})", r.run_dir,
                   r.job.empty() ? std::string() : fmt::format("job '{}', ", r.job), r.exit_code,
                   r.resumed ? ", resumed" : ""));
  if (!r.replay_of.empty()) {
    line(
        fmt::format("replay of {}: its recorded services answered from their recordings, "
                    "not their models",
                    r.replay_of));
  }
  if (r.no_summary) {
    line(r.aborts.empty()
             ? "the last job wrote no summary.json: it was killed or a rank died; the figures "
               "below are what the journal and history say"
             : "the last job wrote no summary.json: a rank ended it (below)");
  }
  for (const AbortFigures& a : r.aborts) {
    line(fmt::format("ended by rank {}{} with exit code {}: {}", a.rank,
                     a.host.empty() ? std::string() : " on " + a.host, a.exit_code, a.reason));
  }
  if (!r.no_summary) {
    line(fmt::format("makespan {:.3f} s on {} ranks, {} {}", r.makespan_s, r.world_size,
                     r.spmd ? r.app_ranks : r.workers, r.spmd ? "application ranks" : "workers"));
  }
  if (r.jobs.size() > 1) {
    // A resumed run: what each job did. The figures below are the last
    // job's, except the task counts (the run as it stands) and the
    // requests over all jobs.
    line("");
    line(
        fmt::format("jobs: {} worked on this run (history.jsonl); start-up and latency below "
                    "are the last one's",
                    r.jobs.size()));
    for (std::size_t i = 0; i < r.jobs.size(); ++i) {
      const JobFigures& f = r.jobs[i];
      line(fmt::format("  {}{}  {:8.3f} s  {} done, {} failed, {} canceled, {} requests; {}", i + 1,
                       f.job_id.empty() ? std::string() : " (job " + f.job_id + ")", f.makespan_s,
                       f.done, f.failed, f.canceled, f.all_requests, f.ended));
    }
  }
  if (r.has_trace) {
    line("");
    line("start-up");
    line(fmt::format("  launcher + MPI_Init     {:8.3f} s  (slowest rank)", r.mpi_start_s));
    line(fmt::format("  roles ready             {:8.3f} s", r.roles_ready_s));
    if (r.first_ready_s >= 0) {
      line(fmt::format("  model load (slowest)    {:8.3f} s", r.model_load_s));
      line(fmt::format("  first / last READY      {:8.3f} s / {:.3f} s", r.first_ready_s,
                       r.all_ready_s));
    }
    if (!r.spmd) line(fmt::format("  first task dispatched   {:8.3f} s", r.run_start_s));
  }
  if (r.no_summary && r.journal_present) {
    line("");
    line(fmt::format("tasks, as the journal has them: {} done, {} failed, {} canceled",
                     r.tasks_done, r.tasks_failed, r.tasks_canceled));
  } else if (!r.spmd && !r.no_summary) {
    line("");
    line(fmt::format(
        "tasks: {} of {} done{}, {} failed, {} canceled; {:.1f} tasks/s, worker utilisation "
        "{:.0f}%",
        r.tasks_done, r.tasks_total,
        r.tasks_done_earlier ? fmt::format(" ({} in earlier jobs)", r.tasks_done_earlier)
                             : std::string(),
        r.tasks_failed, r.tasks_canceled, r.tasks_per_s, r.worker_utilisation * 100));
  }
  for (const ServiceFigures& f : r.services) {
    line("");
    line(fmt::format(
        "service '{}' ({}): {} requests{}, {} errors, {} batches of {:.1f} rows on "
        "average{}",
        f.name, f.backend, f.requests,
        r.jobs.size() > 1
            ? fmt::format(" in the last job, {} in all {} jobs", f.requests_all_jobs, r.jobs.size())
            : std::string(),
        f.errors, f.batches, f.mean_batch_rows,
        f.retries ? fmt::format(", {} bridge retries", f.retries) : std::string()));
    if (f.deadline_ms > 0 || f.expired > 0 || f.late_replies > 0) {
      line(fmt::format(
          "  deadlines: {} expired (dropped uncomputed), {} answered late{}", f.expired,
          f.late_replies,
          f.deadline_ms > 0 ? fmt::format(" (deadline_ms = {:g})", f.deadline_ms) : std::string()));
    }
    if (!f.fallback.empty()) line(fmt::format("  fallback: service '{}'", f.fallback));
    if (!f.replay_of.empty()) line("  replayed from " + f.replay_of);
    if (f.traced_requests > 0) {
      line(fmt::format("  latency ms     {:>9} {:>9} {:>9}   ({} traced requests)", "p50", "p95",
                       "p99", f.traced_requests));
      line("  total          " + ms(f.total));
      line("    transit out  " + ms(f.transit_out));
      line("    queue wait   " + ms(f.queue_wait));
      line("    compute      " + ms(f.compute));
      line("    transit back " + ms(f.transit_back));
    }
    if (f.collective_calls > 0) {
      const auto calls = static_cast<double>(f.collective_calls);
      line(fmt::format(
          "  collective (infer_all): {} node requests for {} calls of {:.1f} ranks and {:.1f} "
          "rows on average; {} single requests besides",
          f.collective_requests, f.collective_calls,
          static_cast<double>(f.collective_ranks) / calls,
          static_cast<double>(f.collective_rows) / calls,
          std::max(0LL, f.requests - f.collective_requests)));
    }
    std::string hist;
    for (const auto& [rows, n] : f.batch_rows) hist += fmt::format(" {}:{}", rows, n);
    if (!hist.empty()) line("  batch rows:batches" + hist);
    if (f.versions.size() > 1 || !f.version_errors.empty()) {
      line("  model versions (times since the replica was READY)");
      for (const VersionFigures& v : f.versions) {
        line(fmt::format(
            "    replica {} version {}: {} requests, loaded in {:.3f} s at {:.3f} s, "
            "{}{}",
            v.replica, v.version, v.requests, v.load_s, v.loaded_at_s, served_span(v),
            v.pause_s > 0 ? fmt::format(", requests held {:.3f} s", v.pause_s) : std::string()));
      }
      for (const std::string& e : f.version_errors) line("    failed: " + e);
    }
  }
  for (const Series& series : r.series) {
    line("");
    line(fmt::format("series '{}': {} points, {:g} at {:.1f} s ... {:g} at {:.1f} s", series.name,
                     series.points.size(), series.points.front().second,
                     series.points.front().first, series.points.back().second,
                     series.points.back().first));
  }
  if (!r.rounds.empty()) {
    line("");
    line("steering rounds (as the steering task labelled them, or one per submit call)");
    for (const SteeringRound& g : r.rounds) line("  " + round_text(g));
  }
  if (!r.unfinished.empty()) {
    // All of them in --json; the first few here, where a person reads.
    constexpr std::size_t kShown = 20;
    line("");
    line(fmt::format("failed and canceled instances: {}", r.unfinished.size()));
    for (std::size_t k = 0; k < std::min(kShown, r.unfinished.size()); ++k) {
      const Unfinished& u = r.unfinished[k];
      line(fmt::format("  {}[{}]  {} after {} attempt(s){}: {}", u.task, u.index, u.state,
                       u.attempts,
                       u.exit_code != 0 ? fmt::format(", exit code {}", u.exit_code) : "",
                       u.reason.empty() ? "(no reason recorded)" : u.reason));
      if (!u.err_file.empty()) line(fmt::format("      its stderr: {}/{}", r.run_dir, u.err_file));
    }
    if (r.unfinished.size() > kShown) {
      line(fmt::format("  ... {} more: tandem results {} --json", r.unfinished.size() - kShown,
                       r.run_dir));
    }
  }
  if (!r.slowest.empty()) {
    line("");
    line("slowest tasks");
    for (const SlowTask& t : r.slowest) {
      line(fmt::format("  {:>10.3f} s  {}[{}]  {}  worker {}", t.seconds, t.task, t.index, t.state,
                       t.worker));
    }
  }
  if (!r.has_trace) {
    line("");
    line("(no trace.h5 in the run directory: [job.monitor] trace was off)");
  } else if (r.dropped_events > 0) {
    line("");
    line(
        fmt::format("note: {} trace events were dropped (buffers full); raise [job.monitor] "
                    "trace_node_mb (shared by a node's ranks) or trace_max_events (per rank)",
                    r.dropped_events));
  }
  return out;
}

}  // namespace tandem::detail::report
