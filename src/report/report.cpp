#include "report/report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <type_traits>
#include <unordered_map>

#include <fmt/format.h>

#include "protocol/service_messages.hpp"
#include "report/results.hpp"
#include "tandem/error.hpp"
#include "trace/trace.hpp"
#include "trace/trace_table.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace tandem::detail::report {

Percentiles percentiles(std::vector<double> v) {
  Percentiles p;
  p.count = static_cast<long long>(v.size());
  if (v.empty()) return p;
  std::sort(v.begin(), v.end());
  auto at = [&](double q) {
    const auto i = static_cast<std::size_t>(std::ceil(q * static_cast<double>(v.size()))) - 1;
    return v[std::min(i, v.size() - 1)];
  };
  p.p50_ms = at(0.50);
  p.p95_ms = at(0.95);
  p.p99_ms = at(0.99);
  double sum = 0;
  for (double x : v) sum += x;
  p.mean_ms = sum / static_cast<double>(v.size());
  return p;
}

namespace {

json read_json(const fs::path& path) {
  std::ifstream in(path);
  if (!in) {
    throw io_error(path.string(), fmt::format("{} does not exist: is this a Tandem run directory?",
                                              path.string()));
  }
  try {
    return json::parse(in);
  } catch (const std::exception& e) {
    throw io_error(path.string(), fmt::format("{} is not valid JSON: {}", path.string(), e.what()));
  }
}

// summary.json's fields: the fallback when missing or null, an error naming
// the file and the field when of another type (never the JSON library's
// own words, which name neither).
class Fields {
 public:
  Fields(const json& j, std::string file) : j_(j), file_(std::move(file)) {}
  template <typename T>
  T get(const char* key, T fallback) const {
    const auto it = j_.find(key);
    if (it == j_.end() || it->is_null()) return fallback;
    const bool fits = std::is_same_v<T, bool>          ? it->is_boolean()
                      : std::is_same_v<T, std::string> ? it->is_string()
                      : std::is_same_v<T, json>        ? true
                      : std::is_arithmetic_v<T>        ? it->is_number()
                                                       : false;
    if (!fits) {
      throw io_error(file_, fmt::format("{}: field \"{}\" is a {}, which Tandem never writes "
                                        "there: was the file edited or cut short?",
                                        file_, key, it->type_name()));
    }
    return it->get<T>();
  }
  Fields at(const char* key) const {
    static const json empty = json::object();
    const auto it = j_.find(key);
    if (it == j_.end() || !it->is_object()) return Fields(empty, file_);
    return Fields(*it, file_ + " (" + key + ")");
  }

