// Services end to end in SPMD mode under mpiexec: rank 0 coordinates, the
// service ranks serve inside the Session constructor, the rest are the
// application and send requests. Rank 0 checks summary.json at the end.

#include <gtest/gtest.h>
#include <mpi.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "support/mpi_session.hpp"
#include "support/temp_dir.hpp"
#include "tandem/tandem.hpp"

namespace fs = std::filesystem;
using nlohmann::json;
using tandem::test::shared_dir;
using tandem::test::slurp;
using tandem::test::with_session;
using tandem::test::world_rank;
using tandem::test::world_size;

namespace {

std::string models() {
  return TANDEM_TEST_MODELS_DIR;
}

std::string error_of(const std::function<void()>& fn) {
  return tandem::test::request_error_of(fn);
}

}  // namespace

TEST(Serving, EchoReturnsEveryDtypeByteForByte) {
  with_session("echo", "[[service]]\nname = \"echo\"\nbackend = \"echo\"\n",
               [](tandem::Session& s) {
                 auto& c = s.client();
                 c.wait_ready("echo", 30);
                 for (int t = 0; t <= static_cast<int>(tandem::DType::BYTES); ++t) {
                   const auto dtype = static_cast<tandem::DType>(t);
                   for (std::int64_t rows : {1, 3, 4096}) {
                     tandem::Tensor x = tandem::Tensor::zeros(dtype, {rows, 5});
                     auto* bytes = static_cast<unsigned char*>(x.data());
                     for (std::size_t i = 0; i < x.nbytes(); ++i)
                       bytes[i] = static_cast<unsigned char>(i * 31 + t);
                     const tandem::TensorList out = c.infer("echo", {{"x", x}});
                     ASSERT_EQ(out.size(), 1u);
                     EXPECT_EQ(out[0].name, "x");
                     EXPECT_EQ(out[0].tensor.dtype(), dtype);
                     EXPECT_EQ(out[0].tensor.shape(), x.shape());
                     EXPECT_EQ(std::memcmp(out[0].tensor.data(), x.data(), x.nbytes()), 0)
                         << tandem::dtype_name(dtype) << " rows " << rows;
                   }
                 }
               });
}

TEST(Serving, ErrorsSayWhatIsWrongAndTheServiceGoesOn) {
  const std::string body = R"(
[[service]]
name = "scale"
backend = "scale"
factor = 2.0
inputs = [{ name = "x", dtype = "FP32", shape = [-1, 4] }]
outputs = [{ name = "y", dtype = "FP32", shape = [-1, 4] }]
)";
  const json summary = with_session("errors", body, [](tandem::Session& s) {
    auto& c = s.client();
    c.wait_ready("scale", 30);
    const auto good = tandem::Tensor::from(std::vector<float>{1, 2, 3, 4}, {1, 4});
    EXPECT_NE(error_of([&] {
                c.infer("nope", {{"x", good}});
              }).find("unknown service 'nope': this job has scale"),
              std::string::npos);
    EXPECT_NE(error_of([&] {
                c.infer("scale", {{"z", good}});
              }).find("has no input 'x'"),
              std::string::npos);
    const auto f64 = tandem::Tensor::from(std::vector<double>{1, 2, 3, 4}, {1, 4});
    EXPECT_NE(error_of([&] {
                c.infer("scale", {{"x", f64}});
              }).find("input 'x' is FP64 but the service takes FP32"),
              std::string::npos);
    const auto wide = tandem::Tensor::from(std::vector<float>(6, 1.f), {1, 6});
    EXPECT_NE(error_of([&] {
                c.infer("scale", {{"x", wide}});
              }).find("has shape [1, 6] but the service takes [-1, 4]"),
              std::string::npos);
    EXPECT_NE(error_of([&] {
                c.infer("scale", {{"x", good}, {"w", good}});
              }).find("has 2 input(s)"),
              std::string::npos);
    // The service is still there and right.
    const auto y = c.infer("scale", good);
    EXPECT_EQ(y.to_vector<float>(), (std::vector<float>{2, 4, 6, 8}));
  });
  if (world_rank() == 0) {
    const int apps = world_size() - 2;
    EXPECT_EQ(summary["services"]["scale"]["errors"], 4 * apps);
    EXPECT_EQ(summary["services"]["scale"]["requests"], 5 * apps);
  }
}

