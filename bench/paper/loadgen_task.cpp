// The load generator of bench/paper/scaling.py, in the manner of MLPerf
// LoadGen: one task of K ranks drives one service through three scenarios
// in turn, its ranks in step (barriers on ctx.comm()):
//   closed   C clients, request streams spread over the K ranks, each
//            sending its next request as soon as its last is answered;
//   offline  every rank keeps `window` requests in flight until its share
//            of `offline_requests` is answered: the most the service does;
//   server   Poisson arrivals at a rate, each request timed from the moment
//            it was due; a binary search for the highest rate whose p99
//            stays under `p99_bound_ms`.
// Rank 0 writes OUTPUT_DIR/loadgen.json.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <mpi.h>
#include <nlohmann/json.hpp>
#include <tandem/tandem.hpp>

namespace {

using Json = nlohmann::json;

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Waits without hogging a core that the service's ranks need (here ranks
// outnumber cores): as Tandem's own waits do, a hundred polls, ten yields,
// then sleeps that double from 1 us up to `max_sleep_us`.
class Idle {
 public:
  void reset() {
    polls_ = 0;
    sleep_us_ = 1;
  }
  void pause(long max_sleep_us = 250) {
    ++polls_;
    if (polls_ <= 100) return;
    if (polls_ <= 110) {
      std::this_thread::yield();
      return;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(std::min(sleep_us_, max_sleep_us)));
    sleep_us_ = std::min(2 * sleep_us_, 250L);
  }

 private:
  int polls_ = 0;
  long sleep_us_ = 1;
};

// A collective wait that sleeps: ranks that finish a phase early (or have
// no clients in it) must not spin against those still working.
void settle(MPI_Request request) {
  Idle idle;
  int done = 0;
  while (true) {
    MPI_Test(&request, &done, MPI_STATUS_IGNORE);
    if (done) return;
    idle.pause();
  }
}

void barrier(MPI_Comm comm) {
  MPI_Request request = MPI_REQUEST_NULL;
  MPI_Ibarrier(comm, &request);
  settle(request);
}

// One request in flight and when it was sent (or, for the server
// scenario, due).
struct InFlight {
  tandem::InferHandle handle;
  double since = 0;
};

struct Load {
  tandem::Client& client;
  std::string service;
  tandem::TensorList inputs;

