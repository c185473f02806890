// backend = "remote": an inference endpoint outside the job (KServe v2),
// reached over HTTPS by the bridge rank that serves the service. Requests go
// out as they come, unbatched, up to max_in_flight at once over kept-alive
// connections, with retries, backoff and Retry-After from HttpClient. The
// API key is read from the environment variable the workflow names and is
// only ever put in the Authorization header: never logged, never written.

#include <cstdlib>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "base/raise.hpp"
#include "ml_ranks/bridge/remote_backend.hpp"
#include "ml_ranks/http/http_client.hpp"
#include "ml_ranks/http/kserve.hpp"
#include "tandem/error.hpp"

namespace tandem::detail {

namespace {

class RemoteBackend : public Backend {
 public:
  RemoteBackend(const ServiceSpec& spec, int service)
      : spec_(spec), service_(service), http_(spec.max_in_flight) {
    if (!spec.api_key_env.empty()) {
      const char* key = std::getenv(spec.api_key_env.c_str());
      if (!key || !*key) {
        raise<environment_error>(
            fmt::format("the environment variable {} (api_key_env) is not set; export "
                        "the endpoint's API key in it",
                        spec.api_key_env));
      }
      auth_ = std::string("Authorization: Bearer ") + key;
    }
    HttpRequest probe = base_request("GET", spec_.ready_path);
    const HttpResponse r = http_.fetch(std::move(probe));
    if (!r.ok())
      raise<model_error>(fmt::format("endpoint {} is not ready: {}", spec_.url, r.error));
    spdlog::info("service '{}': endpoint {} is ready", spec_.name, spec_.url);
  }

  bool asynchronous() const override { return true; }
  bool takes_calls() const override { return spec_.protocol == Protocol::openai; }

  void call(const std::string& path, const std::string& body, CallDone done) override {
    if (spec_.protocol != Protocol::openai) {
      done({}, "this service speaks KServe v2: send tensors with infer()");
      return;
    }
    HttpRequest r = base_request("POST", path);
    r.body = body;
    r.headers.push_back("Content-Type: application/json");
    http_.submit(std::move(r), [this, path, done = std::move(done)](HttpResponse&& resp) {
      if (!resp.ok()) {
        done({}, fmt::format("endpoint {}: {}", spec_.url, resp.error));
        return;
      }
      if (!nlohmann::json::accept(resp.body)) {
        done({}, fmt::format("endpoint {}{}: the answer is not valid JSON ({} bytes: {})",
                             spec_.url, path, resp.body.size(), resp.body.substr(0, 80)));
        return;
      }
      done(std::move(resp.body), {});
    });
  }

  void submit(const TensorList& inputs, Done done) override {
    if (spec_.protocol == Protocol::openai) {
      done({}, "this service speaks the OpenAI protocol: send JSON with client.call()");
      return;
    }
    std::vector<std::string> outputs;
    for (const auto& o : spec_.outputs) outputs.push_back(o.name);
    HttpRequest r = base_request("POST", fmt::format("/v2/models/{}/infer", spec_.model_name));
    std::size_t header_length = 0;
    try {
      r.body = kserve::binary_request(inputs, outputs, "tandem", header_length);
    } catch (const std::exception& e) {
      done({}, e.what());
      return;
    }
    r.headers.push_back("Content-Type: application/octet-stream");
    r.headers.push_back(fmt::format("Inference-Header-Content-Length: {}", header_length));
    http_.submit(std::move(r), [this, done = std::move(done)](HttpResponse&& resp) {
      if (!resp.ok()) {
        done({}, fmt::format("endpoint {}: {}", spec_.url, resp.error));
        return;
      }
      std::optional<std::size_t> header;
      if (auto it = resp.headers.find("inference-header-content-length");
          it != resp.headers.end()) {
        header = std::strtoull(it->second.c_str(), nullptr, 10);
      }
      TensorList out;
      std::string why;
      if (!kserve::parse_response(resp.body, header, out, why)) {
        done({}, fmt::format("endpoint {}: {}", spec_.url, why));
        return;
      }
      done(std::move(out), {});
    });
  }

  int progress(int wait_ms) override { return http_.progress(wait_ms); }
  std::size_t pending() const override { return http_.pending(); }

  TensorList infer(const TensorList& inputs) override {
    TensorList result;
    std::string failure;
    bool finished = false;
    submit(inputs, [&](TensorList&& out, std::string err) {
      result = std::move(out);
      failure = std::move(err);
      finished = true;
    });
    while (!finished) http_.progress(20);
    if (!failure.empty()) throw model_error(failure);
    return result;
  }

 private:
  HttpRequest base_request(const char* method, const std::string& path) const {
    HttpRequest r;
    r.method = method;
    r.url = spec_.url + path;
    r.timeout_s = spec_.request_timeout_s;
    r.max_retries = spec_.retries;
    r.verify_tls = spec_.verify_tls;
    r.ca_bundle = spec_.ca_bundle;
    if (!auth_.empty()) r.headers.push_back(auth_);
    r.trace_service = service_;
    r.trace_id = ++sent_;
    return r;
  }

  const ServiceSpec& spec_;
  int service_;
  mutable std::int64_t sent_ = 0;  // HTTP requests made, numbering them in the trace
  std::string auth_;               // the header line; never logged
  HttpClient http_;
};

}  // namespace

std::unique_ptr<Backend> make_remote_backend(const ServiceSpec& spec, int service) {
  return std::make_unique<RemoteBackend>(spec, service);
}

}  // namespace tandem::detail
