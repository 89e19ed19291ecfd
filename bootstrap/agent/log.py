"""Logging to stdout (journald), with a redacting filter as a second line of defence.

The first line of defence is that no code path formats a credential, token,
JWT or JIT config into a message. The filter catches what slips through by
shape, so it needs no copy of the secrets themselves (keeping one would mean
holding the credential in memory for the life of the process).
"""

from __future__ import annotations

import logging
import re
import sys

_SHAPES = [
    # GitHub tokens: classic/fine-grained PATs, installation, OAuth, refresh.
    re.compile(r"\b(gh[pousr]_[A-Za-z0-9_]{10,}|github_pat_[A-Za-z0-9_]{10,})"),
    # JWTs (GitHub App assertions, GCP tokens in JWT form).
    re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),
    # PEM blocks, complete or cut.
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)", re.S),
    # GCP access tokens.
    re.compile(r"\bya29\.[A-Za-z0-9._-]+"),
    # Long opaque base64-ish runs (JIT configs, AWS secret keys and session
    # tokens): see _opaque. URL paths and sha256 digests stay readable.
    re.compile(r"[A-Za-z0-9+/_=-]{32,}"),
]


def _opaque(match: re.Match[str]) -> str:
    run = match[0]
    mixed = all(re.search(c, run) for c in ("[A-Z]", "[a-z]", "[0-9]"))
    return "[REDACTED]" if mixed else run


def redact(text: str) -> str:
    for shape in _SHAPES[:-1]:
        text = shape.sub("[REDACTED]", text)
    return _SHAPES[-1].sub(_opaque, text)


class RedactFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            # Tracebacks carry exception text: format it here so it is redacted too.
            record.msg += "\n" + redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def setup() -> logging.Logger:
    log = logging.getLogger("gh-runners")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        handler.addFilter(RedactFilter())
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    return log


log = logging.getLogger("gh-runners")
