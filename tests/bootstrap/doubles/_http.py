"""Shared plumbing for the loopback HTTP doubles.

Each double is a real HTTP server on 127.0.0.1 (ephemeral port) in a daemon
thread, so the agent under test talks to it exactly as it would to the cloud:
through sockets, with its own HTTP client. This module gives every double the
same test-facing surface:

* ``url`` — base URL; ``log`` — every request with the status it got;
* ``violations`` — contract breaches seen (bad request body, invalid response…);
  the fixtures fail a test whose double recorded any;
* ``inject(...)`` — queued faults: a status code (5xx, 429…), a dropped
  connection, or a hang, matched by method and path regex;
* ``wait_for(predicate)`` — block until the double's state satisfies a
  condition (no sleeping in tests: every request and state change notifies);
* ``after(...)`` — run a callback once a matching request's answer is decided,
  before it is sent (to stage races: "a job arrives just after the idle
  check", with the client still holding the stale answer);
* ``latency`` — seconds every answer is held back, to stand for a remote
  service (the benchmark sets it; link-local services keep 0); each request
  records the TCP ``connection`` it came on, so connection reuse is visible.
"""

from __future__ import annotations

import json
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

T = TypeVar("T")


@dataclass
class Request:
    """One HTTP request as the double received it."""

    method: str
    path: str  # without query string, percent-encoding kept
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    time: float = field(default_factory=time.time)
    status: int | None = None  # filled in once answered
    operation: str | None = None  # which API operation the double matched
    connection: int = 0  # which TCP connection it came on (numbered per double, from 1)
    answered: float | None = None  # when the answer was sent

    @property
    def json(self) -> Any:
        """The body parsed as JSON (``None`` if empty or not JSON)."""
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)


