#!/usr/bin/env python3
"""Webhook sink (lab only): stores the JSON body of every POST as one file.

usage: webhook-sink.py ADDRESS PORT DIRECTORY

Alertmanager's page receiver posts here in the lab, standing in for a pager or
chat service; the end-to-end tests read the files. Bodies over 1 MiB are
refused with 413, anything but POST with 405.
"""
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 1 << 20


class Handler(BaseHTTPRequestHandler):
    server_version = "webhook-sink"

    def do_POST(self):  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.send_error(413)
            return
        body = self.rfile.read(length)
        try:
            json.loads(body or b"null")
        except ValueError:
            self.send_error(400, "body is not JSON")
            return
        name = f"{time.time_ns()}-{os.getpid()}.json"
        tmp = os.path.join(self.server.directory, "." + name)
        with open(tmp, "wb") as f:
            f.write(body)
        os.replace(tmp, os.path.join(self.server.directory, name))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):  # noqa: N802
        self.send_error(405)


def main():
    address, port, directory = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    server = ThreadingHTTPServer((address, port), Handler)
    server.directory = directory
    server.serve_forever()


if __name__ == "__main__":
    main()
