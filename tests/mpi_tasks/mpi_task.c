/* An MPI program run as a multi-rank command task (issue 19). Each mode
 * checks what the program was given and exits 0 only if it was right:
 *
 *   mpi_task sum CORES        an allreduce over all ranks; TANDEM_TASK_RANKS
 *                             is the world size and OMP_NUM_THREADS is CORES;
 *                             each rank prints "rank R of N on HOST", and
 *                             " node NAME step S" under Slurm
 *   mpi_task abort CODE       the last rank calls MPI_Abort with CODE
 *   mpi_task flaky DIR        the first attempt aborts with 4, the next
 *                             passes (DIR/flaky marks the first)
 *   mpi_task hang DIR         each rank writes its pid to DIR/pid.R, then
 *                             sleeps until killed
 *   mpi_task service ROWS     every rank sends ROWS x 4 floats to "double"
 *                             through its node's proxy and checks 2x
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <tandem/tandem.h>

static int rank = 0;
static int size = 0;

#define FAIL(...)                                \
  do {                                           \
    fprintf(stderr, "mpi_task rank %d: ", rank); \
    fprintf(stderr, __VA_ARGS__);                \
    fprintf(stderr, "\n");                       \
    MPI_Abort(MPI_COMM_WORLD, 3);                \
  } while (0)

static void sum(int cores) {
  long mine = rank + 1;
  long total = 0;
  MPI_Allreduce(&mine, &total, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
  if (total != (long)size * (size + 1) / 2) FAIL("allreduce gave %ld", total);
  const char* ranks = getenv("TANDEM_TASK_RANKS");
  if (ranks == NULL || atoi(ranks) != size) FAIL("TANDEM_TASK_RANKS is %s", ranks ? ranks : "unset");
  const char* threads = getenv("OMP_NUM_THREADS");
  if (threads == NULL || atoi(threads) != cores)
    FAIL("OMP_NUM_THREADS is %s, not %d", threads ? threads : "unset", cores);
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  /* Under Slurm, the job step the rank runs in (srun's launcher makes one). */
  const char* node = getenv("SLURMD_NODENAME");
  const char* step = getenv("SLURM_STEP_ID");
  printf("rank %d of %d on %s%s%s%s%s\n", rank, size, host, node ? " node " : "", node ? node : "",
         step ? " step " : "", step ? step : "");
}

static void service(long rows) {
  tandem_client* c = NULL;
  if (tandem_connect(&c) != TANDEM_OK) FAIL("connect: %s", tandem_last_error());
  if (tandem_wait_ready(c, "double", 60) != TANDEM_OK) FAIL("wait_ready: %s", tandem_last_error());
  float* x = malloc(sizeof(float) * rows * 4);
  for (long i = 0; i < rows * 4; ++i) x[i] = (float)(rank * 1000 + i);
  const int64_t dims[2] = {rows, 4};
  tandem_tensor* t = NULL;
  if (tandem_tensor_view(TANDEM_FP32, 2, dims, TANDEM_ROW_MAJOR, x, &t) != TANDEM_OK)
    FAIL("tensor: %s", tandem_last_error());
  const char* names[1] = {"x"};
  tandem_outputs* out = NULL;
  if (tandem_infer(c, "double", 1, names, &t, &out) != TANDEM_OK)
    FAIL("infer: %s", tandem_last_error());
  const float* y = tandem_tensor_data(tandem_outputs_tensor(out, 0));
  for (long i = 0; i < rows * 4; ++i)
    if (y[i] != 2.0f * x[i]) FAIL("value %ld is %g, not %g", i, y[i], 2.0f * x[i]);
  tandem_outputs_free(out);
  tandem_tensor_free(t);
  tandem_disconnect(c);
  free(x);
  int ok = 1;
  int all = 0;
  MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (rank == 0) printf("%d ranks served\n", all);
}

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const char* mode = argc > 1 ? argv[1] : "";
  const char* arg = argc > 2 ? argv[2] : "";
  if (strcmp(mode, "sum") == 0) {
    sum(atoi(arg));
  } else if (strcmp(mode, "abort") == 0) {
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == size - 1) MPI_Abort(MPI_COMM_WORLD, atoi(arg));
    MPI_Barrier(MPI_COMM_WORLD);
  } else if (strcmp(mode, "flaky") == 0) {
    char marker[4096];
    snprintf(marker, sizeof marker, "%s/flaky", arg);
    int first = access(marker, F_OK) != 0;
    MPI_Barrier(MPI_COMM_WORLD);
    if (first && rank == 0) {
      FILE* f = fopen(marker, "w");
      if (f) fclose(f);
      MPI_Abort(MPI_COMM_WORLD, 4);
    }
    MPI_Barrier(MPI_COMM_WORLD);
  } else if (strcmp(mode, "hang") == 0) {
    char path[4096];
    snprintf(path, sizeof path, "%s/pid.%d", arg, rank);
    FILE* f = fopen(path, "w");
    if (f) {
      fprintf(f, "%d\n", (int)getpid());
      fclose(f);
    }
    for (;;) sleep(1);
  } else if (strcmp(mode, "service") == 0) {
    service(atol(arg));
  } else {
    FAIL("unknown mode '%s'", mode);
  }
  MPI_Finalize();
  return 0;
}
