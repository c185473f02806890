// The function tasks of the pilot-basics example. Building this file into a
// shared library and naming it in [job] libraries is all it takes: tandem run
// loads it on every rank and the TANDEM_TASK lines register the functions.

#include <mpi.h>

#include <cmath>
#include <fstream>
#include <random>
#include <vector>

#include <tandem/tandem.hpp>

// One Monte Carlo estimate of pi; each instance draws its own stream.
TANDEM_TASK(estimate_pi) {
  const long long samples = ctx.arg_int("samples", 1'000'000);
  std::mt19937_64 rng(12345 + ctx.index());
  std::uniform_real_distribution<double> u(0.0, 1.0);
  long long inside = 0;
  for (long long i = 0; i < samples; ++i) {
    const double x = u(rng);
    const double y = u(rng);
    inside += (x * x + y * y <= 1.0);
  }
  std::ofstream(ctx.output_dir() / ("pi." + std::to_string(ctx.index()) + ".txt"))
      << 4.0 * static_cast<double>(inside) / static_cast<double>(samples) << "\n";
}

// An explicit 1-D heat equation solved over the task's own ranks: each rank
// owns a slab of the rod and swaps one halo cell with each neighbour per
// step on ctx.comm(), the communicator Tandem made for this task.
TANDEM_TASK(heat_rod) {
  const int cells = static_cast<int>(ctx.arg_int("cells_per_rank", 1000));
  const int steps = static_cast<int>(ctx.arg_int("steps", 2000));
  const double alpha = ctx.arg_double("alpha", 0.25);  // dt*k/dx^2, stable below 0.5
  const MPI_Comm comm = ctx.comm();
  const int rank = ctx.rank();
  const int size = ctx.size();
  std::vector<double> u(cells + 2, 0.0), next(cells + 2, 0.0);
  // A hot spot in the middle of the rod.
  const long long global_mid = static_cast<long long>(cells) * size / 2;
  for (int i = 1; i <= cells; ++i) {
    const long long g = static_cast<long long>(rank) * cells + (i - 1);
    if (std::llabs(g - global_mid) < cells / 10 + 1) u[i] = 100.0;
  }
  const int left = rank > 0 ? rank - 1 : MPI_PROC_NULL;
  const int right = rank + 1 < size ? rank + 1 : MPI_PROC_NULL;
  for (int s = 0; s < steps; ++s) {
    MPI_Sendrecv(&u[1], 1, MPI_DOUBLE, left, 0, &u[cells + 1], 1, MPI_DOUBLE, right, 0, comm,
                 MPI_STATUS_IGNORE);
    MPI_Sendrecv(&u[cells], 1, MPI_DOUBLE, right, 1, &u[0], 1, MPI_DOUBLE, left, 1, comm,
                 MPI_STATUS_IGNORE);
    for (int i = 1; i <= cells; ++i) next[i] = u[i] + alpha * (u[i - 1] - 2 * u[i] + u[i + 1]);
    std::swap(u, next);
  }
  double local = 0;
  for (int i = 1; i <= cells; ++i) local += u[i];
  double total = 0;
  MPI_Reduce(&local, &total, 1, MPI_DOUBLE, MPI_SUM, 0, comm);
  if (rank == 0) {
    std::ofstream(ctx.output_dir() / "heat.txt")
        << "ranks " << size << " steps " << steps << " total_heat " << total << "\n";
  }
}
