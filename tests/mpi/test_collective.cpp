// Collective inference (Client::infer_all, issue 37) in SPMD mode: rank 0
// coordinates, the service ranks serve, the application ranks call
// infer_all over the session's application communicator. Rank 0 checks
// the request counts in summary.json.

#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/mpi_session.hpp"
#include "tandem/tandem.hpp"

using nlohmann::json;
using tandem::test::request_error_of;
using tandem::test::with_session;
using tandem::test::world_rank;

namespace {

int app_rank(tandem::Session& s) {
  int r = 0;
  MPI_Comm_rank(s.app_comm(), &r);
  return r;
}

int app_size(tandem::Session& s) {
  int n = 0;
  MPI_Comm_size(s.app_comm(), &n);
  return n;
}

// Rows that differ per rank, 0 included (rank 1 of 3 or more has none).
std::int64_t rows_of(int rank) {
  return (rank * 3 + 2) % 5;
}

tandem::Tensor patterned(tandem::DType dtype, std::int64_t rows, int seed) {
  tandem::Tensor x = tandem::Tensor::zeros(dtype, {rows, 3});
  auto* bytes = static_cast<unsigned char*>(x.data());
  for (std::size_t i = 0; i < x.nbytes(); ++i) bytes[i] = static_cast<unsigned char>(i * 7 + seed);
  return x;
}

bool same_bytes(const tandem::Tensor& a, const tandem::Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         std::memcmp(a.data(), b.data(), a.nbytes()) == 0;
}

// The nodes as MPI sees them (ranks that share memory). Collective.
int count_nodes() {
  MPI_Comm node = MPI_COMM_NULL;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
  int node_rank = 0;
  MPI_Comm_rank(node, &node_rank);
  int nodes = node_rank == 0 ? 1 : 0;
  MPI_Allreduce(MPI_IN_PLACE, &nodes, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  MPI_Comm_free(&node);
  return nodes;
}

}  // namespace

TEST(Collective, EveryRankGetsItsOwnRowsBitForBitInEveryDtype) {
  with_session(
      "echo-all", "[[service]]\nname = \"echo\"\nbackend = \"echo\"\n", [](tandem::Session& s) {
        auto& c = s.client();
        c.wait_ready("echo", 30);
        const int me = app_rank(s);
        for (int t = 0; t <= static_cast<int>(tandem::DType::BYTES); ++t) {
          const auto dtype = static_cast<tandem::DType>(t);
          const tandem::Tensor x = patterned(dtype, rows_of(me), me + t);
          const tandem::TensorList all = c.infer_all(s.app_comm(), "echo", {{"x", x}});
          ASSERT_EQ(all.size(), 1u);
          EXPECT_EQ(all[0].name, "x");
          EXPECT_TRUE(same_bytes(all[0].tensor, x)) << tandem::dtype_name(dtype);
          if (rows_of(me) > 0) {
            const tandem::TensorList one = c.infer("echo", {{"x", x}});
            EXPECT_TRUE(same_bytes(all[0].tensor, one[0].tensor)) << tandem::dtype_name(dtype);
          }
        }
      });
}

TEST(Collective, OneRequestPerNodePerCallAndTheSameAnswersAsInfer) {
  const int calls = 5;
  const json summary = with_session(
      "scale-all",
      "[[service]]\nname = \"triple\"\nbackend = \"scale\"\nfactor = 3.0\n"
      "inputs = [{ name = \"x\", dtype = \"FP64\", shape = [-1, 2] }]\n"
      "outputs = [{ name = \"x\", dtype = \"FP64\", shape = [-1, 2] }]\n",
      [&](tandem::Session& s) {
        auto& c = s.client();
        c.wait_ready("triple", 30);
        const int me = app_rank(s);
        for (int k = 0; k < calls; ++k) {
          std::vector<double> v(static_cast<std::size_t>(rows_of(me + k) * 2));
          for (std::size_t i = 0; i < v.size(); ++i)
            v[i] = 0.1 * (me + 1) * (k + 1) + 1e-3 * static_cast<double>(i);
          const tandem::Tensor x = tandem::Tensor::from(v, {rows_of(me + k), 2});
          // Sent while this rank computes, waited for after.
          tandem::CollectiveHandle h = c.infer_all_async(s.app_comm(), "triple", {{"x", x}});
          const tandem::TensorList out = h.wait();
          ASSERT_EQ(out.size(), 1u);
          EXPECT_EQ(out[0].tensor.shape(), x.shape());
          const std::vector<double> y = out[0].tensor.to_vector<double>();
          ASSERT_EQ(y.size(), v.size());
          for (std::size_t i = 0; i < v.size(); ++i) EXPECT_EQ(y[i], 3.0 * v[i]);
        }
      });
  if (world_rank() == 0) {
    // One request for each call whose ranks had rows (this is one node); a
    // call without rows sends none and answers with the signature's empty
    // outputs.
    const int app = tandem::test::world_size() - 2;
    int with_rows = 0;
    for (int k = 0; k < calls; ++k) {
      std::int64_t rows = 0;
      for (int r = 0; r < app; ++r) rows += rows_of(r + k);
      with_rows += rows > 0 ? 1 : 0;
    }
    EXPECT_EQ(summary["services"]["triple"]["requests"].get<int>(), with_rows) << summary.dump();
    // The report tells the collective calls apart, from the trace.
    const std::string run_dir = tandem::test::shared_dir() + "/run-scale-all";
    FILE* pipe = popen((std::string(TANDEM_CLI) + " report --json " + run_dir).c_str(), "r");
    ASSERT_NE(pipe, nullptr);
    std::string text;
    char chunk[4096];
    while (const std::size_t n = fread(chunk, 1, sizeof chunk, pipe)) text.append(chunk, n);
    ASSERT_EQ(pclose(pipe), 0) << text;
    const json report = json::parse(text);
    const json& collective = report["services"][0]["collective"];
    EXPECT_EQ(collective["calls"].get<int>(), with_rows) << collective.dump();
    EXPECT_EQ(collective["requests"].get<int>(), with_rows) << collective.dump();
    EXPECT_EQ(collective["ranks"].get<int>(), with_rows * app) << collective.dump();
  }
}

TEST(Collective, RowsPastMaxBatchGoInSeveralRequests) {
  const json summary = with_session(
      "split-all",
      "[[service]]\nname = \"neg\"\nbackend = \"scale\"\nfactor = -1.0\nmax_batch = 2\n",
      [&](tandem::Session& s) {
        auto& c = s.client();
        c.wait_ready("neg", 30);
        const int me = app_rank(s);
        std::vector<float> v(static_cast<std::size_t>(me + 1), static_cast<float>(me));
        const auto y =
            c.infer_all(s.app_comm(), "neg", {{"x", tandem::Tensor::from(v, {me + 1, 1})}})[0]
                .tensor.to_vector<float>();
        ASSERT_EQ(y.size(), v.size());
        for (const float f : y) EXPECT_EQ(f, -static_cast<float>(me));
      });
  if (world_rank() == 0) {
    const int app = tandem::test::world_size() - 2;  // less the coordinator and the replica
    const int total = app * (app + 1) / 2;
    EXPECT_EQ(summary["services"]["neg"]["requests"].get<int>(), (total + 1) / 2) << summary.dump();
  }
}

TEST(Collective, ABadShapeOnOneRankFailsEveryRankBeforeAnythingIsSent) {
  // On the 2 fake nodes of tests/cluster/test_collective_nodes.sh the bad
  // rank's node is not the others': the verdict crosses nodes.
  const int nodes = count_nodes();
  const json summary = with_session(
      "bad-all",
      "[[service]]\nname = \"triple\"\nbackend = \"scale\"\nfactor = 3.0\n"
      "inputs = [{ name = \"x\", dtype = \"FP32\", shape = [-1, 4] }]\n",
      [](tandem::Session& s) {
        auto& c = s.client();
        c.wait_ready("triple", 30);
        const int me = app_rank(s);
        const int bad = app_size(s) - 1;
        const std::int64_t cols = me == bad ? 5 : 4;
        const tandem::Tensor x = tandem::Tensor::zeros(tandem::DType::FP32, {2, cols});
        const std::string why = request_error_of([&] {
          c.infer_all(s.app_comm(), "triple", {{"x", x}});
        });
        EXPECT_NE(why.find("rank " + std::to_string(bad) + ":"), std::string::npos) << why;
        EXPECT_NE(why.find("the signature says [-1, 4]"), std::string::npos) << why;
        // The communicator is usable after the error.
        const tandem::Tensor ok = tandem::Tensor::zeros(tandem::DType::FP32, {1, 4});
        EXPECT_EQ(c.infer_all(s.app_comm(), "triple", {{"x", ok}}).size(), 1u);
      });
  if (world_rank() == 0) {
    // Nothing for the bad call; one request per node for the good one.
    EXPECT_EQ(summary["services"]["triple"]["requests"].get<int>(), nodes) << summary.dump();
  }
}

#ifdef TANDEM_TEST_HAVE_TORCH
TEST(Collective, AFailedServiceFailsEveryRankAlike) {
  const std::string body =
      std::string("[[service]]\nname = \"broken\"\nbackend = \"torchscript\"\n") + "model = \"" +
      TANDEM_TEST_MODELS_DIR +
      "/not_torchscript.pt\"\n"
      "inputs = [{ name = \"x\", dtype = \"FP32\", shape = [-1, 4] }]\n"
      "outputs = [{ name = \"y\", dtype = \"FP32\", shape = [-1, 4] }]\n";
  with_session("failed-all", body, [](tandem::Session& s) {
    auto& c = s.client();
    const tandem::Tensor x = tandem::Tensor::zeros(tandem::DType::FP32, {1, 4});
    const std::string why = request_error_of([&] {
      c.infer_all(s.app_comm(), "broken", {{"x", x}});
    });
    EXPECT_NE(why.find("infer_all to service 'broken'"), std::string::npos) << why;
    EXPECT_NE(why.find("FAILED"), std::string::npos) << why;
    // The same text on every rank.
    int length = static_cast<int>(why.size());
    int longest = 0;
    MPI_Allreduce(&length, &longest, 1, MPI_INT, MPI_MAX, s.app_comm());
    EXPECT_EQ(length, longest);
  });
}
#endif

// Each node's ranks send one request per call, to their own node's replica
// (`placement = "per_node"`). On one node that is one replica; on the 2
// fake nodes of tests/cluster/test_collective_nodes.sh, one per node, each
// answering every call once.
TEST(Collective, EachNodeAsksItsOwnReplicaOncePerCall) {
  const int calls = 4;
  const int nodes = count_nodes();
  const json summary = with_session(
      "pernode-all",
      "[[service]]\nname = \"double\"\nbackend = \"scale\"\nplacement = \"per_node\"\n",
      [&](tandem::Session& s) {
        auto& c = s.client();
        c.wait_ready("double", 60);
        const int me = app_rank(s);
        for (int k = 0; k < calls; ++k) {
          const std::vector<double> v{double(me), double(k)};
          const auto y =
              c.infer_all(s.app_comm(), "double", {{"x", tandem::Tensor::from(v, {1, 2})}})[0]
                  .tensor.to_vector<double>();
          EXPECT_EQ(y, (std::vector<double>{2.0 * me, 2.0 * k}));
        }
      });
  if (world_rank() == 0) {
    const json& replicas = summary["services"]["double"]["replicas"];
    ASSERT_EQ(replicas.size(), static_cast<std::size_t>(nodes)) << replicas.dump();
    for (const json& r : replicas) EXPECT_EQ(r["requests"].get<int>(), calls) << replicas.dump();
  }
}

// Rows past a rank's shared segment (64 KiB to start) travel to the
// node's leader by MPI, and the segments grow for the calls that follow.
TEST(Collective, LargeRowsPastASegmentStillArriveAndTheSegmentsGrow) {
  with_session("large-all",
               "[[service]]\nname = \"echo\"\nbackend = \"echo\"\nmax_batch = 1000000\n",
               [](tandem::Session& s) {
                 auto& c = s.client();
                 c.wait_ready("echo", 30);
                 const int me = app_rank(s);
                 for (int round = 0; round < 3; ++round) {
                   const std::int64_t rows = 20000 * (me + 1) + round;
                   std::vector<double> v(static_cast<std::size_t>(rows));
                   for (std::size_t i = 0; i < v.size(); ++i) {
                     v[i] = static_cast<double>(i) + 0.5 * me + round;
                   }
                   const tandem::Tensor x = tandem::Tensor::from(v, {rows, 1});
                   const tandem::TensorList out = c.infer_all(s.app_comm(), "echo", {{"x", x}});
                   ASSERT_EQ(out.size(), 1u);
                   EXPECT_TRUE(same_bytes(out[0].tensor, x)) << "round " << round;
                 }
               });
}

// Lines of /proc/self/maps: each shared window is a mapping of its own.
int mappings() {
  std::ifstream maps("/proc/self/maps");
  int n = 0;
  for (std::string line; std::getline(maps, line);) ++n;
  return n;
}

// A pilot makes and frees a communicator for every multi-rank task. Each
// one's shared windows and duplicates go with it; a handle that MPI hands
// out again finds nothing stale, even when its ranks are in another order.
TEST(Collective, FreeingTheCommunicatorFreesItsWindows) {
  with_session(
      "freed-all", "[[service]]\nname = \"echo\"\nbackend = \"echo\"\n", [](tandem::Session& s) {
        auto& c = s.client();
        c.wait_ready("echo", 30);
        const int me = app_rank(s);
        const int n = app_size(s);
        int before = 0;
        for (int round = 0; round < 60; ++round) {
          if (round == 10) before = mappings();
          MPI_Comm comm = MPI_COMM_NULL;
          // Odd rounds reverse the ranks: same handle, other layout.
          MPI_Comm_split(s.app_comm(), 0, round % 2 ? n - me : me, &comm);
          int rank = 0;
          MPI_Comm_rank(comm, &rank);
          std::vector<float> v(static_cast<std::size_t>(rank + 1), float(round * 10 + rank));
          const tandem::Tensor x = tandem::Tensor::from(v, {rank + 1, 1});
          const tandem::TensorList out = c.infer_all(comm, "echo", {{"x", x}});
          ASSERT_EQ(out.size(), 1u);
          EXPECT_TRUE(same_bytes(out[0].tensor, x)) << "round " << round;
          MPI_Comm_free(&comm);
        }
        // 50 rounds that kept their 3 windows would add 150 mappings.
        EXPECT_LT(mappings() - before, 20);
      });
}
