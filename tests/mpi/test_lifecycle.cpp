// Model versions end to end in SPMD mode: a swap under load, a multi-rank
// replica that swaps on all its ranks or none, versions that must not
// load, and a watched model directory. The models multiply by 2, 3 or 4
// (tests/support/make_models.py), so every reply says which version made it.

#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include <nlohmann/json.hpp>

#include "support/mpi_session.hpp"
#include "tandem/tandem.hpp"

namespace fs = std::filesystem;
using nlohmann::json;
using tandem::test::request_error_of;
using tandem::test::shared_dir;
using tandem::test::with_session;
using tandem::test::world_rank;
using tandem::test::world_size;

namespace {

using steady = std::chrono::steady_clock;

std::string models() {
  return TANDEM_TEST_MODELS_DIR;
}

// A service whose version N multiplies by N (versions 2, 3, 4).
std::string times_service(const std::string& extra) {
  return "[[service]]\nname = \"t\"\nbackend = \"torchscript\"\nmodel = \"" + models() +
         "/times2.pt\"\nmodel_version = 2\n" +
         "inputs = [{ name = \"x\", dtype = \"FP32\", shape = [-1, 4] }]\n"
         "outputs = [{ name = \"y\", dtype = \"FP32\", shape = [-1, 4] }]\n" +
         extra;
}

tandem::Tensor rows_of(float first, std::int64_t rows) {
  std::vector<float> x(static_cast<std::size_t>(rows) * 4);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = first + static_cast<float>(i);
  return tandem::Tensor::from(x, {rows, 4});
}

// Every row of @p y is @p x times @p factor.
bool scaled_by(const tandem::Tensor& x, const tandem::Tensor& y, float factor) {
  const auto a = x.to_vector<float>();
  const auto b = y.to_vector<float>();
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (b[i] != a[i] * factor) return false;
  }
  return true;
}

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(q * static_cast<double>(v.size())))];
}

bool first_app_rank(tandem::Session& s) {
  int rank = 0;
  MPI_Comm_rank(s.app_comm(), &rank);
  return rank == 0;
}

double since(steady::time_point t0) {
  return std::chrono::duration<double>(steady::now() - t0).count();
}

}  // namespace

