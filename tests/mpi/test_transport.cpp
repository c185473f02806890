// Tensors through each transport under mpiexec, in SPMD sessions: inline MPI,
// node-local shared memory and HDF5 files, from 1 byte to 256 MiB, checked
// byte for byte; many clients at once on shared memory; a spent budget.

#include <gtest/gtest.h>
#include <mpi.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "support/mpi_session.hpp"
#include "support/temp_dir.hpp"
#include "tandem/tandem.hpp"

namespace fs = std::filesystem;
using tandem::test::shared_dir;
using tandem::test::world_rank;

namespace {
// The transport tests need only the application's side.
void with_session(const std::string& name, const std::string& body,
                  const std::function<void(tandem::Session&)>& app) {
  tandem::test::with_session(name, body, app);
}
}  // namespace

namespace {

void fill(tandem::Tensor& t, unsigned seed) {
  auto* b = static_cast<unsigned char*>(t.data());
  std::uint32_t x = seed * 2654435761u + 1;
  for (std::size_t i = 0; i < t.nbytes(); ++i) {
    x = x * 1664525u + 1013904223u;
    b[i] = static_cast<unsigned char>(x >> 24);
  }
}

const tandem::Transport kTransports[] = {tandem::Transport::inline_mpi, tandem::Transport::shm,
                                         tandem::Transport::hdf5};
const char* kNames[] = {"inline", "shm", "hdf5"};

}  // namespace

TEST(Transport, EveryDtypeAndSizeComesBackByteForByte) {
  with_session(
      "sizes", "[[service]]\nname = \"echo\"\nbackend = \"echo\"\n", [](tandem::Session& s) {
        auto& c = s.client();
        c.wait_ready("echo", 30);
        for (int k = 0; k < 3; ++k) {
          tandem::InferOptions opts;
          opts.transport = kTransports[k];
          for (int t = 0; t <= static_cast<int>(tandem::DType::BYTES); ++t) {
            tandem::Tensor x = tandem::Tensor::zeros(static_cast<tandem::DType>(t), {3, 7});
            fill(x, t);
            const auto out = c.infer("echo", {{"x", x}}, opts);
            EXPECT_EQ(out[0].tensor.dtype(), x.dtype());
            EXPECT_EQ(std::memcmp(out[0].tensor.data(), x.data(), x.nbytes()), 0)
                << kNames[k] << " " << tandem::dtype_name(x.dtype());
          }
          int app = 0;
          MPI_Comm_rank(s.app_comm(), &app);
          for (std::int64_t bytes : {1LL, 1024LL, 65536LL, 1LL << 20, 16LL << 20, 256LL << 20}) {
            // One client moves the largest tensors; memory is shared by all ranks.
            if (bytes > (1LL << 20) && app != 0) continue;
            tandem::Tensor x = tandem::Tensor::zeros(tandem::DType::UINT8, {1, bytes});
            fill(x, static_cast<unsigned>(bytes));
            const auto out = c.infer("echo", {{"x", x}}, opts);
            ASSERT_EQ(out[0].tensor.nbytes(), x.nbytes());
            EXPECT_EQ(std::memcmp(out[0].tensor.data(), x.data(), x.nbytes()), 0)
                << kNames[k] << " " << bytes << " bytes";
          }
        }
      });
}

TEST(Transport, ManyClientsOnSharedMemoryDoNotMixTheirBytes) {
  with_session("concurrent", "[[service]]\nname = \"echo\"\nbackend = \"echo\"\n",
               [](tandem::Session& s) {
                 auto& c = s.client();
                 c.wait_ready("echo", 30);
                 tandem::InferOptions opts;
                 opts.transport = tandem::Transport::shm;
                 int app = 0;
                 MPI_Comm_rank(s.app_comm(), &app);
                 // Several requests in flight per client, each with its own content.
                 std::vector<tandem::Tensor> sent;
                 std::vector<tandem::InferHandle> flight;
                 for (int k = 0; k < 40; ++k) {
                   tandem::Tensor x = tandem::Tensor::zeros(tandem::DType::FP32, {100 + k, 250});
                   fill(x, static_cast<unsigned>(app * 1000 + k));
                   flight.push_back(c.infer_async("echo", {{"x", x}}, opts));
                   sent.push_back(std::move(x));
                   if (flight.size() == 4 || k == 39) {
                     for (std::size_t i = 0; i < flight.size(); ++i) {
                       const auto out = flight[i].wait();
                       const tandem::Tensor& x0 = sent[sent.size() - flight.size() + i];
                       ASSERT_EQ(out[0].tensor.nbytes(), x0.nbytes());
                       EXPECT_EQ(std::memcmp(out[0].tensor.data(), x0.data(), x0.nbytes()), 0) << k;
                     }
                     flight.clear();
                   }
                 }
               });
}

