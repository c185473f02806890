#pragma once
// Service lifecycle on the control plane: what replica leaders report to the
// coordinator, and the routing table the coordinator publishes to clients.
// These messages are rare (state changes), so they travel as Boost
// serialization archives.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <boost/serialization/string.hpp>
#include <boost/serialization/utility.hpp>
#include <boost/serialization/vector.hpp>

#include "base/enum_names.hpp"
#include "protocol/tags.hpp"

namespace tandem::detail {

enum class ServiceState : int { STARTING = 0, READY, DRAINING, STOPPED, FAILED };

template <>
struct EnumNames<ServiceState> {
  static constexpr EnumName<ServiceState> values[] = {{ServiceState::STARTING, "STARTING"},
                                                      {ServiceState::READY, "READY"},
                                                      {ServiceState::DRAINING, "DRAINING"},
                                                      {ServiceState::STOPPED, "STOPPED"},
                                                      {ServiceState::FAILED, "FAILED"}};
};

/// A replica's running counters, sent as a flat int64 array so that the
/// leader's periodic message costs no serialisation: the fields in order,
/// then kLatencyBuckets counts of requests whose time at the replica
/// (arrival to reply) fell in [2^i, 2^(i+1)) microseconds.
constexpr int kLatencyBuckets = 25;  // up to 2^25 us = 33 s; the last bucket takes the rest
struct LiveStats {
  std::int64_t service = 0;
  std::int64_t replica = 0;
  std::int64_t requests = 0;
  std::int64_t errors = 0;
  std::int64_t batches = 0;
  std::int64_t rows = 0;
  std::int64_t latency_sum_us = 0;
  std::int64_t model_version = 0;  // the version the replica serves (0: none)
  std::int64_t started_us = 0;     // when this leader started: an elastic replica's turns differ
  std::int64_t queued = 0;         // requests waiting for a batch when sent
  std::int64_t busy_us = 0;        // time spent computing batches
  std::int64_t expired = 0;        // requests dropped uncomputed: their deadline could not be met
  std::int64_t late = 0;           // computed, but answered after their deadline
  std::int64_t latency[kLatencyBuckets] = {};

  static int latency_bucket(std::int64_t us) {
    int b = 0;
    while (us > 1 && b < kLatencyBuckets - 1) {
      us >>= 1;
      ++b;
    }
    return b;
  }
};
static_assert(sizeof(LiveStats) % sizeof(std::int64_t) == 0);

/// One model version a replica held: when it loaded and served, and how
/// many requests it answered (summary.json, tandem report).
struct VersionStat {
  int version = 0;
  std::string path;
  std::string sha256;         // of the model file, in hex (empty: no file)
  double loaded_at_s = 0;     // since the replica became READY
  double load_s = 0;          // the slowest of the replica's ranks
  double served_from_s = -1;  // since READY; -1: never served
  double served_until_s = -1;
  double served_from_unix_s = 0;  // wall clock, for plots against other series
  double pause_s = 0;             // swap = "pause": how long requests were held
  long long requests = 0;
  long long rows = 0;

  template <class Archive>
  void serialize(Archive& ar, unsigned /*version*/) {
    ar& version& path& sha256& loaded_at_s& load_s& served_from_s& served_until_s&
        served_from_unix_s& pause_s& requests& rows;
  }
};

/// What a replica leader tells the coordinator: a state change, and at the
/// end the replica's counters.
struct ReplicaReport {
  int service = 0;
  int replica = 0;
  int state = 0;       // ServiceState
  bool final = false;  // the last report, with the replica's counters
  double load_s = 0;
  std::string reason;
  long long requests = 0;
  long long batches = 0;
  long long rows = 0;
  long long errors = 0;
  long long expired = 0;  // dropped uncomputed: their deadline could not be met
  long long late = 0;     // computed, but answered after their deadline (the client gave up)
  double compute_s = 0;
  std::vector<std::pair<int, long long>> batch_sizes;  // (rows in batch, batches)
  std::string recording_file;                          // empty when the service does not record
  long long recorded_rows = 0;
  long long recording_dropped = 0;
  long long recording_errors = 0;
  std::string recording_error;
  std::vector<VersionStat> versions;        // model versions, in the order they loaded
  std::vector<std::string> version_errors;  // loads that failed, each naming file and cause

  template <class Archive>
  void serialize(Archive& ar, unsigned /*version*/) {
    ar& service& replica& state& final& load_s& reason& requests& batches& rows& errors& expired&
        late& compute_s& batch_sizes& recording_file& recorded_rows& recording_dropped&
            recording_errors& recording_error& versions& version_errors;
  }
};

/// Each replica's state, by service then replica, as the plan orders them.
struct RoutingTable {
  int version = 0;
  std::vector<std::vector<int>> states;           // ServiceState per replica
  std::vector<std::vector<std::string>> reasons;  // why a replica FAILED
  // Elastic replicas: the id of the drain under way (DRAINING), which a
  // client's fence names.
  std::vector<std::vector<int>> drain_ids;

  template <class Archive>
  void serialize(Archive& ar, unsigned /*version*/) {
    ar& version& states& reasons& drain_ids;
  }
};

}  // namespace tandem::detail