// Clients keep requests in flight without pause; the first of them swaps
// the service from version 2 to 3 halfway through.
TEST(Lifecycle, ASwapUnderLoadLosesNothingAndNeverGoesBack) {
  if (world_size() < 4) GTEST_SKIP() << "needs a service rank and two application ranks";
  const fs::path marks = fs::path(shared_dir()) / "swap-marks.json";
  const json summary = with_session("swap", times_service(""), [&](tandem::Session& s) {
    auto& c = s.client();
    c.wait_ready("t", 60);
    int app_rank = 0;
    MPI_Comm_rank(s.app_comm(), &app_rank);
    const bool swapper = app_rank == 0;
    struct Sent {
      tandem::InferHandle h;
      tandem::Tensor x;
      double sent_s;
    };
    constexpr int kWindow = 4;
    std::vector<Sent> window;
    std::vector<std::pair<double, double>> latency;  // (sent at s, took ms)
    const auto t0 = steady::now();
    double swap_from = 1e9;  // when the swapper asked (its own clock, the node's)
    double swap_to = 1e9;
    double first_v3_at = 1e9;  // when this client first saw version 3
    int errors = 0;
    int replies = 0;
    int wrong_values = 0;
    int went_back = 0;
    float next = 0;
    bool swapped = false;
    double deadline = 6.0;
    while (since(t0) < deadline || !window.empty()) {
      while (since(t0) < deadline && window.size() < kWindow) {
        tandem::Tensor x = rows_of(next, 1);
        next += 4;
        // The clock before the send: a request counts as sent after the
        // switch only if it surely was.
        const double at = since(t0);
        window.push_back({c.infer_async("t", {{"x", x}}), x, at});
      }
      Sent got = std::move(window.front());
      window.erase(window.begin());
      try {
        const tandem::TensorList out = got.h.wait();
        const double ms = (since(t0) - got.sent_s) * 1e3;
        ++replies;
        const int v = got.h.model_version();
        if (v != 2 && v != 3) ++wrong_values;
        if (!scaled_by(got.x, out[0].tensor, static_cast<float>(v))) ++wrong_values;
        // Sent after this client saw version 3 (or after load_model came
        // back): version 3, never 2 again.
        if (v == 2 && (got.sent_s > first_v3_at || got.sent_s > swap_to)) ++went_back;
        if (v == 3) first_v3_at = std::min(first_v3_at, since(t0));
        latency.emplace_back(got.sent_s, ms);
      } catch (const tandem::request_error& e) {
        ++errors;
        ADD_FAILURE() << e.what();
      }
      if (swapper && !swapped && since(t0) > 2.0) {
        swapped = true;
        swap_from = since(t0);
        // Blocks this client, not the others; its own requests in flight
        // are answered meanwhile and taken afterwards.
        EXPECT_EQ(c.load_model("t", models() + "/heavy3.pt", 3), 3);
        swap_to = since(t0);
        std::ofstream(marks) << json{{"from", swap_from}, {"to", swap_to}}.dump();
      }
    }
    EXPECT_EQ(errors, 0);
    EXPECT_EQ(wrong_values, 0);
    EXPECT_EQ(went_back, 0);
    EXPECT_GT(replies, 100);
    EXPECT_LT(first_v3_at, 1e9) << "this client never saw version 3";
    if (swapper) return;  // its own requests waited while it was in load_model
    // The other clients: requests sent while the swap was under way against
    // those sent in the second before it.
    while (!fs::exists(marks)) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    const json m = json::parse(tandem::test::slurp(marks));
    const double from = m["from"];
    const double to = m["to"];
    std::vector<double> steady_ms;
    std::vector<double> during_ms;
    for (const auto& [sent, ms] : latency) {
      if (sent > from - 1.0 && sent < from) steady_ms.push_back(ms);
      if (sent >= from && sent <= to) during_ms.push_back(ms);
    }
    const double p99_steady = percentile(steady_ms, 0.99);
    const double p99_during = percentile(during_ms, 0.99);
    std::printf(
        "client %d: %d replies; swap %.1f ms; p99 steady %.3f ms (%zu), during the swap "
        "%.3f ms (%zu), max during %.3f ms\n",
        app_rank, replies, (to - from) * 1e3, p99_steady, steady_ms.size(), p99_during,
        during_ms.size(), *std::max_element(during_ms.begin(), during_ms.end()));
    ASSERT_GT(during_ms.size(), 10u) << "requests went on during the swap";
    EXPECT_LE(p99_during, 2 * p99_steady);
  });
  if (world_rank() != 0) return;
  const json& replica = summary["services"]["t"]["replicas"][0];
  EXPECT_EQ(summary["services"]["t"]["errors"], 0);
  ASSERT_EQ(replica["versions"].size(), 2u) << replica.dump();
  EXPECT_EQ(replica["versions"][0]["version"], 2);
  EXPECT_EQ(replica["versions"][1]["version"], 3);
  EXPECT_GT(replica["versions"][0]["requests"].get<long long>(), 0);
  EXPECT_GT(replica["versions"][1]["requests"].get<long long>(), 0);
  EXPECT_EQ(replica["versions"][0]["requests"].get<long long>() +
                replica["versions"][1]["requests"].get<long long>(),
            replica["requests"].get<long long>());
  EXPECT_GE(replica["versions"][1]["served_from_s"].get<double>(),
            replica["versions"][1]["loaded_at_s"].get<double>());
}

// Rank 1 of the two-rank replica cannot load version 3 (an injected
// fault): neither rank switches. Version 4 loads on both. A batch of 8 rows
// is split over the two ranks, so a half-switched replica would show.
TEST(Lifecycle, AMultiRankReplicaSwapsOnAllItsRanksOrNone) {
  if (world_size() < 4) GTEST_SKIP() << "needs a two-rank replica and an application rank";
  ::setenv("TANDEM_TEST_FAIL_LOAD", "1:3", 1);
  const json summary =
      with_session("all-or-none", times_service("ranks_per_replica = 2\n"), [](tandem::Session& s) {
        auto& c = s.client();
        c.wait_ready("t", 60);
        const tandem::Tensor x = rows_of(1, 8);
        const std::string why =
            request_error_of([&] { c.load_model("t", models() + "/times3.pt", 3); });
        EXPECT_NE(why.find("rank 1"), std::string::npos) << why;
        EXPECT_NE(why.find("times3.pt"), std::string::npos) << why;
        EXPECT_NE(why.find("injected failure"), std::string::npos) << why;
        tandem::InferResult r = c.infer_versioned("t", {{"x", x}});
        EXPECT_EQ(r.model_version, 2);
        EXPECT_TRUE(scaled_by(x, r.outputs[0].tensor, 2)) << "rows from both ranks: version 2";
        // The failed version is on no rank: asking for it is an error.
        tandem::InferOptions v3;
        v3.version = 3;
        EXPECT_NE(request_error_of([&] {
                    c.infer("t", {{"x", x}}, v3);
                  }).find("not loaded"),
                  std::string::npos);
        EXPECT_EQ(c.load_model("t", models() + "/times4.pt", 4), 4);
        r = c.infer_versioned("t", {{"x", x}});
        EXPECT_EQ(r.model_version, 4);
        EXPECT_TRUE(scaled_by(x, r.outputs[0].tensor, 4)) << "rows from both ranks: version 4";
      });
  ::unsetenv("TANDEM_TEST_FAIL_LOAD");
  if (world_rank() != 0) return;
  const json& replica = summary["services"]["t"]["replicas"][0];
  ASSERT_EQ(replica["version_errors"].size(), 1u);
  EXPECT_NE(replica["version_errors"][0].get<std::string>().find("rank 1"), std::string::npos);
  EXPECT_EQ(summary["services"]["t"]["errors"], 1) << "the request for version 3";
}

