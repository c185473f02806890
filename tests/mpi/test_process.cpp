// Process services under mpiexec: a KServe v2 model server (a small Python
// server written for the tests) started by the replica leader, serving,
// dying mid-run and coming back, never becoming ready, exiting at once.

#include <gtest/gtest.h>
#include <mpi.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "support/temp_dir.hpp"
#include "tandem/tandem.hpp"

namespace fs = std::filesystem;

namespace {

int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

std::string shared_dir() {
  static std::unique_ptr<tandem::test::TempDir> dir;
  static std::string path;
  if (path.empty()) {
    if (world_rank() == 0) {
      dir = std::make_unique<tandem::test::TempDir>();
      path = dir->path().string();
    }
    int n = static_cast<int>(path.size());
    MPI_Bcast(&n, 1, MPI_INT, 0, MPI_COMM_WORLD);
    path.resize(n);
    MPI_Bcast(path.data(), n, MPI_CHAR, 0, MPI_COMM_WORLD);
  }
  return path;
}

std::string service(const std::string& server_args, const std::string& extra = "") {
  return std::string("[[service]]\nname = \"double\"\nbackend = \"process\"\n") +
         "command = [\"/usr/bin/python3\", \"" + TANDEM_TEST_KSERVE_SERVER +
         "\", \"--port\", \"{port}\"" + server_args + "]\n" + extra;
}

nlohmann::json with_session(const std::string& name, const std::string& body,
                            const std::function<void(tandem::Session&)>& app) {
  const fs::path dir = shared_dir();
  const fs::path file = dir / (name + ".toml");
  if (world_rank() == 0) std::ofstream(file) << "[job]\nname = \"" << name << "\"\n" << body;
  MPI_Barrier(MPI_COMM_WORLD);
  tandem::SessionOptions opts;
  opts.run_dir = (dir / ("run-" + name)).string();
  {
    tandem::Session session(MPI_COMM_WORLD, file.string(), opts);
    if (session.is_app()) app(session);
    session.finalize();
  }
  nlohmann::json summary;
  if (world_rank() == 0) {
    summary = nlohmann::json::parse(tandem::test::slurp(dir / ("run-" + name) / "summary.json"));
  }
  return summary;
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const tandem::request_error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST(Process, AModelServerStartedByTheJobServes) {
  const auto summary = with_session("serve", service(""), [](tandem::Session& s) {
    auto& c = s.client();
    c.wait_ready("double", 60);
    for (int k = 0; k < 5; ++k) {
      const auto y =
          c.infer("double", tandem::Tensor::from(std::vector<float>{1, float(k)}, {1, 2}));
      EXPECT_EQ(y.to_vector<float>(), (std::vector<float>{2, 2.f * k}));
    }
    const auto big =
        c.infer("double", tandem::Tensor::from(std::vector<double>(3000, 1.5), {1000, 3}));
    EXPECT_EQ(big.to_vector<double>()[2999], 3.0);
  });
  if (world_rank() == 0) {
    EXPECT_EQ(summary["services"]["double"]["replicas"][0]["state"], "STOPPED");
    // The server's output went to the run directory.
    EXPECT_NE(tandem::test::slurp(fs::path(shared_dir()) / "run-serve" / "services" / "double" /
                                  "replica-0-server.out")
                  .find("kserve test server on port"),
              std::string::npos);
  }
}

TEST(Process, AServerThatDiesMidRunIsStartedAgain) {
  // The server dies on its 6th request; Tandem starts it again.
  const auto body = service(", \"--exit-after\", \"5\"", "max_restarts = 3\nretries = 1\n");
  with_session("restart", body, [](tandem::Session& s) {
    auto& c = s.client();
    c.wait_ready("double", 60);
    int ok = 0;
    std::string failure;
    for (int k = 0; k < 12; ++k) {
      try {
        const auto y =
            c.infer("double", tandem::Tensor::from(std::vector<float>{float(k)}, {1, 1}));
        EXPECT_EQ(y.to_vector<float>()[0], 2.f * k);
        ++ok;
      } catch (const tandem::request_error& e) {
        failure = e.what();
      }
    }
    EXPECT_GE(ok, 9);
    EXPECT_NE(failure.find("model server at http://127.0.0.1:"), std::string::npos) << failure;
    EXPECT_EQ(c.state("double"), "READY");
  });
}

TEST(Process, AServerThatNeverBecomesReadyFailsTheService) {
  const auto summary =
      with_session("never-ready", service(", \"--never-ready\"", "start_timeout = 1.0\n"),
                   [](tandem::Session& s) {
                     const std::string why = error_of([&] { s.client().wait_ready("double", 60); });
                     EXPECT_NE(why.find("FAILED"), std::string::npos) << why;
                     EXPECT_NE(why.find("was not ready within 1 s"), std::string::npos) << why;
                   });
  if (world_rank() == 0) EXPECT_EQ(summary["services"]["double"]["replicas"][0]["state"], "FAILED");
}

TEST(Process, AServerThatExitsAtOnceFailsTheServiceWithItsExitCode) {
  with_session("exits", service(", \"--exit-at-once\", \"3\""), [](tandem::Session& s) {
    const std::string why = error_of([&] { s.client().wait_ready("double", 60); });
    EXPECT_NE(why.find("exited with code 3 before it was ready"), std::string::npos) << why;
  });
}
