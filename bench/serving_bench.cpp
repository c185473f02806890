// Serving benchmarks, one MPI program with two modes.
//
//   mpiexec -n 3 serving_bench latency
//     Round trips of 8 B, 1 KiB, 64 KiB and 1 MiB: first a raw MPI
//     ping-pong between ranks 2 and 1 (the physical limit), then the same
//     bytes through Tandem's echo service (rank 0 coordinates, rank 1
//     serves, rank 2 is the client). Medians over many round trips.
//
//   mpiexec -n C+2 serving_bench throughput MODEL ROWS SECONDS
//     C clients keep two requests of ROWS x 64 floats each in flight to an
//     MLP served by one rank, for SECONDS; prints rows per second and the
//     mean batch the batcher formed (compare with torch_direct).
//
// Output: one JSON object per line, for bench/serving.py.

#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <tandem/tandem.hpp>

namespace {

using clock_type = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int iterations_for(std::size_t bytes) {
  return bytes <= 1024 ? 20000 : bytes <= 65536 ? 3000 : 300;
}

const std::vector<std::size_t> kSizes = {8, 1024, 65536, 1 << 20};

std::string write_workflow(const std::string& name, const std::string& body) {
  const auto dir = std::filesystem::current_path() / ("bench-" + name);
  std::filesystem::create_directories(dir);
  const auto file = dir / "workflow.toml";
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  // TANDEM_BENCH_TRACE=0 turns the trace off (bench/trace_overhead.py).
  const char* trace = std::getenv("TANDEM_BENCH_TRACE");
  const bool traced = !(trace && std::string(trace) == "0");
  // TANDEM_BENCH_IDLE=shared|dedicated overrides the idle mode (bench/serving.py).
  const char* idle = std::getenv("TANDEM_BENCH_IDLE");
  const std::string idle_mode = idle && *idle ? idle : "auto";
  if (rank == 0) {
    std::ofstream(file) << "[job]\nname = \"" << name << "\"\nrun_root = \"" << dir.string()
                        << "\"\nidle = \"" << idle_mode
                        << "\"\n[job.monitor]\ntrace = " << (traced ? "true" : "false") << "\n"
                        << body;
  }
  MPI_Barrier(MPI_COMM_WORLD);
  return file.string();
}

// A barrier that sleeps while it waits: rank 0 waits out the raw ping-pong
// in it, and must not take a core from the two ranks that measure when
// Open MPI spins (OMPI_MCA_mpi_yield_when_idle=0).
void sleeping_barrier() {
  MPI_Request r;
  MPI_Ibarrier(MPI_COMM_WORLD, &r);
  for (int done = 0; !done;) {
    MPI_Test(&r, &done, MPI_STATUS_IGNORE);
    if (!done) usleep(100);
  }
}

void latency(const std::vector<std::size_t>& sizes) {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  // Raw MPI ping-pong between the ranks that will be client and service.
  std::vector<char> buf(1 << 20, 1);
  for (std::size_t bytes : sizes) {
    const int n = iterations_for(bytes);
    std::vector<double> rtt;
    for (int i = 0; i < n + 100; ++i) {
      if (rank == 2) {
        const auto t0 = clock_type::now();
        MPI_Send(buf.data(), static_cast<int>(bytes), MPI_BYTE, 1, 0, MPI_COMM_WORLD);
        MPI_Recv(buf.data(), static_cast<int>(bytes), MPI_BYTE, 1, 0, MPI_COMM_WORLD,
                 MPI_STATUS_IGNORE);
        if (i >= 100)
          rtt.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - t0).count());
      } else if (rank == 1) {
        MPI_Recv(buf.data(), static_cast<int>(bytes), MPI_BYTE, 2, 0, MPI_COMM_WORLD,
                 MPI_STATUS_IGNORE);
        MPI_Send(buf.data(), static_cast<int>(bytes), MPI_BYTE, 2, 0, MPI_COMM_WORLD);
      }
    }
    if (rank == 2) {
      std::printf("%s\n",
                  nlohmann::json{{"kind", "raw_mpi"}, {"bytes", bytes}, {"median_us", median(rtt)}}
                      .dump()
                      .c_str());
    }
  }
  sleeping_barrier();
  const std::string file =
      write_workflow("latency", "[[service]]\nname = \"echo\"\nbackend = \"echo\"\n");
  tandem::Session session(MPI_COMM_WORLD, file);
  if (session.is_app()) {
    auto& client = session.client();
    client.wait_ready("echo");
    for (std::size_t bytes : sizes) {
      const int n = iterations_for(bytes);
      tandem::Tensor x =
          tandem::Tensor::zeros(tandem::DType::UINT8, {1, static_cast<std::int64_t>(bytes)});
      const tandem::TensorList in{{"x", x}};
      std::vector<double> rtt;
      for (int i = 0; i < n + 100; ++i) {
        const auto t0 = clock_type::now();
        const tandem::TensorList out = client.infer("echo", in);
        if (i >= 100)
          rtt.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - t0).count());
      }
      std::printf(
          "%s\n",
          nlohmann::json{{"kind", "tandem_echo"}, {"bytes", bytes}, {"median_us", median(rtt)}}
              .dump()
              .c_str());
    }
  }
  session.finalize();
}