// Missing, corrupt and wrongly shaped versions are refused with the file
// and the cause; the old version goes on serving. Then the policy's
// corners: version numbers are immutable, several versions may be held and
// asked for by number, and unloading has its rules.
TEST(Lifecycle, ABadVersionLeavesTheOldOneServing) {
  const json summary =
      with_session("bad-versions", times_service("keep_versions = 2\n"), [](tandem::Session& s) {
        if (!first_app_rank(s)) return;  // one client: the versions are its to change
        auto& c = s.client();
        c.wait_ready("t", 60);
        const tandem::Tensor x = rows_of(1, 3);
        auto still_v2 = [&](const std::string& after) {
          const tandem::InferResult r = c.infer_versioned("t", {{"x", x}});
          EXPECT_EQ(r.model_version, 2) << after;
          EXPECT_TRUE(scaled_by(x, r.outputs[0].tensor, 2)) << after;
        };
        struct Bad {
          std::string file;
          std::string cause;
        };
        for (const Bad& bad :
             {Bad{"/no-such-model.pt", "does not exist"},
              Bad{"/not_torchscript.pt", "cannot load TorchScript model"},
              Bad{"/wrong_dtype.pt", "FP64"}, Bad{"/wrong_shape.pt", "shape [1, 2]"}}) {
          const std::string why =
              request_error_of([&] { c.load_model("t", models() + bad.file, 5); });
          EXPECT_NE(why.find(models() + bad.file), std::string::npos) << why;
          EXPECT_NE(why.find(bad.cause), std::string::npos) << why;
          EXPECT_NE(why.find("replica 0"), std::string::npos) << why;
          still_v2(bad.file);
        }
        // Version 3 beside 2; both held (keep_versions = 2).
        EXPECT_EQ(c.load_model("t", models() + "/times3.pt", 3), 3);
        EXPECT_EQ(c.load_model("t", models() + "/times3.pt", 3), 3) << "loading twice is a no-op";
        EXPECT_NE(request_error_of([&] {
                    c.load_model("t", models() + "/times4.pt", 3);
                  }).find("is loaded already"),
                  std::string::npos);
        tandem::InferOptions v2;
        v2.version = 2;
        tandem::InferHandle h = c.infer_async("t", {{"x", x}}, v2);
        EXPECT_TRUE(scaled_by(x, h.wait()[0].tensor, 2));
        EXPECT_EQ(h.model_version(), 2);
        EXPECT_EQ(c.infer_versioned("t", {{"x", x}}).model_version, 3);
        EXPECT_NE(request_error_of([&] { c.unload_model("t", 7); }).find("not loaded"),
                  std::string::npos);
        // Unloading the newest falls back to the other; the last cannot go.
        EXPECT_EQ(c.unload_model("t", 3), 2);
        still_v2("after unloading 3");
        EXPECT_NE(request_error_of([&] { c.unload_model("t", 2); }).find("only version loaded"),
                  std::string::npos);
        EXPECT_NE(request_error_of([&] {
                    c.load_model("nope", models() + "/times3.pt", 3);
                  }).find("unknown service"),
                  std::string::npos);
      });
  if (world_rank() != 0) return;
  EXPECT_EQ(summary["services"]["t"]["errors"], 0);
  EXPECT_EQ(summary["services"]["t"]["replicas"][0]["version_errors"].size(), 4u)
      << "the four bad loads; refused operations are not load errors";
}

