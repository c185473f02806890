#include "capi/proxy_client.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/clock.hpp"
#include "tandem/error.hpp"

namespace tandem::detail::capi {

ProxyClient::ProxyClient(const std::string& socket_path)
    : next_id_((static_cast<std::uint64_t>(::getpid()) << 32) + 1) {
  sockaddr_un addr{};
  if (socket_path.size() >= sizeof addr.sun_path) {
    throw proxy_unreachable(
        socket_path, fmt::format("socket path {} is too long for a Unix socket", socket_path));
  }
  fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) {
    throw proxy_unreachable(socket_path,
                            fmt::format("cannot create a socket: {}", std::strerror(errno)));
  }
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    const std::string why = std::strerror(errno);
    ::close(fd_);
    fd_ = -1;
    throw proxy_unreachable(
        socket_path, fmt::format("cannot reach the worker's proxy at {}: {}", socket_path, why));
  }
  const std::uint64_t hello = send(wire::kHello, -1, {}, {});
  const Reply r = wait(hello);
  try {
    const auto j = nlohmann::json::parse(r.text);
    services_ = j.at("services").get<std::vector<std::string>>();
    shm_threshold_ = j.value("shm_threshold", shm_threshold_);
    read_direct_hello(j);
  } catch (const std::exception& e) {
    ::close(fd_);
    fd_ = -1;
    throw protocol_error(fmt::format("the proxy's hello made no sense: {}", e.what()));
  }
}

// After a message that breaks the protocol nothing more on the connection
// can be trusted.
void ProxyClient::close_after_protocol_fault() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

ProxyClient::~ProxyClient() {
  for (auto& [id, o] : outgoing_) finish(o);
  routes_.clear();  // the links let go of their slots
  if (fd_ >= 0) ::close(fd_);
}

int ProxyClient::service_index(const std::string& name) const {
  for (std::size_t i = 0; i < services_.size(); ++i) {
    if (services_[i] == name) return static_cast<int>(i);
  }
  std::string known;
  for (const auto& s : services_) known += (known.empty() ? "" : ", ") + s;
  throw service_error(name, fmt::format("unknown service '{}': this job has {}", name,
                                        known.empty() ? "no services" : known));
}

std::uint64_t ProxyClient::send(wire::Kind kind, int service, const TensorList& tensors,
                                const std::string& text, int version, Transport transport,
                                double deadline_ms) {
  if (fd_ < 0) throw proxy_unreachable("", "the connection to the proxy is closed");
  const std::uint64_t id = next_id_++;
  const bool big = static_cast<long long>(total_bytes(tensors)) >= shm_threshold_;
  Outgoing o = stage(kind, id, service, tensors, text, big ? Transport::shm : Transport::inline_mpi,
                     {}, wire::kReplyShmOk);
  if (version != 0) wire::set_model_version(o.message, version);
  // A transport asked for by name is the proxy's to honour: not the direct
  // path, which is shared memory whatever was asked.
  if (transport != Transport::automatic) wire::set_asked_transport(o.message, transport);
  if (deadline_ms > 0) {
    wire::set_deadline(o.message, now_us() + static_cast<std::int64_t>(deadline_ms * 1000));
  }
  // The proxy keeps deadlines (it stops waiting, and asks a fallback): the
  // direct path is for requests without one.
  if ((kind == wire::kRequest || kind == wire::kCall) && transport == Transport::automatic &&
      deadline_ms <= 0 && post_direct(service, id, o.message)) {
    if (o.segment) outgoing_.emplace(id, std::move(o));
    return id;
  }
  if (!proxy::write_frame(fd_, o.message)) {
    finish(o);
    throw proxy_unreachable("",
                            fmt::format("the worker's proxy went away: {}", std::strerror(errno)));
  }
  if (o.segment) outgoing_.emplace(id, std::move(o));
  return id;
}

std::uint64_t ProxyClient::send_infer(int service, const TensorList& inputs, int version,
                                      Transport transport, double deadline_ms) {
  return send(wire::kRequest, service, inputs, {}, version, transport, deadline_ms);
}

std::uint64_t ProxyClient::send_call(int service, const std::string& path,
                                     const std::string& body) {
  return send(wire::kCall, service, {}, path + "\n" + body);
}

std::uint64_t ProxyClient::send_wait_ready(int service, double timeout_s) {
  return send(wire::kWaitReady, service, {}, fmt::format("{}", timeout_s));
}