void throughput(const std::string& model, int rows, double seconds) {
  const std::string file = write_workflow(
      "throughput", "[[service]]\nname = \"mlp\"\nbackend = \"torchscript\"\nmodel = \"" + model +
                        "\"\nmax_batch = 512\n"
                        "inputs = [{ name = \"x\", dtype = \"FP32\", shape = [-1, 64] }]\n"
                        "outputs = [{ name = \"y\", dtype = \"FP32\", shape = [-1, 16] }]\n");
  double total_rows = 0;
  std::string run_dir;
  {
    tandem::Session session(MPI_COMM_WORLD, file);
    run_dir = session.run_dir();
    if (session.is_app()) {
      auto& client = session.client();
      client.wait_ready("mlp", 120);
      std::vector<float> values(static_cast<std::size_t>(rows) * 64, 0.5f);
      const tandem::TensorList in{{"x", tandem::Tensor::from(values, {rows, 64})}};
      for (int i = 0; i < 20; ++i) client.infer("mlp", in);  // warm up
      MPI_Barrier(session.app_comm());
      long long done = 0;
      std::vector<tandem::InferHandle> flight;
      const auto t0 = clock_type::now();
      const auto end = t0 + std::chrono::duration<double>(seconds);
      for (int k = 0; k < 2; ++k) flight.push_back(client.infer_async("mlp", in));
      while (clock_type::now() < end) {
        for (auto& h : flight) {
          if (h.test()) {
            h.wait();
            done += rows;
            h = client.infer_async("mlp", in);
          }
        }
      }
      for (auto& h : flight) {
        h.wait();
        done += rows;
      }
      const double took = std::chrono::duration<double>(clock_type::now() - t0).count();
      double rate = done / took;
      MPI_Allreduce(&rate, &total_rows, 1, MPI_DOUBLE, MPI_SUM, session.app_comm());
      int app_rank = 0;
      int apps = 0;
      MPI_Comm_rank(session.app_comm(), &app_rank);
      MPI_Comm_size(session.app_comm(), &apps);
      if (app_rank == 0) {
        std::printf("%s\n", nlohmann::json{{"kind", "tandem_mlp"},
                                           {"clients", apps},
                                           {"rows_per_request", rows},
                                           {"rows_per_s", total_rows}}
                                .dump()
                                .c_str());
        std::fflush(stdout);
      }
    }
    session.finalize();
  }
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank == 0) {
    std::ifstream in(run_dir + "/summary.json");
    const auto summary = nlohmann::json::parse(in);
    const auto& svc = summary["services"]["mlp"];
    std::printf("%s\n", nlohmann::json{{"kind", "tandem_mlp_batches"},
                                       {"mean_batch_rows", svc["mean_batch_rows"]},
                                       {"batch_rows_histogram", svc["batch_rows_histogram"]}}
                            .dump()
                            .c_str());
  }
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  const std::string mode = argc > 1 ? argv[1] : "latency";
  if (mode == "latency") {
    // An optional comma-separated list of sizes; all of kSizes by default.
    std::vector<std::size_t> sizes = kSizes;
    if (argc > 2) {
      sizes.clear();
      std::stringstream list(argv[2]);
      for (std::string item; std::getline(list, item, ',');) sizes.push_back(std::stoul(item));
    }
    latency(sizes);
  } else {
    throughput(argv[2], std::stoi(argv[3]), std::stod(argv[4]));
  }
  MPI_Finalize();
}
