#include "coordinator/service_monitor.hpp"

#include "trace/trace.hpp"

#include <map>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/mpi/nonblocking.hpp>

#include "base/backoff.hpp"
#include "base/mpi_check.hpp"

namespace tandem::detail {

ServiceMonitor::ServiceMonitor(const Workflow& wf, const Plan& plan, MPI_Comm control,
                               std::vector<int> clients)
    : wf_(wf),
      plan_(plan),
      control_(control, boost::mpi::comm_attach),
      clients_(std::move(clients)) {
  table_.states.resize(wf.services.size());
  table_.reasons.resize(wf.services.size());
  table_.drain_ids.resize(wf.services.size());
  stopped_.assign(plan.replicas.size(), false);
  for (std::size_t i = 0; i < plan.replicas.size(); ++i) {
    const ReplicaPlacement& r = plan.replicas[i];
    // An elastic service's extra replicas are workers until it grows.
    table_.states[r.service].push_back(
        static_cast<int>(r.elastic ? ServiceState::STOPPED : ServiceState::STARTING));
    table_.reasons[r.service].emplace_back();
    table_.drain_ids[r.service].push_back(0);
    stopped_[i] = r.elastic;
  }
  final_.resize(plan.replicas.size());
  live_.resize(plan.replicas.size());
  retired_live_.resize(plan.replicas.size());
  turns_.assign(plan.replicas.size(), 0);
  grows_.assign(wf.services.size(), 0);
  shrinks_.assign(wf.services.size(), 0);
}

std::vector<ServiceMonitor::ElasticEvent> ServiceMonitor::take_elastic_events() {
  std::vector<ElasticEvent> out;
  out.swap(elastic_events_);
  return out;
}

void ServiceMonitor::begin_drain(int slot, int drain_id, const std::vector<int>& fence_ranks) {
  const ReplicaPlacement& r = plan_.replicas[static_cast<std::size_t>(slot)];
  table_.drain_ids[r.service][r.replica] = drain_id;
  // DRAINING from now on in every table, before the leader says so: a
  // worker that comes back from serving routes with a table at least this
  // new (kResume), so it never sends to a replica that did not wait for it.
  table_.states[r.service][r.replica] = static_cast<int>(ServiceState::DRAINING);
  publish();
  std::vector<std::int32_t> message{drain_id};
  message.insert(message.end(), fence_ranks.begin(), fence_ranks.end());
  // Blocking, but small and rare: the leader takes it within a few turns.
  TANDEM_MPI_CHECK(MPI_Send(message.data(), static_cast<int>(message.size()), MPI_INT32_T,
                            r.ranks[0], tags::kServiceDrain, control_));
}

namespace {

// Adds @p add's counters to @p sum.
void add_counters(LiveStats& sum, const LiveStats& add) {
  sum.requests += add.requests;
  sum.errors += add.errors;
  sum.expired += add.expired;
  sum.late += add.late;
  sum.batches += add.batches;
  sum.rows += add.rows;
  sum.latency_sum_us += add.latency_sum_us;
  sum.queued += add.queued;
  sum.busy_us += add.busy_us;
  for (int b = 0; b < kLatencyBuckets; ++b) sum.latency[b] += add.latency[b];
}

}  // namespace

void ServiceMonitor::progress_sends() {
  for (auto it = sends_.begin(); it != sends_.end();) {
    if (it->test()) {
      it = sends_.erase(it);
    } else {
      ++it;
    }
  }
  if (sends_.empty()) in_flight_.clear();
}

void ServiceMonitor::publish() {
  ++table_.version;
  in_flight_.push_back(table_);
  for (int c : clients_) sends_.push_back(control_.isend(c, tags::kRouting, in_flight_.back()));
}

void ServiceMonitor::forget_client(int rank) {
  std::erase(clients_, rank);
}

bool ServiceMonitor::receive_live_stats() {
  bool any = false;
  while (auto status = control_.iprobe(boost::mpi::any_source, tags::kReplicaStats)) {
    LiveStats s;
    TANDEM_MPI_CHECK(MPI_Recv(&s, sizeof(LiveStats) / sizeof(std::int64_t), MPI_INT64_T,
                              status->source(), tags::kReplicaStats, control_, MPI_STATUS_IGNORE));
    const int i = plan_.replica_index(static_cast<int>(s.service), static_cast<int>(s.replica));
    if (i >= 0) {
      LiveStats& mine = live_[static_cast<std::size_t>(i)];
      if (mine.started_us != 0 && mine.started_us != s.started_us) {
        // A new turn of an elastic replica: the last one's counters stay.
        mine.queued = 0;
        add_counters(retired_live_[static_cast<std::size_t>(i)], mine);
      }
      mine = s;
    }
    any = true;
  }
  return any;
}

bool ServiceMonitor::poll() {
  progress_sends();
  bool changed = false;
  bool any = receive_live_stats();
  while (auto status = control_.iprobe(boost::mpi::any_source, tags::kReplicaReport)) {
    ReplicaReport r;
    control_.recv(status->source(), tags::kReplicaReport, r);
    any = true;
    const auto& spec = wf_.services[r.service];
    const auto state = static_cast<ServiceState>(r.state);
    int index = 0;
    for (std::size_t i = 0; i < plan_.replicas.size(); ++i) {
      if (plan_.replicas[i].service == r.service && plan_.replicas[i].replica == r.replica) {
        index = static_cast<int>(i);
      }
    }
    trace::record(trace::kServiceState, r.replica, static_cast<std::int64_t>(r.load_s * 1e6),
                  r.service, static_cast<std::int16_t>(r.state));
    if (r.final && plan_.replicas[static_cast<std::size_t>(index)].elastic) {
      // A turn of an elastic replica ended (or its load failed): the run
      // goes on, so the clients hear of it, and the counters add up.
      ReplicaReport& sum = final_[index];
      if (state != ServiceState::FAILED) {
        sum.requests += r.requests;
        sum.batches += r.batches;
        sum.rows += r.rows;
        sum.errors += r.errors;
        sum.expired += r.expired;
        sum.late += r.late;
        sum.compute_s += r.compute_s;
        std::map<int, long long> sizes(sum.batch_sizes.begin(), sum.batch_sizes.end());
        for (const auto& [size, n] : r.batch_sizes) sizes[size] += n;
        sum.batch_sizes.assign(sizes.begin(), sizes.end());
        sum.versions.insert(sum.versions.end(), r.versions.begin(), r.versions.end());
        ++turns_[index];
      }
      stopped_[index] = true;
      table_.states[r.service][r.replica] = static_cast<int>(ServiceState::STOPPED);
      table_.reasons[r.service][r.replica] = state == ServiceState::FAILED ? r.reason : "";
      table_.drain_ids[r.service][r.replica] = 0;
      elastic_events_.push_back({index, state, r.load_s, r.reason});
      changed = true;
      continue;
    }
    if (r.final) {
      final_[index] = r;
      stopped_[index] = true;
      table_.states[r.service][r.replica] = r.state;  // for the summary; not published
      continue;
    }
    const bool newly_failed =
        state == ServiceState::FAILED && table_.states[r.service][r.replica] != r.state;
    table_.states[r.service][r.replica] = r.state;
    table_.reasons[r.service][r.replica] = r.reason;
    if (state == ServiceState::READY || newly_failed) final_[index].load_s = r.load_s;
    if (state == ServiceState::READY && plan_.replicas[static_cast<std::size_t>(index)].elastic) {
      stopped_[index] = false;
      elastic_events_.push_back({index, state, r.load_s, {}});
    }
    changed = true;
    if (state == ServiceState::READY) {
      spdlog::info("service '{}' replica {} READY (model loaded in {:.3f} s)", spec.name, r.replica,
                   r.load_s);
    } else if (state == ServiceState::DRAINING) {
      spdlog::info("service '{}' replica {} DRAINING", spec.name, r.replica);
    } else if (newly_failed) {
      spdlog::error("service '{}' replica {} FAILED: {}", spec.name, r.replica, r.reason);
    }
  }
  if (changed) publish();
  return any;
}

std::vector<LiveStats> ServiceMonitor::live_by_replica() const {
  std::vector<LiveStats> out;
  for (std::size_t i = 0; i < plan_.replicas.size(); ++i) {
    LiveStats sum;
    sum.service = plan_.replicas[i].service;
    sum.replica = plan_.replicas[i].replica;
    add_counters(sum, live_[i]);
    add_counters(sum, retired_live_[i]);
    out.push_back(sum);
  }
  return out;
}

LiveStats ServiceMonitor::live(int service) const {
  LiveStats sum;
  sum.service = service;
  for (std::size_t i = 0; i < plan_.replicas.size(); ++i) {
    if (plan_.replicas[i].service != service) continue;
    add_counters(sum, live_[i]);
    add_counters(sum, retired_live_[i]);
  }
  return sum;
}

std::vector<std::pair<int, std::int64_t>> ServiceMonitor::served_versions(int service) const {
  std::vector<std::pair<int, std::int64_t>> out;
  for (std::size_t i = 0; i < plan_.replicas.size(); ++i) {
    if (plan_.replicas[i].service != service || live_[i].model_version == 0) continue;
    out.emplace_back(plan_.replicas[i].replica, live_[i].model_version);
  }
  return out;
}

int ServiceMonitor::ready_replicas(int service) const {
  int n = 0;
  for (int s : table_.states[service]) n += s == static_cast<int>(ServiceState::READY);
  return n;
}

void ServiceMonitor::stop_all(const BackoffSpec& spec) {
  // Every client has finished: the states that follow are for the record.
  clients_.clear();
  for (const ReplicaPlacement& r : plan_.replicas) {
    if (r.elastic) continue;  // workers again by now (Scaler::finish)
    const int stop = 1;
    sends_.push_back(control_.isend(r.ranks[0], tags::kServiceStop, stop));
  }
  Backoff backoff(spec);
  auto all_stopped = [&] {
    for (bool s : stopped_) {
      if (!s) return false;
    }
    return true;
  };
  while (!all_stopped()) {
    if (poll()) {
      backoff.reset();
    } else {
      backoff.pause();
    }
  }
  // Each leader sends its last counters just before its final report, and
  // MPI keeps one sender's messages in order: they are here now, even those
  // that arrived while poll() was reading the report.
  receive_live_stats();
  wait_until(spec, [&] {
    progress_sends();
    return sends_.empty();
  });
}

nlohmann::json ServiceMonitor::summary() const {
  nlohmann::json out = nlohmann::json::object();
  for (int s = 0; s < static_cast<int>(wf_.services.size()); ++s) {
    nlohmann::json replicas = nlohmann::json::array();
    long long requests = 0;
    long long batches = 0;
    long long rows = 0;
    long long errors = 0;
    long long expired = 0;
    long long late = 0;
    std::map<std::pair<int, std::string>, std::string> models;  // (version, path): SHA-256
    std::map<int, long long> sizes;
    for (std::size_t i = 0; i < plan_.replicas.size(); ++i) {
      if (plan_.replicas[i].service != s) continue;
      const ReplicaReport& r = final_[i];
      const int replica = plan_.replicas[i].replica;
      if (plan_.replicas[i].elastic && turns_[i] == 0 && r.reason.empty() &&
          table_.reasons[s][replica].empty()) {
        continue;  // a worker that never served
      }
      replicas.push_back({{"replica", replica},
                          {"leader_rank", plan_.replicas[i].ranks[0]},
                          {"node", plan_.replicas[i].node},
                          {"state", name_of(static_cast<ServiceState>(table_.states[s][replica]))},
                          {"reason", table_.reasons[s][replica]},
                          {"load_s", r.load_s},
                          {"requests", r.requests},
                          {"batches", r.batches},
                          {"rows", r.rows},
                          {"errors", r.errors},
                          {"expired", r.expired},
                          {"late_replies", r.late},
                          {"compute_s", r.compute_s}});
      if (plan_.replicas[i].elastic) {
        replicas.back()["elastic"] = true;
        replicas.back()["turns"] = turns_[i];
      }
      if (!r.recording_file.empty()) {
        replicas.back()["recording"] = {{"file", r.recording_file},
                                        {"rows", r.recorded_rows},
                                        {"dropped_batches", r.recording_dropped},
                                        {"errors", r.recording_errors},
                                        {"last_error", r.recording_error}};
      }
      if (!r.versions.empty() || !r.version_errors.empty()) {
        nlohmann::json versions = nlohmann::json::array();
        for (const VersionStat& v : r.versions) {
          if (!v.path.empty()) models[{v.version, v.path}] = v.sha256;
          versions.push_back({{"version", v.version},
                              {"path", v.path},
                              {"sha256", v.sha256},
                              {"loaded_at_s", v.loaded_at_s},
                              {"load_s", v.load_s},
                              {"served_from_s", v.served_from_s},
                              {"served_until_s", v.served_until_s},
                              {"served_from_unix_s", v.served_from_unix_s},
                              {"pause_s", v.pause_s},
                              {"requests", v.requests},
                              {"rows", v.rows}});
        }
        replicas.back()["versions"] = versions;
        replicas.back()["version_errors"] = r.version_errors;
      }
      requests += r.requests;
      batches += r.batches;
      rows += r.rows;
      errors += r.errors;
      expired += r.expired;
      late += r.late;
      for (const auto& [size, n] : r.batch_sizes) sizes[size] += n;
    }
    const ServiceSpec& spec = wf_.services[s];
    // Provenance: every model file that answered, by version, with its
    // digest; what answers when this service cannot; what a replay replays.
    nlohmann::json model_files = nlohmann::json::array();
    for (const auto& [key, sha] : models) {
      model_files.push_back({{"version", key.first}, {"path", key.second}, {"sha256", sha}});
    }
    nlohmann::json hist = nlohmann::json::object();
    for (const auto& [size, n] : sizes) hist[std::to_string(size)] = n;
    out[wf_.services[s].name] = {
        {"backend", std::string(name_of(wf_.services[s].backend))},
        {"requests", requests},
        {"batches", batches},
        {"rows", rows},
        {"errors", errors},
        {"expired", expired},
        {"late_replies", late},
        {"deadline_ms", spec.deadline_ms},
        {"fallback", spec.fallback},
        {"models", model_files},
        {"mean_batch_rows",
         batches ? static_cast<double>(rows) / static_cast<double>(batches) : 0.0},
        {"batch_rows_histogram", hist},
        {"replicas", replicas}};
    if (spec.backend == BackendKind::replay) out[spec.name]["replay_of"] = spec.recording;
  }
  return out;
}

std::string ServiceMonitor::recording_failure() const {
  for (const ReplicaReport& r : final_) {
    if (r.recording_errors > 0) {
      return fmt::format("recording to {} failed ({} batch(es) lost): {}", r.recording_file,
                         r.recording_errors, r.recording_error);
    }
  }
  return {};
}

}  // namespace tandem::detail
