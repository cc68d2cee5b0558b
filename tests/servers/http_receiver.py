#!/usr/bin/env python3
"""A real HTTP receiver for reclab's webhook tests (stdlib only).

Usage: http_receiver.py PORT OUTFILE [STATUS]

Every POST is answered with STATUS (default 204) and appended to OUTFILE as one JSON line
(path, headers with lowercase names, body). Prints "ready" once listening; runs until killed.
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, OUT = int(sys.argv[1]), sys.argv[2]
STATUS = int(sys.argv[3]) if len(sys.argv) > 3 else 204


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length).decode("utf-8", "replace")
        with open(OUT, "a", encoding="utf-8") as f:
            record = {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
            f.write(json.dumps(record) + "\n")
        self.send_response(STATUS)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
print("ready", flush=True)
server.serve_forever()
