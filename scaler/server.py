"""The receiver on loopback: the deployed function's handler behind a local HTTP server.

Tests and the benchmark run it as a process (`python -m scaler serve`). It
reads the same configuration document the deployed function gets, with the
cloud endpoints pointed at doubles through the document's `endpoints`, and
uses the same adapter as the cloud's entry point:

* `POST /` -- a webhook delivery (what the function URL / Cloud Run URL gets);
* `POST /reconcile` -- one reconcile (what the schedule triggers);
* `GET /healthz` -- 200 once the server listens.

It binds 127.0.0.1 only: it is not a way to run the receiver in production.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from scaler.config import ScalerConfig
from scaler.decision import MAX_BODY_BYTES
from scaler.function import Function

log = logging.getLogger("scaler")
DRAIN_BYTES = 8 * MAX_BODY_BYTES


def deployed_function(config: ScalerConfig) -> Function:
    """The configuration's cloud adapter, wired as its entry point wires it."""
    if config.cloud == "aws":
        from scaler.aws import AwsGroups

        return Function(config, AwsGroups(config))
    from scaler.gcp import GcpGroups

    return Function(config, GcpGroups(config))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in two writes; without TCP_NODELAY, Nagle's algorithm holds the
    # body until the client's delayed ACK (~40 ms on Linux) and every answer looks 40 ms slow.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the receiver logs each delivery itself, as one JSON line

    def _send(self, status: int, body: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._send(200, '{"ok":true}')
        else:
            self._send(404, '{"decision":"not-found"}')

    def do_POST(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY_BYTES:
            # Read (and drop) a bounded amount first: answering while the client is still sending
            # makes its next write fail with a broken pipe instead of showing it the 400.
            left = min(max(length, 0), DRAIN_BYTES)
            while left > 0:
                chunk = self.rfile.read(min(left, 1 << 16))
                if not chunk:
                    break
                left -= len(chunk)
            self.close_connection = True  # whatever is left unread: do not reuse the connection
            self._send(400, '{"decision":"too-large"}' if length > 0 else '{"decision":"malformed"}')
            return
        body = self.rfile.read(length) if length else b""
        service = self.server.service
        if self.path == "/reconcile":
            plans = service.reconcile(datetime.now(timezone.utc))
            self._send(200, json.dumps({"reconciled": [plan.__dict__ for plan in plans]}))
        elif self.path == "/":
            reply = service.receiver.handle(dict(self.headers.items()), body)
            self._send(reply.status, reply.body)
        else:
            self._send(404, '{"decision":"not-found"}')


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, service: Function) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.service = service


def serve(config: ScalerConfig, port: int) -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(message)s")
    server = _Server(port, deployed_function(config))
    # The tests read the bound address from this line (port 0 picks a free one).
    print(f"serving on http://127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
