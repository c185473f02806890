// A fast OpenAI-style endpoint on 127.0.0.1 for bench/bridge.py: a
// cpp-httplib server with a thread pool that answers every chat completion
// with a fixed small JSON. Writes its port to the file named by argv[1].

#include <httplib.h>

#include <fstream>
#include <string>

int main(int argc, char** argv) {
  httplib::Server server;
  // A thread per kept-alive connection: the benchmark keeps 64 open.
  server.new_task_queue = [] { return new httplib::ThreadPool(96); };
  server.set_tcp_nodelay(true);
  // Keep connections for the whole run (cpp-httplib closes one after 5
  // requests by default, which turns a keep-alive benchmark into a connect one).
  server.set_keep_alive_max_count(1000000);
  server.set_keep_alive_timeout(60);
  server.Get("/v1/models", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"object":"list","data":[{"id":"bench"}]})", "application/json");
  });
  server.Post("/v1/chat/completions", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(
        R"({"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"ok"}}]})",
        "application/json");
  });
  const int port = server.bind_to_any_port("127.0.0.1");
  std::ofstream(std::string(argv[1])) << port;
  server.listen_after_bind();
}
