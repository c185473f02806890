// The inference-heavy phase of bench/elastic.py: instance i sends
// `requests` one-row requests to `service`, keeping `window` of them in
// flight, so that a few workers can keep many replicas busy.
#include <deque>
#include <string>
#include <vector>

#include <tandem/tandem.hpp>

TANDEM_TASK(elastic_client) {
  tandem::Client& client = ctx.client();
  const std::string service = ctx.arg_string("service", "surrogate");
  client.wait_ready(service, 120);
  const long long requests = ctx.arg_int("requests", 100);
  const auto window = static_cast<std::size_t>(ctx.arg_int("window", 8));
  std::vector<float> row(4, static_cast<float>(ctx.index()));
  const tandem::Tensor x = tandem::Tensor::from(row, {1, 4});
  std::deque<tandem::InferHandle> in_flight;
  for (long long k = 0; k < requests; ++k) {
    if (in_flight.size() >= window) {
      in_flight.front().wait();
      in_flight.pop_front();
    }
    in_flight.push_back(client.infer_async(service, {{"x", x}}));
  }
  for (auto& h : in_flight) h.wait();
}
