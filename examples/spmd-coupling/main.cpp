// spmd-coupling: an MPI stencil code (1-D reaction-diffusion, one slab per
// rank, halo exchange with the neighbours) that gets its closure term from
// a model served in the same job. The lines marked "Tandem" are all it
// takes; without them this is an ordinary MPI program.
//
//   mpirun -np 5 ./spmd-coupling job.toml [--per-rank]
//
// Rank 0 coordinates and rank 1 serves the model (see job.toml); ranks 2..4
// run the simulation on session.app_comm(). Each step asks for the closure
// of every rank's cells in one collective call (infer_all_async: one
// request per node); --per-rank shows the alternative, each rank sending
// its own request (infer_async). Both give the same result.

#include <mpi.h>

#include <cmath>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include <tandem/tandem.hpp>  // Tandem

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  const char* job = argc > 1 ? argv[1] : "job.toml";
  const bool per_rank = argc > 2 && std::string(argv[2]) == "--per-rank";
  std::optional<tandem::Session> started;
  try {
    started.emplace(MPI_COMM_WORLD, job);  // Tandem: collective
  } catch (const tandem::error& e) {
    // A bad job file or too few ranks: every rank throws the same, rank 0
    // says why, and the job ends cleanly.
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (rank == 0) std::fprintf(stderr, "spmd-coupling: %s\n", e.what());
    MPI_Finalize();
    return 2;
  }
  {
    tandem::Session& session = *started;
    if (session.is_app()) {
      MPI_Comm comm = session.app_comm();         // Tandem: instead of MPI_COMM_WORLD
      tandem::Client& client = session.client();  // Tandem
      client.wait_ready("closure");               // Tandem

      int rank = 0;
      int size = 0;
      MPI_Comm_rank(comm, &rank);
      MPI_Comm_size(comm, &size);
      const int cells = 200;  // per rank
      const int steps = 400;
      const double diffusion = 1e-3;
      const double a = 1.5;
      const double dx = 1.0 / (cells * size);
      const double dt = 0.2 * dx * dx / diffusion;
      // u[0] and u[cells + 1] are halo cells.
      std::vector<double> u(cells + 2), next(cells + 2);
      for (int i = 1; i <= cells; ++i) {
        const double x = (rank * cells + i - 0.5) * dx;
        u[i] = 0.1 + 0.5 * std::exp(-std::pow((x - 0.5) / 0.08, 2));
      }
      const int left = (rank + size - 1) % size;
      const int right = (rank + 1) % size;
      tandem::Tensor x = tandem::Tensor::zeros(tandem::DType::FP32, {cells, 2});
      double wait_s = 0;
      const double t0 = MPI_Wtime();
      for (int step = 0; step < steps; ++step) {
        // Ask for the closure first, then exchange halos and apply diffusion
        // while the model computes: the request overlaps the stencil.
        float* in = x.data_as<float>();
        for (int i = 0; i < cells; ++i) {
          in[2 * i] = static_cast<float>(u[i + 1]);
          in[2 * i + 1] = static_cast<float>(a);
        }
        tandem::CollectiveHandle together;  // Tandem: the node's ranks in one request
        tandem::InferHandle alone;          // Tandem: or each rank its own
        if (per_rank) {
          alone = client.infer_async("closure", {{"x", x}});
        } else {
          together = client.infer_all_async(comm, "closure", {{"x", x}});
        }
        MPI_Sendrecv(&u[1], 1, MPI_DOUBLE, left, 0, &u[cells + 1], 1, MPI_DOUBLE, right, 0, comm,
                     MPI_STATUS_IGNORE);
        MPI_Sendrecv(&u[cells], 1, MPI_DOUBLE, right, 1, &u[0], 1, MPI_DOUBLE, left, 1, comm,
                     MPI_STATUS_IGNORE);
        for (int i = 1; i <= cells; ++i) {
          next[i] = u[i] + dt * diffusion * (u[i - 1] - 2 * u[i] + u[i + 1]) / (dx * dx);
        }
        const double w0 = MPI_Wtime();
        const tandem::TensorList out = per_rank ? alone.wait() : together.wait();  // Tandem
        wait_s += MPI_Wtime() - w0;
        const float* r = out[0].tensor.data_as<float>();
        for (int i = 1; i <= cells; ++i) next[i] += dt * r[i - 1];
        u.swap(next);
      }
      double local = 0;
      for (int i = 1; i <= cells; ++i) local += u[i] * dx;
      double total = 0;
      MPI_Reduce(&local, &total, 1, MPI_DOUBLE, MPI_SUM, 0, comm);
      double slowest_wait = 0;
      MPI_Reduce(&wait_s, &slowest_wait, 1, MPI_DOUBLE, MPI_MAX, 0, comm);
      if (rank == 0) {
        std::printf(
            "spmd-coupling: %d ranks x %d cells, %d steps in %.3f s; mass %.6f; "
            "waited for the surrogate %.3f s (the rest overlapped); %s\n",
            size, cells, steps, MPI_Wtime() - t0, total, slowest_wait,
            per_rank ? "a request per rank" : "one request per node and step");
      }
    }
    session.finalize();  // Tandem: services drain and stop
  }
  MPI_Finalize();
  return 0;
}
