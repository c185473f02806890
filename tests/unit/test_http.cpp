// The HTTP client against a local test server that misbehaves on request:
// retries on 5xx and 429 (with Retry-After), timeouts, refused connections,
// many requests in flight under a cap, and the API key header.

#include <gtest/gtest.h>

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include <nlohmann/json.hpp>

#include "ml_ranks/http/http_client.hpp"
#include "support/temp_dir.hpp"
#include "trace/trace.hpp"

using namespace tandem::detail;

extern char** environ;

namespace {

class TestServer {
 public:
  TestServer() {
    const std::string port_file = (dir_.path() / "port").string();
    const std::string script = TANDEM_TEST_HTTP_SERVER;
    char* argv[] = {const_cast<char*>("/usr/bin/python3"), const_cast<char*>(script.c_str()),
                    const_cast<char*>(port_file.c_str()), nullptr};
    posix_spawn(&pid_, argv[0], nullptr, nullptr, argv, environ);
    for (int i = 0; i < 200 && !std::filesystem::exists(port_file); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    port_ = std::stoi(tandem::test::slurp(port_file));
  }
  ~TestServer() {
    ::kill(pid_, SIGTERM);
    ::waitpid(pid_, nullptr, 0);
  }
  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }

 private:
  tandem::test::TempDir dir_;
  pid_t pid_ = -1;
  int port_ = 0;
};

HttpResponse fetch(HttpClient& client, HttpRequest r) {
  return client.fetch(std::move(r));
}

HttpRequest get(const std::string& url) {
  HttpRequest r;
  r.method = "GET";
  r.url = url;
  r.backoff_s = 0.01;
  return r;
}

}  // namespace

TEST(Http, PostEchoesTheBody) {
  TestServer server;
  HttpClient client;
  HttpRequest r;
  r.url = server.url("/echo");
  r.body = std::string(100000, 'z');
  const HttpResponse resp = fetch(client, r);
  EXPECT_TRUE(resp.ok()) << resp.error;
  EXPECT_EQ(resp.status, 200);
  EXPECT_EQ(resp.body, r.body);
  EXPECT_EQ(resp.attempts, 1);
}

TEST(Http, ServerErrorsAreRetriedUntilTheyPass) {
  TestServer server;
  HttpClient client;
  HttpRequest r = get(server.url("/status/503?times=2&key=a"));
  const HttpResponse resp = fetch(client, r);
  EXPECT_TRUE(resp.ok()) << resp.error;
  EXPECT_EQ(resp.body, "recovered");
  EXPECT_EQ(resp.attempts, 3);
}

TEST(Http, RetriesAreTraced) {
  TestServer server;
  HttpClient client;
  HttpRequest r = get(server.url("/status/503?times=2&key=traced"));
  r.trace_service = 3;
  r.trace_id = 77;
  tandem::detail::trace::start(1000);
  const HttpResponse resp = fetch(client, r);
  std::vector<tandem::detail::trace::Event> retries;
  for (std::size_t i = 0; i < tandem::detail::trace::recorded(); ++i) {
    const auto& e = tandem::detail::trace::g_buffer.events[i];
    if (e.kind == tandem::detail::trace::kBridgeRetry) retries.push_back(e);
  }
  tandem::detail::trace::stop();
  ASSERT_TRUE(resp.ok()) << resp.error;
  ASSERT_EQ(retries.size(), 2u);  // two 503s, then the answer
  for (std::size_t i = 0; i < retries.size(); ++i) {
    EXPECT_EQ(retries[i].a, 77);
    EXPECT_EQ(retries[i].b, static_cast<std::int64_t>(i + 1));  // the attempt that failed
    EXPECT_EQ(retries[i].c, 503);
    EXPECT_EQ(retries[i].d, 3);
  }
}

TEST(Http, RetriesRunOutWithAClearError) {
  TestServer server;
  HttpClient client;
  HttpRequest r = get(server.url("/status/500?times=10&key=b"));
  r.max_retries = 2;
  const HttpResponse resp = fetch(client, r);
  EXPECT_FALSE(resp.ok());
  EXPECT_EQ(resp.status, 500);
  EXPECT_NE(resp.error.find("HTTP 500: injected failure (after 3 attempts)"), std::string::npos)
      << resp.error;
}

TEST(Http, ClientErrorsAreNotRetried) {
  TestServer server;
  HttpClient client;
  const HttpResponse resp = fetch(client, get(server.url("/nope")));
  EXPECT_EQ(resp.status, 404);
  EXPECT_EQ(resp.attempts, 1);
}

TEST(Http, RetryAfterIsHonoured) {
  TestServer server;
  HttpClient client;
  const auto t0 = std::chrono::steady_clock::now();
  const HttpResponse resp = fetch(client, get(server.url("/retry-after?seconds=1&key=c")));
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_TRUE(resp.ok()) << resp.error;
  EXPECT_EQ(resp.attempts, 2);
  EXPECT_GE(took, 0.95);
}

TEST(Http, SlowServersTimeOut) {
  TestServer server;
  HttpClient client;
  HttpRequest r = get(server.url("/slow?seconds=3"));
  r.timeout_s = 0.3;
  r.max_retries = 1;
  const auto t0 = std::chrono::steady_clock::now();
  const HttpResponse resp = fetch(client, r);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_FALSE(resp.ok());
  EXPECT_NE(resp.error.find("Timeout"), std::string::npos) << resp.error;
  EXPECT_EQ(resp.attempts, 2);
  EXPECT_LT(took, 2.5);
}

TEST(Http, RefusedConnectionsSaySo) {
  HttpClient client;
  HttpRequest r = get("http://127.0.0.1:1/ok");  // nothing listens on port 1
  r.max_retries = 1;
  const HttpResponse resp = fetch(client, r);
  EXPECT_FALSE(resp.ok());
  EXPECT_EQ(resp.status, 0);
  EXPECT_NE(resp.error.find("Couldn't connect to server"), std::string::npos) << resp.error;
  EXPECT_NE(resp.error.find("http://127.0.0.1:1/ok"), std::string::npos) << resp.error;
}

TEST(Http, ManyInFlightOverlapButNeverPastTheCap) {
  TestServer server;
  HttpClient client(8);
  int done = 0;
  for (int i = 0; i < 24; ++i) {
    client.submit(get(server.url("/slow?seconds=0.2")), [&](HttpResponse&& r) {
      EXPECT_TRUE(r.ok()) << r.error;
      ++done;
    });
  }
  const auto t0 = std::chrono::steady_clock::now();
  client.drain();
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(done, 24);
  EXPECT_LT(took, 2.0);  // 24 x 0.2 s one at a time would be 4.8 s
  const auto stats = nlohmann::json::parse(fetch(client, get(server.url("/stats"))).body);
  EXPECT_GE(stats["max_concurrent"].get<int>(), 4);
  EXPECT_LE(stats["max_concurrent"].get<int>(), 8 + 1);  // + the /stats request itself
}

TEST(Http, HeadersReachTheServer) {
  TestServer server;
  HttpClient client;
  HttpRequest r = get(server.url("/ok"));
  r.headers.push_back("Authorization: Bearer sk-test-123");
  EXPECT_TRUE(fetch(client, r).ok());
  const auto stats = nlohmann::json::parse(fetch(client, get(server.url("/stats"))).body);
  EXPECT_EQ(stats["authorization"][0], "Bearer sk-test-123");
}