TEST(Serving, RequestsFromManyClientsAreBatched) {
  // The model takes 20 ms a batch, so requests pile up behind it and the
  // next batch takes them all.
  const std::string body =
      "[[service]]\nname = \"slow\"\nbackend = \"sleep\"\ndelay_us = 20000\nmax_batch = 64\n";
  const json summary = with_session("batching", body, [](tandem::Session& s) {
    auto& c = s.client();
    c.wait_ready("slow", 30);
    std::vector<tandem::InferHandle> handles;
    for (int k = 0; k < 8; ++k) {
      handles.push_back(c.infer_async(
          "slow", {{"x", tandem::Tensor::from(std::vector<float>{float(k), 1, 2}, {1, 3})}}));
    }
    for (int k = 0; k < 8; ++k) {
      const auto out = handles[k].wait();
      EXPECT_EQ(out[0].tensor.to_vector<float>(), (std::vector<float>{float(k), 1, 2}));
    }
  });
  if (world_rank() == 0) {
    const json& svc = summary["services"]["slow"];
    const int apps = world_size() - 2;
    EXPECT_EQ(svc["requests"], 8 * apps);
    EXPECT_EQ(svc["rows"], 8 * apps);
    int largest = 0;
    for (const auto& [size, n] : svc["batch_rows_histogram"].items())
      largest = std::max(largest, std::stoi(size));
    EXPECT_GE(largest, 4) << svc.dump();
    EXPECT_LT(svc["batches"].get<int>(), 8 * apps) << svc.dump();
  }
}

TEST(Serving, ReplicasShareTheLoad) {
  if (world_size() < 5) GTEST_SKIP() << "needs 2 service ranks and 2 application ranks";
  const std::string body =
      "[[service]]\nname = \"triple\"\nbackend = \"scale\"\nfactor = 3.0\nreplicas = 2\n";
  const json summary = with_session("replicas", body, [](tandem::Session& s) {
    auto& c = s.client();
    c.wait_ready("triple", 30);
    for (int k = 0; k < 20; ++k) {
      const auto y =
          c.infer("triple", tandem::Tensor::from(std::vector<double>{double(k)}, {1, 1}));
      EXPECT_EQ(y.to_vector<double>()[0], 3.0 * k);
    }
  });
  if (world_rank() == 0) {
    const json& replicas = summary["services"]["triple"]["replicas"];
    ASSERT_EQ(replicas.size(), 2u);
    for (const auto& r : replicas) EXPECT_GE(r["requests"].get<int>(), 5) << replicas.dump();
  }
}

TEST(Serving, AReplicaOfSeveralRanksSpreadsEachBatch) {
  if (world_size() < 4) GTEST_SKIP() << "needs 2 service ranks and an application rank";
  const std::string body =
      "[[service]]\nname = \"wide\"\nbackend = \"scale\"\nfactor = -1.0\nranks_per_replica = 2\n";
  const json summary = with_session("wide", body, [](tandem::Session& s) {
    auto& c = s.client();
    c.wait_ready("wide", 30);
    for (std::int64_t rows : {1, 2, 7, 100}) {
      std::vector<double> x(rows * 3);
      for (std::size_t i = 0; i < x.size(); ++i) x[i] = double(i);
      const auto y = c.infer("wide", tandem::Tensor::from(x, {rows, 3})).to_vector<double>();
      ASSERT_EQ(y.size(), x.size());
      for (std::size_t i = 0; i < x.size(); ++i) EXPECT_EQ(y[i], -x[i]) << "rows " << rows;
    }
  });
  if (world_rank() == 0) EXPECT_EQ(summary["services"]["wide"]["errors"], 0);
}