@dataclass
class Response:
    """What a handler returns; ``body`` dicts/lists are sent as JSON."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json; charset=utf-8"

    def encode(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


@dataclass
class After:
    """A callback run after a matching request was answered (see :meth:`HttpDouble.after`)."""

    path: re.Pattern[str]
    method: str | None
    times: int
    callback: Callable[[Request], None]


@dataclass
class Fault:
    """A queued failure. ``kind``: ``status`` (send ``response``), ``reset``
    (drop the TCP connection without answering) or ``hang`` (answer nothing
    until ``seconds`` pass or the double is reset)."""

    path: re.Pattern[str]
    method: str | None
    times: int
    kind: str = "status"
    response: Response | None = None
    seconds: float = 30.0

    def matches(self, req: Request) -> bool:
        return (self.method is None or self.method == req.method) and bool(self.path.search(req.path))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive like the real services; needs Content-Length
    server: _Server

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        req = Request(
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            connection=self.connection_number,
        )
        self.server.double._handle(self, req)

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes: without TCP_NODELAY, Nagle holds the body back until the
        # client's delayed ACK (~40 ms) on a kept-alive connection. Real services set it; so does the double.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connection_number = self.server.double._new_connection()

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request log is the record; stderr noise helps nobody

    def send(self, resp: Response) -> None:
        payload = resp.encode()
        self.send_response(resp.status)
        if payload or resp.status not in (204, 304):
            self.send_header("Content-Type", resp.content_type)
        for name, value in resp.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def drop(self) -> None:
        """Close with RST (SO_LINGER 0): the client sees a reset, not a clean EOF."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256  # listen backlog: a burst of 50 VMs (and their runners) connects at once
    double: HttpDouble

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-answer (a killed runner, an agent timeout) is
        # normal here; anything else is a bug worth the traceback.
        import sys

        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class HttpDouble:
    """Base class: subclasses implement :meth:`handle` and may extend :meth:`reset`."""

    name = "double"

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.RLock())
        self._release = threading.Event()  # wakes hung requests on reset/stop
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.log: list[Request] = []
        self.violations: list[str] = []
        self.faults: list[Fault] = []
        self.afters: list[After] = []
        self.latency = 0.0
        self.connections = 0

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> HttpDouble:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.double = self
        # A short poll interval keeps shutdown() (session teardown) from costing 0.5 s per server.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name=self.name,
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def port(self) -> int:
        assert self._server is not None, f"{self.name} is not started"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """Base URL, no trailing slash."""
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        """Forget requests, faults and violations (state is the subclass's job)."""
        with self._cond:
            self._release.set()  # let hung handlers from the previous test finish
            self._release = threading.Event()
            self.log.clear()
            self.violations.clear()
            self.faults.clear()
            self.afters.clear()
            self.latency = 0.0
            self._cond.notify_all()

    # -- test controls ---------------------------------------------------------

    def inject(
        self,
        path: str,
        *,
        method: str | None = None,
        status: int = 503,
        times: int = 1,
        kind: str = "status",
        body: Any = None,
        headers: dict[str, str] | None = None,
        seconds: float = 30.0,
    ) -> Fault:
        """Queue a fault for requests whose path matches regex ``path``.

        The next ``times`` matching requests get it instead of the real answer.
        """
        if kind not in ("status", "reset", "hang"):
            raise ValueError(f"unknown fault kind {kind!r}")
        fault = Fault(
            path=re.compile(path),
            method=method,
            times=times,
            kind=kind,
            response=Response(status, body if body is not None else self.fault_body(status), headers or {}),
            seconds=seconds,
        )
        with self._cond:
            self.faults.append(fault)
        return fault

    def after(self, path: str, callback: Callable[[Request], None], *, method: str | None = None,
              times: int = 1) -> After:
        """Run ``callback(request)`` when the answers to the next ``times`` matching requests are decided,
        before they are sent."""
        hook = After(re.compile(path), method, times, callback)
        with self._cond:
            self.afters.append(hook)
        return hook

    def _new_connection(self) -> int:
        with self._cond:
            self.connections += 1
            return self.connections

    def fault_body(self, status: int) -> Any:
        """Body sent with an injected status; subclasses use their service's error shape."""
        return {"message": f"injected {status}"}

    def wait_for(self, predicate: Callable[[], T], timeout: float = 5.0, what: str = "") -> T:
        """Block until ``predicate()`` is truthy (checked on every state change)."""
        with self._cond:
            result = self._cond.wait_for(predicate, timeout)
        if not result:
            raise TimeoutError(f"{self.name}: timed out after {timeout}s waiting for {what or predicate}")
        return result

    def requests(self, method: str | None = None, path: str | None = None) -> list[Request]:
        """Logged requests, optionally filtered by method and path regex."""
        with self._cond:
            return [
                r
                for r in self.log
                if (method is None or r.method == method) and (path is None or re.search(path, r.path))
            ]

    @contextmanager
    def expect_violations(self) -> Iterator[list[str]]:
        """For tests of the doubles themselves: collect (and remove) the violations
        recorded inside the block, so the fixture's "no violations" check passes."""
        with self._cond:
            before = len(self.violations)
        seen: list[str] = []
        try:
            yield seen
        finally:
            with self._cond:
                seen.extend(self.violations[before:])
                del self.violations[before:]

    def violate(self, message: str) -> None:
        with self._cond:
            self.violations.append(message)
            self._cond.notify_all()

    def changed(self) -> None:
        """Wake :meth:`wait_for` callers; call after every state mutation."""
        with self._cond:
            self._cond.notify_all()

    # -- request plumbing ------------------------------------------------------

    def handle(self, req: Request) -> Response:  # pragma: no cover - abstract
        raise NotImplementedError

    def _take_fault(self, req: Request) -> Fault | None:
        with self._cond:
            for fault in self.faults:
                if fault.times > 0 and fault.matches(req):
                    fault.times -= 1
                    return fault
        return None

    def _handle(self, handler: _Handler, req: Request) -> None:
        with self._cond:
            self.log.append(req)
            release = self._release
            self.changed()  # an open request is news too: wait_for can see it before it is answered
        fault = self._take_fault(req)
        if self.latency:
            release.wait(self.latency)
        try:
            if fault is not None and fault.kind == "hang":
                release.wait(fault.seconds)
                handler.drop()
                req.status = 0
            elif fault is not None and fault.kind == "reset":
                handler.drop()
                req.status = 0
            else:
                resp = fault.response if fault is not None and fault.response else self._safe_handle(req)
                req.status = resp.status
                for hook in self._take_afters(req):
                    hook.callback(req)
                handler.send(resp)
        finally:
            req.answered = time.time()
            self.changed()

    def _take_afters(self, req: Request) -> list[After]:
        with self._cond:
            due = [h for h in self.afters if h.times > 0 and (h.method is None or h.method == req.method)
                   and h.path.search(req.path)]
            for hook in due:
                hook.times -= 1
            return due

    def _safe_handle(self, req: Request) -> Response:
        try:
            return self.handle(req)
        except Exception as exc:  # a bug in the double must fail the test, not hang it
            self.violate(f"{self.name} crashed on {req.method} {req.path}: {exc!r}")
            return Response(500, {"message": f"double crashed: {exc!r}"})
