// An executable task for the proxy test that writes into a replica's rings
// itself (transport/direct_link.hpp), as a buggy or hostile client might:
// messages the replica cannot use each get an error reply that says why,
// and a good request afterwards is still answered. Exits 0 only if so.
// The service is "double" (scale by 2).

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <nlohmann/json.hpp>

#include "transport/direct_link.hpp"
#include "transport/frames.hpp"
#include "transport/wire.hpp"

using namespace tandem;
using namespace tandem::detail;

namespace {

[[noreturn]] void fail(const std::string& why) {
  std::fprintf(stderr, "direct_task: %s\n", why.c_str());
  std::exit(1);
}

// The proxy's hello, read off the socket by hand.
nlohmann::json hello() {
  const char* path = std::getenv("TANDEM_SOCKET");
  if (!path) fail("TANDEM_SOCKET is not set");
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path, sizeof addr.sun_path - 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) fail("connect");
  if (!proxy::write_frame(fd, wire::encode(wire::kHello, 1, -1, {}))) fail("write");
  proxy::FrameReader in;
  wire::Encoded frame;
  bool bad = false;
  char buf[4096];
  while (!in.next(frame, bad)) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0 || bad) fail("no hello");
    in.add(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  wire::Decoded d;
  std::string why;
  if (!wire::decode(frame.buffer, frame.size, d, why)) fail("hello: " + why);
  return nlohmann::json::parse(d.text);
}

// Posts @p message and waits for the one reply.
wire::Decoded ask(direct::Link& link, const wire::Encoded& message) {
  if (!link.post(message)) fail("the ring took no message");
  wire::Encoded got;
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!link.take(got)) {
    if (!link.lost().empty()) fail("lost: " + link.lost());
    if (std::chrono::steady_clock::now() > until) fail("no reply in 30 s");
    link.wait(0, 20'000'000);
  }
  wire::Decoded d;
  std::string why;
  if (!wire::decode(got.buffer, got.size, d, why)) fail("an unreadable reply: " + why);
  return d;
}

void expect_error(direct::Link& link, const wire::Encoded& message, const char* says) {
  const wire::Decoded d = ask(link, message);
  if (d.header.kind != wire::kReplyError || d.text.find(says) == std::string::npos) {
    fail("expected an error saying '" + std::string(says) + "', got kind " +
         std::to_string(d.header.kind) + ": " + d.text);
  }
  std::printf("error as expected: %s\n", d.text.c_str());
}

}  // namespace

int main() {
  const nlohmann::json h = hello();
  const auto services = h.at("services").get<std::vector<std::string>>();
  int service = -1;
  for (std::size_t i = 0; i < services.size(); ++i) {
    if (services[i] == "double") service = static_cast<int>(i);
  }
  const auto endpoints = h.at("direct").at(service).get<std::vector<std::string>>();
  if (endpoints.empty()) fail("no replica of 'double' on this node");
  direct::Link link(endpoints[0], h.at("rank").get<int>());

  // Bytes that are no message.
  wire::Encoded junk;
  junk.buffer = std::shared_ptr<std::byte>(new std::byte[72], std::default_delete<std::byte[]>());
  junk.size = 72;
  std::memset(junk.buffer.get(), 0xAB, junk.size);
  expect_error(link, junk, "could not read the request");
  // A message of a kind the replica does not take.
  expect_error(link, wire::encode(wire::kHello, 2, service, {}), "does not take messages of kind");
  // A request meant for another service.
  Tensor x = Tensor::zeros(DType::FP32, {2, 4});
  for (int i = 0; i < 8; ++i) static_cast<float*>(x.data())[i] = static_cast<float>(i);
  expect_error(link, wire::encode(wire::kRequest, 3, service + 7, {{"x", x}}), "meant for service");
  // A tensor said to be in shared memory that does not exist.
  const std::vector<wire::Staged> nowhere = {{Transport::shm, "/tandem.1.999", 0}};
  expect_error(link, wire::encode(wire::kRequest, 4, service, {{"x", x}}, {}, &nowhere),
               "/tandem.1.999");
  // And a good request still gets its answer.
  const wire::Decoded d = ask(link, wire::encode(wire::kRequest, 5, service, {{"x", x}}));
  if (d.header.kind != wire::kReplyOk || d.header.request_id != 5 || d.tensors.size() != 1) {
    fail("the good request failed: " + d.text);
  }
  for (int i = 0; i < 8; ++i) {
    if (static_cast<const float*>(d.tensors[0].tensor.data())[i] != 2.0f * i) fail("wrong value");
  }
  std::printf("direct: the replica answered every bad message and went on\n");
  return 0;
}
