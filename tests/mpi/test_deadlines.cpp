// Deadlines, fallbacks and provenance (issue 38) in SPMD sessions under
// mpiexec with 5 ranks: rank 0 coordinates, the service ranks serve, the
// rest are the application. Rank 0 checks summary.json and metrics.prom.

#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <regex>
#include <thread>

#include <nlohmann/json.hpp>

#include "hdf5/file.hpp"
#include "support/mpi_session.hpp"
#include "tandem/tandem.hpp"

namespace fs = std::filesystem;
using nlohmann::json;
using steady = std::chrono::steady_clock;
using tandem::test::shared_dir;
using tandem::test::slurp;
using tandem::test::with_session;
using tandem::test::world_rank;

namespace {

double ms_since(steady::time_point t0, steady::time_point t1) {
  return std::chrono::duration<double, std::milli>(t1 - t0).count();
}

// What one application rank saw of its requests.
struct Seen {
  long long sent = 0, answered = 0, expired = 0, other_errors = 0;
  double longest_wait_ms = 0;
};

long long sum_over_ranks(long long mine) {
  long long total = 0;
  MPI_Allreduce(&mine, &total, 1, MPI_LONG_LONG, MPI_SUM, MPI_COMM_WORLD);
  return total;
}

// The value of a metrics.prom line that starts with @p prefix, or -1.
long long metric(const std::string& text, const std::string& prefix) {
  const auto at = text.find(prefix);
  if (at == std::string::npos) return -1;
  return std::stoll(text.substr(at + prefix.size()));
}

}  // namespace

