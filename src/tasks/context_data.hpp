#pragma once
// What a TaskContext shows, filled in by the worker for each attempt.

#include <mpi.h>

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace tandem {
class Client;
}

namespace tandem::detail {

struct TaskContextData {
  std::string name;
  int task = 0;  // its index in the workflow's tasks
  int index = 0;
  int count = 1;
  int attempt = 1;
  MPI_Comm comm = MPI_COMM_SELF;
  int rank = 0;
  int size = 1;
  std::filesystem::path run_dir;
  std::filesystem::path output_dir;
  const nlohmann::json* args = nullptr;
  bool own_args = false;          // a submitted instance's args, not the task's in the file
  std::vector<std::string> gpus;  // ids of the GPUs this rank of the attempt was given
  Client* client = nullptr;
  bool isolated = false;       // runs in a forked child (isolate = true)
  std::string stem;            // isolated: RUN_DIR/tasks/NAME/INDEX[.tryN], its .out and .err
  mutable std::string result;  // the return value, one line of JSON (set_result)
  mutable int exit_code = 0;   // a failed Python attempt's sys.exit(n)
  // A steering task's line to the coordinator: sends a request (JSON text)
  // and returns the answer. Null for other tasks.
  std::function<std::string(const std::string&)> steer;
};

/// The most JSON a return value may take: it is a line of the journal.
inline constexpr std::size_t kMaxResultBytes = std::size_t{16} * 1024;

}  // namespace tandem::detail
