"""What the test HTTP servers share: a handler base that answers with a
body and headers, and serving on 127.0.0.1 with the chosen port written to
a file (written aside and renamed, so a reader never sees half of it)."""
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class QuietHandler(BaseHTTPRequestHandler):
    """No request log on stderr; reply() sends one whole answer."""

    protocol_version = "HTTP/1.1"
    # The head and the body go out in separate writes: with Nagle's
    # algorithm the body would wait for the client's delayed ACK, 40 ms a
    # request on a kept-alive connection.
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def reply(self, code, body=b"", headers=None):
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve(handler, port=0, port_file=""):
    """Serves @handler on 127.0.0.1:@port (0: any free one) until killed."""
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    if port_file:
        with open(port_file + ".tmp", "w") as f:
            f.write(str(server.server_address[1]))
        os.rename(port_file + ".tmp", port_file)
    server.serve_forever()