// A sleep service of 4 ms a request (250 per second) asked for twice that
// by the application ranks together, each request with a 40 ms deadline.
TEST(Deadlines, AnOverloadedServiceAnswersInTimeOrSaysSoAndNeverComputesTheExpired) {
  constexpr double kDeadlineMs = 40;
  constexpr double kCapacity = 250;  // requests per second
  constexpr double kSeconds = 1.5;
  const std::string body =
      "[[service]]\nname = \"slow\"\nbackend = \"sleep\"\ndelay_us = 4000\nmax_batch = 1\n";
  Seen seen;
  const json summary = with_session("overload", body, [&](tandem::Session& s) {
    auto& c = s.client();
    c.wait_ready("slow", 30);
    // Two ranks send (five processes share two cores here already).
    int me = 0;
    MPI_Comm_rank(s.app_comm(), &me);
    if (me >= 2) {
      // Out of the way: a rank that waited in MPI would spin on a core.
      std::this_thread::sleep_for(std::chrono::duration<double>(kSeconds + 0.5));
      return;
    }
    const int apps = 2;
    // Each rank's share of twice the capacity, evenly spaced.
    const auto gap = std::chrono::duration_cast<steady::duration>(
        std::chrono::duration<double>(apps / (2 * kCapacity)));
    struct Out {
      tandem::InferHandle h;
      steady::time_point sent;
    };
    std::vector<Out> out;
    const auto x = tandem::Tensor::from(std::vector<float>{1, 2, 3, 4}, {1, 4});
    tandem::InferOptions opts;
    opts.deadline_ms = kDeadlineMs;
    const auto start = steady::now();
    auto next = start;
    const auto settle = [&](Out& o, steady::time_point now) {
      seen.longest_wait_ms = std::max(seen.longest_wait_ms, ms_since(o.sent, now));
      try {
        const auto y = o.h.wait();
        EXPECT_EQ(y[0].tensor.to_vector<float>(), x.to_vector<float>());
        ++seen.answered;
      } catch (const tandem::deadline_error& e) {
        EXPECT_NE(std::string(e.what()).find("deadline exceeded"), std::string::npos) << e.what();
        EXPECT_EQ(e.status(), tandem::status::deadline);
        ++seen.expired;
      } catch (const std::exception& e) {
        ADD_FAILURE() << e.what();
        ++seen.other_errors;
      }
    };
    while (steady::now() - start < std::chrono::duration<double>(kSeconds) || !out.empty()) {
      auto now = steady::now();
      if (now >= next && now - start < std::chrono::duration<double>(kSeconds)) {
        out.push_back({c.infer_async("slow", {{"x", x}}, opts), now});
        ++seen.sent;
        next += gap;
      }
      for (std::size_t i = 0; i < out.size();) {
        if (out[i].h.test()) {
          settle(out[i], steady::now());
          out[i] = std::move(out.back());
          out.pop_back();
        } else {
          ++i;
        }
      }
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  });
  const long long sent = sum_over_ranks(seen.sent);
  const long long answered = sum_over_ranks(seen.answered);
  const long long expired = sum_over_ranks(seen.expired);
  EXPECT_EQ(seen.other_errors, 0);
  if (seen.sent > 0) {
    EXPECT_LE(seen.longest_wait_ms, kDeadlineMs + 5) << "no caller waits past its deadline";
  }
  if (world_rank() != 0) return;
  EXPECT_EQ(answered + expired, sent) << "every request has exactly one reply";
  EXPECT_GT(answered, sent / 4) << "the service kept serving";
  EXPECT_GT(expired, sent / 4) << "at twice its capacity it cannot answer everything";
  const json& slow = summary["services"]["slow"];
  EXPECT_EQ(slow["requests"], sent);
  EXPECT_EQ(slow["deadline_ms"], 0);  // the deadline was the request's, not the service's
  // Dropped requests were never computed: the rows computed are the
  // answers in time plus those the replica sent after their deadline. On
  // one node the client judges a reply by the replica's own send stamp, so
  // the two ends agree, except for a reply still on its way at the instant
  // the client gives up (sent in time, taken late): at most one here.
  const long long late = slow["late_replies"].get<long long>();
  const long long races = 1;
  EXPECT_NEAR(slow["rows"].get<long long>(), answered + late, races);
  EXPECT_NEAR(slow["expired"].get<long long>() + late, expired, races);
  EXPECT_EQ(slow["replicas"][0]["expired"], slow["expired"]);
  const std::string prom = slurp(fs::path(shared_dir()) / "run-overload" / "metrics.prom");
  EXPECT_EQ(metric(prom, "tandem_service_expired_total{service=\"slow\",replica=\"0\"} "),
            slow["expired"].get<long long>())
      << prom;
  EXPECT_EQ(metric(prom, "tandem_service_late_replies_total{service=\"slow\",replica=\"0\"} "),
            late);
  // And in the trace: one request_expired event per dropped request, and a
  // client_deadline event for each request a client stopped waiting for.
  const auto trace = tandem::detail::h5::File::open(
      (fs::path(shared_dir()) / "run-overload" / "trace.h5").string());
  EXPECT_EQ(static_cast<long long>(trace.open_dataset("request_expired").shape()[0]),
            slow["expired"].get<long long>());
  EXPECT_TRUE(trace.has("client_deadline"));
}

// A late service and a FAILED one, each with a fallback that doubles its
// inputs: every request is answered by the fallback, and says so.
TEST(Deadlines, AFallbackAnswersWhenTheServiceIsLateOrFailedAndTheReplySaysSo) {
  const std::string body = R"(
[[service]]
name = "late"
backend = "sleep"
delay_us = 60000
deadline_ms = 15
fallback = "service:double"

[[service]]
name = "broken"
backend = "process"
command = ["/bin/false"]
max_restarts = 0
start_timeout = 10
fallback = "service:double"

[[service]]
name = "double"
backend = "scale"
factor = 2.0
)";
  const json summary = with_session("fallback", body, [&](tandem::Session& s) {
    auto& c = s.client();
    c.wait_ready("double", 30);
    const auto x = tandem::Tensor::from(std::vector<float>{1, 2, 3}, {1, 3});
    const std::vector<float> doubled{2, 4, 6};
    for (int k = 0; k < 5; ++k) {
      const auto t0 = steady::now();
      const tandem::InferResult r = c.infer_versioned("late", {{"x", x}});
      EXPECT_EQ(r.source, "double") << "request " << k;
      EXPECT_EQ(r.outputs[0].tensor.to_vector<float>(), doubled);
      // The first waits out its deadline; later ones are turned away at
      // once, since a batch takes 60 ms and they have 15.
      if (k > 0) EXPECT_LT(ms_since(t0, steady::now()), 15) << "request " << k;
      // The first one's batch is still running: let it end (late).
      if (k == 0) std::this_thread::sleep_for(std::chrono::milliseconds(80));
    }
    auto h = c.infer_async("broken", {{"x", x}});
    EXPECT_EQ(h.wait()[0].tensor.to_vector<float>(), doubled);
    EXPECT_EQ(h.source(), "double");
    EXPECT_EQ(c.state("broken"), "FAILED");
  });
  if (world_rank() != 0) return;
  EXPECT_EQ(summary["services"]["late"]["fallback"], "double");
  EXPECT_EQ(summary["services"]["late"]["rows"], 1) << "only the first request was computed";
  EXPECT_EQ(summary["services"]["late"]["expired"], 4);
  EXPECT_EQ(summary["services"]["late"]["late_replies"], 1);
  EXPECT_EQ(summary["services"]["double"]["requests"], 6);
}
