// The ensemble member: the same solver, with the closure either computed
// exactly on the worker or asked of the `closure` service, an MLP served by
// an ML rank group of the same MPI job. Each member writes what it found to
// output_dir()/member-INDEX.json for the report.

#include <chrono>
#include <fstream>

#include <nlohmann/json.hpp>
#include <tandem/tandem.hpp>

#include "closure.hpp"
#include "solver.hpp"

namespace {

using clock_type = std::chrono::steady_clock;

solver::Setup setup_for(const tandem::TaskContext& ctx) {
  solver::Setup s;
  s.cells = static_cast<int>(ctx.arg_int("cells", 256));
  s.steps = static_cast<int>(ctx.arg_int("steps", 300));
  s.shape = ctx.index();
  // Members spread the reaction strength over [0.5, 2].
  s.a = 0.5 + 1.5 * ctx.index() / std::max(1, ctx.count() - 1);
  return s;
}

void write(const tandem::TaskContext& ctx, const nlohmann::json& j) {
  std::ofstream(ctx.output_dir() / ("member-" + std::to_string(ctx.index()) + ".json")) << j.dump();
}

}  // namespace

// The closure computed exactly, cell by cell: the expensive way.
TANDEM_TASK(member_exact) {
  const solver::Setup s = setup_for(ctx);
  double closure_s = 0;
  const auto t0 = clock_type::now();
  const auto u =
      solver::run(s, [&](const std::vector<double>& u, double a, std::vector<double>& r) {
        const auto c0 = clock_type::now();
        for (std::size_t i = 0; i < u.size(); ++i) r[i] = closure::exact(u[i], a);
        closure_s += std::chrono::duration<double>(clock_type::now() - c0).count();
      });
  write(ctx, {{"mode", "exact"},
              {"a", s.a},
              {"seconds", std::chrono::duration<double>(clock_type::now() - t0).count()},
              {"closure_seconds", closure_s},
              {"u", u}});
}

// The closure from the surrogate service: one request of [cells, 2] = (u, a)
// per step, answered with [cells, 1].
TANDEM_TASK(member_surrogate) {
  const solver::Setup s = setup_for(ctx);
  tandem::Client& client = ctx.client();
  const std::string service = ctx.arg_string("service", "closure");
  client.wait_ready(service, 120);
  std::vector<double> latencies_us;
  latencies_us.reserve(s.steps);
  tandem::Tensor x = tandem::Tensor::zeros(tandem::DType::FP32, {s.cells, 2});
  const auto t0 = clock_type::now();
  const auto u =
      solver::run(s, [&](const std::vector<double>& u, double a, std::vector<double>& r) {
        float* in = x.data_as<float>();
        for (std::size_t i = 0; i < u.size(); ++i) {
          in[2 * i] = static_cast<float>(u[i]);
          in[2 * i + 1] = static_cast<float>(a);
        }
        const auto c0 = clock_type::now();
        const tandem::Tensor y = client.infer(service, x);
        latencies_us.push_back(
            std::chrono::duration<double, std::micro>(clock_type::now() - c0).count());
        const float* out = y.data_as<float>();
        for (std::size_t i = 0; i < u.size(); ++i) r[i] = out[i];
      });
  double closure_s = 0;
  for (double l : latencies_us) closure_s += l / 1e6;
  write(ctx, {{"mode", "surrogate"},
              {"a", s.a},
              {"seconds", std::chrono::duration<double>(clock_type::now() - t0).count()},
              {"closure_seconds", closure_s},
              {"latencies_us", latencies_us},
              {"u", u}});
}
