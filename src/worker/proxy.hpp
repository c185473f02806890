#pragma once
// The worker's local proxy: executable tasks reach the services through a
// Unix-domain socket in a private directory, named in their environment as
// TANDEM_SOCKET. The proxy relays each request to the services over MPI
// with the worker's own client and the reply back, many tasks and many
// requests at once, inside the worker's event loop (no thread). Tensors
// above the shared-memory threshold stay in node-local shared memory both
// ways; the socket carries only descriptors for them.
//
// A task that misbehaves — garbage, a length past all reason, a flood of
// requests, dying mid-request — loses its own connection or gets errors;
// the worker and the other tasks go on.

#include <poll.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "client/client_impl.hpp"
#include "transport/frames.hpp"

namespace tandem::detail::proxy {

/// What the hello tells a task about the direct path
/// (transport/direct_layout.hpp): per service, the endpoints of its
/// replicas on this node.
struct DirectRoutes {
  int worker_rank = -1;    // world rank, for the replicas' trace and records
  bool dedicated = false;  // the node's idle mode: whether waits may spin
  std::vector<std::vector<std::string>> endpoints;  // per service
};

class Proxy {
 public:
  /// Listens on @p path, whose directory must exist and be private.
  /// @throws tandem::error when it cannot.
  Proxy(ClientImpl& client, std::string path, int worker_index, DirectRoutes routes = {});
  ~Proxy();
  Proxy(const Proxy&) = delete;
  Proxy& operator=(const Proxy&) = delete;

  const std::string& path() const { return path_; }
  /// The descriptors the worker's poll() should wake for.
  void add_poll_fds(std::vector<pollfd>& fds) const;
  /// Accepts, reads, forwards and answers what it can without blocking.
  /// Replies are those the client has received: the caller makes it
  /// progress first (the worker's loop does, every time round).
  /// True if anything happened.
  bool progress();
  /// Requests are out at the services: the caller should not sleep long.
  /// Requests waiting for a service to load (wait_ready, deferred ones)
  /// do not count: their news comes in the routing table, and a worker that
  /// polled without sleeping for them would take the core from the very
  /// replica that is loading.
  bool busy() const { return !in_flight_.empty(); }

  /// The oldest steering request (wire::kSteer) not yet passed on, if
  /// any: the worker sends it to the coordinator and hands the answer to
  /// steer_answered(). One at a time, in the order they came.
  bool next_steer(std::string& request);
  /// The coordinator's answer to the request next_steer() gave out last.
  void steer_answered(const std::string& answer);

 private:
  struct Connection {
    int fd = -1;
    pid_t pid = 0;
    FrameReader in;
    std::string out;  // frames not yet written
    int in_flight = 0;
    double ready_timeout_s = -1;  // the task's client's; negative: the service's start_timeout
  };
  struct InFlight {
    std::shared_ptr<PendingInfer> pending;
    std::shared_ptr<PendingModelOp> model_op;  // load_model, unload_model: instead of pending
    int connection = 0;
    std::uint64_t id = 0;   // the task's request id
    wire::Decoded request;  // its tensors may be views into the task's memory
  };
  struct Waiting {
    int connection = 0;
    std::uint64_t id = 0;
    int service = 0;
    std::chrono::steady_clock::time_point deadline;
  };
  // A request or call for a service that is still STARTING: passed on once
  // it is READY, answered with an error if it FAILED or did not start in time.
  struct Deferred {
    Waiting wait;
    double timeout_s = 0;  // what the deadline was set from, for the error
    wire::Decoded request;
  };

  void accept_new();
  bool read_from(int id, Connection& c, bool& ended);
  bool take_frames(int id, Connection& c, bool& ended);
  void handle(int id, Connection& c, const wire::Encoded& message);
  void answer_error(Connection& c, std::uint64_t id, const std::string& why,
                    bool service_unavailable = false);
  void answer(Connection& c, const wire::Encoded& message);
  bool deliver_replies();
  bool check_waiting();
  bool check_deferred();
  /// Passes a request, call or model operation on to the services.
  void dispatch(int id, Connection& c, wire::Decoded d);
  bool flush(Connection& c);
  void close_connection(int id);

  ClientImpl& client_;
  std::string path_;
  int worker_index_ = 0;
  DirectRoutes routes_;
  int listen_fd_ = -1;
  int next_connection_ = 1;
  std::map<int, Connection> connections_;
  std::vector<InFlight> in_flight_;
  std::vector<Waiting> waiting_;
  std::vector<Deferred> deferred_;
  struct Steer {
    int connection = 0;
    std::uint64_t id = 0;
    std::string text;
  };
  std::deque<Steer> steers_;   // not yet passed on
  Steer steer_out_;            // passed on, its answer awaited (connection 0: none)
  std::vector<pollfd> ready_;  // reused by progress()
};

}  // namespace tandem::detail::proxy
