// The direct path's pieces without MPI (transport/direct_*.hpp): the rings,
// an endpoint and links in one process, and the faults with a second one —
// a task that dies with a request out, a replica that dies or closes while
// a task waits, bytes in a ring that are no record, rings that fill up.

#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "tandem/error.hpp"
#include "transport/direct_endpoint.hpp"
#include "transport/direct_link.hpp"
#include "transport/shm.hpp"
#include "transport/staging.hpp"

using namespace tandem;
using namespace tandem::detail;
using namespace tandem::detail::direct;
using clock_type = std::chrono::steady_clock;

namespace {

wire::Encoded request(std::uint64_t id, std::size_t floats) {
  Tensor x = Tensor::zeros(DType::FP32, {static_cast<std::int64_t>(floats)});
  auto* v = static_cast<float*>(x.data());
  for (std::size_t i = 0; i < floats; ++i) v[i] = static_cast<float>(id + i);
  return wire::encode(wire::kRequest, id, 0, {{"x", x}});
}

std::uint64_t id_of(const wire::Encoded& m) {
  wire::Decoded d;
  std::string why;
  EXPECT_TRUE(wire::decode(m.buffer, m.size, d, why)) << why;
  return d.header.request_id;
}

// Takes what is in the endpoint and answers each request with its own id.
int echo_all(Endpoint& e) {
  return e.take([&](const From& from, wire::Encoded&& in) {
    Outgoing o;
    o.message = wire::encode(wire::kReplyOk, id_of(in), 0, {});
    e.reply(from, std::move(o));
  });
}

template <typename F>
bool within(double seconds, F done) {
  const auto until = clock_type::now() + std::chrono::duration<double>(seconds);
  while (clock_type::now() < until) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return done();
}

// A child that holds an endpoint until killed; its name comes back.
pid_t child_endpoint(std::string& name) {
  int ready[2];
  EXPECT_EQ(::pipe(ready), 0);
  const pid_t pid = ::fork();
  if (pid == 0) {
    Endpoint e(0, 0);
    char c = 1;
    (void)!::write(ready[1], &c, 1);
    for (;;) ::pause();
  }
  char c = 0;
  EXPECT_EQ(::read(ready[0], &c, 1), 1);
  ::close(ready[0]);
  ::close(ready[1]);
  name = endpoint_name(pid);
  return pid;
}

}  // namespace

TEST(DirectRing, RecordsComeOutAsTheyWentInAcrossManyWraps) {
  auto ring = std::make_unique<Ring>();
  ring_reset(*ring);
  std::vector<std::byte> in(5000);
  std::uint64_t written = 0, read = 0;
  for (int round = 0; round < 2000; ++round) {
    const std::size_t size = 1 + (round * 977) % in.size();
    for (std::size_t i = 0; i < size; ++i) in[i] = static_cast<std::byte>(round + i);
    while (!ring_write(*ring, in.data(), size)) {
      // Full: read one back, check it, and try again.
      const std::byte* data = nullptr;
      const std::size_t got = ring_peek(*ring, data);
      ASSERT_NE(got, 0u);
      ASSERT_NE(got, kBadRecord);
      const std::size_t want = 1 + (read * 977) % in.size();
      ASSERT_EQ(got, want);
      for (std::size_t i = 0; i < got; ++i) ASSERT_EQ(data[i], static_cast<std::byte>(read + i));
      ring_pop(*ring, got);
      ++read;
    }
    ++written;
  }
  EXPECT_GT(ring->head.load(), 10u * kRingBytes);  // it wrapped many times
  EXPECT_GT(read, 1000u);
  EXPECT_LT(read, written);
}

TEST(DirectRing, RefusesWhatCanNeverFitAndSeesGarbage) {
  auto ring = std::make_unique<Ring>();
  ring_reset(*ring);
  std::vector<std::byte> big(kMaxRecord + 1);
  EXPECT_FALSE(ring_write(*ring, big.data(), big.size()));
  EXPECT_FALSE(ring_write(*ring, big.data(), 0));
  const std::byte* data = nullptr;
  EXPECT_EQ(ring_peek(*ring, data), 0u);
  ASSERT_TRUE(ring_write(*ring, big.data(), 100));
  std::memset(ring->bytes, 0xAB, 8);  // the record's length and tag, overwritten
  EXPECT_EQ(ring_peek(*ring, data), kBadRecord);
  ring_reset(*ring);
  ring->head.store(12345);  // a producer that writes nonsense positions
  EXPECT_EQ(ring_peek(*ring, data), kBadRecord);
}

