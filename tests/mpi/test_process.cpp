// Process services under mpiexec: a KServe v2 model server (a small Python
// server written for the tests) started by the replica leader, serving,
// dying mid-run and coming back, never becoming ready, exiting at once.

#include <gtest/gtest.h>
#include <mpi.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "support/mpi_session.hpp"
#include "support/temp_dir.hpp"
#include "tandem/tandem.hpp"

namespace fs = std::filesystem;
using tandem::test::shared_dir;
using tandem::test::with_session;
using tandem::test::world_rank;

extern char** environ;

namespace {

std::string service(const std::string& server_args, const std::string& extra = "") {
  return std::string("[[service]]\nname = \"double\"\nbackend = \"process\"\n") +
         "command = [\"/usr/bin/python3\", \"" + TANDEM_TEST_KSERVE_SERVER +
         "\", \"--port\", \"{port}\"" + server_args + "]\n" + extra;
}

std::string error_of(const std::function<void()>& fn) {
  return tandem::test::request_error_of(fn);
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

namespace {

// A KServe v2 endpoint outside the job, started by rank 0 for a test.
class Endpoint {
 public:
  explicit Endpoint(const std::vector<std::string>& extra,
                    const std::string& script = TANDEM_TEST_KSERVE_SERVER) {
    const std::string port_file =
        (fs::path(shared_dir()) / "endpoint.port").string();  // collective
    if (world_rank() == 0) {
      fs::remove(port_file);
      std::vector<std::string> args = {"/usr/bin/python3", script, "--port-file", port_file};
      if (script == TANDEM_TEST_KSERVE_SERVER) {
        args.push_back("--port");
        args.push_back("0");
      }
      args.insert(args.end(), extra.begin(), extra.end());
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      posix_spawn(&pid_, argv[0], nullptr, nullptr, argv.data(), environ);
      for (int i = 0; i < 200 && !fs::exists(port_file); ++i) ::usleep(25'000);
      port_ = fs::exists(port_file) ? std::stoi(tandem::test::slurp(port_file)) : -1;
    }
    // Every rank learns whether it started, so that none waits for the others.
    MPI_Bcast(&port_, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (port_ < 0) throw std::runtime_error("the test endpoint did not start");
  }
  ~Endpoint() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  nlohmann::json stats() const {
    const std::string out = (fs::path(shared_dir()) / "stats.json").string();
    const std::string cmd = "/usr/bin/python3 -c 'import urllib.request; open(\"" + out +
                            "\", \"wb\").write(urllib.request.urlopen(\"" + url() +
                            "/stats\").read())'";
    EXPECT_EQ(std::system(cmd.c_str()), 0);
    return nlohmann::json::parse(tandem::test::slurp(out));
  }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
};

std::string remote(const std::string& url, const std::string& extra = "") {
  return "[[service]]\nname = \"double\"\nbackend = \"remote\"\nurl = \"" + url + "\"\n" + extra;
}

bool file_tree_contains(const fs::path& dir, const std::string& needle) {
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file() && tandem::test::slurp(e.path()).find(needle) != std::string::npos) {
      return true;
    }
  }
  return false;
}

}  // namespace

TEST(Remote, ABridgeForwardsToAnEndpointWithTheKeyAndManyInFlight) {
  ::setenv("TANDEM_TEST_API_KEY", "sk-never-log-me-42", 1);
  Endpoint endpoint({"--delay", "0.2", "--require-key", "sk-never-log-me-42"});
  const auto body =
      remote(endpoint.url(), "api_key_env = \"TANDEM_TEST_API_KEY\"\nmax_in_flight = 4\n");
  with_session("remote", body, [](tandem::Session& s) {
    auto& c = s.client();
    c.wait_ready("double", 60);
    std::vector<tandem::InferHandle> flight;
    for (int k = 0; k < 12; ++k) {
      flight.push_back(c.infer_async(
          "double", {{"x", tandem::Tensor::from(std::vector<double>{double(k)}, {1, 1})}}));
    }
    for (int k = 0; k < 12; ++k)
      EXPECT_EQ(flight[k].wait()[0].tensor.to_vector<double>()[0], 2.0 * k);
  });
  if (world_rank() != 0) return;
  const auto stats = endpoint.stats();
  EXPECT_GE(stats["max_concurrent"].get<int>(), 2) << "requests did not overlap";
  EXPECT_LE(stats["max_concurrent"].get<int>(), 4) << "max_in_flight was not honoured";
  EXPECT_EQ(stats["authorization"].back(), "Bearer sk-never-log-me-42");
  // The key reached the endpoint, and nothing under the run directory.
  EXPECT_FALSE(file_tree_contains(fs::path(shared_dir()) / "run-remote", "sk-never-log-me-42"));
}

TEST(Remote, AnEndpointThatIsDownFailsTheServiceWithTheCause) {
  with_session(
      "remote-down", remote("http://127.0.0.1:1", "retries = 1\n"), [](tandem::Session& s) {
        const std::string why = error_of([&] { s.client().wait_ready("double", 60); });
        EXPECT_NE(why.find("endpoint http://127.0.0.1:1 is not ready"), std::string::npos) << why;
        EXPECT_NE(why.find("Couldn't connect"), std::string::npos) << why;
      });
}

TEST(Remote, AMissingApiKeyIsNamed) {
  ::unsetenv("TANDEM_TEST_NO_SUCH_KEY");
  with_session(
      "remote-nokey", remote("http://127.0.0.1:1", "api_key_env = \"TANDEM_TEST_NO_SUCH_KEY\"\n"),
      [](tandem::Session& s) {
        const std::string why = error_of([&] { s.client().wait_ready("double", 60); });
        EXPECT_NE(why.find("TANDEM_TEST_NO_SUCH_KEY (api_key_env) is not set"), std::string::npos)
            << why;
      });
}

TEST(Remote, OpenAiServicesAnswerJsonCalls) {
  ::setenv("TANDEM_TEST_OPENAI_KEY", "sk-openai-secret-7", 1);
  Endpoint endpoint({"--fail-first", "2"}, TANDEM_TEST_OPENAI_SERVER);
  const auto body = remote(endpoint.url(),
                           "protocol = \"openai\"\napi_key_env = \"TANDEM_TEST_OPENAI_KEY\"\n"
                           "retries = 3\n");
  with_session("openai", body, [](tandem::Session& s) {
    auto& c = s.client();
    c.wait_ready("double", 60);
    const auto answer = nlohmann::json::parse(
        c.call("double", R"({"model":"mock-llm","messages":[{"role":"user","content":"hello"}]})"));
    EXPECT_EQ(answer["choices"][0]["message"]["content"], "echo: hello");
    // Many at once.
    std::vector<tandem::CallHandle> flight;
    for (int k = 0; k < 8; ++k) {
      flight.push_back(c.call_async(
          "double", R"({"messages":[{"role":"user","content":"q)" + std::to_string(k) + R"("}]})"));
    }
    for (int k = 0; k < 8; ++k) {
      EXPECT_EQ(nlohmann::json::parse(flight[k].wait())["choices"][0]["message"]["content"],
                "echo: q" + std::to_string(k));
    }
    const auto emb =
        nlohmann::json::parse(c.call("double", R"({"input":"abcd"})", "/v1/embeddings"));
    EXPECT_EQ(emb["data"][0]["embedding"][0], 4);
    // 500s are retried until they pass.
    EXPECT_EQ(
        nlohmann::json::parse(c.call("double", R"({"messages":[{"role":"user","content":"x"}]})",
                                     "/v1/flaky"))["choices"][0]["message"]["content"],
        "echo: x");
    // What the endpoint gets wrong is said plainly.
    const std::string bad = error_of([&] { c.call("double", "{}", "/v1/broken"); });
    EXPECT_NE(bad.find("the answer is not valid JSON"), std::string::npos) << bad;
    const std::string rejected = error_of([&] { c.call("double", R"({"nope":1})"); });
    EXPECT_NE(rejected.find("HTTP 400"), std::string::npos) << rejected;
    EXPECT_NE(rejected.find("messages is required"), std::string::npos) << rejected;
    // Tensors do not go to an OpenAI service.
    const std::string wrong = error_of([&] {
      c.infer("double", tandem::Tensor::from(std::vector<float>{1}, {1, 1}));
    });
    EXPECT_NE(wrong.find("send JSON with client.call()"), std::string::npos) << wrong;
  });
  if (world_rank() != 0) return;
  EXPECT_EQ(endpoint.stats()["authorization"][0], "Bearer sk-openai-secret-7");
  EXPECT_FALSE(file_tree_contains(fs::path(shared_dir()) / "run-openai", "sk-openai-secret-7"));
}

TEST(Process, AnOpenAiModelServerStartedByTheJobAnswersCalls) {
  const std::string body = std::string("[[service]]\nname = \"llm\"\nbackend = \"process\"\n") +
                           "protocol = \"openai\"\ncommand = [\"/usr/bin/python3\", \"" +
                           TANDEM_TEST_OPENAI_SERVER + "\", \"--port\", \"{port}\"]\n";
  with_session("process-openai", body, [](tandem::Session& s) {
    auto& c = s.client();
    c.wait_ready("llm", 60);
    const auto answer = nlohmann::json::parse(
        c.call("llm", R"({"messages":[{"role":"user","content":"in the job"}]})"));
    EXPECT_EQ(answer["choices"][0]["message"]["content"], "echo: in the job");
  });
}

TEST(Remote, DnsAndTlsFailuresSayWhatFailed) {
  with_session("remote-dns", remote("http://no-such-host.invalid", "retries = 0\n"),
               [](tandem::Session& s) {
                 const std::string why = error_of([&] { s.client().wait_ready("double", 60); });
                 EXPECT_NE(why.find("no-such-host.invalid"), std::string::npos) << why;
                 EXPECT_NE(why.find("resolve"), std::string::npos) << why;
               });
  // TLS to a server that speaks plain HTTP: the handshake fails.
  Endpoint endpoint({});
  const std::string https = "https" + endpoint.url().substr(4);
  with_session("remote-tls", remote(https, "retries = 0\n"), [](tandem::Session& s) {
    const std::string why = error_of([&] { s.client().wait_ready("double", 60); });
    EXPECT_NE(why.find("is not ready"), std::string::npos) << why;
    EXPECT_NE(why.find("SSL"), std::string::npos) << why;
  });
}
