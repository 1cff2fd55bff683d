"""A fault-injecting HTTP proxy in front of the real S3-compatible server (moto's). Tests only.

Requests pass through to moto unchanged unless a rule says otherwise: answer the next uploads (``PUT``) with
an S3 error status, let a number of uploads through first, or delay every answer. So the faults a bucket
shows in production (5xx, a failure in the middle of a batch, a slow link) are produced on real sockets,
and everything else about the upload is moto's real behaviour.
"""

from __future__ import annotations

import http.client
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_ERROR_XML = ('<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>injected</Message>'
              '</Error>')
_CODES = {500: "InternalError", 503: "SlowDown", 403: "AccessDenied"}


class S3Faults:
    def __init__(self, upstream: str):
        self.upstream = urllib.parse.urlsplit(upstream)
        self.pass_puts = 0  # uploads let through before failing starts
        self.fail_puts: list[int] = []  # statuses for the next failing uploads; empty = no failures
        self.fail_all_puts: int | None = None  # every upload (after pass_puts) fails with this status
        self.delay_s = 0.0
        self.puts = 0
        self.connections = 0  # TCP connections accepted: a reused client keeps its connections open
        self.in_flight = self.most_in_flight = 0  # uploads being answered at once
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "S3Faults":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _fault_for_put(self) -> int | None:
        with self._lock:
            self.puts += 1
            if self.puts <= self.pass_puts:
                return None
            if self.fail_puts:
                return self.fail_puts.pop(0)
            return self.fail_all_puts

    def _handler(self):
        faults = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with faults._lock:
                    faults.connections += 1

            def _count(self, step: int) -> None:
                with faults._lock:
                    faults.in_flight += step
                    faults.most_in_flight = max(faults.most_in_flight, faults.in_flight)

            def _any(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                uploading = self.command == "PUT"
                if uploading:
                    self._count(+1)
                try:
                    self._answer(body)
                finally:
                    if uploading:
                        self._count(-1)

            def _answer(self, body: bytes) -> None:
                if faults.delay_s:
                    time.sleep(faults.delay_s)
                status = faults._fault_for_put() if self.command == "PUT" else None
                if status is not None:
                    data = _ERROR_XML.format(code=_CODES.get(status, "InternalError")).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                upstream = http.client.HTTPConnection(faults.upstream.hostname, faults.upstream.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                headers["Host"] = faults.upstream.netloc
                upstream.request(self.command, self.path, body=body, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                upstream.close()

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _any

        return Handler