TEST(Direct, RequestsAndRepliesBetweenALinkAndItsEndpoint) {
  Endpoint e(3, 1);
  Link a(e.name(), 7);
  Link b(e.name(), 8);
  EXPECT_EQ(e.clients(), 2);
  EXPECT_FALSE(e.rang());
  ASSERT_TRUE(a.post(request(1, 256)));
  ASSERT_TRUE(b.post(request(2, 16)));
  EXPECT_TRUE(e.rang());
  std::vector<int> ranks;
  EXPECT_EQ(e.take([&](const From& from, wire::Encoded&& in) {
    ranks.push_back(from.client_rank);
    EXPECT_EQ(from.pid, static_cast<std::uint32_t>(::getpid()));
    wire::Decoded d;
    std::string why;
    ASSERT_TRUE(wire::decode(in.buffer, in.size, d, why)) << why;
    EXPECT_EQ(d.tensors[0].tensor.nbytes(), d.header.request_id == 1 ? 1024u : 64u);
    Outgoing o;
    o.message = wire::encode(wire::kReplyOk, d.header.request_id, 0, {});
    e.reply(from, std::move(o));
  }),
            2);
  EXPECT_FALSE(e.rang());
  EXPECT_EQ(ranks, (std::vector<int>{7, 8}));
  wire::Encoded got;
  ASSERT_TRUE(a.take(got));
  EXPECT_EQ(id_of(got), 1u);
  EXPECT_FALSE(a.take(got));
  ASSERT_TRUE(b.take(got));
  EXPECT_EQ(id_of(got), 2u);
  EXPECT_TRUE(a.serving());
  EXPECT_EQ(a.lost(), "");
}

TEST(Direct, AFloodFillsTheRingAndHeldRepliesAllArriveInOrder) {
  Endpoint e(0, 0);
  Link link(e.name(), 0);
  int posted = 0;
  while (link.post(request(static_cast<std::uint64_t>(posted), 256))) ++posted;
  EXPECT_GT(posted, 50);  // 1 KiB requests in a 128 KiB ring
  EXPECT_LT(posted, 200);
  // Replies larger than the requests: the reply ring fills, the rest wait.
  EXPECT_EQ(e.take([&](const From& from, wire::Encoded&& in) {
    Outgoing o;
    o.message = request(id_of(in), 1024);
    e.reply(from, std::move(o));
  }),
            posted);
  EXPECT_TRUE(e.holding());
  std::uint64_t next = 0;
  wire::Encoded got;
  while (next < static_cast<std::uint64_t>(posted)) {
    if (link.take(got)) {
      ASSERT_EQ(id_of(got), next);
      ++next;
    } else {
      ASSERT_TRUE(e.flush());
    }
  }
  EXPECT_FALSE(e.holding());
  EXPECT_TRUE(link.post(request(999, 256)));  // room again
}

TEST(Direct, ALinkThatLetsGoFreesItsSlot) {
  Endpoint e(0, 0);
  std::vector<std::unique_ptr<Link>> links;
  for (std::uint32_t i = 0; i < kSlots; ++i) links.push_back(std::make_unique<Link>(e.name(), 0));
  EXPECT_THROW(Link(e.name(), 0), io_error);  // every slot taken
  links.pop_back();
  EXPECT_EQ(e.sweep(), 1);
  EXPECT_NO_THROW(Link(e.name(), 0));
}

TEST(Direct, ATaskThatDiesWithARequestOutLosesItsSlotAndItsReply) {
  Endpoint e(0, 0);
  int posted[2];
  ASSERT_EQ(::pipe(posted), 0);
  const pid_t child = ::fork();
  if (child == 0) {
    Link link(e.name(), 5);
    // A large request, its tensor in the task's shared memory...
    Tensor x = Tensor::zeros(DType::FP32, {1 << 16});
    Outgoing o = stage(wire::kRequest, 1, 0, {{"x", x}}, {}, Transport::shm, {}, 0);
    const char ok = link.post(o.message) ? 1 : 0;
    (void)!::write(posted[1], &ok, 1);
    for (;;) ::pause();
  }
  char ok = 0;
  ASSERT_EQ(::read(posted[0], &ok, 1), 1);
  ASSERT_EQ(ok, 1);
  From from;
  ASSERT_EQ(e.take([&](const From& f, wire::Encoded&&) { from = f; }), 1);
  EXPECT_EQ(from.client_rank, 5);
  EXPECT_EQ(e.clients(), 1);
  EXPECT_EQ(e.sweep(), 0);  // alive
  // ...and gone before the reply.
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  EXPECT_EQ(e.sweep(), 1);
  EXPECT_EQ(e.clients(), 0);
  // Its reply, staged in our shared memory, is dropped and the segment
  // handed back rather than held for a task that will never read it.
  Tensor y = Tensor::zeros(DType::FP32, {1 << 16});
  Outgoing o = stage(wire::kReplyOk, 1, 0, {{"y", y}}, {}, Transport::shm, {}, 0, from.pid);
  ASSERT_NE(o.segment, nullptr);
  shm::Header* h = o.segment->header();
  e.reply(from, std::move(o));
  EXPECT_EQ(h->in_use.load(), 0u);
  EXPECT_FALSE(e.holding());
  shm::remove_stale();
}

