"""An HTTP server for the tests, on 127.0.0.1 only, that misbehaves on
request. Writes its port to the file named by the first argument.

  GET  /ok                          200 "ok"
  POST /echo                        200, the body back
  GET  /status/CODE?times=N&key=K   CODE the first N times for key K, then 200
  GET  /retry-after?seconds=S&key=K 429 with Retry-After: S the first time, then 200
  GET  /slow?seconds=S              200 after S seconds
  GET  /stats                       {"max_concurrent", "total", "authorization"}
  GET  /quit                        stops the server
"""
import json
import sys
import threading
import time
from urllib.parse import parse_qs, urlparse

from local_http import QuietHandler, serve

lock = threading.Lock()
state = {"concurrent": 0, "max_concurrent": 0, "total": 0, "authorization": [], "counts": {}}


class Handler(QuietHandler):

    def handle_any(self):
        url = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        with lock:
            state["concurrent"] += 1
            state["total"] += 1
            state["max_concurrent"] = max(state["max_concurrent"], state["concurrent"])
            if self.headers.get("Authorization"):
                state["authorization"].append(self.headers["Authorization"])
        try:
            length = int(self.headers.get("Content-Length", 0))
            body = self.rfile.read(length) if length else b""
            if url.path == "/ok":
                self.reply(200, b"ok")
            elif url.path == "/echo":
                self.reply(200, body)
            elif url.path.startswith("/status/"):
                code = int(url.path.split("/")[2])
                key = q.get("key", "")
                with lock:
                    n = state["counts"].get(key, 0)
                    state["counts"][key] = n + 1
                if n < int(q.get("times", 1)):
                    self.reply(code, b"injected failure")
                else:
                    self.reply(200, b"recovered")
            elif url.path == "/retry-after":
                key = q.get("key", "")
                with lock:
                    n = state["counts"].get(key, 0)
                    state["counts"][key] = n + 1
                if n == 0:
                    self.reply(429, b"slow down", {"Retry-After": q.get("seconds", "1")})
                else:
                    self.reply(200, b"thanks for waiting")
            elif url.path == "/slow":
                time.sleep(float(q.get("seconds", "1")))
                self.reply(200, b"late")
            elif url.path == "/stats":
                with lock:
                    s = {k: state[k] for k in ("max_concurrent", "total", "authorization")}
                self.reply(200, json.dumps(s).encode())
            elif url.path == "/quit":
                self.reply(200, b"bye")
                threading.Thread(target=self.server.shutdown).start()
            else:
                self.reply(404, b"no such path")
        finally:
            with lock:
                state["concurrent"] -= 1

    do_GET = handle_any
    do_POST = handle_any


def main():
    serve(Handler, port_file=sys.argv[1])


if __name__ == "__main__":
    main()
