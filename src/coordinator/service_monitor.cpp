#include "coordinator/service_monitor.hpp"

#include "trace/trace.hpp"

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
  for (const ReplicaPlacement& r : plan.replicas) {
    table_.states[r.service].push_back(static_cast<int>(ServiceState::STARTING));
    table_.reasons[r.service].emplace_back();
  }
  final_.resize(plan.replicas.size());
  stopped_.assign(plan.replicas.size(), false);
  live_.resize(plan.replicas.size());
}

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
    for (std::size_t i = 0; i < plan_.replicas.size(); ++i) {
      if (plan_.replicas[i].service == s.service && plan_.replicas[i].replica == s.replica)
        live_[i] = s;
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

LiveStats ServiceMonitor::live(int service) const {
  LiveStats sum;
  sum.service = service;
  for (std::size_t i = 0; i < plan_.replicas.size(); ++i) {
    if (plan_.replicas[i].service != service) continue;
    const LiveStats& s = live_[i];
    sum.requests += s.requests;
    sum.errors += s.errors;
    sum.batches += s.batches;
    sum.rows += s.rows;
    sum.latency_sum_us += s.latency_sum_us;
    for (int b = 0; b < kLatencyBuckets; ++b) sum.latency[b] += s.latency[b];
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
    std::map<int, long long> sizes;
    for (std::size_t i = 0; i < plan_.replicas.size(); ++i) {
      if (plan_.replicas[i].service != s) continue;
      const ReplicaReport& r = final_[i];
      const int replica = plan_.replicas[i].replica;
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
                          {"compute_s", r.compute_s}});
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
          versions.push_back({{"version", v.version},
                              {"path", v.path},
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
      for (const auto& [size, n] : r.batch_sizes) sizes[size] += n;
    }
    nlohmann::json hist = nlohmann::json::object();
    for (const auto& [size, n] : sizes) hist[std::to_string(size)] = n;
    out[wf_.services[s].name] = {
        {"backend", std::string(name_of(wf_.services[s].backend))},
        {"requests", requests},
        {"batches", batches},
        {"rows", rows},
        {"errors", errors},
        {"mean_batch_rows",
         batches ? static_cast<double>(rows) / static_cast<double>(batches) : 0.0},
        {"batch_rows_histogram", hist},
        {"replicas", replicas}};
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