 private:
  const json& j_;
  std::string file_;
};

// A JSON number, or @p fallback when the key is missing or null (history
// lines of jobs killed before their summary hold nulls).
template <typename T>
T number_or(const json& j, const char* key, T fallback) {
  const auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return fallback;
  return it->get<T>();
}

// Files a run directory may hold: a directory with none of them is not one.
bool looks_like_run_dir(const fs::path& dir) {
  for (const char* f :
       {"journal.jsonl", "history.jsonl", "running.json", "aborts.jsonl", "workflow.toml"}) {
    if (fs::exists(dir / f)) return true;
  }
  return false;
}

void read_services(const json& s, long long started_us, Report& r);

void read_summary(const fs::path& dir, Report& r) {
  if (!fs::exists(dir / "summary.json") && looks_like_run_dir(dir)) {
    // Killed, or a rank died or aborted, before the summary was written.
    r.no_summary = true;
    return;
  }
  const json s = read_json(dir / "summary.json");
  const Fields f_s(s, (dir / "summary.json").string());
  r.job = f_s.get("job", std::string());
  r.exit_code = f_s.get("exit_code", 0);
  r.resumed = f_s.get("resumed", false);
  r.replay_of = f_s.get("replay_of", std::string());
  r.world_size = f_s.get("world_size", 0);
  r.workers = f_s.get("workers", 0);
  r.spmd = f_s.get("mode", std::string()) == "spmd";
  r.app_ranks = f_s.get("app_ranks", 0);
  r.makespan_s = f_s.get("makespan_s", 0.0);
  const Fields t = f_s.at("tasks");  // none in an SPMD session
  r.tasks_total = t.get("total", 0LL);
  r.tasks_done = t.get("done", 0LL);
  r.tasks_failed = t.get("failed", 0LL);
  r.tasks_canceled = t.get("canceled", 0LL);
  r.tasks_done_earlier = t.get("done_earlier", 0LL);
  r.tasks_per_s = f_s.get("tasks_per_s", 0.0);
  r.worker_utilisation = f_s.get("worker_utilisation", 0.0);
  if (s.contains("services")) {
    try {
      read_services(s, f_s.get("started_us", 0LL), r);
    } catch (const json::exception&) {
      throw io_error((dir / "summary.json").string(),
                     fmt::format("{}: field \"services\" is not what Tandem writes there: was the "
                                 "file edited or cut short?",
                                 (dir / "summary.json").string()));
    }
  }
}

void read_services(const json& s, long long started_us, Report& r) {
  {
    for (const auto& [name, v] : s["services"].items()) {
      ServiceFigures f;
      f.name = name;
      f.backend = v.value("backend", "");
      f.requests = v.value("requests", 0LL);
      f.errors = v.value("errors", 0LL);
      f.expired = v.value("expired", 0LL);
      f.late_replies = v.value("late_replies", 0LL);
      f.deadline_ms = v.value("deadline_ms", 0.0);
      f.fallback = v.value("fallback", "");
      f.replay_of = v.value("replay_of", "");
      f.batches = v.value("batches", 0LL);
      f.mean_batch_rows = v.value("mean_batch_rows", 0.0);
      if (v.contains("batch_rows_histogram")) {
        for (const auto& [rows, n] : v["batch_rows_histogram"].items())
          f.batch_rows[std::stoll(rows)] = n.get<long long>();
      }
      for (const auto& replica : v.value("replicas", json::array())) {
        const int index = replica.value("replica", 0);
        for (const auto& ver : replica.value("versions", json::array())) {
          VersionFigures m;
          m.replica = index;
          m.version = ver.value("version", 0);
          m.path = ver.value("path", "");
          m.loaded_at_s = ver.value("loaded_at_s", 0.0);
          m.load_s = ver.value("load_s", 0.0);
          m.served_from_s = ver.value("served_from_s", -1.0);
          m.served_until_s = ver.value("served_until_s", -1.0);
          const double unix_s = ver.value("served_from_unix_s", 0.0);
          const double started_s = static_cast<double>(started_us) / 1e6;
          if (unix_s > 0 && started_s > 0) m.served_from_run_s = unix_s - started_s;
          m.pause_s = ver.value("pause_s", 0.0);
          m.requests = ver.value("requests", 0LL);
          f.versions.push_back(std::move(m));
        }
        for (const auto& e : replica.value("version_errors", json::array())) {
          f.version_errors.push_back(fmt::format("replica {}: {}", index, e.get<std::string>()));
        }
      }
      r.services.push_back(std::move(f));
    }
  }
}

void read_journal(const fs::path& dir, Report& r) {
  std::ifstream in(dir / "journal.jsonl");
  std::string line;
  std::vector<SlowTask> all;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    json j;
    try {
      j = json::parse(line);
    } catch (const std::exception&) {
      continue;  // a line cut short by a crash
    }
    const auto started = j.value("started_us", 0LL);
    const auto ended = j.value("ended_us", 0LL);
    if (started <= 0 || ended < started) continue;
    all.push_back(SlowTask{j.value("task", ""), j.value("index", 0), j.value("state", ""),
                           static_cast<double>(ended - started) / 1e6, j.value("worker", -1)});
  }
  const std::size_t keep = std::min<std::size_t>(10, all.size());
  std::partial_sort(all.begin(), all.begin() + static_cast<long>(keep), all.end(),
                    [](const SlowTask& a, const SlowTask& b) { return a.seconds > b.seconds; });
  all.resize(keep);
  r.slowest = std::move(all);
}

