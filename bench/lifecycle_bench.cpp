// A model swap under load (issue 17), one MPI program:
//
//   mpiexec -n C+3 lifecycle_bench FROM_MODEL TO_MODEL SWAP SECONDS
//     Rank 0 coordinates, rank 1 serves service "t" (FROM_MODEL as version
//     1), rank 2 is the operator and ranks 3.. are C clients. The clients
//     keep two one-row requests in flight each for SECONDS; a third of the
//     way in, the operator calls load_model(TO_MODEL, 2) (SWAP: "beside" or
//     "pause") and times it. Each client then sorts its requests by when
//     they were sent: the second before the swap (the steady baseline,
//     measured in the same run), during the swap, and the second after.
//
// Output: one JSON object per client and one for the operator, for
// bench/lifecycle.py.

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>
#include <tandem/tandem.hpp>

namespace {

using steady = std::chrono::steady_clock;

double seconds(steady::time_point t) {
  return std::chrono::duration<double>(t.time_since_epoch()).count();
}

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(q * static_cast<double>(v.size())))];
}

nlohmann::json figures(const std::vector<double>& ms) {
  return {{"n", ms.size()},
          {"p50_ms", percentile(ms, 0.5)},
          {"p99_ms", percentile(ms, 0.99)},
          {"max_ms", ms.empty() ? 0.0 : *std::max_element(ms.begin(), ms.end())}};
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  if (argc != 5) {
    std::fprintf(stderr, "usage: lifecycle_bench FROM_MODEL TO_MODEL SWAP SECONDS\n");
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  const std::string from = argv[1];
  const std::string to = argv[2];
  const std::string swap = argv[3];
  const double run_s = std::atof(argv[4]);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  const auto dir = std::filesystem::current_path() / "bench-lifecycle";
  const auto file = dir / "workflow.toml";
  if (rank == 0) {
    std::filesystem::create_directories(dir);
    std::ofstream(file) << "[job]\nname = \"lifecycle\"\nrun_root = \"" << dir.string()
                        << "\"\n[job.monitor]\ntrace = false\n"
                        << "[[service]]\nname = \"t\"\nbackend = \"torchscript\"\nmodel = \""
                        << from << "\"\nswap = \"" << swap << "\"\n"
                        << "inputs = [{ name = \"x\", dtype = \"FP32\", shape = [-1, 4] }]\n"
                        << "outputs = [{ name = \"y\", dtype = \"FP32\", shape = [-1, 4] }]\n";
  }
  MPI_Barrier(MPI_COMM_WORLD);
  {
    tandem::Session session(MPI_COMM_WORLD, file.string());
    if (session.is_app()) {
      MPI_Comm app = session.app_comm();
      int me = 0;
      MPI_Comm_rank(app, &me);
      tandem::Client& c = session.client();
      c.wait_ready("t", 120);
      MPI_Barrier(app);
      const auto t0 = steady::now();
      const double swap_at = run_s / 3;
      double swap_from = 0;
      double swap_to = 0;
      if (me == 0) {
        // The operator: swaps once, and says when.
        while (seconds(steady::now()) - seconds(t0) < swap_at) {
          std::this_thread::sleep_for(std::chrono::milliseconds(1));  // off the clients' cores
        }
        swap_from = seconds(steady::now()) - seconds(t0);
        const int serving = c.load_model("t", to, 2);
        swap_to = seconds(steady::now()) - seconds(t0);
        std::printf("%s\n", nlohmann::json{{"role", "operator"},
                                           {"serving", serving},
                                           {"load_model_ms", (swap_to - swap_from) * 1e3}}
                                .dump()
                                .c_str());
      }
      double window[2] = {swap_from, swap_to};
      std::vector<double> sent_s;
      std::vector<double> took_ms;
      std::vector<int> version;
      if (me > 0) {
        struct Sent {
          tandem::InferHandle h;
          double at;
        };
        std::deque<Sent> flight;
        const tandem::Tensor x = tandem::Tensor::zeros(tandem::DType::FP32, {1, 4});
        for (;;) {
          const double now = seconds(steady::now()) - seconds(t0);
          if (now < run_s) {
            while (flight.size() < 2) {
              // The clock before the send: a request counts as sent after
              // the swap only if it surely was.
              const double at = seconds(steady::now()) - seconds(t0);
              flight.push_back({c.infer_async("t", {{"x", x}}), at});
            }
          } else if (flight.empty()) {
            break;
          }
          Sent s = std::move(flight.front());
          flight.pop_front();
          s.h.wait();
          sent_s.push_back(s.at);
          took_ms.push_back((seconds(steady::now()) - seconds(t0) - s.at) * 1e3);
          version.push_back(s.h.model_version());
        }
      }
      MPI_Bcast(window, 2, MPI_DOUBLE, 0, app);
      if (me > 0) {
        std::vector<double> before, during, after;
        int went_back = 0;
        for (std::size_t i = 0; i < sent_s.size(); ++i) {
          if (sent_s[i] > window[0] - 1.0 && sent_s[i] < window[0]) before.push_back(took_ms[i]);
          if (sent_s[i] >= window[0] && sent_s[i] <= window[1]) during.push_back(took_ms[i]);
          if (sent_s[i] > window[1] && sent_s[i] < window[1] + 1.0) after.push_back(took_ms[i]);
          if (sent_s[i] > window[1] && version[i] != 2) ++went_back;
        }
        std::printf("%s\n", nlohmann::json{{"role", "client"},
                                           {"client", me},
                                           {"requests", sent_s.size()},
                                           {"before", figures(before)},
                                           {"during", figures(during)},
                                           {"after", figures(after)},
                                           {"old_version_after_ack", went_back}}
                                .dump()
                                .c_str());
      }
    }
    session.finalize();
  }
  MPI_Finalize();
  return 0;
}
