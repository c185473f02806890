// The bridge's overhead (issue 5): the same chat-completion requests, 64 in
// flight, sent to a loopback endpoint (http_endpoint) directly from one
// process through Tandem's HTTP client (libcurl multi), then from an
// application rank through the bridge rank of a remote service.
//
//   mpiexec -n 3 bridge_bench PORT REQUESTS
//
// Prints JSON lines: requests per second and median latency for each.

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>
#include <tandem/tandem.hpp>

#include "ml_ranks/http/http_client.hpp"

namespace {

using clock_type = std::chrono::steady_clock;
constexpr int kInFlight = 64;
const char* kBody = R"({"model":"bench","messages":[{"role":"user","content":"hello"}]})";

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

void emit(const char* kind, int n, double seconds, const std::vector<double>& lat) {
  std::printf("%s\n", nlohmann::json{{"kind", kind}, {"requests", n}, {"rps", n / seconds},
                                     {"median_latency_us", median(lat)}}
                          .dump()
                          .c_str());
  std::fflush(stdout);
}

void direct(int port, int n) {
  tandem::detail::HttpClient http(kInFlight);
  std::vector<double> lat;
  int sent = 0;
  int done = 0;
  const auto t0 = clock_type::now();
  auto send_one = [&] {
    tandem::detail::HttpRequest r;
    r.url = "http://127.0.0.1:" + std::to_string(port) + "/v1/chat/completions";
    r.body = kBody;
    r.headers = {"Content-Type: application/json"};
    const auto start = clock_type::now();
    http.submit(std::move(r), [&, start](tandem::detail::HttpResponse&& resp) {
      if (!resp.ok()) std::abort();
      lat.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - start).count());
      ++done;
    });
    ++sent;
  };
  while (sent < std::min(n, kInFlight)) send_one();
  while (done < n) {
    http.progress(1);
    while (sent < n && sent - done < kInFlight) send_one();
  }
  emit("direct_libcurl", n, std::chrono::duration<double>(clock_type::now() - t0).count(), lat);
}

void bridged(int port, int n) {
  const auto dir = std::filesystem::current_path() / "bench-bridge";
  std::filesystem::create_directories(dir);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank == 0) {
    std::ofstream(dir / "workflow.toml")
        << "[job]\nname = \"bridge\"\nrun_root = \"" << dir.string()
        << "\"\n[[service]]\nname = \"llm\"\nbackend = \"remote\"\nprotocol = \"openai\"\n"
        << "url = \"http://127.0.0.1:" << port << "\"\nmax_in_flight = " << kInFlight << "\n";
  }
  MPI_Barrier(MPI_COMM_WORLD);
  tandem::Session session(MPI_COMM_WORLD, (dir / "workflow.toml").string());
  if (session.is_app()) {
    auto& c = session.client();
    c.wait_ready("llm", 30);
    for (int i = 0; i < 100; ++i) c.call("llm", kBody);  // warm up
    std::vector<tandem::CallHandle> flight(kInFlight);
    std::vector<clock_type::time_point> started(kInFlight);
    std::vector<double> lat;
    int sent = 0;
    int done = 0;
    const auto t0 = clock_type::now();
    for (int k = 0; k < kInFlight && sent < n; ++k, ++sent) {
      started[k] = clock_type::now();
      flight[k] = c.call_async("llm", kBody);
    }
    while (done < n) {
      bool any = false;
      for (int k = 0; k < kInFlight; ++k) {
        if (!flight[k].valid() || !flight[k].test()) continue;
        any = true;
        flight[k].wait();
        lat.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - started[k]).count());
        ++done;
        flight[k] = tandem::CallHandle();
        if (sent < n) {
          started[k] = clock_type::now();
          flight[k] = c.call_async("llm", kBody);
          ++sent;
        }
      }
      // Leave the cores to the bridge and the endpoint while nothing is back,
      // as the direct client does by sleeping in poll().
      if (!any) std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    emit("tandem_bridge", n, std::chrono::duration<double>(clock_type::now() - t0).count(), lat);
  }
  session.finalize();
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  const int port = std::stoi(argv[1]);
  const int n = std::stoi(argv[2]);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank == 2) direct(port, n);
  MPI_Barrier(MPI_COMM_WORLD);
  bridged(port, n);
  MPI_Finalize();
}
