// Function tasks for the tests, in a shared library that workflows load
// through [job] libraries: the same path a user's own tasks take.

#include <mpi.h>
#include <unistd.h>

#include <fstream>

#include <tandem/tandem.hpp>

// Writes "<index> <attempt>" to output_dir()/<name>.<index>.
TANDEM_TASK(test_record) {
  std::ofstream(ctx.output_dir() / (ctx.name() + "." + std::to_string(ctx.index())))
      << ctx.index() << " " << ctx.attempt() << " " << ctx.arg_string("tag", "-") << "\n";
}

// Fails on the first attempts, succeeds on attempt `succeed_on`.
TANDEM_TASK(test_flaky) {
  if (ctx.attempt() < ctx.arg_int("succeed_on", 2)) {
    throw tandem::task_error("flaky failure on attempt " + std::to_string(ctx.attempt()));
  }
}

// A multi-rank task: checks its communicator and writes what it saw.
TANDEM_TASK(test_collective) {
  int sum = 0;
  int one = 1;
  MPI_Allreduce(&one, &sum, 1, MPI_INT, MPI_SUM, ctx.comm());
  if (sum != ctx.size())
    throw tandem::task_error("allreduce over the task's ranks gave a wrong sum");
  if (ctx.rank() == 0) {
    std::ofstream(ctx.output_dir() / ("collective." + std::to_string(ctx.index())))
        << ctx.size() << " " << sum << "\n";
  }
}

// Throws something that is not a std::exception.
TANDEM_TASK(test_throw_int) {
  throw 42;
}

// An extern "C" task found by symbol name, without registration.
extern "C" void test_exported(tandem::TaskContext& ctx) {
  std::ofstream(ctx.output_dir() / ("exported." + std::to_string(ctx.index()))) << "ok\n";
}
