#include "worker/proxy.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "job/sockets.hpp"
#include "tandem/error.hpp"
#include "transport/shm.hpp"
#include "transport/staging.hpp"

namespace tandem::detail::proxy {

namespace {
// A task may have this many requests out at once; past it the proxy stops
// reading its socket until some are answered, so a flood slows that task
// down and nobody else.
constexpr int kMaxInFlightPerTask = 256;
constexpr std::size_t kReadChunk = std::size_t{64} * 1024;

// A reply left in the replica's shared memory (PendingInfer::pass_through)
// is the task's to hand back once passed on (@p task), or ours to hand back
// now when it has nowhere to go (@p task 0).
void hand_on(const PendingInfer& p, pid_t task) {
  if (p.staged_outputs.empty()) return;
  try {
    shm::Header* h = shm::PeerMaps::instance().map(p.staged_outputs[0].location).header();
    if (task > 0) {
      h->holder_pid.store(static_cast<std::uint32_t>(task), std::memory_order_release);
    } else {
      h->in_use.store(0, std::memory_order_release);
    }
  } catch (const std::exception& e) {
    spdlog::warn("proxy: {}", e.what());
  }
}

void set_nonblocking(int fd) {
  const int flags = fcntl(fd, F_GETFL, 0);
  fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}
}  // namespace

Proxy::Proxy(ClientImpl& client, std::string path, int worker_index, DirectRoutes routes)
    : client_(client),
      path_(std::move(path)),
      worker_index_(worker_index),
      routes_(std::move(routes)) {
  check_socket_path(path_);
  ::unlink(path_.c_str());  // a socket left by a crashed run of ours
  listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0)
    throw io_error(path_, fmt::format("cannot create a Unix socket: {}", std::strerror(errno)));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path_.c_str(), path_.size() + 1);
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listen_fd_, 128) != 0) {
    const std::string why = std::strerror(errno);
    ::close(listen_fd_);
    throw io_error(path_, fmt::format("cannot listen on {}: {}", path_, why));
  }
  set_nonblocking(listen_fd_);
}

Proxy::~Proxy() {
  for (auto& [id, c] : connections_) ::close(c.fd);
  if (listen_fd_ >= 0) ::close(listen_fd_);
  ::unlink(path_.c_str());
  // Tasks that were killed or crashed leave their request segments behind;
  // they are ours to clear, now rather than at the next run on the node.
  if (const int n = shm::remove_stale(); n > 0) {
    spdlog::info(
        "proxy: removed {} shared-memory segment(s) of tasks that ended without "
        "cleaning up",
        n);
  }
}

void Proxy::add_poll_fds(std::vector<pollfd>& fds) const {
  fds.push_back({listen_fd_, POLLIN, 0});
  for (const auto& [id, c] : connections_) {
    short events = c.in_flight < kMaxInFlightPerTask ? POLLIN : 0;
    if (!c.out.empty()) events |= POLLOUT;
    fds.push_back({c.fd, events, 0});
  }
}

bool Proxy::progress() {
  bool worked = false;
  // One poll() says which sockets have something, rather than a failing
  // accept() and recv() on each of them every time round the loop.
  ready_.clear();
  add_poll_fds(ready_);
  if (::poll(ready_.data(), ready_.size(), 0) > 0) {
    if (ready_[0].revents & POLLIN) accept_new();
    std::vector<int> gone;
    std::size_t k = 1;
    for (auto& [id, c] : connections_) {
      if (k >= ready_.size() || ready_[k].fd != c.fd) break;  // accepted just now
      const short revents = ready_[k++].revents;
      bool ended = false;
      if ((revents & (POLLIN | POLLHUP | POLLERR)) && read_from(id, c, ended)) worked = true;
      if (ended || ((revents & POLLOUT) && !flush(c))) gone.push_back(id);
    }
    for (int id : gone) close_connection(id);
  }
  if (deliver_replies()) worked = true;
  // Frames held back by the cap on requests in flight, now that replies
  // may have made room.
  std::vector<int> gone;
  for (auto& [id, c] : connections_) {
    if (c.in.buffered() == 0 || c.in_flight >= kMaxInFlightPerTask) continue;
    bool ended = false;
    if (take_frames(id, c, ended)) worked = true;
    if (ended) gone.push_back(id);
  }
  for (int id : gone) close_connection(id);
  if (check_waiting()) worked = true;
  if (check_deferred()) worked = true;
  return worked;
}

void Proxy::accept_new() {
  for (;;) {
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.uid != ::getuid()) {
      spdlog::warn("proxy: refused a connection from another user (uid {})", cred.uid);
      ::close(fd);
      continue;
    }
    Connection c;
    c.fd = fd;
    c.pid = cred.pid;
    connections_.emplace(next_connection_++, std::move(c));
  }
}

