"""HTTP with urllib, and the one retry policy every call goes through.

Retried: network errors, 5xx, 429, GitHub's 403 with x-ratelimit-remaining: 0
and AWS throttling answers. Delays are exponential with full jitter, or what
the server asked for (Retry-After, x-ratelimit-reset), within one bounded
budget per call; past it the agent fails with one clear line. Messages carry
the method, URL and status, never a body or a header value that may be secret.
"""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.error
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


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_DEFAULT = urllib.request.build_opener()


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
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - http(s) endpoints from config
    request.add_header("User-Agent", USER_AGENT)
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    opener = _DIRECT if direct else _DEFAULT
    try:
        with opener.open(request, timeout=timeout) as answer:
            return Response(answer.status, answer.read(), _lower(answer.headers.items()))
    except urllib.error.HTTPError as error:
        with error:
            return Response(error.code, error.read(), _lower(error.headers.items()))
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise NetworkError(f"{method} {url}: {reason}") from None


def _lower(items: Any) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in items}


def server_delay(response: Response, now: float) -> float | None:
    """Seconds the server asked us to wait, if it said."""
    retry_after = response.headers.get("retry-after", "").strip()
    if retry_after.isdigit():  # GitHub and Google send seconds, not HTTP dates
        return float(retry_after)
    if response.headers.get("x-ratelimit-remaining") == "0":
        reset = response.headers.get("x-ratelimit-reset", "")
        if reset.isdigit():
            return max(0.0, float(reset) - now)
    return None


def transient(response: Response) -> bool:
    if response.status >= 500 or response.status == 429:
        return True
    if response.status == 403 and response.headers.get("x-ratelimit-remaining") == "0":
        return True
    # AWS query and JSON APIs answer throttling with a 400.
    return response.status == 400 and b"Throttl" in response.body


class Retry:
    """Runs one call with retries inside a time budget (seconds)."""

    def __init__(self, budget: float, base: float, stop: threading.Event | None = None, cap: float = 30) -> None:
        self.budget, self.base, self.stop, self.cap = budget, base, stop, cap

    def __call__(self, what: str, attempt: Callable[[], Response]) -> Response:
        start = time.monotonic()
        deadline = start + self.budget
        tries = 0
        while True:
            tries += 1
            hint: float | None = None
            try:
                response = attempt()
            except NetworkError as error:
                problem = str(error)
            else:
                if not transient(response):
                    return response
                problem = f"HTTP {response.status} {response.message()}".strip()
                hint = server_delay(response, time.time())
            backoff = random.uniform(0, min(self.cap, self.base * 2 ** (tries - 1)))  # noqa: S311 - jitter, not crypto
            delay = backoff if hint is None else hint + backoff / 10
            left = deadline - time.monotonic()
            if delay > left:
                elapsed = time.monotonic() - start
                raise AgentError(f"{what}: {problem}; gave up after {tries} attempts in {elapsed:.1f}s")
            if self.stop is not None and self.stop.wait(delay):
                raise Stopped(f"{what}: stop requested while retrying ({problem})")
            if self.stop is None:
                time.sleep(delay)
