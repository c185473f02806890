"""A KServe v2 model server for the tests, on 127.0.0.1 only: model "double"
returns y = 2 * x for every input x (JSON data or the binary-data
extension). Faults on request:

  kserve_test_server.py --port P [--exit-after N] [--never-ready]
                        [--exit-at-once CODE] [--ready-after S]
                        [--delay S] [--require-key KEY] [--port-file F]

GET /stats answers {"max_concurrent", "total", "authorization"}.
"""
import argparse
import json
import os
import struct
import sys
import threading
import time

from local_http import QuietHandler, serve

SIZES = {"FP32": ("f", 4), "FP64": ("d", 8), "INT32": ("i", 4), "INT64": ("q", 8)}
args = None
started = time.time()
served = [0]
lock = threading.Lock()
stats = {"concurrent": 0, "max_concurrent": 0, "total": 0, "authorization": []}


class Handler(QuietHandler):

    def do_GET(self):
        ready = not args.never_ready and time.time() - started >= args.ready_after
        if self.path in ("/v2/health/ready", "/v2/models/double/ready"):
            self.reply(200 if ready else 503, b"")
        elif self.path == "/stats":
            with lock:
                s = {k: stats[k] for k in ("max_concurrent", "total", "authorization")}
            self.reply(200, json.dumps(s).encode())
        else:
            self.reply(404, b"")

    def do_POST(self):
        if self.path != "/v2/models/double/infer":
            self.reply(404, json.dumps({"error": "no such model"}).encode())
            return
        with lock:
            served[0] += 1
            if args.exit_after and served[0] > args.exit_after:
                os._exit(9)  # dies mid-run, without a word
            stats["total"] += 1
            stats["concurrent"] += 1
            stats["max_concurrent"] = max(stats["max_concurrent"], stats["concurrent"])
            if self.headers.get("Authorization"):
                stats["authorization"].append(self.headers["Authorization"])
        try:
            self.infer()
        finally:
            with lock:
                stats["concurrent"] -= 1

    def infer(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if args.require_key and self.headers.get("Authorization") != "Bearer " + args.require_key:
            self.reply(401, json.dumps({"error": "bad or missing API key"}).encode())
            return
        if args.delay:
            time.sleep(args.delay)
        hlen = self.headers.get("Inference-Header-Content-Length")
        header = json.loads(body[: int(hlen)] if hlen else body)
        offset = int(hlen) if hlen else 0
        outputs, blobs = [], []
        for inp in header["inputs"]:
            fmt, size = SIZES[inp["datatype"]]
            n = 1
            for d in inp["shape"]:
                n *= d
            if "parameters" in inp and "binary_data_size" in inp["parameters"]:
                values = struct.unpack(f"<{n}{fmt}", body[offset: offset + n * size])
                offset += n * size
            else:
                values = inp["data"]
            doubled = [2 * v for v in values]
            out = {"name": inp["name"], "shape": inp["shape"], "datatype": inp["datatype"]}
            if hlen:
                blob = struct.pack(f"<{n}{fmt}", *doubled)
                out["parameters"] = {"binary_data_size": len(blob)}
                blobs.append(blob)
            else:
                out["data"] = doubled
            outputs.append(out)
        head = json.dumps({"model_name": "double", "outputs": outputs}).encode()
        if hlen:
            self.reply(200, head + b"".join(blobs), {"Inference-Header-Content-Length": str(len(head))})
        else:
            self.reply(200, head)


def main():
    global args
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--exit-after", type=int, default=0)
    ap.add_argument("--never-ready", action="store_true")
    ap.add_argument("--exit-at-once", type=int, default=None)
    ap.add_argument("--ready-after", type=float, default=0.0)
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--require-key", default="")
    ap.add_argument("--port-file", default="")
    args = ap.parse_args()
    print(f"kserve test server on port {args.port}", flush=True)
    if args.exit_at_once is not None:
        sys.exit(args.exit_at_once)
    serve(Handler, args.port, args.port_file)


if __name__ == "__main__":
    main()
