// Request round trips within a node and across nodes, against Redis SET+GET
// from the same node, in one run (issue 15). An SPMD session over 4 ranks on
// 2 nodes (see bench/cross_node.py, which starts it on fake nodes):
//
//   rank 0 coordinator, rank 1 service "far"   (node 0)
//   rank 2 service "near", rank 3 the client    (node 1)
//
// The client times echo round trips of 1 KiB and 1 MiB to "near" (same node:
// shared memory past 32 KiB) and to "far" (the other node: TCP), a raw MPI
// ping-pong with rank 1 across the nodes (the limit of the wire), and Redis
// SET+GET of the same bytes through hiredis (REDIS_PORT). One JSON object
// per line, medians in microseconds.
//
//   cross_node_bench JOB.toml REDIS_PORT

#include <hiredis/hiredis.h>
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include <tandem/tandem.hpp>

namespace {

using Clock = std::chrono::steady_clock;
constexpr int kTag = 77;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <typename Fn>
double time_median(int n, Fn fn) {
  std::vector<double> t;
  for (int i = 0; i < n + n / 10 + 2; ++i) {
    const auto t0 = Clock::now();
    fn();
    if (i >= n / 10 + 2) t.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  return median(t);
}

void emit(const char* kind, std::size_t bytes, double us) {
  std::printf("{\"kind\":\"%s\",\"bytes\":%zu,\"median_us\":%.2f}\n", kind, bytes, us);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int world = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &world);
  const int redis_port = argc > 2 ? std::atoi(argv[2]) : 0;
  const std::vector<std::size_t> sizes = {1 << 10, 1 << 20};
  // The raw MPI ping-pong between the client (3) and rank 1 on the other
  // node, before the session takes rank 1.
  for (std::size_t bytes : sizes) {
    std::vector<char> buf(bytes);
    const int n = bytes <= 1024 ? 2000 : 200;
    if (world == 3) {
      const double us = time_median(n, [&] {
        MPI_Send(buf.data(), static_cast<int>(bytes), MPI_BYTE, 1, kTag, MPI_COMM_WORLD);
        MPI_Recv(buf.data(), static_cast<int>(bytes), MPI_BYTE, 1, kTag, MPI_COMM_WORLD,
                 MPI_STATUS_IGNORE);
      });
      emit("raw_mpi_cross_node", bytes, us);
    } else if (world == 1) {
      for (int i = 0; i < n + n / 10 + 2; ++i) {
        MPI_Recv(buf.data(), static_cast<int>(bytes), MPI_BYTE, 3, kTag, MPI_COMM_WORLD,
                 MPI_STATUS_IGNORE);
        MPI_Send(buf.data(), static_cast<int>(bytes), MPI_BYTE, 3, kTag, MPI_COMM_WORLD);
      }
    }
  }
  std::optional<tandem::Session> session;
  try {
    session.emplace(MPI_COMM_WORLD, argv[1]);
  } catch (const tandem::error& e) {
    if (world == 0) std::fprintf(stderr, "cross_node_bench: %s\n", e.what());
    MPI_Finalize();
    return 2;
  }
  if (session->is_app()) {
    tandem::Client& client = session->client();
    client.wait_ready("near");
    client.wait_ready("far");
    redisContext* redis = redis_port ? redisConnect("127.0.0.1", redis_port) : nullptr;
    for (std::size_t bytes : sizes) {
      const int n = bytes <= 1024 ? 2000 : 200;
      const auto rows = static_cast<std::int64_t>(bytes / sizeof(float));
      tandem::Tensor x = tandem::Tensor::zeros(tandem::DType::FP32, {rows});
      for (const char* service : {"near", "far"}) {
        const double us = time_median(n, [&] { client.infer(service, {{"x", x}}); });
        emit(service[0] == 'n' ? "tandem_same_node" : "tandem_cross_node", bytes, us);
      }
      if (redis) {
        const double us = time_median(n, [&] {
          auto* set = static_cast<redisReply*>(
              redisCommand(redis, "SET k %b", x.data(), static_cast<std::size_t>(bytes)));
          freeReplyObject(set);
          auto* get = static_cast<redisReply*>(redisCommand(redis, "GET k"));
          freeReplyObject(get);
        });
        emit("redis_set_get", bytes, us);
      }
    }
    if (redis) redisFree(redis);
  }
  session->finalize();
  MPI_Finalize();
  return 0;
}
