"""From the stored credential to a GitHub token.

The secret is a JSON document: {"kind": "pat", "token": ...} or {"kind":
"app", "app_id", "installation_id", "private_key"}. A GitHub App's JWT is
signed by openssl; the private key reaches it through a pipe (/dev/fd/N),
never a file on disk nor an argument.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import subprocess
import time
from typing import Any

from .http import AgentError, Retry, expect, fetch

PIPE_CAPACITY = 65536  # Linux default: a key this small is written before openssl starts


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def app_jwt(app_id: str, private_key: str, now: float | None = None) -> str:
    """RS256 JWT for a GitHub App: iat 60 s back for clock skew, 9 minutes of life."""
    now = time.time() if now is None else now
    header = _b64url(json.dumps({"alg": "RS256", "typ": "JWT"}, separators=(",", ":")).encode())
    claims = {"iat": int(now) - 60, "exp": int(now) + 540, "iss": app_id}
    payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode()
    key = private_key.encode()
    if len(key) >= PIPE_CAPACITY:
        raise AgentError("the GitHub App private key is implausibly large")
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, key)
        os.close(write_end)
        write_end = -1
        done = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", f"/dev/fd/{read_end}"],
            input=signing_input, capture_output=True, pass_fds=(read_end,), check=False, timeout=30,
        )
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
        del key
    if done.returncode != 0 or not done.stdout:
        raise AgentError("openssl could not sign the GitHub App JWT (is private_key a PEM RSA key?)")
    return f"{header}.{payload}.{_b64url(done.stdout)}"


def parse(secret: str, where: str) -> dict[str, Any]:
    try:
        doc = json.loads(secret)
    except ValueError:
        doc = None
    kind = doc.get("kind") if isinstance(doc, dict) else None
    needs = {"pat": ("token",), "app": ("app_id", "installation_id", "private_key")}.get(str(kind))
    if not isinstance(doc, dict) or needs is None or not all(doc.get(k) for k in needs):
        # Name the shape, never the content.
        raise AgentError(f"the credential in {where} is not {{\"kind\":\"pat\",\"token\"}} "
                         "or {\"kind\":\"app\",\"app_id\",\"installation_id\",\"private_key\"}")
    return doc


def github_token(secret: str, where: str, api_url: str, retry: Retry) -> str:
    """A token for the GitHub REST API: the PAT itself, or a fresh installation token."""
    doc = parse(secret, where)
    if doc["kind"] == "pat":
        return str(doc["token"])
    jwt = app_jwt(str(doc["app_id"]), str(doc["private_key"]))
    installation = str(doc["installation_id"])
    del doc
    headers = {
        "Authorization": f"Bearer {jwt}",
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
        "Content-Type": "application/json",
    }
    url = f"{api_url}/app/installations/{installation}/access_tokens"
    what = f"GitHub App installation token (installation {installation})"
    answer = retry(what, functools.partial(fetch, "POST", url, headers=headers, data=b"{}"))
    del jwt, headers
    token: str = expect(answer, what, (201,)).json()["token"]
    return token