// Reads what is there; false when nothing was. A connection that ended or
// sent a frame length past reason is to be closed (@p ended; its frames
// cannot be told apart any more); its requests out at the services are
// answered into the void.
bool Proxy::read_from(int id, Connection& c, bool& ended) {
  bool any = false;
  char buf[kReadChunk];
  for (int rounds = 0; rounds < 16; ++rounds) {
    const ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
    if (n > 0) {
      c.in.add(buf, static_cast<std::size_t>(n));
      any = true;
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) break;
    // n == 0: the task closed its end (or died); n < 0: a socket error.
    ended = true;
    return true;
  }
  return take_frames(id, c, ended) || any;
}

// Handles the whole frames already read, as far as the task's share of
// requests in flight allows; the rest wait in the buffer until replies free
// room (progress() comes back for them even when the socket is quiet).
bool Proxy::take_frames(int id, Connection& c, bool& ended) {
  wire::Encoded message;
  bool bad = false;
  bool any = false;
  while (c.in_flight < kMaxInFlightPerTask && c.in.next(message, bad)) {
    handle(id, c, message);
    any = true;
  }
  if (bad) {
    spdlog::warn("proxy: task pid {} sent a frame length past {} bytes; closing its connection",
                 c.pid, kMaxFrame);
    ended = true;
    return true;
  }
  return any;
}

void Proxy::handle(int id, Connection& c, const wire::Encoded& message) {
  wire::Decoded d;
  std::string why;
  if (!wire::decode(message.buffer, message.size, d, why)) {
    answer_error(c, 0, "the proxy could not read the request: " + why);
    return;
  }
  const std::uint64_t request = d.header.request_id;
  const auto& services = client_.workflow().services;
  const int service = d.header.service;
  switch (d.header.kind) {
    case wire::kHello: {
      // A hello with text sets the connection's options (a client's
      // ready_timeout); the answer is the same either way.
      if (!d.text.empty()) {
        try {
          c.ready_timeout_s = nlohmann::json::parse(d.text).value("ready_timeout", -1.0);
        } catch (const std::exception& e) {
          answer_error(c, request,
                       fmt::format("the proxy could not read the options: {}", e.what()));
          return;
        }
      }
      nlohmann::json names = nlohmann::json::array();
      for (const auto& s : services) names.push_back(s.name);
      const nlohmann::json hello = {{"services", names},
                                    {"worker", worker_index_},
                                    {"pid", ::getpid()},
                                    {"shm_threshold", client_.workflow().job.staging.shm_threshold},
                                    {"rank", routes_.worker_rank},
                                    {"dedicated", routes_.dedicated},
                                    {"direct", routes_.endpoints}};
      answer(c, wire::encode(wire::kHello, request, -1, {}, hello.dump()));
      return;
    }
    case wire::kSteer:
      steers_.push_back({id, request, std::move(d.text)});
      ++c.in_flight;
      return;
    case wire::kScale:
    case wire::kWaitReady:
    case wire::kRequest:
    case wire::kCall:
    case wire::kLoadModel:
    case wire::kUnloadModel:
      break;
    default:
      answer_error(c, request,
                   fmt::format("the proxy does not take messages of kind {}", d.header.kind));
      return;
  }
  if (service < 0 || service >= static_cast<int>(services.size())) {
    answer_error(c, request, fmt::format("no service #{} in this workflow", service), true);
    return;
  }
  if (d.header.kind == wire::kScale) {
    try {
      client_.scale(service, std::stoi(d.text));
      answer(c, wire::encode(wire::kReplyOk, request, service, {}));
    } catch (const std::exception& e) {
      answer_error(c, request, e.what(), true);
    }
    return;
  }
  if (d.header.kind == wire::kWaitReady) {
    double timeout = 60;
    try {
      timeout = std::stod(d.text);
    } catch (const std::exception&) {
    }
    waiting_.push_back({id, request, service,
                        std::chrono::steady_clock::now() +
                            std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                std::chrono::duration<double>(timeout))});
    ++c.in_flight;
    return;
  }
  // A service still loading its model: the request waits here, not in the
  // task, so that a task's first request does not fail for it.
  if ((d.header.kind == wire::kRequest || d.header.kind == wire::kCall) &&
      client_.loading(service)) {
    const double timeout =
        c.ready_timeout_s >= 0 ? c.ready_timeout_s : client_.ready_timeout(service);
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                              std::chrono::duration<double>(timeout));
    deferred_.push_back({{id, request, service, deadline}, timeout, std::move(d)});
    ++c.in_flight;
    return;
  }
  dispatch(id, c, std::move(d));
}

