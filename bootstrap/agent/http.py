"""HTTP with kept-alive connections, and the one retry policy every call goes through.

Retried: network errors, 5xx, 429, GitHub's rate limits (primary and
secondary, as 403 or 429) and AWS throttling answers. Delays are exponential
with full jitter, or what the server asked for (Retry-After,
x-ratelimit-reset; a secondary limit that names no time gets at least a
minute, as GitHub's "Rate limits for the REST API" asks), within one bounded
budget per call and an optional deadline shared by several calls; past it the
agent fails with one clear line. Messages carry the method, URL and status,
never a body or a header value that may be secret.

Connections are kept per host and reused (one TLS handshake for the App token
and the JIT call); a request that may go through a proxy uses urllib instead.
"""

from __future__ import annotations

import functools
import http.client
import json
import random
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

USER_AGENT = "gh-runners-agent"


class AgentError(Exception):
    """A failure the agent reports in one log line before exiting non-zero."""


class Stopped(AgentError):
    """A stop was requested while waiting to retry."""


class NetworkError(Exception):
    """The request did not get an HTTP answer (refused, reset, timed out, DNS)."""


@dataclass
class Response:
    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def message(self) -> str:
        """The API's own error message (GitHub `message`, AWS `message`), short, for logs."""
        try:
            doc = self.json()
        except ValueError:
            return ""
        if isinstance(doc, dict):
            text = doc.get("message") or doc.get("Message") or doc.get("__type") or ""
            error = doc.get("error")
            if not text and isinstance(error, dict):
                text = error.get("message", "")
            return str(text)[:200]
        return ""


class StatusError(AgentError):
    """An unexpected HTTP status; `status` lets callers react to e.g. 409."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def expect(answer: Response, what: str, ok: tuple[int, ...] = (200,)) -> Response:
    if answer.status not in ok:
        raise StatusError(answer.status, f"{what}: HTTP {answer.status} {answer.message()}".strip())
    return answer


_PROXIED = urllib.request.build_opener()
_IDLE: dict[tuple[str, str, int], list[http.client.HTTPConnection]] = {}
_LOCK = threading.Lock()


def fetch(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    data: bytes | None = None,
    timeout: float = 30,
    direct: bool = False,
) -> Response:
    """One attempt. `direct` bypasses proxies (metadata endpoints are link-local)."""
    parts = urllib.parse.urlsplit(url)
    if not direct and _proxied(parts):
        return _fetch_proxied(method, url, headers, data, timeout)
    key = (parts.scheme, parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))
    conn = _connection(key, timeout)
    try:
        conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), body=data,
                     headers={"User-Agent": USER_AGENT, **(headers or {})})
        answer = conn.getresponse()
        body = answer.read()
    except (OSError, http.client.HTTPException, ValueError) as error:
        # Also a kept connection the server has closed meanwhile: the retry takes a new one.
        conn.close()
        raise NetworkError(f"{method} {url}: {error!r}") from None
    if answer.will_close:
        conn.close()
    else:
        with _LOCK:
            _IDLE.setdefault(key, []).append(conn)
    return Response(answer.status, body, {k.lower(): v for k, v in answer.getheaders()})


def _connection(key: tuple[str, str, int], timeout: float) -> http.client.HTTPConnection:
    with _LOCK:
        if _IDLE.get(key):
            conn = _IDLE[key].pop()
            if conn.sock:
                conn.sock.settimeout(timeout)
            return conn
    scheme, host, port = key
    if scheme == "https":
        return http.client.HTTPSConnection(host, port, timeout=timeout, context=_tls())
    return http.client.HTTPConnection(host, port, timeout=timeout)


@functools.cache
def _tls() -> ssl.SSLContext:
    return ssl.create_default_context()  # loads the system's CA bundle: once, and only when needed


def _proxied(parts: urllib.parse.SplitResult) -> bool:
    return parts.scheme in urllib.request.getproxies() and not urllib.request.proxy_bypass(parts.hostname or "")


def _fetch_proxied(method: str, url: str, headers: Mapping[str, str] | None, data: bytes | None,
                   timeout: float) -> Response:
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - http(s) endpoints from config
    request.add_header("User-Agent", USER_AGENT)
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with _PROXIED.open(request, timeout=timeout) as answer:
            return Response(answer.status, answer.read(), {str(k).lower(): str(v) for k, v in answer.headers.items()})
    except urllib.error.HTTPError as error:
        with error:
            return Response(error.code, error.read(), {str(k).lower(): str(v) for k, v in error.headers.items()})
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise NetworkError(f"{method} {url}: {getattr(error, 'reason', error)}") from None


def rate_limited(response: Response) -> bool:
    """GitHub's primary or secondary rate limit, as 403 or 429 ("Rate limits for the REST API").

    A 403 that is none of these (a missing permission) is final.
    """
    if response.status not in (403, 429):
        return False
    return response.status == 429 or "retry-after" in response.headers \
        or response.headers.get("x-ratelimit-remaining") == "0" or b"rate limit" in response.body.lower()


def server_delay(response: Response, now: float, minimum: float) -> float | None:
    """Seconds the server asked us to wait; `minimum` for a rate limit that names no time."""
    retry_after = response.headers.get("retry-after", "").strip()
    if retry_after.isdigit():  # GitHub and Google send seconds, not HTTP dates
        return float(retry_after)
    if response.headers.get("x-ratelimit-remaining") == "0":
        reset = response.headers.get("x-ratelimit-reset", "")
        if reset.isdigit():
            return max(0.0, float(reset) - now)
    return minimum if rate_limited(response) else None


def transient(response: Response) -> bool:
    if response.status >= 500 or rate_limited(response):
        return True
    # AWS query and JSON APIs answer throttling with a 400.
    return response.status == 400 and b"Throttl" in response.body


class Retry:
    """Runs one call with retries inside a time budget (seconds), and before `deadline` if one is set."""

    def __init__(self, budget: float, base: float, stop: threading.Event | None = None, cap: float = 30,
                 rate_limit_wait: float = 60) -> None:
        self.budget, self.base, self.stop, self.cap = budget, base, stop, cap
        self.rate_limit_wait = rate_limit_wait
        self.deadline: float | None = None  # time.monotonic() by which every call must be done

    def __call__(self, what: str, attempt: Callable[[], Response],
                 again: Callable[[Response], bool] = transient) -> Response:
        start = time.monotonic()
        deadline = start + self.budget if self.deadline is None else min(start + self.budget, self.deadline)
        tries = 0
        while True:
            tries += 1
            hint: float | None = None
            try:
                response = attempt()
            except NetworkError as error:
                problem = str(error)
            else:
                if not again(response):
                    return response
                problem = f"HTTP {response.status} {response.message()}".strip()
                hint = server_delay(response, time.time(), self.rate_limit_wait)
            backoff = random.uniform(0, min(self.cap, self.base * 2 ** (tries - 1)))  # noqa: S311 - jitter, not crypto
            delay = backoff if hint is None else hint + backoff / 10
            if delay > deadline - time.monotonic():
                elapsed = time.monotonic() - start
                raise AgentError(f"{what}: {problem}; gave up after {tries} attempts in {elapsed:.1f}s")
            if self.stop is not None and self.stop.wait(delay):
                raise Stopped(f"{what}: stop requested while retrying ({problem})")
            if self.stop is None:
                time.sleep(delay)