  InFlight send(double since) { return {client.infer_async(service, inputs), since}; }
};

// Takes the answered requests out of `flying`, adding their latencies (ms).
// Returns how many were answered. A failed request fails the benchmark.
int collect(std::vector<InFlight>& flying, std::vector<double>& latencies_ms) {
  int answered = 0;
  for (std::size_t i = 0; i < flying.size();) {
    if (!flying[i].handle.test()) {
      ++i;
      continue;
    }
    flying[i].handle.wait();  // throws the request's error, if any
    latencies_ms.push_back((now_s() - flying[i].since) * 1e3);
    flying[i] = std::move(flying.back());
    flying.pop_back();
    ++answered;
  }
  return answered;
}

// `streams` closed-loop clients for `seconds`; then the last requests are
// let finish. Returns the elapsed time.
double closed_loop(Load& load, int streams, double seconds, std::vector<double>& latencies_ms) {
  const double start = now_s();
  std::vector<InFlight> flying;
  flying.reserve(static_cast<std::size_t>(streams));
  for (int s = 0; s < streams; ++s) flying.push_back(load.send(now_s()));
  Idle idle;
  while (!flying.empty()) {
    const int answered = collect(flying, latencies_ms);
    if (answered == 0) {
      idle.pause();
      continue;
    }
    idle.reset();
    if (now_s() - start < seconds) {
      for (int k = 0; k < answered; ++k) flying.push_back(load.send(now_s()));
    }
  }
  return now_s() - start;
}

// `requests` requests with at most `window` in flight.
double offline(Load& load, long long requests, int window, std::vector<double>& latencies_ms) {
  const double start = now_s();
  std::vector<InFlight> flying;
  flying.reserve(static_cast<std::size_t>(window));
  long long sent = 0;
  Idle idle;
  while (sent < requests || !flying.empty()) {
    while (sent < requests && static_cast<int>(flying.size()) < window) {
      flying.push_back(load.send(now_s()));
      ++sent;
    }
    if (collect(flying, latencies_ms) == 0) {
      idle.pause();
    } else {
      idle.reset();
    }
  }
  return now_s() - start;
}

// Poisson arrivals at `rate` per second for `seconds`. Each request's
// latency counts from when it was due, so a sender that falls behind is
// charged for it. Returns false when more than `max_flying` requests pile
// up: the rate is far past what the service does.
bool poisson(Load& load, double rate, double seconds, unsigned seed, int max_flying,
             std::vector<double>& latencies_ms) {
  std::mt19937_64 rng(seed);
  std::exponential_distribution<double> gap(rate);
  const double start = now_s();
  double due = start + gap(rng);
  std::vector<InFlight> flying;
  bool kept_up = true;
  Idle idle;
  while (due < start + seconds || !flying.empty()) {
    bool any = collect(flying, latencies_ms) > 0;
    const double now = now_s();
    while (due < start + seconds && due <= now) {
      if (static_cast<int>(flying.size()) >= max_flying) {
        kept_up = false;
        due = start + seconds;  // stop sending; let what is in flight finish
        break;
      }
      flying.push_back(load.send(due));
      due += gap(rng);
      any = true;
    }
    if (any) {
      idle.reset();
    } else {
      const double until_due = due < start + seconds ? (due - now_s()) * 1e6 : 250.0;
      idle.pause(std::max(1L, static_cast<long>(until_due)));
    }
  }
  return kept_up;
}

// Every rank's latencies, at rank 0.
std::vector<double> gather(MPI_Comm comm, const std::vector<double>& mine) {
  int rank = 0;
  int size = 0;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  const int count = static_cast<int>(mine.size());
  std::vector<int> counts(static_cast<std::size_t>(size));
  MPI_Gather(&count, 1, MPI_INT, counts.data(), 1, MPI_INT, 0, comm);
  std::vector<int> offsets(static_cast<std::size_t>(size));
  int total = 0;
  for (int r = 0; r < size; ++r) {
    offsets[static_cast<std::size_t>(r)] = total;
    total += counts[static_cast<std::size_t>(r)];
  }
  std::vector<double> all(static_cast<std::size_t>(rank == 0 ? total : 0));
  MPI_Gatherv(mine.data(), count, MPI_DOUBLE, all.data(), counts.data(), offsets.data(), MPI_DOUBLE,
              0, comm);
  return all;
}

double slowest(MPI_Comm comm, double elapsed) {
  double max = 0;
  MPI_Request request = MPI_REQUEST_NULL;
  MPI_Iallreduce(&elapsed, &max, 1, MPI_DOUBLE, MPI_MAX, comm, &request);
  settle(request);
  return max;
}

// Nearest-rank percentile of sorted values.
double percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  const auto n = static_cast<double>(sorted.size());
  const auto k = static_cast<std::size_t>(std::max(1.0, std::ceil(p * n)));
  return sorted[std::min(k, sorted.size()) - 1];
}

// A phase's figures: requests, throughput and latency percentiles.
Json summarize(std::vector<double> latencies_ms, double elapsed_s) {
  std::sort(latencies_ms.begin(), latencies_ms.end());
  double sum = 0;
  for (const double v : latencies_ms) sum += v;
  const auto n = static_cast<double>(latencies_ms.size());
  return Json{{"requests", latencies_ms.size()},
              {"elapsed_s", elapsed_s},
              {"throughput", elapsed_s > 0 ? n / elapsed_s : 0.0},
              {"mean_ms", n > 0 ? sum / n : 0.0},
              {"p50_ms", percentile(latencies_ms, 0.50)},
              {"p95_ms", percentile(latencies_ms, 0.95)},
              {"p99_ms", percentile(latencies_ms, 0.99)}};
}

std::vector<int> parse_list(const std::string& text) {
  std::vector<int> values;
  std::size_t at = 0;
  while (at < text.size()) {
    std::size_t end = text.find(',', at);
    if (end == std::string::npos) end = text.size();
    values.push_back(std::stoi(text.substr(at, end - at)));
    at = end + 1;
  }
  return values;
}

}  // namespace