std::uint64_t ProxyClient::send_scale(int service, int replicas) {
  return send(wire::kScale, service, {}, fmt::format("{}", replicas));
}

std::uint64_t ProxyClient::send_steer(const std::string& request) {
  return send(wire::kSteer, -1, {}, request);
}

void ProxyClient::set_ready_timeout(double s) {
  const Reply r = wait(send(wire::kHello, -1, {}, nlohmann::json{{"ready_timeout", s}}.dump()));
  if (!r.ok) throw protocol_error("the proxy refused the client's options: " + r.text);
}

std::uint64_t ProxyClient::send_model_op(wire::Kind kind, int service, const std::string& path,
                                         int version) {
  nlohmann::json text = {{"version", version}};
  if (kind == wire::kLoadModel) {
    std::error_code ec;
    const auto absolute = std::filesystem::absolute(path, ec);
    text["path"] = ec ? path : absolute.string();
  }
  return send(kind, service, {}, text.dump());
}

bool ProxyClient::read_some(bool block) {
  if (!block) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 0) <= 0) return false;
  }
  char buf[64 * 1024];
  for (;;) {
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n > 0) {
      in_.add(buf, static_cast<std::size_t>(n));
      take_frames();
      return true;
    }
    if (n < 0 && errno == EINTR) continue;
    ::close(fd_);
    fd_ = -1;
    throw proxy_unreachable(
        "", n == 0 ? std::string("the worker's proxy closed the connection")
                   : fmt::format("reading from the proxy: {}", std::strerror(errno)));
  }
}

void ProxyClient::take_frames() {
  wire::Encoded message;
  bool bad = false;
  while (in_.next(message, bad)) take_reply(message);
  if (bad) {
    close_after_protocol_fault();
    throw protocol_error("the proxy sent a frame of impossible length");
  }
}

void ProxyClient::take_reply(const wire::Encoded& message) {
  wire::Decoded d;
  std::string why;
  if (!wire::decode(message.buffer, message.size, d, why)) {
    close_after_protocol_fault();
    throw protocol_error("the proxy sent a reply that could not be read: " + why);
  }
  const std::uint64_t id = d.header.request_id;
  Reply r;
  r.ok = d.header.kind == wire::kReplyOk || d.header.kind == wire::kHello;
  r.service_unavailable = !r.ok && (d.header.flags & wire::kServiceError);
  r.deadline_missed = !r.ok && (d.header.flags & wire::kDeadline);
  r.model_version = d.header.model_version;
  if (r.ok && d.header.service >= 0 && d.header.service < static_cast<int>(services_.size())) {
    r.source = services_[static_cast<std::size_t>(d.header.service)];
  }
  r.text = std::move(d.text);
  if (r.ok && !d.tensors.empty()) {
    if (resolve(d, /*hand_back_when_dropped=*/true, why)) {
      r.outputs = std::move(d.tensors);
    } else {
      r.ok = false;
      r.text = "the reply could not be read: " + why;
    }
  }
  // The reply is here, so the other side is done with our staged inputs.
  if (auto it = outgoing_.find(id); it != outgoing_.end()) {
    finish(it->second);
    outgoing_.erase(it);
  }
  if (auto it = on_link_.find(id); it != on_link_.end()) {
    --it->second->outstanding;
    on_link_.erase(it);
  }
  if (abandoned_.erase(id) == 0) replies_[id] = std::move(r);
}

// --- the direct path ---------------------------------------------------------

void ProxyClient::read_direct_hello(const nlohmann::json& hello) {
  const char* off = std::getenv("TANDEM_DIRECT");
  if (off && std::string(off) == "0") return;
  // The rings carry messages below the shared-memory threshold; with the
  // threshold raised past what they hold, only the proxy can.
  if (shm_threshold_ + 8 * 1024LL > static_cast<long long>(direct::kMaxRecord)) return;
  worker_rank_ = hello.value("rank", -1);
  worker_pid_ = hello.value("pid", 0);
  dedicated_ = hello.value("dedicated", false);
  const auto endpoints = hello.value("direct", std::vector<std::vector<std::string>>{});
  routes_.resize(endpoints.size());
  for (std::size_t s = 0; s < endpoints.size(); ++s) {
    for (const auto& name : endpoints[s]) routes_[s].push_back(Route{name, nullptr, {}, 0});
  }
}

