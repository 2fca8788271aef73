"""A local OTLP/HTTP receiver for tests: answers a script of responses and
keeps every request it got.

  otlp_receiver.py DIR SCRIPT [PORT]

SCRIPT is a comma-separated list of responses, used in order (the last one
repeats): `200`, `400`, `503`, `503+ra1` (Retry-After: 1), `503+radate`
(Retry-After as an HTTP date two seconds ahead), `200+partial` (a partial
success rejecting one span), `200+hostile` (the same, with a message that
forges a log line and runs 100,000 characters long), `slow500` (wait 500 ms,
then 200).
Each request is written to DIR/N.bin (the body as received) and DIR/N.json
(path, headers, time). The first line printed is the port.
"""
import email.utils
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

folder, script = sys.argv[1], sys.argv[2].split(",")
port = int(sys.argv[3]) if len(sys.argv) > 3 else 0
lock = threading.Lock()
count = [0]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with lock:
            index = count[0]
            count[0] += 1
        with open(os.path.join(folder, f"{index}.bin"), "wb") as f:
            f.write(body)
        with open(os.path.join(folder, f"{index}.json"), "w") as f:
            json.dump({"path": self.path, "headers": dict(self.headers.items()), "time": time.time()}, f)
        action = script[min(index, len(script) - 1)]
        headers = {}
        payload = b""
        if action.startswith("slow"):
            time.sleep(int(action[4:]) / 1000)
            status = 200
        elif action in ("200+partial", "200+hostile"):
            status = 200
            response = ExportTraceServiceResponse()
            response.partial_success.rejected_spans = 1
            if action == "200+partial":
                response.partial_success.error_message = "span too old"
            else:
                # A line forged after a newline, a terminal escape, and 100,000 more characters.
                response.partial_success.error_message = "too old\n2026-01-01 error FORGED\x1b[2J" + "x" * 100000
            payload = response.SerializeToString()
        else:
            status = int(action.split("+")[0])
            if action.endswith("+ra1"):
                headers["Retry-After"] = "1"
            elif action.endswith("+radate"):
                headers["Retry-After"] = email.utils.formatdate(time.time() + 2, usegmt=True)
        self.send_response(status)
        self.send_header("Content-Type", "application/x-protobuf")
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


ThreadingHTTPServer.allow_reuse_address = True
ThreadingHTTPServer.daemon_threads = True
server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
