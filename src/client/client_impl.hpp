#pragma once
// The client's machinery: the routing table as last published by the
// coordinator, replica choice, and the requests in flight.

#include <mpi.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "client/collective.hpp"
#include "config/workflow.hpp"
#include "job/job.hpp"
#include "layout/plan.hpp"
#include "protocol/service_messages.hpp"
#include "tandem/tensor.hpp"
#include "transport/staging.hpp"
#include "transport/wire.hpp"

namespace tandem::detail {

struct PendingInfer {
  std::uint64_t id = 0;
  int service = 0;
  int replica = 0;  // index into the plan's replicas
  bool done = false;
  TensorList outputs;
  std::string answer;  // JSON calls
  std::string error;
  MPI_Request send = MPI_REQUEST_NULL;
  Outgoing outgoing;  // kept until the reply: the replica reads staged inputs in place
  // The worker's proxy passing a task's request on (send's @p staged): the
  // inputs were already in the task's shared memory, and the outputs, if
  // they come in the replica's, are left there for the task — where
  // (staged_outputs) instead of a copy, and not handed back when dropped.
  bool pass_through = false;
  std::vector<wire::Staged> staged_outputs;
  int model_version = 0;  // the version that computed the reply (0: none)
  bool model_op = false;  // load_model or unload_model: not a request in the trace
  // Deadlines and fallbacks (docs/when-things-go-wrong.md).
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  double deadline_ms = 0;             // as asked, for the error's text
  std::int64_t deadline_wall_us = 0;  // on the wall clock, with a replica on this node (else 0)
  bool deadline_missed = false;       // the error is a deadline's
  bool abandoned = false;             // given up at its deadline: a reply to it is discarded
  int answered_by = -1;               // the service that answered: the first, or a fallback
  TensorList fallback_inputs;         // a copy, kept while a fallback may still be asked
  std::string first_error;            // why the services before the one asked now did not answer
  std::uint64_t first_id = 0;         // the first request's id, for the trace
};

/// load_model or unload_model: one message to each replica of the service,
/// done when all have answered.
struct PendingModelOp {
  int service = 0;
  int version = 0;
  std::string what;  // "load_model" or "unload_model"
  std::vector<std::shared_ptr<PendingInfer>> replies;
  std::vector<std::string> refused;  // replicas not asked: FAILED, DRAINING, STOPPED
  bool done() const;
  /// The version the service serves now, or an error naming each replica
  /// that failed and why (empty when all did it).
  int result(std::string& error, const std::string& service_name) const;
};

/// The replica a request goes to: a READY one on @p my_node first, then the
/// one with the fewest requests outstanding, ties in turn from @p next
/// (updated). Returns the plan index of the replica, or -1 if none is READY.
int choose_replica(const Plan& plan, const RoutingTable& table, const std::vector<int>& outstanding,
                   int my_node, int service, int& next);

class ClientImpl {
 public:
  /// The client of @p job's services on this rank (a worker's, or an SPMD
  /// application rank's). Keeps references into @p job, which must outlive it.
  explicit ClientImpl(const Job& job);
  ~ClientImpl();