// The node-local replica of @p service with the fewest of our requests out,
// its link opened on first use; null when none takes requests now.
ProxyClient::Route* ProxyClient::direct_route(int service) {
  if (service < 0 || service >= static_cast<int>(routes_.size())) return nullptr;
  Route* best = nullptr;
  for (Route& r : routes_[static_cast<std::size_t>(service)]) {
    if (!r.link) {
      const auto now = std::chrono::steady_clock::now();
      if (now < r.retry_at) continue;
      try {
        r.link = std::make_unique<direct::Link>(r.endpoint, worker_rank_);
      } catch (const std::exception&) {
        // Not there yet (still loading), or every slot taken: the proxy
        // serves meanwhile.
        r.retry_at = now + std::chrono::seconds(1);
        continue;
      }
    }
    if (r.link->serving() && (!best || r.outstanding < best->outstanding)) best = &r;
  }
  return best;
}

bool ProxyClient::post_direct(int service, std::uint64_t id, const wire::Encoded& message) {
  Route* r = direct_route(service);
  if (!r || !r->link->post(message)) return false;
  on_link_[id] = r;
  ++r->outstanding;
  ++direct_requests_;
  return true;
}

void ProxyClient::poll_links() {
  wire::Encoded message;
  for (auto& service : routes_) {
    for (Route& r : service) {
      if (!r.link) continue;
      while (r.link->take(message)) take_reply(message);
    }
  }
}

// Requests on a link whose replica will not answer them get an error each.
void ProxyClient::fail_lost(Route& route, const std::string& why) {
  for (auto it = on_link_.begin(); it != on_link_.end();) {
    if (it->second != &route) {
      ++it;
      continue;
    }
    const std::uint64_t id = it->first;
    if (auto o = outgoing_.find(id); o != outgoing_.end()) {
      finish(o->second);
      outgoing_.erase(o);
    }
    if (abandoned_.erase(id) == 0) {
      Reply r;
      r.text = why;
      replies_[id] = std::move(r);
    }
    it = on_link_.erase(it);
  }
  route.outstanding = 0;
  route.dead_since = {};
  route.link.reset();
  route.retry_at = std::chrono::steady_clock::now() + std::chrono::seconds(1);
}

void ProxyClient::wait_on_link(Route& route) {
  // Dedicated cores: spin through the replica's usual turnaround. Shared
  // ones: sleep at once, the core is the replica's.
  const long spin_ns = dedicated_ ? 50'000 : 2'000;
  route.link->wait(spin_ns, 20'000'000);
  poll_links();
  if (route.outstanding == 0 || !route.link) return;
  check_lost(route);
}

// A replica whose process died takes the job down with it today (MPI ends
// the job when a rank dies), and the next --resume charges the attempts
// whose requests it held — through the worker's record of what it was
// running. A task that failed at once would be recorded FAILED for
// "replica gone" first, its slot free, the charge lost, and the resume would
// run it into the same crash again. So while the worker lives, the task
// waits a grace period for the job's end before it says so.
void ProxyClient::check_lost(Route& route) {
  const std::string why = route.link->lost();
  if (why.empty()) return;
  if (route.link->replica_dead() && worker_pid_ > 0 &&
      (::kill(worker_pid_, 0) == 0 || errno == EPERM)) {
    constexpr auto kGrace = std::chrono::seconds(5);
    const auto now = std::chrono::steady_clock::now();
    if (route.dead_since == std::chrono::steady_clock::time_point{}) route.dead_since = now;
    if (now - route.dead_since < kGrace) return;
  }
  fail_lost(route, why);
}

bool ProxyClient::arrived(std::uint64_t id) {
  if (replies_.count(id)) return true;
  if (auto it = on_link_.find(id); it != on_link_.end()) {
    Route& route = *it->second;
    poll_links();
    if (replies_.count(id)) return true;
    check_lost(route);
    return replies_.count(id) > 0;
  }
  while (fd_ >= 0 && read_some(false)) {
    if (replies_.count(id)) return true;
  }
  return replies_.count(id) > 0;
}

void ProxyClient::abandon(std::uint64_t id) {
  if (replies_.erase(id) == 0) abandoned_.insert(id);
}

Reply ProxyClient::wait(std::uint64_t id) {
  while (!replies_.count(id)) {
    auto it = on_link_.find(id);
    if (it == on_link_.end()) {
      read_some(true);
    } else {
      poll_links();
      if (!replies_.count(id)) wait_on_link(*it->second);
    }
  }
  Reply r = std::move(replies_[id]);
  replies_.erase(id);
  return r;
}

}  // namespace tandem::detail::capi