TEST(Transport, ASpentSharedMemoryBudgetFallsBackToInline) {
  // 1 MiB per process: a few 300 KiB requests in flight exhaust it.
  const std::string body =
      "[job.staging]\nshm_budget_mb = 1\n[[service]]\nname = \"echo\"\nbackend = \"echo\"\n";
  with_session("budget", body, [](tandem::Session& s) {
    auto& c = s.client();
    c.wait_ready("echo", 30);
    tandem::InferOptions opts;
    opts.transport = tandem::Transport::shm;
    std::vector<tandem::Tensor> sent;
    std::vector<tandem::InferHandle> flight;
    for (int k = 0; k < 12; ++k) {
      tandem::Tensor x = tandem::Tensor::zeros(tandem::DType::UINT8, {1, 300 * 1024});
      fill(x, static_cast<unsigned>(k));
      flight.push_back(c.infer_async("echo", {{"x", x}}, opts));
      sent.push_back(std::move(x));
    }
    // Keep every reply, so that the replica's segments stay taken too.
    std::vector<tandem::TensorList> kept;
    for (int k = 0; k < 12; ++k) {
      kept.push_back(flight[k].wait());
      EXPECT_EQ(std::memcmp(kept.back()[0].tensor.data(), sent[k].data(), sent[k].nbytes()), 0)
          << k;
    }
  });
}

TEST(Transport, RecordingLeavesTheTrafficInHdf5) {
  const std::string body =
      "[[service]]\nname = \"rec\"\nbackend = \"scale\"\nfactor = 2.0\nrecord = true\n"
      "[[service]]\nname = \"mixed\"\nbackend = \"echo\"\nrecord = true\n";
  int apps = 0;
  with_session("record", body, [&](tandem::Session& s) {
    auto& c = s.client();
    c.wait_ready("rec", 30);
    MPI_Comm_size(s.app_comm(), &apps);
    for (int k = 0; k < 10; ++k) {
      c.infer("rec", tandem::Tensor::from(std::vector<float>(3 * 4, float(k)), {3, 4}));
    }
    // A second shape cannot be appended to the first: an error for the
    // record, not for the request.
    c.wait_ready("mixed", 30);
    c.infer("mixed", tandem::Tensor::from(std::vector<float>(2, 1.f), {1, 2}));
    const auto y = c.infer("mixed", tandem::Tensor::from(std::vector<float>(3, 1.f), {1, 3}));
    EXPECT_EQ(y.shape(), (std::vector<std::int64_t>{1, 3}));
  });
  if (world_rank() != 0) return;
  const fs::path run = fs::path(shared_dir()) / "run-record";
  const auto summary = nlohmann::json::parse(tandem::test::slurp(run / "summary.json"));
  int total_apps = static_cast<int>(summary["app_ranks"].get<int>());
  const auto& rec = summary["services"]["rec"]["replicas"][0]["recording"];
  EXPECT_EQ(rec["rows"], 30 * total_apps);
  EXPECT_EQ(rec["errors"], 0);
  const auto& mixed = summary["services"]["mixed"]["replicas"][0]["recording"];
  EXPECT_GE(mixed["errors"].get<int>(), 1);
  EXPECT_NE(mixed["last_error"].get<std::string>().find("changed its shape"), std::string::npos);
  // h5py reads the datasets with the right row counts and values.
  const std::string h5 = (run / "services" / "rec" / "replica-0.h5").string();
  const std::string check =
      "/usr/bin/python3 -c 'import h5py, numpy as np\n"
      "f = h5py.File(\"" +
      h5 +
      "\", \"r\")\n"
      "x, y = f[\"inputs/input\"], f[\"outputs/input\"]\n"
      "n = " +
      std::to_string(30 * total_apps) +
      "\n"
      "assert x.shape == (n, 4) and y.shape == (n, 4), (x.shape, y.shape)\n"
      "assert x.chunks is not None and x.maxshape[0] is None\n"
      "assert np.allclose(y[()], 2 * x[()])\n'";
  EXPECT_EQ(std::system(check.c_str()), 0);
}
