/* The smallest MPI program: MPI_Init, a barrier, MPI_Finalize. With an
 * argument FILE, rank 0 appends to FILE the wall-clock time (µs since the
 * epoch) at which every rank had passed MPI_Init: the end of a launch, for
 * bench/mpi_tasks.py. */
#include <mpi.h>
#include <stdio.h>
#include <sys/time.h>

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  MPI_Barrier(MPI_COMM_WORLD);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank == 0 && argc > 1) {
    struct timeval now;
    gettimeofday(&now, NULL);
    FILE* f = fopen(argv[1], "a");
    if (f) {
      fprintf(f, "%lld\n", (long long)now.tv_sec * 1000000LL + now.tv_usec);
      fclose(f);
    }
  }
  MPI_Finalize();
  return 0;
}