TEST(Direct, BytesThatAreNoRecordResetTheSlotAndTheTaskIsTold) {
  Endpoint e(0, 0);
  Link link(e.name(), 0);
  ASSERT_TRUE(link.post(request(1, 4)));
  // Another process of ours scribbles over the ring.
  const int fd = ::shm_open(e.name().c_str(), O_RDWR, 0);
  ASSERT_GE(fd, 0);
  void* p = ::mmap(nullptr, sizeof(EndpointHeader), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  ASSERT_NE(p, MAP_FAILED);
  auto* header = static_cast<EndpointHeader*>(p);
  int slot = -1;
  for (std::uint32_t i = 0; i < kSlots; ++i) {
    if (header->slot[i].owner_pid.load() == static_cast<std::uint32_t>(::getpid())) slot = i;
  }
  ASSERT_GE(slot, 0);
  std::memset(header->slot[slot].requests.bytes, 0x5A, 16);
  EXPECT_EQ(e.take([](const From&, wire::Encoded&&) { FAIL() << "garbage was taken"; }), 0);
  EXPECT_EQ(header->slot[slot].owner_pid.load(), 0u);  // free again
  EXPECT_FALSE(link.serving());
  EXPECT_NE(link.lost().find("reset"), std::string::npos) << link.lost();
  ::munmap(p, sizeof(EndpointHeader));
  // Others go on.
  Link other(e.name(), 0);
  ASSERT_TRUE(other.post(request(2, 4)));
  EXPECT_EQ(echo_all(e), 1);
}

TEST(Direct, ATaskWaitingOnAReplicaThatDiesIsToldSoon) {
  std::string name;
  const pid_t replica = child_endpoint(name);
  Link link(name, 0);
  ASSERT_TRUE(link.post(request(1, 4)));
  EXPECT_EQ(link.lost(), "");
  ::kill(replica, SIGKILL);
  ::waitpid(replica, nullptr, 0);
  const auto t0 = clock_type::now();
  link.wait(0, 50'000'000);
  EXPECT_NE(link.lost().find("has gone"), std::string::npos) << link.lost();
  EXPECT_LT(clock_type::now() - t0, std::chrono::seconds(1));
  shm::remove_stale();  // the endpoint it left
}

TEST(Direct, ATaskIsToldWhenTheReplicaClosesWithoutAnswering) {
  auto e = std::make_unique<Endpoint>(0, 0);
  Link link(e->name(), 0);
  ASSERT_TRUE(link.post(request(1, 4)));
  e->set_state(kDraining);
  EXPECT_FALSE(link.serving());  // new requests take the proxy
  EXPECT_EQ(link.lost(), "");    // but this one may still be answered
  e.reset();
  EXPECT_EQ(link.lost(), "the replica stopped before it answered");
}

TEST(Direct, WakeUpsCutTheSleepsShort) {
  Endpoint e(0, 0);
  Link link(e.name(), 0);
  // The replica sleeps; a request wakes it long before its timeout.
  std::thread task([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    ASSERT_TRUE(link.post(request(1, 4)));
  });
  auto t0 = clock_type::now();
  while (!e.rang()) e.sleep(5'000'000'000L);
  EXPECT_LT(clock_type::now() - t0, std::chrono::seconds(2));
  task.join();
  // The task sleeps; the reply wakes it.
  std::thread replica([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    echo_all(e);
  });
  t0 = clock_type::now();
  wire::Encoded got;
  while (!link.take(got)) link.wait(0, 5'000'000'000L);
  EXPECT_LT(clock_type::now() - t0, std::chrono::seconds(2));
  EXPECT_EQ(id_of(got), 1u);
  replica.join();
}
