#pragma once
// The coordinator's side of the services: it hears each replica's state,
// publishes the routing table to every client when it changes, stops the
// services at the end and keeps their counters for the summary. Used by the
// pilot's coordinator and by the coordinator of an SPMD session alike.

#include <mpi.h>

#include <list>
#include <vector>

#include <boost/mpi/communicator.hpp>
#include <boost/mpi/request.hpp>
#include <nlohmann/json.hpp>

#include "config/workflow.hpp"
#include "layout/plan.hpp"
#include "protocol/service_messages.hpp"

namespace tandem::detail {

class ServiceMonitor {
 public:
  ServiceMonitor(const Workflow& wf, const Plan& plan, MPI_Comm control, std::vector<int> clients);

  /// Reads every report that has arrived; publishes if states changed.
  /// True if anything arrived.
  bool poll();
  /// Tells every leader to drain and stop, and waits until all have.
  void stop_all(const BackoffSpec& backoff);
  /// Per-service figures for summary.json.
  nlohmann::json summary() const;
  /// The first recording error any replica reported at its end, or "".
  std::string recording_failure() const;
  bool has_services() const { return !plan_.replicas.empty(); }
  /// Stops publishing to a client that has finished.
  void forget_client(int rank);
  /// The latest running counters of service @p service, summed over its
  /// replicas (sent by the leaders about once a second).
  LiveStats live(int service) const;
  /// Each replica's counters, all its turns together, in plan order
  /// (service and replica filled in).
  std::vector<LiveStats> live_by_replica() const;
  /// (replica, model version it serves) for each replica of @p service
  /// that has said so (version 0: not yet heard).
  std::vector<std::pair<int, std::int64_t>> served_versions(int service) const;
  /// READY replicas of service @p service.
  int ready_replicas(int service) const;

  // Elastic services (coordinator/scaler.hpp).
  /// What an elastic replica said since the last call: READY, or its final
  /// report (FAILED: its load failed; STOPPED: it left the service).
  struct ElasticEvent {
    int slot = 0;  // index in Plan::replicas
    ServiceState state = ServiceState::READY;
    double load_s = 0;
    std::string reason;
  };
  std::vector<ElasticEvent> take_elastic_events();
  /// Tells elastic replica @p slot to leave once the clients at world
  /// ranks @p fence_ranks have fenced it; the routing table names the
  /// drain @p drain_id from its DRAINING on.
  void begin_drain(int slot, int drain_id, const std::vector<int>& fence_ranks);
  int table_version() const { return table_.version; }
  /// A finished move of an elastic service (metrics.prom).
  void count_move(int service, bool grow) { ++(grow ? grows_ : shrinks_)[service]; }
  long long moves(int service, bool grow) const { return (grow ? grows_ : shrinks_)[service]; }

 private:
  void publish();
  bool receive_live_stats();
  void progress_sends();

  const Workflow& wf_;
  const Plan& plan_;
  boost::mpi::communicator control_;
  std::vector<int> clients_;
  RoutingTable table_;
  std::vector<ReplicaReport> final_;  // per replica (plan order), from STOPPED
  std::vector<bool> stopped_;
  std::vector<LiveStats> live_;  // per replica (plan order)
  std::list<boost::mpi::request> sends_;
  std::list<RoutingTable> in_flight_;  // tables whose sends have not completed
  // Elastic replicas serve in turns: the counters of the turns that ended,
  // and of the turn under way, told apart by LiveStats::started_us.
  std::vector<LiveStats> retired_live_;  // per replica (plan order)
  std::vector<int> turns_;               // per replica: turns that ended
  std::vector<ElasticEvent> elastic_events_;
  std::vector<long long> grows_, shrinks_;  // per service
};

}  // namespace tandem::detail