// A request to a service still loading its model waits for it (issue 35):
// up to the client's ready_timeout, else the service's start_timeout.
TEST(Serving, RequestsBeforeReadyWaitForTheService) {
  const std::string body = "[[service]]\nname = \"late\"\nbackend = \"sleep\"\nload_us = 1500000\n";
  with_session("before-ready", body, [](tandem::Session& s) {
    auto& c = s.client();
    const auto x = tandem::Tensor::from(std::vector<float>{1}, {1, 1});
    EXPECT_EQ(c.state("late"), "STARTING");
    // A client that will not wait long is told why, and what to change.
    c.set_ready_timeout(0.05);
    const std::string why = error_of([&] { c.infer("late", x); });
    EXPECT_NE(why.find("was not READY within 0.05 s"), std::string::npos) << why;
    EXPECT_NE(why.find("ready_timeout"), std::string::npos) << why;
    EXPECT_NE(error_of([&] { c.wait_ready("late", 0.05); }).find("was not READY within 0.05 s"),
              std::string::npos);
    // The default waits: the first request succeeds once the model is loaded.
    c.set_ready_timeout(-1);
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(c.infer("late", x).to_vector<float>()[0], 1.f);
    EXPECT_EQ(c.state("late"), "READY");
    EXPECT_GT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 0.3);
  });
}

TEST(Serving, RequestsToAFailedServiceFailAtOnce) {
  const std::string body =
      "[[service]]\nname = \"broken\"\nbackend = \"process\"\ncommand = [\"false\"]\n"
      "max_restarts = 0\n";
  with_session("failed-service", body, [](tandem::Session& s) {
    auto& c = s.client();
    const auto x = tandem::Tensor::from(std::vector<float>{1}, {1, 1});
    // STARTING until the server's exit is seen: the request waits for that,
    // then fails with the reason, not after the start timeout.
    const auto t0 = std::chrono::steady_clock::now();
    const std::string why = error_of([&] { c.infer("broken", x); });
    EXPECT_NE(why.find("FAILED"), std::string::npos) << why;
    EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 60);
    const auto t1 = std::chrono::steady_clock::now();
    EXPECT_NE(error_of([&] { c.infer("broken", x); }).find("FAILED"), std::string::npos);
    EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count(), 0.5);
  });
}

TEST(Serving, InFlightRequestsAreAnsweredBeforeShutdown) {
  std::vector<tandem::InferHandle> handles;
  with_session("drain", "[[service]]\nname = \"s\"\nbackend = \"sleep\"\ndelay_us = 3000\n",
               [&](tandem::Session& s) {
                 s.client().wait_ready("s", 30);
                 for (int k = 0; k < 30; ++k) {
                   handles.push_back(s.client().infer_async(
                       "s", {{"x", tandem::Tensor::from(std::vector<int>{k}, {1})}}));
                 }
                 // No wait: finalize must let every request be answered.
               });
  for (std::size_t k = 0; k < handles.size(); ++k) {
    EXPECT_TRUE(handles[k].test());
    EXPECT_EQ(handles[k].wait()[0].tensor.to_vector<int>()[0], static_cast<int>(k));
  }
}