TANDEM_TASK(paper_loadgen) {
  MPI_Comm comm = ctx.comm();
  const int rank = ctx.rank();
  const int ranks = ctx.size();
  std::vector<float> row(static_cast<std::size_t>(ctx.arg_int("features", 64)), 0.5F);
  Load load{ctx.client(),
            ctx.arg_string("service", "model"),
            {{"x", tandem::Tensor::from(row, {1, static_cast<std::int64_t>(row.size())})}}};
  load.client.wait_ready(load.service, 300);
  const double phase_s = ctx.arg_double("phase_s", 1.0);

  // Warm-up: every rank's first requests set up what later ones reuse.
  {
    std::vector<double> ignored;
    closed_loop(load, 4, 0.2, ignored);
  }

  Json result{{"client_ranks", ranks}};
  for (const int clients : parse_list(ctx.arg_string("clients", "1,2,4,8,16,32,64"))) {
    // Streams spread over the ranks; with fewer clients than ranks some
    // ranks wait out the phase.
    const int streams = clients / ranks + (rank < clients % ranks ? 1 : 0);
    std::vector<double> latencies;
    barrier(comm);
    const double elapsed = streams > 0 ? closed_loop(load, streams, phase_s, latencies) : 0.0;
    const double longest = slowest(comm, elapsed);
    const std::vector<double> all = gather(comm, latencies);
    if (rank == 0) {
      Json cell = summarize(all, longest);
      cell["clients"] = clients;
      result["closed"].push_back(cell);
    }
  }

  {
    const long long total = ctx.arg_int("offline_requests", 20000);
    const long long mine = total / ranks + (rank < total % ranks ? 1 : 0);
    std::vector<double> latencies;
    barrier(comm);
    const double elapsed =
        offline(load, mine, static_cast<int>(ctx.arg_int("window", 256)), latencies);
    const double longest = slowest(comm, elapsed);
    const std::vector<double> all = gather(comm, latencies);
    if (rank == 0) result["offline"] = summarize(all, longest);
  }

  // The server scenario: rank 0 chooses each rate, all ranks send a share.
  // First the offline throughput; while a rate is met, twice it (batching
  // can make the service keep up with more than a closed loop asks of it);
  // then halving the interval between the last met and the first missed.
  const double bound_ms = ctx.arg_double("p99_bound_ms", 10.0);
  const int steps = static_cast<int>(ctx.arg_int("server_steps", 6));
  double rate = rank == 0 ? result["offline"]["throughput"].get<double>() : 0.0;
  double met_rate = 0;     // the highest rate met so far
  double missed_rate = 0;  // the lowest rate missed so far; 0: none yet
  Json tried = Json::array();
  for (int step = 0; step < steps; ++step) {
    MPI_Bcast(&rate, 1, MPI_DOUBLE, 0, comm);
    std::vector<double> latencies;
    barrier(comm);
    const double started = now_s();
    int kept_up =
        poisson(load, rate / ranks, phase_s, static_cast<unsigned>(1000 * step + rank + 1),
                static_cast<int>(ctx.arg_int("max_in_flight", 4096)), latencies)
            ? 1
            : 0;
    const double longest = slowest(comm, now_s() - started);
    int all_kept_up = 0;
    MPI_Allreduce(&kept_up, &all_kept_up, 1, MPI_INT, MPI_MIN, comm);
    const std::vector<double> all = gather(comm, latencies);
    if (rank == 0) {
      Json cell = summarize(all, longest);
      const bool met = all_kept_up == 1 && cell["p99_ms"].get<double>() <= bound_ms;
      cell["rate"] = rate;
      cell["met"] = met;
      tried.push_back(cell);
      if (met) {
        met_rate = std::max(met_rate, rate);
      } else if (missed_rate == 0 || rate < missed_rate) {
        missed_rate = rate;
      }
      rate = missed_rate == 0 ? 2 * met_rate : (met_rate + missed_rate) / 2;
    }
  }
  const double best = met_rate;
  if (rank == 0) {
    result["server"] = Json{{"p99_bound_ms", bound_ms}, {"best_rate", best}, {"tried", tried}};
    std::ofstream(ctx.output_dir() / "loadgen.json") << result.dump(1) << "\n";
  }
}
