#include "ml_ranks/http/http_client.hpp"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <random>

#include <fmt/format.h>

#include "tandem/error.hpp"
#include "trace/trace.hpp"

namespace tandem::detail {

namespace {

using clock_type = std::chrono::steady_clock;

void global_init() {
  static const bool done = [] {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return true;
  }();
  (void)done;
}

std::size_t on_body(char* data, std::size_t size, std::size_t n, void* user) {
  static_cast<std::string*>(user)->append(data, size * n);
  return size * n;
}

std::size_t on_header(char* data, std::size_t size, std::size_t n, void* user) {
  auto* headers = static_cast<std::map<std::string, std::string>*>(user);
  std::string line(data, size * n);
  const auto colon = line.find(':');
  if (colon != std::string::npos) {
    std::string name = line.substr(0, colon);
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    std::string value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(" \t"));
    value.erase(value.find_last_not_of(" \t\r\n") + 1);
    (*headers)[name] = value;
  } else if (line.rfind("HTTP/", 0) == 0) {
    headers->clear();  // a new response (after a 100 Continue or a redirect)
  }
  return size * n;
}

bool retryable(int curl_code, long status) {
  if (curl_code != CURLE_OK) {
    return curl_code == CURLE_COULDNT_CONNECT || curl_code == CURLE_COULDNT_RESOLVE_HOST ||
           curl_code == CURLE_OPERATION_TIMEDOUT || curl_code == CURLE_SEND_ERROR ||
           curl_code == CURLE_RECV_ERROR || curl_code == CURLE_GOT_NOTHING ||
           curl_code == CURLE_PARTIAL_FILE;
  }
  return status == 429 || status >= 500;
}

}  // namespace

struct HttpClient::Transfer {
  HttpRequest request;
  Callback done;
  HttpResponse response;
  CURL* easy = nullptr;
  curl_slist* headers = nullptr;
  clock_type::time_point not_before{};
  ~Transfer() {
    if (headers) curl_slist_free_all(headers);
    if (easy) curl_easy_cleanup(easy);
  }
};

double retry_delay(const HttpRequest& r, int attempt, const HttpResponse& last) {
  auto it = last.headers.find("retry-after");
  if (it != last.headers.end()) {
    try {
      return std::min(std::stod(it->second), 3600.0);
    } catch (...) {
      // An HTTP date: fall back to our own backoff.
    }
  }
  static thread_local std::mt19937_64 rng(std::random_device{}());
  const double cap = std::min(r.max_backoff_s, r.backoff_s * std::pow(2.0, attempt - 1));
  return std::uniform_real_distribution<double>(0.0, cap)(rng);
}

HttpClient::HttpClient(int max_in_flight) : max_in_flight_(std::max(1, max_in_flight)) {
  global_init();
  multi_ = curl_multi_init();
  if (!multi_) throw environment_error("libcurl: cannot create a multi handle");
  // Keep connections to each host open between requests.
  curl_multi_setopt(static_cast<CURLM*>(multi_), CURLMOPT_MAX_HOST_CONNECTIONS, max_in_flight_);
}

HttpClient::~HttpClient() {
  for (auto& [easy, t] : active_) curl_multi_remove_handle(static_cast<CURLM*>(multi_), easy);
  active_.clear();
  curl_multi_cleanup(static_cast<CURLM*>(multi_));
}

void HttpClient::submit(HttpRequest request, Callback done) {
  auto t = std::make_unique<Transfer>();
  t->request = std::move(request);
  t->done = std::move(done);
  queued_.push_back(std::move(t));
  start_due();
}

std::size_t HttpClient::pending() const {
  return active_.size() + queued_.size() + retrying_.size();
}

void HttpClient::start(std::unique_ptr<Transfer> t) {
  if (t->easy) {
    curl_easy_cleanup(t->easy);
    t->easy = nullptr;
  }
  if (t->headers) {
    curl_slist_free_all(t->headers);
    t->headers = nullptr;
  }
  ++t->response.attempts;
  t->response.body.clear();
  t->response.headers.clear();
  t->response.status = 0;
  CURL* e = curl_easy_init();
  t->easy = e;
  const HttpRequest& r = t->request;
  curl_easy_setopt(e, CURLOPT_URL, r.url.c_str());
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(r.timeout_s * 1000));
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(std::min(r.timeout_s, 10.0) * 1000));
  curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, r.verify_tls ? 1L : 0L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, r.verify_tls ? 2L : 0L);
  if (!r.ca_bundle.empty()) curl_easy_setopt(e, CURLOPT_CAINFO, r.ca_bundle.c_str());
  if (r.method == "GET") {
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
  } else {
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, r.body.data());
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(r.body.size()));
  }
  for (const auto& h : r.headers) t->headers = curl_slist_append(t->headers, h.c_str());
  // No "Expect: 100-continue" round trip for large bodies.
  t->headers = curl_slist_append(t->headers, "Expect:");
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &t->response.body);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, &t->response.headers);
  curl_easy_setopt(e, CURLOPT_PRIVATE, t.get());
  curl_multi_add_handle(static_cast<CURLM*>(multi_), e);
  active_.emplace(e, std::move(t));
}

