"""An OpenAI-compatible server for the tests, on 127.0.0.1 only.

  GET  /v1/models             the model list (readiness)
  POST /v1/chat/completions   answers "echo: <last user message>"
  POST /v1/embeddings         [len(input), 1.0]
  POST /v1/broken             a body that is not JSON
  POST /v1/flaky              500 the first --fail-first times, then like chat
  GET  /stats                 {"total", "authorization"}

  openai_test_server.py [--port-file F | --port P] [--fail-first N]
"""
import argparse
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
stats = {"total": 0, "authorization": [], "failed": 0}
args = None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def reply(self, code, obj=None, raw=None):
        body = raw if raw is not None else json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/v1/models":
            self.reply(200, {"object": "list", "data": [{"id": "mock-llm", "object": "model"}]})
        elif self.path == "/stats":
            with lock:
                self.reply(200, {"total": stats["total"], "authorization": stats["authorization"]})
        else:
            self.reply(404, {"error": {"message": "no such path"}})

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with lock:
            stats["total"] += 1
            if self.headers.get("Authorization"):
                stats["authorization"].append(self.headers["Authorization"])
        if self.path == "/v1/broken":
            self.reply(200, raw=b"{not json at all")
            return
        if self.path == "/v1/flaky":
            with lock:
                stats["failed"] += 1
                fail = stats["failed"] <= args.fail_first
            if fail:
                self.reply(500, {"error": {"message": "injected"}})
                return
        try:
            req = json.loads(body)
        except ValueError:
            self.reply(400, {"error": {"message": "body is not JSON"}})
            return
        if self.path in ("/v1/chat/completions", "/v1/flaky"):
            if "messages" not in req:
                self.reply(400, {"error": {"message": "messages is required"}})
                return
            last = req["messages"][-1]["content"]
            self.reply(200, {"id": "cmpl-1", "object": "chat.completion", "model": req.get("model", ""),
                             "choices": [{"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": "echo: " + last}}]})
        elif self.path == "/v1/embeddings":
            self.reply(200, {"object": "list", "data": [{"embedding": [len(req.get("input", "")), 1.0]}]})
        else:
            self.reply(404, {"error": {"message": "no such path"}})


def main():
    global args
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", default="")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--fail-first", type=int, default=0)
    args = ap.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write(str(server.server_address[1]))
        os.rename(args.port_file + ".tmp", args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
