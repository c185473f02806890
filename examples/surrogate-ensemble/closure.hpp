#pragma once
// The closure term of the example's reaction-diffusion model, computed
// exactly: an average over many quadrature points, for every cell at every
// step. train_surrogate.py uses the same formula.

#include <cmath>

namespace closure {

constexpr int kQuadrature = 2000;

inline double exact(double u, double a) {
  double sum = 0;
  for (int q = 0; q < kQuadrature; ++q) {
    const double s = (q + 0.5) / kQuadrature;
    sum += std::exp(-4.0 * (s - u) * (s - u));
  }
  return a * u * (1.0 - u) * sum / kQuadrature;
}

}  // namespace closure
