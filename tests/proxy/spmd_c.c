/* The C API in SPMD mode: an MPI application written in C starts a session
 * from a workflow file and sends requests straight over MPI (no proxy).
 * Usage (under mpiexec, 3+ ranks): spmd_c WORKFLOW.toml
 * Every application rank checks its replies; exit 0 on every rank if all
 * were right. */
#include <mpi.h>
#include <stdio.h>
#include <string.h>

#include <tandem/tandem.h>

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  int bad = 0;
  tandem_session* session = NULL;
  MPI_Comm comm = MPI_COMM_WORLD;
  tandem_status s = tandem_session_start_comm(&comm, argv[1], &session);
  if (s != TANDEM_OK) {
    fprintf(stderr, "rank %d: session: %s\n", rank, tandem_last_error());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  if (tandem_session_is_app(session)) {
    tandem_client* client = tandem_session_client(session);
    if (!client || tandem_wait_ready(client, "double", 60) != TANDEM_OK) bad = 1;
    for (int k = 0; k < 50 && !bad; ++k) {
      double x[6];
      for (int i = 0; i < 6; ++i) x[i] = rank * 1000 + k * 10 + i;
      const int64_t dims[2] = {3, 2};
      tandem_tensor* t = NULL;
      tandem_outputs* out = NULL;
      const char* names[1] = {"x"};
      if (tandem_tensor_view(TANDEM_FP64, 2, dims, TANDEM_COLUMN_MAJOR, x, &t) != TANDEM_OK ||
          tandem_infer(client, "double", 1, names, &t, &out) != TANDEM_OK) {
        fprintf(stderr, "rank %d: %s\n", rank, tandem_last_error());
        bad = 1;
        break;
      }
      const tandem_tensor* y = tandem_outputs_tensor(out, 0);
      /* Column-major (3, 2) went out as row-major (2, 3); it comes back so. */
      if (tandem_tensor_dim(y, 0) != 2 || tandem_tensor_dim(y, 1) != 3) bad = 1;
      const double* v = tandem_tensor_data(y);
      for (int i = 0; i < 6; ++i) bad |= v[i] != 2 * x[i];
      tandem_outputs_free(out);
      tandem_tensor_free(t);
    }
    /* Collective inference over the application ranks: each rank its own
     * rows (rank r has r rows, so the first has none), one request per
     * node; the async form, then the Fortran-handle form. */
    MPI_Comm app = MPI_COMM_NULL;
    tandem_session_app_comm(session, &app);
    int app_rank = 0;
    MPI_Comm_rank(app, &app_rank);
    for (int form = 0; form < 2 && !bad; ++form) {
      double rows_x[8];
      for (int i = 0; i < app_rank * 2; ++i) rows_x[i] = rank * 100 + form * 10 + i;
      const int64_t dims[2] = {app_rank, 2};
      tandem_tensor* t = NULL;
      tandem_outputs* out = NULL;
      tandem_collective* call = NULL;
      const char* names[1] = {"x"};
      tandem_status st = tandem_tensor_view(TANDEM_FP64, 2, dims, TANDEM_ROW_MAJOR, rows_x, &t);
      if (st == TANDEM_OK && form == 0) {
        st = tandem_infer_all_async(client, &app, "double", 1, names, &t, &call);
        if (st == TANDEM_OK) st = tandem_collective_wait(call, &out);
      } else if (st == TANDEM_OK) {
        st = tandem_infer_all_f(client, tandem_session_app_comm_f(session), "double", 1, names, &t,
                                &out);
      }
      if (st != TANDEM_OK) {
        fprintf(stderr, "rank %d: infer_all: %s\n", rank, tandem_last_error());
        bad = 1;
      } else {
        const tandem_tensor* y = tandem_outputs_tensor(out, 0);
        if (tandem_tensor_dim(y, 0) != app_rank || tandem_tensor_dim(y, 1) != 2) bad = 1;
        const double* v = tandem_tensor_data(y);
        for (int i = 0; i < app_rank * 2 && !bad; ++i) bad |= v[i] != 2 * rows_x[i];
        tandem_outputs_free(out);
      }
      tandem_tensor_free(t);
    }
    /* A request to a service the workflow lacks: a clear error. */
    double one = 1;
    const int64_t d1[1] = {1};
    tandem_tensor* t = NULL;
    tandem_outputs* out = NULL;
    const char* names[1] = {"x"};
    tandem_tensor_view(TANDEM_FP64, 1, d1, TANDEM_ROW_MAJOR, &one, &t);
    if (tandem_infer(client, "missing", 1, names, &t, &out) != TANDEM_ERR_SERVICE ||
        !strstr(tandem_last_error(), "missing"))
      bad = 1;
    tandem_tensor_free(t);
  }
  if (tandem_session_finalize(session) != TANDEM_OK) bad = 1;
  int any = 0;
  MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (rank == 0) printf("spmd_c: %s\n", any ? "FAILED" : "all replies right");
  MPI_Finalize();
  return any;
}
