// backend = "process": a model server (vLLM, Triton, Ollama, or anything
// that speaks KServe v2) started by the replica leader on its node, on a
// free loopback port, and asked over HTTP. It is READY when its readiness
// path answers 200 within start_timeout; it is probed every
// health_interval; when it dies it is started again, up to max_restarts,
// after which the service FAILS with the reason. At the end it gets
// SIGTERM, then SIGKILL.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "base/raise.hpp"
#include "exec/command.hpp"
#include "ml_ranks/backends/backend.hpp"
#include "ml_ranks/http/http_client.hpp"
#include "ml_ranks/http/kserve.hpp"
#include "tandem/error.hpp"

namespace tandem::detail {

namespace {

using clock_type = std::chrono::steady_clock;

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    if (fd >= 0) ::close(fd);
    raise<environment_error>("cannot find a free loopback port for the model server");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

class ProcessBackend : public Backend {
 public:
  ProcessBackend(const ServiceSpec& spec, const BackendContext& ctx) : spec_(spec), ctx_(ctx) {
    const auto dir = std::filesystem::path(ctx.run_dir) / "services" / spec.name;
    std::filesystem::create_directories(dir);
    log_stem_ = (dir / fmt::format("replica-{}-server", ctx.replica)).string();
    start_and_wait();
  }

  ~ProcessBackend() override { stop(); }

  void tick() override {
    if (!failure_.empty() || !server_) return;
    server_->progress();
    if (server_->finished()) {
      restart(fmt::format("the model server {}", describe_exit()));
      return;
    }
    if (clock_type::now() >= next_health_) {
      next_health_ = clock_type::now() + seconds(spec_.health_interval_s);
      HttpRequest probe = get(spec_.ready_path, 5.0);
      const HttpResponse r = send(std::move(probe));
      if (!r.ok()) spdlog::warn("service '{}': health check failed: {}", spec_.name, r.error);
    }
  }

  std::string failure() const override { return failure_; }

  bool takes_calls() const override { return spec_.protocol == Protocol::openai; }

  void call(const std::string& path, const std::string& body, CallDone done) override {
    if (!failure_.empty()) {
      done({}, failure_);
      return;
    }
    HttpRequest r;
    r.url = url(path);
    r.body = body;
    r.headers = {"Content-Type: application/json"};
    r.timeout_s = spec_.request_timeout_s;
    r.max_retries = spec_.retries;
    const HttpResponse resp = send(std::move(r));
    if (!resp.ok()) {
      tick();
      done({}, fmt::format("model server at {}: {}", base_url(), resp.error));
      return;
    }
    if (!nlohmann::json::accept(resp.body)) {
      done({}, fmt::format("model server at {}{}: the answer is not valid JSON", base_url(), path));
      return;
    }
    done(std::string(resp.body), {});
  }

  TensorList infer(const TensorList& inputs) override {
    if (!failure_.empty()) throw model_error(failure_);
    if (spec_.protocol == Protocol::openai) {
      throw argument_error("this service speaks the OpenAI protocol: send JSON with client.call()");
    }
    std::vector<std::string> outputs;
    for (const auto& o : spec_.outputs) outputs.push_back(o.name);
    HttpRequest r;
    r.url = url(fmt::format("/v2/models/{}/infer", spec_.model_name));
    std::size_t header_length = 0;
    r.body = kserve::binary_request(inputs, outputs, "tandem", header_length);
    r.headers = {"Content-Type: application/octet-stream",
                 fmt::format("Inference-Header-Content-Length: {}", header_length)};
    r.timeout_s = spec_.request_timeout_s;
    r.max_retries = spec_.retries;
    const HttpResponse resp = send(std::move(r));
    if (!resp.ok()) {
      // A server that died mid-request is started again for the next one.
      tick();
      raise<model_error>(fmt::format("model server at {}: {}", base_url(), resp.error));
    }
    std::optional<std::size_t> response_header;
    if (auto it = resp.headers.find("inference-header-content-length"); it != resp.headers.end()) {
      response_header = std::stoul(it->second);
    }
    TensorList out;
    std::string why;
    if (!kserve::parse_response(resp.body, response_header, out, why)) {
      raise<model_error>(fmt::format("model server at {}: {}", base_url(), why));
    }
    return out;
  }

