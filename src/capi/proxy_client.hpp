#pragma once
// The task's side of the worker's proxy (src/worker/proxy.hpp): a connection to the
// socket, the services' names from the hello, requests out and replies
// matched by id. Large tensors go through this process's shared-memory
// segments, which the proxy reads in place.
//
// Requests to a service with a replica on this node take the direct path
// instead (transport/direct_link.hpp): written into the replica's rings,
// one wake-up each way. The proxy remains for everything else — replicas on
// other nodes, the bridge, waiting for READY — and takes over whenever a
// ring is full or the replica does not take requests. TANDEM_DIRECT=0 in
// the task's environment turns the direct path off.

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "tandem/error.hpp"
#include "tandem/tensor.hpp"
#include "transport/direct_link.hpp"
#include "transport/frames.hpp"
#include "transport/staging.hpp"

namespace tandem::detail::capi {

/// The worker's proxy cannot be reached, or went away: TANDEM_ERR_CONNECT.
class proxy_unreachable : public io_error {
 public:
  proxy_unreachable(std::string path, const std::string& what)
      : io_error(std::move(path), what, status::connect) {}
};

struct Reply {
  bool ok = false;
  bool service_unavailable = false;  // the error is the service's (see service_error)
  std::string text;                  // the error, or a JSON call's answer
  TensorList outputs;
  int model_version = 0;         // the version that computed the outputs, or is served after a load
  bool deadline_missed = false;  // the error is a deadline's
  std::string source;            // the service that answered (a fallback's name, or the one asked)
};

class ProxyClient {
 public:
  /// Connects and asks the proxy which services there are.
  /// @throws proxy_unreachable when the socket cannot be reached,
  /// tandem::protocol_error when its hello makes no sense.
  explicit ProxyClient(const std::string& socket_path);
  ~ProxyClient();
  ProxyClient(const ProxyClient&) = delete;
  ProxyClient& operator=(const ProxyClient&) = delete;

  /// @throws tandem::request_error for a name the workflow does not have.
  int service_index(const std::string& name) const;
  /// @p version: the model version to run (0: the service's policy);
  /// @p transport: how the proxy sends it on (automatic: by size and place).
  /// @p deadline_ms: as InferOptions::deadline_ms (0: the service's); a
  /// request with one goes through the proxy, which keeps it.
  std::uint64_t send_infer(int service, const TensorList& inputs, int version = 0,
                           Transport transport = Transport::automatic, double deadline_ms = 0);
  std::uint64_t send_call(int service, const std::string& path, const std::string& body);
  std::uint64_t send_wait_ready(int service, double timeout_s);
  std::uint64_t send_scale(int service, int replicas);
  /// A steering task's request (JSON text) to the coordinator.
  std::uint64_t send_steer(const std::string& request);
  /// How long the proxy holds this connection's requests for a STARTING
  /// service (negative: each service's start_timeout). Waits for its answer.
  void set_ready_timeout(double s);
  /// load_model (@p kind wire::kLoadModel) or unload_model; @p path is
  /// made absolute here, where it was given.
  std::uint64_t send_model_op(wire::Kind kind, int service, const std::string& path, int version);
  /// True once request @p id's reply is here; reads without blocking.
  bool arrived(std::uint64_t id);
  /// Waits for request @p id's reply and takes it.
  Reply wait(std::uint64_t id);
  /// Nobody will wait for request @p id: its reply is dropped.
  void abandon(std::uint64_t id);
  /// How many requests took the direct path so far (tests, benchmarks).
  std::uint64_t direct_requests() const { return direct_requests_; }

 private:
  std::uint64_t send(wire::Kind kind, int service, const TensorList& tensors,
                     const std::string& text, int version = 0,
                     Transport transport = Transport::automatic, double deadline_ms = 0);
  /// Reads what the socket has (blocking if @p block); false when nothing.
  bool read_some(bool block);
  void take_frames();
  void close_after_protocol_fault();
  // One reply, from the socket or a ring.
  void take_reply(const wire::Encoded& message);
  // The direct path.
  struct Route {
    std::string endpoint;
    std::unique_ptr<direct::Link> link;
    std::chrono::steady_clock::time_point retry_at{};  // after a failed open
    int outstanding = 0;
    std::chrono::steady_clock::time_point dead_since{};  // when the replica was seen gone
  };
  void read_direct_hello(const nlohmann::json& hello);
  Route* direct_route(int service);
  bool post_direct(int service, std::uint64_t id, const wire::Encoded& message);
  void poll_links();
  void wait_on_link(Route& route);
  void fail_lost(Route& route, const std::string& why);
  // Fails what is outstanding on @p route if its replica will not answer.
  void check_lost(Route& route);

  int fd_ = -1;
  std::vector<std::string> services_;
  long long shm_threshold_ = 32 * 1024LL;
  // Request ids start at pid << 32: on the direct path the replica traces
  // them under the worker's rank, next to the worker's own requests and
  // those of its other tasks, and (rank, id) must name one request.
  std::uint64_t next_id_ = 1;
  proxy::FrameReader in_;
  std::map<std::uint64_t, Outgoing> outgoing_;  // staged inputs, until the reply
  std::map<std::uint64_t, Reply> replies_;
  std::set<std::uint64_t> abandoned_;
  std::vector<std::vector<Route>> routes_;   // per service, its replicas on this node
  std::map<std::uint64_t, Route*> on_link_;  // direct requests awaiting their reply
  int worker_rank_ = -1;
  int worker_pid_ = 0;
  bool dedicated_ = false;
  std::uint64_t direct_requests_ = 0;
};

}  // namespace tandem::detail::capi