void HttpClient::start_due() {
  const auto now = clock_type::now();
  for (auto it = retrying_.begin(); it != retrying_.end();) {
    if ((*it)->not_before <= now) {
      queued_.push_front(std::move(*it));
      it = retrying_.erase(it);
    } else {
      ++it;
    }
  }
  while (!queued_.empty() && static_cast<int>(active_.size()) < max_in_flight_) {
    auto t = std::move(queued_.front());
    queued_.pop_front();
    start(std::move(t));
  }
}

void HttpClient::finish(Transfer* t, int curl_code) {
  long status = 0;
  curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
  t->response.status = status;
  curl_multi_remove_handle(static_cast<CURLM*>(multi_), t->easy);
  auto node = active_.extract(t->easy);
  std::unique_ptr<Transfer> owned = std::move(node.mapped());
  const HttpRequest& r = owned->request;
  if (retryable(curl_code, status) && owned->response.attempts <= r.max_retries) {
    trace::record(trace::kBridgeRetry, r.trace_id, owned->response.attempts,
                  curl_code != CURLE_OK ? -curl_code : static_cast<std::int32_t>(status),
                  static_cast<std::int16_t>(r.trace_service));
    const double delay = retry_delay(r, owned->response.attempts, owned->response);
    owned->not_before = clock_type::now() + std::chrono::duration_cast<clock_type::duration>(
                                                std::chrono::duration<double>(delay));
    retrying_.push_back(std::move(owned));
    return;
  }
  HttpResponse& resp = owned->response;
  if (curl_code != CURLE_OK) {
    resp.error = fmt::format("{} {}: {} (after {} attempt{})", r.method, r.url,
                             curl_easy_strerror(static_cast<CURLcode>(curl_code)), resp.attempts,
                             resp.attempts == 1 ? "" : "s");
  } else if (status < 200 || status >= 300) {
    std::string excerpt = resp.body.substr(0, 200);
    resp.error = fmt::format("{} {}: HTTP {}{} (after {} attempt{})", r.method, r.url, status,
                             excerpt.empty() ? "" : ": " + excerpt, resp.attempts,
                             resp.attempts == 1 ? "" : "s");
  }
  owned->done(std::move(resp));
}

int HttpClient::progress(int wait_ms) {
  start_due();
  auto* m = static_cast<CURLM*>(multi_);
  int running = 0;
  curl_multi_perform(m, &running);
  int finished = 0;
  int left = 0;
  while (CURLMsg* msg = curl_multi_info_read(m, &left)) {
    if (msg->msg != CURLMSG_DONE) continue;
    Transfer* t = nullptr;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, reinterpret_cast<char**>(&t));
    finish(t, msg->data.result);
    ++finished;
  }
  if (finished == 0 && wait_ms > 0 && pending() > 0) {
    int timeout = wait_ms;
    const auto now = clock_type::now();
    for (const auto& t : retrying_) {
      const auto ms =
          std::chrono::duration_cast<std::chrono::milliseconds>(t->not_before - now).count();
      timeout = static_cast<int>(std::clamp<long long>(ms, 0, timeout));
    }
    curl_multi_poll(m, nullptr, 0, timeout, nullptr);
  }
  start_due();
  return finished;
}

HttpResponse HttpClient::fetch(HttpRequest request, const std::function<void()>& between,
                               int wait_ms) {
  HttpResponse out;
  bool done = false;
  submit(std::move(request), [&](HttpResponse&& resp) {
    out = std::move(resp);
    done = true;
  });
  while (!done) {
    progress(wait_ms);
    if (between) between();
  }
  return out;
}

void HttpClient::drain() {
  while (pending() > 0) progress(50);
}

}  // namespace tandem::detail
