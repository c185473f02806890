// The client of bench/paper/latency.py: instance i sends `requests`
// one-row requests, one at a time, to service "svc<i mod services>", as
// the seed paper's clients do; the breakdown comes from the trace.
#include <string>
#include <vector>

#include <tandem/tandem.hpp>

TANDEM_TASK(paper_client) {
  tandem::Client& client = ctx.client();
  const long long services = ctx.arg_int("services", 1);
  const std::string service = "svc" + std::to_string(ctx.index() % services);
  client.wait_ready(service, 120);
  const long long requests = ctx.arg_int("requests", 10);
  std::vector<float> row(4, static_cast<float>(ctx.index()));
  const tandem::Tensor x = tandem::Tensor::from(row, {1, 4});
  for (long long k = 0; k < requests; ++k) client.infer(service, {{"x", x}});
}
