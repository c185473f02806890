#include "capi/proxy_client.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "tandem/error.hpp"

namespace tandem::detail::capi {

ProxyClient::ProxyClient(const std::string& socket_path) {
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
                                const std::string& text) {
  if (fd_ < 0) throw proxy_unreachable("", "the connection to the proxy is closed");
  const std::uint64_t id = next_id_++;
  const bool big = static_cast<long long>(total_bytes(tensors)) >= shm_threshold_;
  Outgoing o = stage(kind, id, service, tensors, text, big ? Transport::shm : Transport::inline_mpi,
                     {}, wire::kReplyShmOk);
  if (!proxy::write_frame(fd_, o.message)) {
    finish(o);
    throw proxy_unreachable("",
                            fmt::format("the worker's proxy went away: {}", std::strerror(errno)));
  }
  if (o.segment) outgoing_.emplace(id, std::move(o));
  return id;
}

std::uint64_t ProxyClient::send_infer(int service, const TensorList& inputs) {
  return send(wire::kRequest, service, inputs, {});
}

std::uint64_t ProxyClient::send_call(int service, const std::string& path,
                                     const std::string& body) {
  return send(wire::kCall, service, {}, path + "\n" + body);
}

std::uint64_t ProxyClient::send_wait_ready(int service, double timeout_s) {
  return send(wire::kWaitReady, service, {}, fmt::format("{}", timeout_s));
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
  while (in_.next(message, bad)) {
    wire::Decoded d;
    std::string why;
    if (!wire::decode(message.buffer, message.size, d, why)) {
      close_after_protocol_fault();
      throw protocol_error("the proxy sent a reply that could not be read: " + why);
    }
    Reply r;
    r.ok = d.header.kind == wire::kReplyOk || d.header.kind == wire::kHello;
    r.service_unavailable = !r.ok && (d.header.flags & wire::kServiceError);
    r.text = std::move(d.text);
    if (r.ok && !d.tensors.empty()) {
      if (resolve(d, /*hand_back_when_dropped=*/true, why)) {
        r.outputs = std::move(d.tensors);
      } else {
        r.ok = false;
        r.text = "the reply could not be read: " + why;
      }
    }
    // The proxy has the reply, so it is done with our staged inputs.
    if (auto it = outgoing_.find(d.header.request_id); it != outgoing_.end()) {
      finish(it->second);
      outgoing_.erase(it);
    }
    if (abandoned_.erase(d.header.request_id) == 0) replies_[d.header.request_id] = std::move(r);
  }
  if (bad) {
    close_after_protocol_fault();
    throw protocol_error("the proxy sent a frame of impossible length");
  }
}

bool ProxyClient::arrived(std::uint64_t id) {
  if (replies_.count(id)) return true;
  while (fd_ >= 0 && read_some(false)) {
    if (replies_.count(id)) return true;
  }
  return replies_.count(id) > 0;
}

void ProxyClient::abandon(std::uint64_t id) {
  if (replies_.erase(id) == 0) abandoned_.insert(id);
}

Reply ProxyClient::wait(std::uint64_t id) {
  while (!replies_.count(id)) read_some(true);
  Reply r = std::move(replies_[id]);
  replies_.erase(id);
  return r;
}

}  // namespace tandem::detail::capi