// model_dir in Triton's layout: a version that appears is loaded and
// served, a broken one is refused once, and one whose directory goes is
// unloaded, the previous one serving again.
TEST(Lifecycle, AWatchedDirectoryLoadsAndUnloadsVersions) {
  const fs::path dir = fs::path(shared_dir()) / "repo";
  if (world_rank() == 0) {
    fs::create_directories(dir / "1");
    fs::copy_file(models() + "/times2.pt", dir / "1" / "model.pt");
  }
  MPI_Barrier(MPI_COMM_WORLD);
  const std::string body = "[[service]]\nname = \"t\"\nbackend = \"torchscript\"\nmodel_dir = \"" +
                           dir.string() + "\"\npoll_interval = 0.1\n" +
                           "inputs = [{ name = \"x\", dtype = \"FP32\", shape = [-1, 4] }]\n"
                           "outputs = [{ name = \"y\", dtype = \"FP32\", shape = [-1, 4] }]\n";
  const json summary = with_session("watch", body, [&](tandem::Session& s) {
    if (!first_app_rank(s)) return;  // one client changes the directory
    auto& c = s.client();
    c.wait_ready("t", 60);
    const tandem::Tensor x = rows_of(1, 2);
    auto wait_for_version = [&](int version, float factor) {
      const auto t0 = steady::now();
      tandem::InferResult r;
      do {
        r = c.infer_versioned("t", {{"x", x}});
        if (r.model_version != version) std::this_thread::sleep_for(std::chrono::milliseconds(20));
      } while (r.model_version != version && since(t0) < 30);
      EXPECT_EQ(r.model_version, version);
      EXPECT_TRUE(scaled_by(x, r.outputs[0].tensor, factor));
    };
    wait_for_version(1, 2);
    // A new version appears whole: written beside, then renamed in.
    fs::create_directories(dir / "tmp-2");
    fs::copy_file(models() + "/times3.pt", dir / "tmp-2" / "model.pt");
    fs::rename(dir / "tmp-2", dir / "2");
    wait_for_version(2, 3);
    // A broken version 3 is refused; 2 goes on serving.
    fs::create_directories(dir / "tmp-3");
    fs::copy_file(models() + "/wrong_shape.pt", dir / "tmp-3" / "model.pt");
    fs::rename(dir / "tmp-3", dir / "3");
    std::this_thread::sleep_for(std::chrono::milliseconds(800));
    wait_for_version(2, 3);
    fs::remove_all(dir / "3");
    // Version 2 goes: back to 1.
    fs::remove_all(dir / "2");
    wait_for_version(1, 2);
  });
  if (world_rank() != 0) return;
  const json& replica = summary["services"]["t"]["replicas"][0];
  EXPECT_EQ(summary["services"]["t"]["errors"], 0);
  ASSERT_EQ(replica["version_errors"].size(), 1u) << "the broken file is tried once";
  EXPECT_NE(replica["version_errors"][0].get<std::string>().find("3/model.pt"), std::string::npos);
  // 1 served, then 2, then 1 again.
  std::vector<int> versions;
  for (const auto& v : replica["versions"]) versions.push_back(v["version"]);
  EXPECT_EQ(versions, (std::vector<int>{1, 2}));
}

// swap = "pause": the old version goes before the new one loads; requests
// sent meanwhile wait and are answered, none refused, and the pause is
// measured.
TEST(Lifecycle, APausedSwapHoldsRequestsAndAnswersThemAll) {
  if (world_size() < 4) GTEST_SKIP() << "needs a service rank and two application ranks";
  const json summary =
      with_session("pause", times_service("swap = \"pause\"\n"), [](tandem::Session& s) {
        auto& c = s.client();
        c.wait_ready("t", 60);
        int app_rank = 0;
        MPI_Comm_rank(s.app_comm(), &app_rank);
        const auto t0 = steady::now();
        int errors = 0;
        int replies = 0;
        bool swapped = false;
        while (since(t0) < 3.0) {
          const tandem::Tensor x = rows_of(1, 1);
          try {
            const tandem::InferResult r = c.infer_versioned("t", {{"x", x}});
            ++replies;
            EXPECT_TRUE(scaled_by(x, r.outputs[0].tensor, static_cast<float>(r.model_version)));
          } catch (const tandem::request_error& e) {
            ++errors;
            ADD_FAILURE() << e.what();
          }
          if (app_rank == 0 && !swapped && since(t0) > 1.0) {
            swapped = true;
            EXPECT_EQ(c.load_model("t", models() + "/heavy3.pt", 3), 3);
          }
        }
        EXPECT_EQ(errors, 0);
        EXPECT_GT(replies, 10);
        MPI_Barrier(s.app_comm());
        if (app_rank != 0) return;
        // A bad version in pause mode: the old one was unloaded for it, and
        // is loaded again; requests go on being answered by version 3.
        const std::string why =
            request_error_of([&] { c.load_model("t", models() + "/wrong_dtype.pt", 4); });
        EXPECT_NE(why.find("wrong_dtype.pt"), std::string::npos) << why;
        const tandem::Tensor x = rows_of(1, 2);
        const tandem::InferResult r = c.infer_versioned("t", {{"x", x}});
        EXPECT_EQ(r.model_version, 3);
        EXPECT_TRUE(scaled_by(x, r.outputs[0].tensor, 3));
      });
  if (world_rank() != 0) return;
  const json& replica = summary["services"]["t"]["replicas"][0];
  ASSERT_EQ(replica["versions"].size(), 2u);
  const double pause = replica["versions"][1]["pause_s"];
  EXPECT_GT(pause, 0.0);
  EXPECT_LT(pause, 10.0);
  EXPECT_EQ(summary["services"]["t"]["errors"], 0);
}
