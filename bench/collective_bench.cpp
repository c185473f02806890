// Collective inference against its alternatives, in one run (issue 37):
// the spmd-coupling pattern, N application ranks each with k rows of the
// MLP's 64 inputs, one inference per step. An SPMD session: rank 0
// coordinates, rank 1 serves "mlp" (TorchScript, one replica), ranks
// 2..N+1 are the application (bench/collective.py starts it).
//
//   a  every rank calls infer() for its own rows;
//   b  infer_all(): the node's ranks send one request together;
//   c  every rank runs its own libtorch copy of the model (TorchFort's and
//      FTorch's way);
//   d  Redis, SmartSim-style: every rank SETs its tensor, one rank GETs
//      them all, runs the model over them and SETs each rank's result,
//      every rank GETs its own (hiredis, to a redis-server on REDIS_PORT).
//
// A step is timed from the first rank leaving a barrier of the
// application's ranks to the last rank's answer. One JSON object per mode:
// median and p90 step time in microseconds, and, for c, the resident
// memory one model copy costs a rank (VmRSS before and after loading it).
//
//   collective_bench JOB.toml MODEL ROWS STEPS REDIS_PORT

#include <ATen/Parallel.h>
#include <hiredis/hiredis.h>
#include <mpi.h>
#include <torch/script.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <tandem/tandem.hpp>

namespace {

using Clock = std::chrono::steady_clock;
constexpr int kFeatures = 64;

long resident_kib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return 0;
}

// Times `steps` steps of @p step over @p comm (after a few to warm up);
// returns each step's wall time in microseconds, at every rank: from the
// first rank leaving the barrier to the last rank done, on the node's
// monotonic clock (one node: every rank reads the same clock). A rank's
// own elapsed time would miss the time it waited for a core.
std::vector<double> time_steps(MPI_Comm comm, int steps, const std::function<void()>& step) {
  std::vector<double> times;
  const int warm = std::max(3, steps / 10);
  for (int i = 0; i < warm + steps; ++i) {
    MPI_Barrier(comm);
    const auto t0 = Clock::now();
    step();
    const auto t1 = Clock::now();
    // {-start, end}: one MPI_MAX gives the earliest start and the latest end.
    double span[2] = {-std::chrono::duration<double, std::micro>(t0.time_since_epoch()).count(),
                      std::chrono::duration<double, std::micro>(t1.time_since_epoch()).count()};
    MPI_Allreduce(MPI_IN_PLACE, span, 2, MPI_DOUBLE, MPI_MAX, comm);
    if (i >= warm) times.push_back(span[1] + span[0]);
  }
  std::sort(times.begin(), times.end());
  return times;
}

void emit(MPI_Comm comm, const char* mode, int ranks, long long rows,
          const std::vector<double>& sorted, long model_kib = -1) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  if (rank != 0) return;
  std::printf(
      "{\"mode\":\"%s\",\"ranks\":%d,\"rows\":%lld,\"median_us\":%.1f,\"p90_us\":%.1f,"
      "\"model_copy_kib\":%ld}\n",
      mode, ranks, rows, sorted[sorted.size() / 2], sorted[sorted.size() * 9 / 10], model_kib);
  std::fflush(stdout);
}

redisContext* connect_redis(int port) {
  redisContext* c = redisConnect("127.0.0.1", port);
  if (!c || c->err) {
    std::fprintf(stderr, "collective_bench: redis on port %d: %s\n", port,
                 c ? c->errstr : "no memory");
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  return c;
}

void redis_ok(redisReply* r) {
  if (!r || r->type == REDIS_REPLY_ERROR) {
    std::fprintf(stderr, "collective_bench: redis: %s\n", r ? r->str : "no reply");
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  freeReplyObject(r);
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  if (argc < 6) {
    std::fprintf(stderr, "usage: collective_bench JOB.toml MODEL ROWS STEPS REDIS_PORT\n");
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  const std::string model_file = argv[2];
  const long long rows = std::stoll(argv[3]);
  const int steps = std::stoi(argv[4]);
  const int redis_port = std::stoi(argv[5]);
  {
    tandem::Session session(MPI_COMM_WORLD, argv[1]);
    if (session.is_app()) {
      MPI_Comm comm = session.app_comm();
      int rank = 0;
      int ranks = 0;
      MPI_Comm_rank(comm, &rank);
      MPI_Comm_size(comm, &ranks);
      tandem::Client& client = session.client();
      client.wait_ready("mlp");
      std::vector<float> cells(static_cast<std::size_t>(rows * kFeatures),
                               0.01F * static_cast<float>(rank + 1));
      const tandem::Tensor x = tandem::Tensor::from(cells, {rows, kFeatures});

      emit(comm, "a", ranks, rows, time_steps(comm, steps, [&] {
             client.infer("mlp", {{"x", x}});
           }));
      emit(comm, "b", ranks, rows, time_steps(comm, steps, [&] {
             client.infer_all(comm, "mlp", {{"x", x}});
           }));

      // c: a model copy on every rank, one thread each as the replica has.
      at::set_num_threads(1);
      torch::NoGradGuard no_grad;
      const long before = resident_kib();
      torch::jit::Module own = torch::jit::load(model_file);
      own.eval();
      const at::Tensor input = torch::from_blob(cells.data(), {rows, kFeatures});
      for (int i = 0; i < 5; ++i) own.forward({input});
      long copy_kib = resident_kib() - before;
      MPI_Allreduce(MPI_IN_PLACE, &copy_kib, 1, MPI_LONG, MPI_MAX, comm);
      emit(comm, "c", ranks, rows,
           time_steps(comm, steps, [&] { own.forward({input}).toTensor(); }), copy_kib);

      // d: through Redis; app rank 0 runs the model over every rank's rows.
      redisContext* redis = connect_redis(redis_port);
      const std::size_t bytes = cells.size() * sizeof(float);
      std::vector<float> all(static_cast<std::size_t>(ranks) * cells.size());
      std::vector<float> result(static_cast<std::size_t>(rows) * 16);
      emit(comm, "d", ranks, rows, time_steps(comm, std::max(10, steps / 4), [&] {
             redis_ok(static_cast<redisReply*>(
                 redisCommand(redis, "SET in:%d %b", rank, cells.data(), bytes)));
             MPI_Barrier(comm);  // the store has every rank's rows
             if (rank == 0) {
               for (int r = 0; r < ranks; ++r) {
                 auto* got = static_cast<redisReply*>(redisCommand(redis, "GET in:%d", r));
                 std::memcpy(all.data() + static_cast<std::size_t>(r) * cells.size(), got->str,
                             bytes);
                 freeReplyObject(got);
               }
               const at::Tensor y =
                   own.forward({torch::from_blob(all.data(), {ranks * rows, kFeatures})})
                       .toTensor()
                       .contiguous();
               const std::size_t out_bytes = result.size() * sizeof(float);
               for (int r = 0; r < ranks; ++r) {
                 redis_ok(static_cast<redisReply*>(redisCommand(
                     redis, "SET out:%d %b", r,
                     static_cast<const char*>(y.data_ptr()) + r * out_bytes, out_bytes)));
               }
             }
             MPI_Barrier(comm);  // every result is stored
             auto* got = static_cast<redisReply*>(redisCommand(redis, "GET out:%d", rank));
             std::memcpy(result.data(), got->str, result.size() * sizeof(float));
             freeReplyObject(got);
           }));
      redisFree(redis);
    }
    session.finalize();
  }
  MPI_Finalize();
  return 0;
}