  const Workflow& workflow() const { return wf_; }
  int service_index(const std::string& name) const;  // throws request_error
  ServiceState state(int service);
  /// As last heard, without polling for news (cheap: the proxy asks this
  /// of every request it passes on).
  ServiceState state_as_known(int service) const { return aggregate(service); }
  void wait_ready(int service, double timeout_s);
  /// How long send() and send_call() wait for a STARTING service: @p s
  /// seconds, or (negative) each service's own start_timeout.
  void set_ready_timeout(double s) { ready_timeout_s_ = s; }
  double ready_timeout(int service) const {
    return ready_timeout_s_ >= 0 ? ready_timeout_s_ : wf_.services[service].start_timeout_s;
  }
  // per_node placement: this node's replica is still STARTING (none READY).
  bool local_replica_starting(int service) const;
  /// A request for @p service should wait, as last heard: it is STARTING,
  /// or (per_node) this node's replica is. The proxy defers on it.
  bool loading(int service) const;
  /// The error of a request that waited @p timeout_s for a loading service.
  std::string not_ready_in_time(int service, double timeout_s) const;
  /// Sends a request; without @p asked the transport is chosen by size and
  /// locality. One input without a name is the service's only input.
  /// @p staged (the proxy's): where in node-local shared memory the
  /// inputs' bytes already are; sent as they are when the replica is on
  /// this node, and the reply's shared memory is passed on likewise.
  /// @p version: the model version to run (0: the one the replica serves).
  /// @p may_wait: wait for a service that is loading (require_ready); the
  /// proxy, which must never block, says false and defers such requests
  /// itself.
  /// @p deadline_us: when the answer stops being of use, wall-clock
  /// microseconds since the epoch; 0: the service's `deadline_ms` from now,
  /// or none. A service with a `fallback` that is FAILED or has no replica
  /// left sends to its fallback instead.
  std::shared_ptr<PendingInfer> send(int service, const TensorList& given,
                                     std::optional<Transport> asked,
                                     const std::vector<wire::Staged>* staged = nullptr,
                                     int version = 0, bool may_wait = true,
                                     std::int64_t deadline_us = 0);
  /// Sends a JSON call (OpenAI-style services).
  std::shared_ptr<PendingInfer> send_call(int service, const std::string& path,
                                          const std::string& body, bool may_wait = true);
  /// Sends load_model (@p kind wire::kLoadModel, @p path absolute) or
  /// unload_model to every replica of @p service.
  std::shared_ptr<PendingModelOp> send_model_op(wire::Kind kind, int service,
                                                const std::string& path, int version);
  /// The transport "automatic" means for @p service and @p bytes.
  Transport choose_transport(int service, int replica, std::size_t bytes) const;
  /// Drains routing updates and replies; true if anything arrived.
  bool progress();
  /// Waits for @p p's reply, or its deadline.
  void wait(PendingInfer& p);
  /// Replies discarded because their request's deadline had passed.
  long long late_replies() const { return late_replies_; }
  /// Waits for every request in flight (before shutdown).
  void wait_all();
  /// infer_all's per-communicator state.
  NodeGroups& node_groups() { return node_groups_; }
  /// The version of the routing table this client routes with.
  int table_version() const { return table_.version; }
  /// Asks the coordinator for @p replicas replicas of elastic service
  /// @p service (Client::scale). @throws service_error when it is not
  /// elastic or the count is outside its min and max.
  void scale(int service, int replicas);

 private:
  // On the request path (send, wait) routing updates are read at most
  // this often, and replies only when waited for: every MPI poll that finds
  // nothing costs a sched_yield when Open MPI yields (1.4 µs on the
  // development machine), and a request used to make three of them.
  static constexpr std::int64_t kRoutingIntervalNs = 1'000'000;
  bool receive_routing();
  void fence_drains(const RoutingTable& before);
  bool refresh_routing();  // receive_routing() if kRoutingIntervalNs have passed
  /// Drains replies, stopping early once @p until (if given) is answered:
  /// one more empty poll would delay its caller by a yield.
  bool receive_replies(const PendingInfer* until);
  ServiceState aggregate(int service) const;
  // Whether @p service can take a request now or soon: READY, or STARTING.
  bool may_answer(int service) const;
  // Sends @p p's request again, to its service's fallback; false when it
  // has none (then @p p keeps its error).
  bool fall_back(const std::shared_ptr<PendingInfer>& p, const char* why);
  // Gives up on requests whose deadline has passed: each falls back or
  // fails with a deadline error. Cheap when none has a deadline.
  void check_deadlines();
  // The deadline-error text of a request given up by the client, or
  // answered after its deadline.
  std::string deadline_text(const PendingInfer& p, bool answered_late = false) const;
  bool sent_late(const PendingInfer& p, std::int64_t sent_us) const;
  // Waits for a STARTING service (ready_timeout); throws request_error when
  // it FAILED, is unknown or did not start in time.
  void require_ready(int service, bool may_wait);
  std::string failure_reason(int service) const;

  const Job& job_;  // communicators, this rank, the staging directory
  const Workflow& wf_;
  const Plan& plan_;
  RoutingTable table_;
  std::vector<int> outstanding_;  // per replica (plan order)
  std::vector<int> next_;         // per service: where round-robin resumes
  std::unordered_map<std::uint64_t, std::shared_ptr<PendingInfer>> pending_;
  std::uint64_t next_id_ = 1;
  std::int64_t routing_read_ns_ = 0;  // when receive_routing last ran
  double ready_timeout_s_ = -1;       // negative: the service's start_timeout
  NodeGroups node_groups_;
  int with_deadline_ = 0;  // requests in pending_ that have a deadline and are not given up
  // The earliest of their deadlines (or earlier): check_deadlines looks no sooner.
  std::chrono::steady_clock::time_point next_deadline_ =
      std::chrono::steady_clock::time_point::max();
  long long late_replies_ = 0;
};

}  // namespace tandem::detail
