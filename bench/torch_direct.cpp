// The baseline for the MLP throughput: the same TorchScript model called
// directly through libtorch on one thread, at a given batch size.
//   torch_direct MODEL BATCH SECONDS  ->  {"kind": "direct", "batch": B, "rows_per_s": R}

#include <ATen/Parallel.h>
#include <torch/script.h>

#include <chrono>
#include <cstdio>
#include <string>

int main(int argc, char** argv) {
  at::set_num_threads(1);
  torch::NoGradGuard no_grad;
  auto module = torch::jit::load(argv[1]);
  module.eval();
  const int batch = std::stoi(argv[2]);
  const double seconds = std::stod(argv[3]);
  std::vector<torch::jit::IValue> in{torch::full({batch, 64}, 0.5f)};
  for (int i = 0; i < 20; ++i) module.forward(in);
  long long rows = 0;
  const auto t0 = std::chrono::steady_clock::now();
  const auto end = t0 + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    module.forward(in);
    rows += batch;
  }
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("{\"kind\": \"direct\", \"batch\": %d, \"rows_per_s\": %.1f}\n", batch, rows / took);
}
