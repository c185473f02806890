#include "trace/trace_writers.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include <algorithm>
#include <cstddef>
#include <unordered_map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "protocol/service_messages.hpp"
#include "protocol/task_state.hpp"
#include "tandem/error.hpp"
#include "trace/trace_table.hpp"

namespace tandem::detail::trace {

namespace {

constexpr std::uint64_t kChunkRows = 4096;

const char* kPhaseNames[] = {"job start", "roles ready", "model loaded", "run start", "run end"};

std::string quoted(const std::string& s) {
  return nlohmann::json(s).dump();
}

double us(std::int64_t t_ns) {
  return static_cast<double>(t_ns) / 1000.0;
}

}  // namespace

Writers::Writers(const std::string& run_dir, const Timeline& timeline, const Names& names,
                 bool chrome)
    : names_(names) {
  // Written aside and renamed by finish(): a reader never finds half a trace.
  hdf5_path_ = run_dir + "/trace.h5";
  h5::File& file = hdf5_file_.emplace(h5::File::create(hdf5_path_ + ".tmp"));
  file.set_attribute("zero_epoch_us", timeline.zero_epoch_us);
  file.set_attribute("clock",
                     std::string("t_ns: nanoseconds since the run's time zero, on rank 0's "
                                 "CLOCK_MONOTONIC (other ranks' offsets taken off)"));
  // How each rank's clock was put on rank 0's: what a reader needs to
  // judge the order of events across nodes.
  file.write_column("clock_offset_ns", timeline.offsets_ns);
  file.write_column("clock_rtt_ns", timeline.rtt_ns);
  file.write_column("tracks", names.tracks);
  file.write_column("task_names", names.tasks);
  file.write_column("task_first_instance", names.first_instance);
  file.write_column("service_names", names.services);
  tables_.reserve(kKindCount);
  for (int k = 0; k < kKindCount; ++k) {
    // Stored packed: the in-memory row has padding and unused fields.
    tables_.push_back(
        file.create_growing(kind_info(k).name, row_type(k).packed().id(), {}, kChunkRows));
  }
  if (chrome) {
    json_path_ = run_dir + "/trace.json";
    json_ = std::fopen((json_path_ + ".tmp").c_str(), "w");
    if (!json_) throw io_error(json_path_, fmt::format("cannot create {}.tmp", json_path_));
    std::fprintf(json_,
                 "{\"displayTimeUnit\": \"ms\",\n \"otherData\": {\"zero_epoch_us\": %lld},\n"
                 " \"traceEvents\": [\n",
                 static_cast<long long>(timeline.zero_epoch_us));
  }
}

Writers::~Writers() {
  if (json_) std::fclose(json_);
  tables_.clear();
  hdf5_file_.reset();
  if (!finished_) {
    // A trace that could not be finished leaves nothing half-written.
    std::remove((hdf5_path_ + ".tmp").c_str());
    if (!json_path_.empty()) std::remove((json_path_ + ".tmp").c_str());
  }
}

void Writers::add_rank(int rank, const std::vector<Event>& events) {
  add_hdf5(rank, events);
  if (json_) add_chrome(rank, events);
}

void Writers::add_hdf5(int rank, const std::vector<Event>& events) {
  std::vector<std::vector<Row>> per_kind(kKindCount);
  for (const Event& e : events) {
    if (e.kind >= kKindCount) continue;
    per_kind[e.kind].push_back(Row{e.t_ns, e.a, e.b, rank, e.c, e.d, 0});
  }
  for (int k = 0; k < kKindCount; ++k) {
    const auto& rows = per_kind[k];
    if (rows.empty()) continue;
    tables_[k].append(row_type(k).id(), rows.size(), rows.data());
  }
}

std::string Writers::task_name(std::int64_t instance) const {
  const auto& first = names_.first_instance;
  auto it = std::upper_bound(first.begin(), first.end(), static_cast<int>(instance));
  if (it == first.begin()) return fmt::format("instance {}", instance);
  const auto t = static_cast<std::size_t>(it - first.begin() - 1);
  return fmt::format("{}[{}]", names_.tasks[t], instance - first[t]);
}

std::string Writers::service_name(int service) const {
  if (service >= 0 && service < static_cast<int>(names_.services.size()))
    return names_.services[service];
  return fmt::format("service {}", service);
}

// One rank's events as Chrome trace events. Spans become complete events
// ("X") when both ends are known; requests, which overlap on one rank, are
// async spans ("b"/"e"); everything else is an instant ("i"). The rank's
// lines are sorted by time before they are written, so each track is in
// order.
void Writers::add_chrome(int rank, const std::vector<Event>& events) {
  std::vector<std::pair<double, std::string>> lines;
  lines.reserve(events.size() + 2);
  const std::string& track =
      rank < static_cast<int>(names_.tracks.size()) ? names_.tracks[rank] : "rank";
  // Metadata first, then everything by time.
  constexpr double kFirst = -1e300;
  lines.emplace_back(
      kFirst,
      fmt::format(R"({{"name":"process_name","ph":"M","pid":{},"tid":0,"args":{{"name":{}}}}})",
                  rank, quoted(track)));
  lines.emplace_back(
      kFirst,
      fmt::format(
          R"({{"name":"process_sort_index","ph":"M","pid":{},"tid":0,"args":{{"sort_index":{}}}}})",
          rank, rank));
  auto instant = [&](double ts, const std::string& name, const std::string& args) {
    lines.emplace_back(
        ts,
        fmt::format(R"({{"name":{},"ph":"i","s":"t","pid":{},"tid":0,"ts":{:.3f},"args":{{{}}}}})",
                    quoted(name), rank, ts, args));
  };
  std::unordered_map<std::int64_t, Event> task_starts;
  for (const Event& e : events) {
    const double ts = us(e.t_ns);
    switch (e.kind) {
      case kTaskDispatch:
        instant(ts, fmt::format("dispatch {} to worker {}", e.b, e.c),
                fmt::format(R"("first":{},"count":{},"worker":{})", e.a, e.b, e.c));
        break;
      case kTaskStart:
        task_starts[e.a * 4096 + e.b] = e;
        break;
      case kTaskEnd: {
        auto it = task_starts.find(e.a * 4096 + e.b);
        const std::string_view outcome = name_of(
            static_cast<Outcome>(e.c >= 0 && e.c <= static_cast<int>(Outcome::canceled) ? e.c : 1));
        if (it == task_starts.end()) {
          instant(ts, task_name(e.a) + " ended", fmt::format(R"("outcome":"{}")", outcome));
          break;
        }
        const double start = us(it->second.t_ns);
        lines.emplace_back(
            start,
            fmt::format(
                R"({{"name":{},"cat":"task","ph":"X","pid":{},"tid":{},"ts":{:.3f},"dur":{:.3f},"args":{{"attempt":{},"outcome":"{}"}}}})",
                quoted(task_name(e.a)), rank, it->second.c, start, ts - start, e.b, outcome));
        task_starts.erase(it);
        break;
      }
      case kRequestSend:
        lines.emplace_back(
            ts,
            fmt::format(
                R"({{"name":{},"cat":"request","ph":"b","id":"{}.{}","pid":{},"tid":0,"ts":{:.3f},"args":{{"bytes":{},"replica":{}}}}})",
                quoted("infer " + service_name(e.c)), rank, e.a, rank, ts, e.b, e.d));
        break;
      case kReplyReceive:
        lines.emplace_back(
            ts,
            fmt::format(
                R"({{"name":{},"cat":"request","ph":"e","id":"{}.{}","pid":{},"tid":0,"ts":{:.3f},"args":{{"ok":{},"version":{}}}}})",
                quoted("infer " + service_name(e.c)), rank, e.a, rank, ts, e.b > 0 ? 1 : 0, e.b));
        break;
      case kRequestQueue:
        lines.emplace_back(
            ts,
            fmt::format(
                R"({{"name":{},"cat":"serve","ph":"b","id":"{}.{}","pid":{},"tid":1,"ts":{:.3f},"args":{{"client":{},"bytes":{}}}}})",
                quoted("serve " + service_name(e.d)), e.c, e.a, rank, ts, e.c, e.b));
        break;
      case kRequestReply:
        lines.emplace_back(
            ts,
            fmt::format(
                R"({{"name":{},"cat":"serve","ph":"e","id":"{}.{}","pid":{},"tid":1,"ts":{:.3f},"args":{{"ok":{},"version":{}}}}})",
                quoted("serve " + service_name(e.d)), e.c, e.a, rank, ts, e.b > 0 ? 1 : 0, e.b));
        break;
      case kRequestBatch:
        break;  // in trace.h5; the batch's span below shows it
      case kBatchCompute:
        lines.emplace_back(
            ts,
            fmt::format(
                R"({{"name":{},"cat":"batch","ph":"X","pid":{},"tid":0,"ts":{:.3f},"dur":{:.3f},"args":{{"batch":{},"rows":{}}}}})",
                quoted(fmt::format("batch of {} rows", e.c)), rank, ts, us(e.b), e.a, e.c));
        break;
      case kServiceState: {
        const std::string_view state = name_of(static_cast<ServiceState>(
            e.d >= 0 && e.d <= static_cast<int>(ServiceState::FAILED) ? e.d : 4));
        instant(ts, fmt::format("{} replica {} {}", service_name(e.c), e.a, state),
                fmt::format(R"("service":{},"replica":{},"state":"{}")", quoted(service_name(e.c)),
                            e.a, state));
        break;
      }
      case kBridgeRetry:
        instant(ts, fmt::format("retry {} of request {}", e.b, e.a),
                fmt::format(R"("service":{},"status":{})", quoted(service_name(e.d)), e.c));
        break;
      case kModelSwitch:
        instant(ts, fmt::format("{} replica {} serves version {}", service_name(e.d), e.c, e.a),
                fmt::format(R"("service":{},"replica":{},"version":{},"load_ms":{:.3f})",
                            quoted(service_name(e.d)), e.c, e.a, static_cast<double>(e.b) / 1e6));
        break;
      case kCollective:
        instant(ts, fmt::format("infer_all {}: {} rows of {} ranks", service_name(e.c), e.a, e.d),
                fmt::format(R"("service":{},"rows":{},"requests":{},"ranks":{})",
                            quoted(service_name(e.c)), e.a, e.b, e.d));
        break;
      case kRole: {
        static constexpr const char* kRoles[] = {"worker", "serving"};
        const char* role = e.a >= 0 && e.a < 2 ? kRoles[e.a] : "?";
        instant(ts,
                e.a == kRoleWorker ? std::string("back to tasks")
                                   : fmt::format("{} replica {} {}", service_name(e.c), e.b, role),
                fmt::format(R"("role":"{}","service":{},"replica":{})", role,
                            quoted(service_name(e.c)), e.b));
        break;
      }
      case kScale: {
        static constexpr const char* kWhy[] = {"queue", "idle", "tasks", "manual", "rule", "end"};
        const char* why = e.d >= 0 && e.d < 6 ? kWhy[e.d] : "?";
        instant(ts, fmt::format("scale {} to {} ({})", service_name(e.c), e.a, why),
                fmt::format(R"("service":{},"wanted":{},"serving":{},"reason":"{}")",
                            quoted(service_name(e.c)), e.a, e.b, why));
        break;
      }
      case kPhase:
        instant(ts, e.a >= 0 && e.a < 5 ? kPhaseNames[e.a] : "phase",
                fmt::format(R"("phase":{})", e.a));
        break;
      default:
        break;
    }
  }
  std::stable_sort(lines.begin(), lines.end(),
                   [](const auto& x, const auto& y) { return x.first < y.first; });
  for (const auto& [ts, line] : lines) {
    std::fputs(first_json_event_ ? "  " : ",\n  ", json_);
    std::fputs(line.c_str(), json_);
    first_json_event_ = false;
  }
}

void Writers::finish(std::uint64_t dropped) {
  hdf5_file_->set_attribute("dropped_events", static_cast<std::int64_t>(dropped));
  tables_.clear();
  hdf5_file_->close();
  if (json_) {
    std::fputs("\n]}\n", json_);
    const bool ok = std::fflush(json_) == 0 && ::fsync(fileno(json_)) == 0;
    const bool closed = std::fclose(json_) == 0;
    json_ = nullptr;
    if (!ok || !closed) {
      throw io_error(json_path_,
                     fmt::format("cannot write {}: {}", json_path_, std::strerror(errno)));
    }
  }
  if (std::rename((hdf5_path_ + ".tmp").c_str(), hdf5_path_.c_str()) != 0 ||
      (!json_path_.empty() &&
       std::rename((json_path_ + ".tmp").c_str(), json_path_.c_str()) != 0)) {
    throw io_error(hdf5_path_,
                   fmt::format("cannot put the trace in place: {}", std::strerror(errno)));
  }
  finished_ = true;
}

}  // namespace tandem::detail::trace