// The instances whose last state is FAILED or CANCELED (the journal's last
// line wins, as for `tandem results`), with their last attempt's .err file.
void read_unfinished(const fs::path& dir, Report& r) {
  if (!fs::exists(dir / "journal.jsonl")) return;
  r.journal_present = true;
  for (const InstanceResult& i : read_results(dir.string())) {
    // Without a summary, the journal is what says how many finished.
    if (r.no_summary) {
      r.tasks_done += i.state == "DONE";
      r.tasks_failed += i.state == "FAILED";
      r.tasks_canceled += i.state == "CANCELED";
    }
    if (i.state == "DONE") continue;
    Unfinished u{i.task, i.index, i.state, i.attempts, i.exit_code, i.reason, {}};
    const std::string stem = fmt::format("tasks/{}/{}{}", i.task, i.index,
                                         i.attempts > 1 ? fmt::format(".try{}", i.attempts) : "");
    if (fs::exists(dir / (stem + ".err"))) u.err_file = stem + ".err";
    r.unfinished.push_back(std::move(u));
  }
}

// history.jsonl: one line per job that worked on the run (absent before
// the first job ended, and in SPMD sessions). A line cut short by a crash
// is skipped.
void read_history(const fs::path& dir, Report& r) {
  std::ifstream in(dir / "history.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    json j;
    try {
      j = json::parse(line);
    } catch (const std::exception&) {
      continue;
    }
    if (!j.is_object()) continue;
    JobFigures f;
    f.started_us = number_or(j, "started_us", 0LL);
    f.makespan_s = number_or(j, "makespan_s", 0.0);
    f.done = number_or(j, "done", 0LL);
    f.failed = number_or(j, "failed", 0LL);
    f.canceled = number_or(j, "canceled", 0LL);
    f.exit_code = number_or(j, "exit_code", 0);
    if (j.contains("interrupted_by_signal") && j["interrupted_by_signal"].is_number()) {
      f.interrupted_by_signal = j["interrupted_by_signal"].get<int>();
    }
    f.ended_without_summary = j.value("ended_without_summary", false) == true;
    if (j.contains("allocation") && j["allocation"].is_object() &&
        j["allocation"].contains("job_id") && j["allocation"]["job_id"].is_string()) {
      f.job_id = j["allocation"]["job_id"].get<std::string>();
    }
    if (j.contains("services") && j["services"].is_object()) {
      for (const auto& [name, v] : j["services"].items()) {
        if (v.is_object()) f.requests[name] = number_or(v, "requests", 0LL);
      }
    }
    for (const auto& [name, n] : f.requests) f.all_requests += n;
    f.ended = f.ended_without_summary   ? std::string("its ranks died")
              : f.interrupted_by_signal ? fmt::format("stopped by signal {}, exit code {}",
                                                      f.interrupted_by_signal, f.exit_code)
                                        : fmt::format("exit code {}", f.exit_code);
    r.jobs.push_back(std::move(f));
  }
  for (ServiceFigures& s : r.services) {
    s.requests_all_jobs = 0;
    for (const JobFigures& f : r.jobs) {
      if (auto it = f.requests.find(s.name); it != f.requests.end())
        s.requests_all_jobs += it->second;
    }
    // A session, or a run from before history kept the services.
    s.requests_all_jobs = std::max(s.requests_all_jobs, s.requests);
  }
}

// aborts.jsonl: one line per rank that ended the job with Session::abort.
void read_aborts(const fs::path& dir, Report& r) {
  std::ifstream in(dir / "aborts.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    const json j = json::parse(line, nullptr, false);
    if (!j.is_object()) continue;  // a line cut short
    AbortFigures a;
    a.rank = number_or(j, "rank", -1);
    a.exit_code = number_or(j, "exit_code", 1);
    a.at_us = number_or(j, "at_us", 0LL);
    if (j.contains("host") && j["host"].is_string()) a.host = j["host"].get<std::string>();
    if (j.contains("reason") && j["reason"].is_string()) a.reason = j["reason"].get<std::string>();
    r.aborts.push_back(std::move(a));
  }
  // A job that ended by abort wrote no summary: its exit code is the abort's.
  if (r.no_summary && !r.aborts.empty()) r.exit_code = r.aborts.front().exit_code;
}

