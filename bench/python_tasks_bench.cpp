// The C++ side of bench/python_tasks.py: a function task that times
// round trips of a 1 KiB request to the echo service over the worker's MPI
// client, the baseline a Python task's client is measured against in the
// same job. Its median goes into the journal as the task's result.

#include <algorithm>
#include <chrono>
#include <vector>

#include <fmt/format.h>

#include "tandem/tandem.hpp"

TANDEM_TASK(cxx_round_trips) {
  tandem::Client& client = ctx.client();
  client.wait_ready("echo");
  const auto bytes = static_cast<std::int64_t>(ctx.arg_int("bytes", 1024));
  tandem::Tensor x = tandem::Tensor::zeros(tandem::DType::FP32, {bytes / 4});
  const int trips = static_cast<int>(ctx.arg_int("trips", 2000));
  for (int i = 0; i < 200; ++i) client.infer("echo", {{"x", x}});  // warm-up
  std::vector<double> us;
  us.reserve(static_cast<std::size_t>(trips));
  for (int i = 0; i < trips; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    client.infer("echo", {{"x", x}});
    us.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
  }
  std::nth_element(us.begin(), us.begin() + static_cast<long>(us.size() / 2), us.end());
  ctx.set_result(fmt::format("{{\"median_us\": {}}}", us[us.size() / 2]));
}
