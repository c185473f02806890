// Moving tensors: Tandem's echo service per transport against the data
// planes its peers use, in one run (issue 4).
//
//   mpiexec -n 3 transport_bench [REDIS_PORT]
//
// Rank 2 is the client, rank 1 the echo service (or the other end of the raw
// ping-pong), rank 0 the coordinator. For float32 tensors of 1 KiB to
// 256 MiB it measures round trips of: raw MPI ping-pong (the limit); Tandem
// inline, shm and hdf5; memcpy of the bytes twice (what a shared-memory round
// trip must at least do); Redis SET+GET on loopback through hiredis (the data
// plane SmartSim uses; when REDIS_PORT is given); an HTTP POST echo on
// loopback through cpp-httplib with TCP_NODELAY (the REST path of Triton and
// vLLM clients). One JSON object per line, medians in microseconds.

#include <hiredis/hiredis.h>
#include <httplib.h>
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>
#include <tandem/tandem.hpp>

namespace {

using clock_type = std::chrono::steady_clock;

const std::vector<std::size_t> kSizes = {1 << 10, 64 << 10, 1 << 20, 16 << 20, 256 << 20};

int iterations(std::size_t bytes) {
  return bytes <= (1 << 10)    ? 2000
         : bytes <= (64 << 10) ? 500
         : bytes <= (1 << 20)  ? 100
         : bytes <= (16 << 20) ? 15
                               : 5;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <typename Fn>
double time_median(std::size_t bytes, Fn fn) {
  const int n = iterations(bytes);
  std::vector<double> t;
  for (int i = 0; i < n + std::max(2, n / 10); ++i) {
    const auto t0 = clock_type::now();
    fn();
    if (i >= std::max(2, n / 10))
      t.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - t0).count());
  }
  return median(t);
}

void emit(const char* kind, std::size_t bytes, double us) {
  std::printf("%s\n",
              nlohmann::json{{"kind", kind}, {"bytes", bytes}, {"median_us", us}}.dump().c_str());
  std::fflush(stdout);
}

void raw_mpi(int rank) {
  std::vector<char> buf(kSizes.back(), 1);
  for (std::size_t bytes : kSizes) {
    const int n = iterations(bytes) + std::max(2, iterations(bytes) / 10);
    std::vector<double> t;
    for (int i = 0; i < n; ++i) {
      if (rank == 2) {
        const auto t0 = clock_type::now();
        MPI_Send(buf.data(), static_cast<int>(bytes), MPI_BYTE, 1, 0, MPI_COMM_WORLD);
        MPI_Recv(buf.data(), static_cast<int>(bytes), MPI_BYTE, 1, 0, MPI_COMM_WORLD,
                 MPI_STATUS_IGNORE);
        if (i >= std::max(2, iterations(bytes) / 10))
          t.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - t0).count());
      } else if (rank == 1) {
        MPI_Recv(buf.data(), static_cast<int>(bytes), MPI_BYTE, 2, 0, MPI_COMM_WORLD,
                 MPI_STATUS_IGNORE);
        MPI_Send(buf.data(), static_cast<int>(bytes), MPI_BYTE, 2, 0, MPI_COMM_WORLD);
      }
    }
    if (rank == 2) emit("raw_mpi", bytes, median(t));
  }
}