double seconds(std::int64_t t_ns) {
  return static_cast<double>(t_ns) / 1e9;
}

std::int64_t key(std::int64_t rank, std::int64_t id) {
  return (rank << 40) ^ id;
}

// A request's events, found across the client's and the leader's tables.
struct RequestTimes {
  std::int64_t sent = -1, queued = -1, computed = -1, replied = -1, received = -1;
  std::int64_t batch = -1;
  int leader = -1;
  int service = -1;
};

void read_trace(const fs::path& dir, Report& r) {
  const std::string path = (dir / "trace.h5").string();
  if (!fs::exists(path)) return;
  r.has_trace = true;
  using namespace trace;
  r.tracks = read_strings(path, "tracks");
  r.dropped_events = read_attribute(path, "dropped_events");
  const auto task_names = read_strings(path, "task_names");
  std::vector<std::vector<Row>> rows(kKindCount);
  for (int k = 0; k < kKindCount; ++k) {
    rows[k] = read_rows(path, k);
    r.trace_events += static_cast<long long>(rows[k].size());
  }

  // Start-up milestones.
  for (const Row& e : rows[kPhase]) {
    const double t = seconds(e.t_ns);
    if (e.a == kPhaseJobStart)
      r.mpi_start_s = std::max(r.mpi_start_s, static_cast<double>(e.b) / 1e6);
    if (e.a == kPhaseRolesReady) r.roles_ready_s = std::max(r.roles_ready_s, t);
    if (e.a == kPhaseRunStart) r.run_start_s = t;
  }
  constexpr int kReady = static_cast<int>(ServiceState::READY);
  for (const Row& e : rows[kServiceState]) {
    if (e.d != kReady) continue;
    const double t = seconds(e.t_ns);
    r.model_load_s = std::max(r.model_load_s, static_cast<double>(e.b) / 1e6);
    if (r.first_ready_s < 0 || t < r.first_ready_s) r.first_ready_s = t;
    r.all_ready_s = std::max(r.all_ready_s, t);
  }
  r.marks.emplace_back(r.roles_ready_s, "roles ready");
  if (r.first_ready_s >= 0) r.marks.emplace_back(r.first_ready_s, "first READY");
  if (!r.spmd) r.marks.emplace_back(r.run_start_s, "run start");

  // Requests: client events keyed by (client rank, id), leader events by
  // (client rank from the event, id).
  std::unordered_map<std::int64_t, RequestTimes> requests;
  for (const Row& e : rows[kRequestSend]) {
    auto& q = requests[key(e.rank, e.a)];
    q.sent = e.t_ns;
    q.service = e.c;
  }
  for (const Row& e : rows[kReplyReceive]) requests[key(e.rank, e.a)].received = e.t_ns;
  for (const Row& e : rows[kRequestQueue]) {
    auto& q = requests[key(e.c, e.a)];
    q.queued = e.t_ns;
    q.leader = e.rank;
  }
  for (const Row& e : rows[kRequestBatch]) requests[key(e.c, e.a)].batch = e.b;
  for (const Row& e : rows[kRequestReply]) requests[key(e.c, e.a)].replied = e.t_ns;
  std::unordered_map<std::int64_t, const Row*> batches;  // (leader, batch id)
  for (const Row& e : rows[kBatchCompute]) batches[key(e.rank, e.a)] = &e;

  std::map<int, std::size_t> by_index;  // service index -> position in r.services
  const auto service_names = read_strings(path, "service_names");
  for (std::size_t s = 0; s < service_names.size(); ++s) {
    for (std::size_t i = 0; i < r.services.size(); ++i) {
      if (r.services[i].name == service_names[s]) by_index[static_cast<int>(s)] = i;
    }
  }
  // Each leader's busy spans (its batches, start to end), sorted: a request
  // that reached a busy leader waited, and that is queue wait, not transit.
  std::unordered_map<int, std::vector<std::pair<std::int64_t, std::int64_t>>> busy;
  for (const Row& e : rows[kBatchCompute]) busy[e.rank].emplace_back(e.t_ns, e.t_ns + e.b);
  for (auto& [leader, spans] : busy) std::sort(spans.begin(), spans.end());
  auto busy_within = [&](int leader, std::int64_t from, std::int64_t to) {
    std::int64_t overlap = 0;
    auto it = busy.find(leader);
    if (it == busy.end() || to <= from) return overlap;
    const auto& spans = it->second;
    // The first span that ends after `from`: spans do not overlap (one
    // leader runs one batch at a time), so ends are sorted as starts are.
    auto s = std::lower_bound(spans.begin(), spans.end(), from,
                              [](const auto& span, std::int64_t t) { return span.second <= t; });
    for (; s != spans.end() && s->first < to; ++s) {
      overlap += std::min(to, s->second) - std::max(from, s->first);
    }
    return overlap;
  };
  struct Split {
    std::vector<double> transit_out, queue_wait, compute, transit_back, comm_1, comm_2;
  };
  std::vector<Split> split(r.services.size());
  for (const auto& [k, q] : requests) {
    if (q.sent < 0 || q.received < 0 || q.queued < 0 || q.replied < 0) continue;
    auto it = by_index.find(q.service);
    if (it == by_index.end()) continue;
    ServiceFigures& f = r.services[it->second];
    Split& p = split[it->second];
    auto ms = [](std::int64_t ns) {
      return static_cast<double>(std::max<std::int64_t>(0, ns)) / 1e6;
    };
    auto b = batches.find(key(q.leader, q.batch));
    const std::int64_t batch_start = b != batches.end() ? b->second->t_ns : q.queued;
    const std::int64_t busy_ns = busy_within(q.leader, q.sent, q.queued);
    const std::int64_t out_ns = q.queued - q.sent - busy_ns;
    const std::int64_t wait_ns = busy_ns + (batch_start - q.queued);
    ++f.traced_requests;
    f.total_ms.push_back(ms(q.received - q.sent));
    p.transit_out.push_back(ms(out_ns));
    p.queue_wait.push_back(ms(wait_ns));
    p.compute.push_back(ms(q.replied - batch_start));
    p.transit_back.push_back(ms(q.received - q.replied));
    p.comm_1.push_back(ms(out_ns + wait_ns));
    p.comm_2.push_back(ms(q.received - q.replied));
  }
  for (std::size_t i = 0; i < r.services.size(); ++i) {
    ServiceFigures& f = r.services[i];
    Split& p = split[i];
    f.total = percentiles(f.total_ms);
    f.transit_out = percentiles(std::move(p.transit_out));
    f.queue_wait = percentiles(std::move(p.queue_wait));
    f.compute = percentiles(std::move(p.compute));
    f.transit_back = percentiles(std::move(p.transit_back));
    f.comm_1 = percentiles(std::move(p.comm_1));
    f.comm_2 = percentiles(std::move(p.comm_2));
  }
  for (const Row& e : rows[kCollective]) {
    auto it = by_index.find(e.c);
    if (it == by_index.end()) continue;
    ServiceFigures& f = r.services[it->second];
    ++f.collective_calls;
    f.collective_rows += e.a;
    f.collective_requests += e.b;
    f.collective_ranks += e.d;
  }
  for (const Row& e : rows[kBridgeRetry]) {
    auto it = by_index.find(e.d);
    if (it != by_index.end()) ++r.services[it->second].retries;
  }

  // The timeline: tasks on workers, batches on replicas.
  const auto first_instance = read_ints(path, "task_first_instance");
  auto task_label = [&](std::int64_t instance) {
    auto it = std::upper_bound(first_instance.begin(), first_instance.end(), instance);
    if (it == first_instance.begin() || task_names.size() != first_instance.size())
      return fmt::format("instance {}", instance);
    const auto t = static_cast<std::size_t>(it - first_instance.begin() - 1);
    return fmt::format("{}[{}]", task_names[t], instance - first_instance[t]);
  };
  std::unordered_map<std::int64_t, const Row*> starts;
  for (const Row& e : rows[kTaskStart]) starts[key(e.rank, e.a * 4096 + e.b)] = &e;
  for (const Row& e : rows[kTaskEnd]) {
    auto it = starts.find(key(e.rank, e.a * 4096 + e.b));
    if (it == starts.end()) continue;
    r.spans.push_back(Span{e.rank, seconds(it->second->t_ns), seconds(e.t_ns), 0, task_label(e.a)});
  }
  for (const auto& [k, q] : requests) {
    if (q.sent < 0 || q.received < 0) continue;
    const auto name = q.service >= 0 && static_cast<std::size_t>(q.service) < service_names.size()
                          ? service_names[q.service]
                          : std::string("a service");
    r.spans.push_back(Span{static_cast<int>(k >> 40), seconds(q.sent), seconds(q.received), 2,
                           "request to " + name});
  }
  for (const Row& e : rows[kBatchCompute]) {
    r.spans.push_back(Span{e.rank, seconds(e.t_ns), seconds(e.t_ns + e.b), 1,
                           fmt::format("batch of {} rows", e.c)});
  }
  // A worker's turns as a replica of an elastic service: from loading the
  // model to its return to tasks.
  std::unordered_map<int, const Row*> serving_since;
  std::vector<const Row*> roles;
  for (const Row& e : rows[kRole]) roles.push_back(&e);
  std::sort(roles.begin(), roles.end(),
            [](const Row* a, const Row* b) { return a->t_ns < b->t_ns; });
  for (const Row* e : roles) {
    if (e->a == kRoleLoading) {
      serving_since[e->rank] = e;
      continue;
    }
    if (e->a != kRoleWorker || !serving_since.contains(e->rank)) continue;
    const Row* from = serving_since[e->rank];
    const auto name = from->c >= 0 && static_cast<std::size_t>(from->c) < service_names.size()
                          ? service_names[from->c]
                          : std::string("a service");
    r.spans.push_back(Span{e->rank, seconds(from->t_ns), seconds(e->t_ns), 3,
                           fmt::format("serving {} replica {}", name, from->b)});
    serving_since.erase(e->rank);
  }
  for (const auto& table : rows) {
    for (const Row& e : table) r.trace_end_s = std::max(r.trace_end_s, seconds(e.t_ns));
  }
  if (r.spans.size() > kMaxSpans) {
    std::nth_element(
        r.spans.begin(), r.spans.begin() + kMaxSpans, r.spans.end(),
        [](const Span& a, const Span& b) { return a.end_s - a.start_s > b.end_s - b.start_s; });
    r.spans.resize(kMaxSpans);
  }
}

}  // namespace

