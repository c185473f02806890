/* An MPI program run as a Tandem task, as a user's solver would be.
 *
 *   halo proxy STEPS      each step: a halo exchange around a ring and an
 *                         allreduce; every rank then asks the job's
 *                         "closure" service through its node's worker
 *                         proxy (tandem_connect) and checks the answer
 *   halo session FILE     the program opens an SPMD session of its own from
 *                         workflow FILE: its rank 0 coordinates, the next
 *                         serves, the others compute and ask over MPI
 *
 * Exits 0 only if every rank's answers were right. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tandem/tandem.h>

/* One step of a 1-d solver: exchange edges with both neighbours, average. */
static double step(MPI_Comm comm, double u) {
  int rank = 0, size = 0;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  double left = 0, right = 0;
  MPI_Sendrecv(&u, 1, MPI_DOUBLE, (rank + 1) % size, 0, &left, 1, MPI_DOUBLE,
               (rank + size - 1) % size, 0, comm, MPI_STATUS_IGNORE);
  MPI_Sendrecv(&u, 1, MPI_DOUBLE, (rank + size - 1) % size, 1, &right, 1, MPI_DOUBLE,
               (rank + 1) % size, 1, comm, MPI_STATUS_IGNORE);
  return (left + u + right) / 3.0;
}

/* Asks "closure" for r(x) at (u, mean) and checks it is the MLP's shape. */
static int ask(tandem_client* client, double u, double mean) {
  float x[2] = {(float)u, (float)mean};
  const int64_t dims[2] = {1, 2};
  tandem_tensor* t = NULL;
  tandem_outputs* out = NULL;
  const char* names[1] = {"x"};
  if (tandem_tensor_view(TANDEM_FP32, 2, dims, TANDEM_ROW_MAJOR, x, &t) != TANDEM_OK ||
      tandem_infer(client, "closure", 1, names, &t, &out) != TANDEM_OK) {
    fprintf(stderr, "halo: %s\n", tandem_last_error());
    tandem_tensor_free(t);
    return 0;
  }
  const tandem_tensor* r = tandem_outputs_find(out, "r");
  const int ok = r != NULL && tandem_tensor_ndim(r) == 2 && tandem_tensor_dim(r, 0) == 1 &&
                 tandem_tensor_dim(r, 1) == 1;
  tandem_outputs_free(out);
  tandem_tensor_free(t);
  return ok;
}

static int solve(MPI_Comm comm, tandem_client* client, int steps) {
  int rank = 0, size = 0;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  double u = rank;
  int ok = 1;
  for (int s = 0; s < steps; ++s) {
    u = step(comm, u);
    double sum = 0;
    MPI_Allreduce(&u, &sum, 1, MPI_DOUBLE, MPI_SUM, comm);
    ok &= ask(client, u, sum / size);
  }
  return ok;
}

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const char* mode = argc > 1 ? argv[1] : "proxy";
  int ok = 1;
  if (strcmp(mode, "proxy") == 0) {
    tandem_client* client = NULL;
    if (tandem_connect(&client) != TANDEM_OK) {
      fprintf(stderr, "halo rank %d: %s\n", rank, tandem_last_error());
      MPI_Abort(MPI_COMM_WORLD, 2);
    }
    ok = solve(MPI_COMM_WORLD, client, argc > 2 ? atoi(argv[2]) : 10);
    tandem_disconnect(client);
  } else {
    tandem_session* session = NULL;
    MPI_Comm world = MPI_COMM_WORLD;
    if (tandem_session_start_comm(&world, argc > 2 ? argv[2] : "session.toml", &session) !=
        TANDEM_OK) {
      fprintf(stderr, "halo rank %d: %s\n", rank, tandem_last_error());
      MPI_Abort(MPI_COMM_WORLD, 2);
    }
    if (tandem_session_is_app(session)) {
      MPI_Comm app = MPI_COMM_NULL;
      tandem_session_app_comm(session, &app);
      ok = solve(app, tandem_session_client(session), 10);
    }
    if (tandem_session_finalize(session) != TANDEM_OK) ok = 0;
  }
  int all = 0;
  MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (rank == 0)
    printf("halo %s: %d ranks, %s\n", mode, size, all ? "every answer right" : "WRONG");
  MPI_Finalize();
  return all ? 0 : 1;
}