#ifdef TANDEM_TEST_HAVE_TORCH
TEST(Serving, TorchScriptOutputsEqualDirectLibtorch) {
  if (world_size() < 4) GTEST_SKIP() << "needs 2 service ranks and an application rank";
  const std::string body = "[[service]]\nname = \"mlp\"\nbackend = \"torchscript\"\nmodel = \"" +
                           models() + "/mlp.pt\"\n" +
                           "inputs = [{ name = \"x\", dtype = \"FP32\", shape = [-1, 64] }]\n"
                           "outputs = [{ name = \"y\", dtype = \"FP32\", shape = [-1, 16] }]\n"
                           "[[service]]\nname = \"heads\"\nbackend = \"torchscript\"\nmodel = \"" +
                           models() + "/two_heads.pt\"\n" +
                           "inputs = [{ name = \"a\", dtype = \"FP64\", shape = [-1, 2] }, "
                           "{ name = \"b\", dtype = \"FP64\", shape = [-1, 2] }]\n"
                           "outputs = [{ name = \"sum\", dtype = \"FP64\", shape = [-1, 2] }, "
                           "{ name = \"product\", dtype = \"FP64\", shape = [-1, 2] }]\n";
  with_session("torch", body, [](tandem::Session& s) {
    auto& c = s.client();
    c.wait_ready("mlp", 60);
    std::vector<float> x(5 * 64);
    std::vector<float> expected(5 * 16);
    std::ifstream(models() + "/mlp_input.bin", std::ios::binary)
        .read(reinterpret_cast<char*>(x.data()), x.size() * 4);
    std::ifstream(models() + "/mlp_expected.bin", std::ios::binary)
        .read(reinterpret_cast<char*>(expected.data()), expected.size() * 4);
    const auto y = c.infer("mlp", tandem::Tensor::from(x, {5, 64}));
    ASSERT_EQ(y.shape(), (std::vector<std::int64_t>{5, 16}));
    const auto got = y.to_vector<float>();
    for (std::size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], expected[i], 1e-5) << i;
    // Inputs by name, in any order; outputs named by the signature.
    c.wait_ready("heads", 60);
    const auto a = tandem::Tensor::from(std::vector<double>{1, 2, 3, 4}, {2, 2});
    const auto b = tandem::Tensor::from(std::vector<double>{10, 20, 30, 40}, {2, 2});
    const auto out = c.infer("heads", {{"b", b}, {"a", a}});
    EXPECT_EQ(tandem::find_tensor(out, "sum").to_vector<double>(),
              (std::vector<double>{11, 22, 33, 44}));
    EXPECT_EQ(tandem::find_tensor(out, "product").to_vector<double>(),
              (std::vector<double>{10, 40, 90, 160}));
  });
}

TEST(Serving, AModelThatThrowsFailsOnlyTheBadRequest) {
  const std::string body = "[[service]]\nname = \"picky\"\nbackend = \"torchscript\"\nmodel = \"" +
                           models() + "/picky.pt\"\nmax_delay_us = 20000\n" +
                           "inputs = [{ name = \"x\", dtype = \"FP32\", shape = [-1, 2] }]\n"
                           "outputs = [{ name = \"y\", dtype = \"FP32\", shape = [-1, 2] }]\n";
  with_session("picky", body, [](tandem::Session& s) {
    auto& c = s.client();
    c.wait_ready("picky", 60);
    // Sent together, so that they share a batch; only the negative one fails.
    auto good =
        c.infer_async("picky", {{"x", tandem::Tensor::from(std::vector<float>{1, 2}, {1, 2})}});
    auto bad =
        c.infer_async("picky", {{"x", tandem::Tensor::from(std::vector<float>{-5, 1}, {1, 2})}});
    EXPECT_EQ(good.wait()[0].tensor.to_vector<float>(), (std::vector<float>{2, 4}));
    EXPECT_NE(error_of([&] { bad.wait(); }).find("negative input"), std::string::npos);
  });
}

TEST(Serving, AModelThatDoesNotLoadFailsTheServiceAndClientsFailFast) {
  const std::string body = "[[service]]\nname = \"broken\"\nbackend = \"torchscript\"\nmodel = \"" +
                           models() + "/not_torchscript.pt\"\n" +
                           "inputs = [{ name = \"x\", dtype = \"FP32\", shape = [-1, 2] }]\n"
                           "outputs = [{ name = \"y\", dtype = \"FP32\", shape = [-1, 2] }]\n";
  const json summary = with_session("broken", body, [](tandem::Session& s) {
    auto& c = s.client();
    const auto t0 = std::chrono::steady_clock::now();
    const std::string why = error_of([&] { c.wait_ready("broken", 60); });
    EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 30.0);
    EXPECT_NE(why.find("service 'broken' FAILED"), std::string::npos) << why;
    EXPECT_NE(why.find("cannot load TorchScript model"), std::string::npos) << why;
    EXPECT_EQ(c.state("broken"), "FAILED");
    EXPECT_NE(error_of([&] {
                c.infer("broken", tandem::Tensor::from(std::vector<float>{1, 2}, {1, 2}));
              }).find("FAILED"),
              std::string::npos);
  });
  if (world_rank() == 0) {
    EXPECT_EQ(summary["services"]["broken"]["replicas"][0]["state"], "FAILED");
  }
}
#endif