// Series tasks wrote: RUN_DIR/series/NAME.csv, "unix_seconds,value" per
// line (other lines, such as a header, are skipped).
void read_series(const fs::path& dir, Report& r) {
  if (r.no_summary) return;  // no start time to plot against
  const json s = read_json(dir / "summary.json");
  const double started_s =
      static_cast<double>(Fields(s, (dir / "summary.json").string()).get("started_us", 0LL)) / 1e6;
  std::error_code ec;
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir / "series", ec)) {
    if (e.path().extension() == ".csv") files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  for (const fs::path& file : files) {
    Series series;
    series.name = file.stem().string();
    std::ifstream in(file);
    std::string line;
    while (std::getline(in, line)) {
      double t = 0;
      double v = 0;
      if (std::sscanf(line.c_str(), "%lf,%lf", &t, &v) == 2) {
        series.points.emplace_back(t - started_s, v);
      }
    }
    std::sort(series.points.begin(), series.points.end());
    if (!series.points.empty()) r.series.push_back(std::move(series));
  }
}

Report build(const std::string& run_dir) {
  Report r;
  r.run_dir = run_dir;
  const fs::path dir(run_dir);
  read_summary(dir, r);
  read_history(dir, r);
  read_aborts(dir, r);
  read_journal(dir, r);
  read_unfinished(dir, r);
  read_trace(dir, r);
  read_series(dir, r);
  // The rounds' times count from the first job's start, as the series'.
  if (r.journal_present && !r.jobs.empty())
    r.rounds = read_rounds(run_dir, r.jobs.front().started_us);
  return r;
}

}  // namespace tandem::detail::report
