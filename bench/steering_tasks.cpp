// The steering task of bench/adaptive.py: `rounds` rounds of `per_round`
// submitted null tasks, each round submitted and waited for in full; writes
// one line per round to output_dir()/rounds.txt: the seconds the submit
// call took and the seconds the whole round (submit and wait) took.
#include <chrono>
#include <fstream>
#include <string>
#include <vector>

#include <tandem/tandem.hpp>

TANDEM_TASK(bench_thinker) {
  using clock = std::chrono::steady_clock;
  const long long rounds = ctx.arg_int("rounds", 50);
  const long long per_round = ctx.arg_int("per_round", 100);
  std::ofstream out(ctx.output_dir() / "rounds.txt");
  const std::vector<tandem::TaskRequest> batch(static_cast<std::size_t>(per_round),
                                               tandem::TaskRequest{"null", "{}"});
  for (long long r = 0; r < rounds; ++r) {
    std::vector<tandem::TaskRequest> keyed = batch;
    for (std::size_t k = 0; k < keyed.size(); ++k) {
      keyed[k].key = std::to_string(r) + "/" + std::to_string(k);
    }
    const auto t0 = clock::now();
    const std::vector<long long> handles = ctx.submit(keyed);
    const auto t1 = clock::now();
    for (const tandem::TaskResult& res : ctx.wait(handles)) {
      if (res.state != "DONE") throw tandem::task_error("a null task ended " + res.state);
    }
    const auto t2 = clock::now();
    out << std::chrono::duration<double>(t1 - t0).count() << " "
        << std::chrono::duration<double>(t2 - t0).count() << "\n";
  }
}

// The pressure half of bench/adaptive.py: submits `total` null tasks in
// calls of `per_call` as fast as the calls return, without waiting between
// them, then waits for all; writes the submissions per second of the calls
// to output_dir()/pressure.txt. Does the pilot's own work slow down meanwhile?
TANDEM_TASK(bench_pressure) {
  using clock = std::chrono::steady_clock;
  const long long total = ctx.arg_int("total", 100000);
  const long long per_call = ctx.arg_int("per_call", 1000);
  std::vector<long long> handles;
  const auto t0 = clock::now();
  for (long long done = 0; done < total; done += per_call) {
    std::vector<tandem::TaskRequest> batch(static_cast<std::size_t>(per_call),
                                           tandem::TaskRequest{"sub", "{}"});
    for (const long long h : ctx.submit(batch)) handles.push_back(h);
  }
  const auto t1 = clock::now();
  for (const tandem::TaskResult& res : ctx.wait(handles)) {
    if (res.state != "DONE") throw tandem::task_error("a null task ended " + res.state);
  }
  std::ofstream(ctx.output_dir() / "pressure.txt")
      << static_cast<double>(total) / std::chrono::duration<double>(t1 - t0).count() << "\n";
}

// A clock for bench/adaptive.py: the wall time, in microseconds, when this
// instance ran, in output_dir()/INDEX.txt.
TANDEM_TASK(bench_clock) {
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  std::ofstream(ctx.output_dir() / (std::to_string(ctx.index()) + ".txt"))
      << std::chrono::duration_cast<std::chrono::microseconds>(now).count() << "\n";
}