void Proxy::dispatch(int id, Connection& c, wire::Decoded d) {
  const std::uint64_t request = d.header.request_id;
  const int service = d.header.service;
  std::string why;
  InFlight f;
  f.connection = id;
  f.id = request;
  try {
    if (d.header.kind == wire::kLoadModel || d.header.kind == wire::kUnloadModel) {
      const auto j = nlohmann::json::parse(d.text);
      f.model_op =
          client_.send_model_op(static_cast<wire::Kind>(d.header.kind), service,
                                j.value("path", std::string()), j.at("version").get<int>());
    } else if (d.header.kind == wire::kCall) {
      const auto newline = d.text.find('\n');
      f.pending = client_.send_call(
          service, d.text.substr(0, newline),
          newline == std::string::npos ? std::string() : d.text.substr(newline + 1),
          /*may_wait=*/false);
    } else {
      if (!resolve(d, /*hand_back_when_dropped=*/false, why)) {
        answer_error(c, request, why);
        return;
      }
      const std::uint32_t asked = d.header.asked_transport;
      if (asked > 1u + static_cast<std::uint32_t>(Transport::hdf5)) {
        answer_error(c, request, fmt::format("no transport #{}", asked - 1));
        return;
      }
      const std::optional<Transport> transport =
          asked == 0 ? std::nullopt : std::optional(static_cast<Transport>(asked - 1));
      f.pending = client_.send(service, d.tensors, transport, &d.staged, d.header.model_version,
                               /*may_wait=*/false, d.header.deadline_us);
    }
  } catch (const service_error& e) {
    answer_error(c, request, e.what(), true);
    return;
  } catch (const std::exception& e) {
    answer_error(c, request, e.what());
    return;
  }
  f.request = std::move(d);
  ++c.in_flight;
  in_flight_.push_back(std::move(f));
}

// Deferred requests go on once their service is READY (per_node: once this
// node's replica is, or at the deadline any READY one); FAILED, ending or
// past the deadline with none READY, each gets its error.
bool Proxy::check_deferred() {
  if (deferred_.empty()) return false;
  bool any = false;
  const auto now = std::chrono::steady_clock::now();
  std::vector<Deferred> keep;
  std::vector<Deferred> due;
  client_.progress();  // the routing table's news, once for all of them
  for (Deferred& d : deferred_) {
    if (client_.loading(d.wait.service) && now < d.wait.deadline) {
      keep.push_back(std::move(d));
    } else {
      due.push_back(std::move(d));
    }
  }
  deferred_ = std::move(keep);
  for (Deferred& d : due) {
    any = true;
    auto it = connections_.find(d.wait.connection);
    if (it == connections_.end()) continue;  // the task has gone
    Connection& c = it->second;
    --c.in_flight;
    const ServiceState s = client_.state_as_known(d.wait.service);
    if (s == ServiceState::STARTING) {
      answer_error(c, d.wait.id, client_.not_ready_in_time(d.wait.service, d.timeout_s), true);
    } else {
      // READY: sent now. FAILED or ending: send() says why, as it would
      // have at once.
      dispatch(d.wait.connection, c, std::move(d.request));
    }
    flush(c);
  }
  return any;
}

bool Proxy::next_steer(std::string& request) {
  if (steer_out_.connection != 0) return false;
  while (!steers_.empty()) {
    Steer next = std::move(steers_.front());
    steers_.pop_front();
    if (connections_.count(next.connection) == 0) continue;  // the task has gone
    steer_out_ = std::move(next);
    request = std::move(steer_out_.text);
    return true;
  }
  return false;
}

void Proxy::steer_answered(const std::string& answer) {
  const auto it = connections_.find(steer_out_.connection);
  steer_out_.connection = 0;
  if (it == connections_.end()) return;  // the task has gone
  --it->second.in_flight;
  this->answer(it->second, wire::encode(wire::kReplyOk, steer_out_.id, -1, {}, answer));
}

void Proxy::answer_error(Connection& c, std::uint64_t id, const std::string& why,
                         bool service_unavailable) {
  answer(c, wire::encode(wire::kReplyError, id, -1, {}, why, nullptr,
                         service_unavailable ? wire::kServiceError : 0));
}

void Proxy::answer(Connection& c, const wire::Encoded& message) {
  append_frame(c.out, message);
}

