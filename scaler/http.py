"""One small HTTPS client on urllib (the GCP runtime and the GitHub calls need nothing else)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

# A webhook must be answered well inside GitHub's 10 s: no single call may take most of it.
TIMEOUT_SECONDS = 4.0


class HttpError(Exception):
    """The service could not be reached (no status at all)."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A redirect would resend the Authorization header to wherever it points.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def call(
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    body: Any = None,
    timeout: float = TIMEOUT_SECONDS,
) -> Answer:
    """One request; HTTP error statuses are answers, not exceptions. `body` is sent as JSON."""
    if not url.startswith(("https://", "http://127.0.0.1", "http://localhost", "http://metadata.google.internal")):
        raise HttpError(f"refusing a plain-http URL: {url.split('?')[0]}")
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))  # noqa: S310 (scheme checked above)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with _OPENER.open(request, timeout=timeout) as resp:
            return Answer(resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read())
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read())
    except (urllib.error.URLError, OSError) as exc:
        raise HttpError(f"{method} {url.split('?')[0]}: {getattr(exc, 'reason', exc)}") from None
