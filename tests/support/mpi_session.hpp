#pragma once
// Helpers shared by the MPI tests: ranks, a directory every rank of the job
// sees, and running an application inside a tandem::Session.

#include <gtest/gtest.h>
#include <mpi.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "support/temp_dir.hpp"
#include "tandem/tandem.hpp"

namespace tandem::test {

inline int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

inline int world_size() {
  int n = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

/// A directory made by rank 0 for the whole test program, the same path on
/// every rank (they share a node). Collective on its first call.
inline std::string shared_dir() {
  static std::unique_ptr<TempDir> dir;
  static std::string path;
  if (path.empty()) {
    if (world_rank() == 0) {
      dir = std::make_unique<TempDir>();
      path = dir->path().string();
    }
    int n = static_cast<int>(path.size());
    MPI_Bcast(&n, 1, MPI_INT, 0, MPI_COMM_WORLD);
    path.resize(n);
    MPI_Bcast(path.data(), n, MPI_CHAR, 0, MPI_COMM_WORLD);
  }
  return path;
}

/// Writes a workflow named @p name with @p body after its [job] name, runs
/// @p app on the application ranks of a Session over it, and returns its
/// summary.json on rank 0 (null elsewhere). Collective.
inline nlohmann::json with_session(const std::string& name, const std::string& body,
                                   const std::function<void(tandem::Session&)>& app) {
  namespace fs = std::filesystem;
  const fs::path dir = shared_dir();
  const fs::path file = dir / (name + ".toml");
  if (world_rank() == 0) std::ofstream(file) << "[job]\nname = \"" << name << "\"\n" << body;
  MPI_Barrier(MPI_COMM_WORLD);
  tandem::SessionOptions opts;
  opts.run_dir = (dir / ("run-" + name)).string();
  {
    tandem::Session session(MPI_COMM_WORLD, file.string(), opts);
    if (session.is_app()) {
      EXPECT_NE(world_rank(), 0);
      app(session);
    }
    session.finalize();
  }
  nlohmann::json summary;
  if (world_rank() == 0)
    summary = nlohmann::json::parse(slurp(dir / ("run-" + name) / "summary.json"));
  return summary;
}

/// The message of the tandem::request_error that @p fn throws, or "(no error)".
inline std::string request_error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const tandem::request_error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace tandem::test