// Replies that came back from the services go to their tasks: outputs of
// at least the shared-memory threshold in our shared memory, held by the
// task until it drops them; the rest inline.
bool Proxy::deliver_replies() {
  bool any = false;
  const long long threshold = client_.workflow().job.staging.shm_threshold;
  for (std::size_t i = 0; i < in_flight_.size();) {
    InFlight& f = in_flight_[i];
    if (f.model_op ? !f.model_op->done() : !f.pending->done) {
      ++i;
      continue;
    }
    auto it = connections_.find(f.connection);
    if (it != connections_.end() && f.model_op) {
      Connection& c = it->second;
      --c.in_flight;
      const PendingModelOp& op = *f.model_op;
      std::string error;
      const int serving = op.result(error, client_.workflow().services[op.service].name);
      if (error.empty()) {
        const wire::Encoded m = wire::encode(wire::kReplyOk, f.id, op.service, {},
                                             nlohmann::json{{"serving", serving}}.dump());
        wire::set_model_version(m, serving);
        answer(c, m);
      } else {
        answer_error(c, f.id, error);
      }
      flush(c);
    } else if (it != connections_.end()) {
      Connection& c = it->second;
      --c.in_flight;
      PendingInfer& p = *f.pending;
      try {
        if (!p.error.empty()) {
          answer(c, wire::encode(wire::kReplyError, f.id, -1, {}, p.error, nullptr,
                                 p.deadline_missed ? wire::kDeadline : 0));
        } else if (p.outputs.empty()) {
          answer(c, wire::encode(wire::kReplyOk, f.id, p.service, {}, p.answer));
        } else if (!p.staged_outputs.empty()) {
          // Where the replica put them: no copy on the way.
          hand_on(p, c.pid);
          const wire::Encoded m =
              wire::encode(wire::kReplyOk, f.id, p.service, p.outputs, {}, &p.staged_outputs, 0);
          wire::set_model_version(m, p.model_version);
          answer(c, m);
        } else {
          const bool big = static_cast<long long>(total_bytes(p.outputs)) >= threshold;
          Outgoing o = stage(wire::kReplyOk, f.id, p.service, p.outputs, {},
                             big ? Transport::shm : Transport::inline_mpi, {}, 0,
                             static_cast<std::uint32_t>(c.pid));
          wire::set_model_version(o.message, p.model_version);
          answer(c, o.message);
        }
      } catch (const std::exception& e) {
        answer_error(c, f.id, fmt::format("the proxy could not pass the reply on: {}", e.what()));
      }
      flush(c);
    } else if (f.pending) {
      hand_on(*f.pending, 0);  // the task has gone
    }
    in_flight_[i] = std::move(in_flight_.back());
    in_flight_.pop_back();
    any = true;
  }
  return any;
}

bool Proxy::check_waiting() {
  bool any = false;
  const auto now = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < waiting_.size();) {
    Waiting& w = waiting_[i];
    const ServiceState s = client_.state(w.service);
    // As ClientImpl::wait_ready: per_node placement waits for this node's
    // replica while it loads, up to the deadline.
    const bool ready = s == ServiceState::READY &&
                       (!client_.local_replica_starting(w.service) || now >= w.deadline);
    const bool hopeless = s == ServiceState::FAILED || s == ServiceState::STOPPED;
    if (!ready && !hopeless && now < w.deadline) {
      ++i;
      continue;
    }
    auto it = connections_.find(w.connection);
    if (it != connections_.end()) {
      Connection& c = it->second;
      --c.in_flight;
      const std::string& name = client_.workflow().services[w.service].name;
      if (ready) {
        answer(c, wire::encode(wire::kReplyOk, w.id, w.service, {}, "READY"));
      } else if (hopeless) {
        answer_error(c, w.id, fmt::format("service '{}' is {}", name, name_of(s)), true);
      } else {
        answer_error(c, w.id, fmt::format("service '{}' is not READY after the timeout", name),
                     true);
      }
      flush(c);
    }
    waiting_[i] = waiting_.back();
    waiting_.pop_back();
    any = true;
  }
  return any;
}

// Writes what the socket takes now; false when the task has gone.
bool Proxy::flush(Connection& c) {
  while (!c.out.empty()) {
    const ssize_t n = ::send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
    if (n > 0) {
      c.out.erase(0, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return true;
    return false;
  }
  return true;
}

void Proxy::close_connection(int id) {
  auto it = connections_.find(id);
  if (it == connections_.end()) return;
  ::close(it->second.fd);
  connections_.erase(it);
  // Requests still out keep their entries until the services answer; the
  // answers then have nowhere to go and are dropped.
  std::erase_if(waiting_, [&](const Waiting& w) { return w.connection == id; });
  std::erase_if(deferred_, [&](const Deferred& d) { return d.wait.connection == id; });
}

}  // namespace tandem::detail::proxy
