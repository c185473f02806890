#pragma once
// A 1-D reaction-diffusion solver, u_t = D u_xx + R(u, a), explicit in time,
// periodic in space. The closure R comes from a callback, so that the same
// solver runs with the exact closure or with the served surrogate.

#include <cmath>
#include <functional>
#include <vector>

namespace solver {

struct Setup {
  int cells = 256;
  int steps = 300;
  double diffusion = 1e-3;
  double a = 1.0;  // the member's reaction strength
  int shape = 0;   // which initial condition
};

inline std::vector<double> initial(const Setup& s) {
  std::vector<double> u(s.cells);
  for (int i = 0; i < s.cells; ++i) {
    const double x = (i + 0.5) / s.cells;
    const double centre = 0.3 + 0.2 * (s.shape % 3);
    u[i] = 0.1 + 0.5 * std::exp(-std::pow((x - centre) / 0.08, 2));
  }
  return u;
}

/// Runs the steps; @p closure fills r[i] = R(u[i], a) for all cells.
inline std::vector<double> run(const Setup& s,
                               const std::function<void(const std::vector<double>& u, double a,
                                                        std::vector<double>& r)>& closure) {
  std::vector<double> u = initial(s);
  std::vector<double> next(s.cells);
  std::vector<double> r(s.cells);
  const double dx = 1.0 / s.cells;
  const double dt = 0.2 * dx * dx / s.diffusion;
  for (int step = 0; step < s.steps; ++step) {
    closure(u, s.a, r);
    for (int i = 0; i < s.cells; ++i) {
      const double left = u[(i + s.cells - 1) % s.cells];
      const double right = u[(i + 1) % s.cells];
      next[i] = u[i] + dt * (s.diffusion * (left - 2 * u[i] + right) / (dx * dx) + r[i]);
    }
    u.swap(next);
  }
  return u;
}

}  // namespace solver
