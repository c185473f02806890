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
import threading

from local_http import QuietHandler, serve

lock = threading.Lock()
stats = {"total": 0, "authorization": [], "failed": 0}
args = None


class Handler(QuietHandler):
    def reply_json(self, code, obj=None, raw=None):
        body = raw if raw is not None else json.dumps(obj).encode()
        self.reply(code, body, {"Content-Type": "application/json"})

    def do_GET(self):
        if self.path == "/v1/models":
            self.reply_json(200, {"object": "list", "data": [{"id": "mock-llm", "object": "model"}]})
        elif self.path == "/stats":
            with lock:
                self.reply_json(200, {"total": stats["total"], "authorization": stats["authorization"]})
        else:
            self.reply_json(404, {"error": {"message": "no such path"}})

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with lock:
            stats["total"] += 1
            if self.headers.get("Authorization"):
                stats["authorization"].append(self.headers["Authorization"])
        if self.path == "/v1/broken":
            self.reply_json(200, raw=b"{not json at all")
            return
        if self.path == "/v1/flaky":
            with lock:
                stats["failed"] += 1
                fail = stats["failed"] <= args.fail_first
            if fail:
                self.reply_json(500, {"error": {"message": "injected"}})
                return
        try:
            req = json.loads(body)
        except ValueError:
            self.reply_json(400, {"error": {"message": "body is not JSON"}})
            return
        if self.path in ("/v1/chat/completions", "/v1/flaky"):
            if "messages" not in req:
                self.reply_json(400, {"error": {"message": "messages is required"}})
                return
            last = req["messages"][-1]["content"]
            self.reply_json(200, {"id": "cmpl-1", "object": "chat.completion", "model": req.get("model", ""),
                             "choices": [{"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": "echo: " + last}}]})
        elif self.path == "/v1/embeddings":
            self.reply_json(200, {"object": "list", "data": [{"embedding": [len(req.get("input", "")), 1.0]}]})
        else:
            self.reply_json(404, {"error": {"message": "no such path"}})


def main():
    global args
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", default="")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--fail-first", type=int, default=0)
    args = ap.parse_args()
    serve(Handler, args.port, args.port_file)


if __name__ == "__main__":
    main()