void tandem_echo() {
  const auto dir = std::filesystem::current_path() / "bench-transport";
  std::filesystem::create_directories(dir);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank == 0) {
    std::ofstream(dir / "workflow.toml")
        << "[job]\nname = \"transport\"\nrun_root = \"" << dir.string()
        << "\"\n[[service]]\nname = \"echo\"\nbackend = \"echo\"\n";
  }
  MPI_Barrier(MPI_COMM_WORLD);
  tandem::Session session(MPI_COMM_WORLD, (dir / "workflow.toml").string());
  if (session.is_app()) {
    auto& client = session.client();
    client.wait_ready("echo");
    const std::pair<tandem::Transport, const char*> transports[] = {
        {tandem::Transport::inline_mpi, "tandem_inline"},
        {tandem::Transport::shm, "tandem_shm"},
        {tandem::Transport::hdf5, "tandem_hdf5"}};
    for (const auto& [transport, name] : transports) {
      tandem::InferOptions opts;
      opts.transport = transport;
      for (std::size_t bytes : kSizes) {
        tandem::Tensor x =
            tandem::Tensor::zeros(tandem::DType::FP32, {1, static_cast<std::int64_t>(bytes / 4)});
        const tandem::TensorList in{{"x", x}};
        emit(name, bytes,
             time_median(bytes, [&] { const auto out = client.infer("echo", in, opts); }));
      }
    }
  }
  session.finalize();
}

void memcpy_twice() {
  std::vector<char> a(kSizes.back(), 1), b(kSizes.back(), 2), c(kSizes.back(), 3);
  for (std::size_t bytes : kSizes) {
    emit("memcpy_x2", bytes, time_median(bytes, [&] {
           std::memcpy(b.data(), a.data(), bytes);
           std::memcpy(c.data(), b.data(), bytes);
         }));
  }
}

void redis(int port) {
  redisContext* ctx = redisConnect("127.0.0.1", port);
  if (!ctx || ctx->err) {
    std::fprintf(stderr, "redis: cannot connect to port %d\n", port);
    return;
  }
  std::vector<char> value(kSizes.back(), 'x');
  for (std::size_t bytes : kSizes) {
    emit("redis_set_get", bytes, time_median(bytes, [&] {
           auto* r1 = static_cast<redisReply*>(redisCommand(ctx, "SET t %b", value.data(), bytes));
           freeReplyObject(r1);
           auto* r2 = static_cast<redisReply*>(redisCommand(ctx, "GET t"));
           if (!r2 || r2->type != REDIS_REPLY_STRING || r2->len != bytes) std::abort();
           freeReplyObject(r2);
         }));
  }
  redisFree(ctx);
}

void http() {
  httplib::Server server;
  server.set_tcp_nodelay(true);
  server.set_payload_max_length(std::size_t{1} << 30);
  // 256 MiB took longer than the 5 s default on a slow day of the VM.
  server.set_read_timeout(120, 0);
  server.set_write_timeout(120, 0);
  server.Post("/echo", [](const httplib::Request& req, httplib::Response& res) {
    res.set_content(req.body, "application/octet-stream");
  });
  const int port = server.bind_to_any_port("127.0.0.1");
  std::thread t([&] { server.listen_after_bind(); });
  while (!server.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  httplib::Client client("127.0.0.1", port);
  client.set_tcp_nodelay(true);
  client.set_keep_alive(true);
  client.set_read_timeout(120, 0);
  client.set_write_timeout(120, 0);
  std::string body(kSizes.back(), 'x');
  for (std::size_t bytes : kSizes) {
    const std::string payload = body.substr(0, bytes);
    // A peer that fails at a size is reported and left out, not a crash of
    // the whole benchmark (256 MiB posts failed on a slow day of the VM).
    bool failed = false;
    const double us = time_median(bytes, [&] {
      if (failed) return;
      auto res = client.Post("/echo", payload, "application/octet-stream");
      if (!res || res->body.size() != bytes) {
        std::fprintf(stderr, "transport_bench: HTTP POST of %zu bytes failed: %s\n", bytes,
                     res ? "short body" : httplib::to_string(res.error()).c_str());
        failed = true;
      }
    });
    if (!failed) emit("http_post_echo", bytes, us);
  }
  server.stop();
  t.join();
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  raw_mpi(rank);
  MPI_Barrier(MPI_COMM_WORLD);
  tandem_echo();
  if (rank == 2) {
    memcpy_twice();
    if (argc > 1) redis(std::stoi(argv[1]));
    http();
  }
  MPI_Barrier(MPI_COMM_WORLD);
  MPI_Finalize();
}
