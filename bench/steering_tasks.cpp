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