 private:
  static clock_type::duration seconds(double s) {
    return std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(s));
  }

  std::string base_url() const { return fmt::format("http://127.0.0.1:{}", port_); }
  std::string url(const std::string& path) const { return base_url() + path; }

  HttpRequest get(const std::string& path, double timeout) const {
    HttpRequest r;
    r.method = "GET";
    r.url = url(path);
    r.timeout_s = timeout;
    r.max_retries = 0;
    return r;
  }

  HttpResponse send(HttpRequest r) {
    // Keep relaying the server's output, so that it never blocks on a full pipe.
    return http_.fetch(std::move(r), [&] {
      if (server_) server_->progress();
    });
  }

  std::string describe_exit() const {
    const CommandResult& r = server_->result();
    return r.reason.empty() ? fmt::format("exited with code {}", r.exit_code) : r.reason;
  }

  void spawn() {
    port_ = free_port();
    CommandLaunch launch;
    for (std::string arg : spec_.command) {
      for (const auto& [key, value] : {std::pair<std::string, std::string>{"{host}", "127.0.0.1"},
                                       {"{port}", std::to_string(port_)}}) {
        for (auto p = arg.find(key); p != std::string::npos; p = arg.find(key, p + value.size())) {
          arg.replace(p, key.size(), value);
        }
      }
      launch.argv.push_back(std::move(arg));
    }
    launch.env = inherited_environment(true);
    for (const auto& [k, v] : spec_.env) launch.env.push_back(std::string(k).append("=").append(v));
    const std::string suffix = restarts_ > 0 ? fmt::format(".restart{}", restarts_) : "";
    launch.stdout_path = log_stem_ + suffix + ".out";
    launch.stderr_path = log_stem_ + suffix + ".err";
    launch.kill_grace_s = 10;
    server_ = std::make_unique<RunningCommand>(launch);
  }

  // Starts the server and waits until its readiness path answers 200.
  // @throws tandem::error with the reason it never became ready.
  void start_and_wait() {
    spawn();
    const auto deadline = clock_type::now() + seconds(spec_.start_timeout_s);
    for (;;) {
      server_->progress();
      if (server_->finished()) {
        raise<model_error>(
            fmt::format("the model server {} before it was ready (its output: {}.err)",
                        describe_exit(), log_stem_));
      }
      if (send(get(spec_.ready_path, 2.0)).ok()) break;
      if (clock_type::now() > deadline) {
        stop();
        raise<model_error>(
            fmt::format("the model server was not ready within {:g} s (no 200 from {}; "
                        "its output: {}.err)",
                        spec_.start_timeout_s, url(spec_.ready_path), log_stem_));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    next_health_ = clock_type::now() + seconds(spec_.health_interval_s);
    spdlog::info("service '{}' replica {}: model server ready at {}", spec_.name, ctx_.replica,
                 base_url());
  }

  void restart(const std::string& why) {
    if (restarts_ >= spec_.max_restarts) {
      failure_ = fmt::format("{}; it was restarted {} time(s), the most allowed (max_restarts)",
                             why, restarts_);
      spdlog::error("service '{}' replica {}: {}", spec_.name, ctx_.replica, failure_);
      return;
    }
    ++restarts_;
    spdlog::warn("service '{}' replica {}: {}; starting it again ({} of {})", spec_.name,
                 ctx_.replica, why, restarts_, spec_.max_restarts);
    try {
      start_and_wait();
    } catch (const std::exception& e) {
      restart(e.what());
    }
  }

  void stop() {
    if (!server_) return;
    server_->cancel("stopped at the end of the run");
    while (!server_->finished()) {
      server_->progress();
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    server_.reset();
  }

  const ServiceSpec& spec_;
  BackendContext ctx_;
  std::string log_stem_;
  int port_ = 0;
  int restarts_ = 0;
  std::string failure_;
  std::unique_ptr<RunningCommand> server_;
  HttpClient http_{64};
  clock_type::time_point next_health_{};
};

}  // namespace

std::unique_ptr<Backend> make_process_backend(const ServiceSpec& spec,
                                              const BackendContext& context) {
  return std::make_unique<ProcessBackend>(spec, context);
}

}  // namespace tandem::detail
