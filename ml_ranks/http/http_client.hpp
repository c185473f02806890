#pragma once
// Many HTTP requests in flight from one thread, through the libcurl multi
// interface: keep-alive connections reused across requests, a cap on
// requests in flight, a timeout per request, and retries with exponential
// backoff and full jitter on connection errors, timeouts, 429 and 5xx
// (honouring Retry-After). TLS certificates are verified unless told
// otherwise. Headers are never logged: they may hold an API key.
//
// The bridge rank (remote services) and process services (model servers
// inside the job) both send their requests through it.

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace tandem::detail {

struct HttpRequest {
  std::string method = "POST";  // GET or POST
  std::string url;
  std::vector<std::string> headers;  // "Name: value"
  std::string body;
  double timeout_s = 30;
  int max_retries = 3;     // further attempts after a retryable failure
  double backoff_s = 0.1;  // first retry's base delay; doubles each time
  double max_backoff_s = 10;
  bool verify_tls = true;
  std::string ca_bundle;   // empty: the system's
  int trace_service = -1;  // for the trace's bridge_retry events
  std::int64_t trace_id = 0;
};

struct HttpResponse {
  long status = 0;  // HTTP status; 0 when no response came
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string error;                           // why there is no usable response; empty on success
  int attempts = 0;
  bool ok() const { return error.empty() && status >= 200 && status < 300; }
};

class HttpClient {
 public:
  using Callback = std::function<void(HttpResponse&&)>;

  /// @param max_in_flight most transfers at once; more wait in a queue.
  explicit HttpClient(int max_in_flight = 64);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  /// Queues a request; @p done runs (from progress()) exactly once.
  void submit(HttpRequest request, Callback done);
  /// Moves transfers along, waiting up to @p wait_ms for network activity;
  /// runs the callbacks of finished requests. Returns how many finished.
  int progress(int wait_ms);
  /// Requests queued, in flight or waiting to retry.
  std::size_t pending() const;
  /// Runs progress() until nothing is pending.
  void drain();
  /// Sends @p request and waits for its response, other transfers moving
  /// along meanwhile; @p between (if any) runs between waits of at most
  /// @p wait_ms.
  HttpResponse fetch(HttpRequest request, const std::function<void()>& between = {},
                     int wait_ms = 20);

 private:
  struct Transfer;
  void start(std::unique_ptr<Transfer> t);
  void finish(Transfer* t, int curl_code);
  void start_due();

  void* multi_ = nullptr;  // CURLM*
  int max_in_flight_;
  std::map<void*, std::unique_ptr<Transfer>> active_;  // by CURL*
  std::deque<std::unique_ptr<Transfer>> queued_;
  std::vector<std::unique_ptr<Transfer>> retrying_;  // with a time to start again
};

/// The delay before retry @p attempt (1-based) of a request: exponential
/// with full jitter, or Retry-After when the server sent one.
double retry_delay(const HttpRequest& r, int attempt, const HttpResponse& last);

}  // namespace tandem::detail
