"""The GitHub REST calls of the reconcile, counted against a per-run budget.

The credential is the JSON document the VMs read too: {"kind": "pat",
"token"} or {"kind": "app", "app_id", "installation_id", "private_key"}. An
App's JWT is RS256; neither Lambda's nor Cloud Run's Python runtime ships a
crypto library or promises an `openssl` binary, so `rs256` signs with the
standard library: RSASSA-PKCS1-v1_5 (RFC 8017 §8.2.1, §9.2) on the key's CRT
parameters, with RSA blinding so the time a signature takes does not depend on
the private exponent, and a verify-after-sign check against faults.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from scaler.http import Answer, HttpError, call

API_VERSION = "2022-11-28"
PER_PAGE = 100  # the most every list endpoint below returns per page


class GitHubError(Exception):
    pass


class BudgetExhausted(GitHubError):
    """The reconcile spent its request budget; what it saw so far still counts."""


# --- the credential --------------------------------------------------------------


def parse_credential(text: str) -> dict[str, Any]:
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    kind = doc.get("kind") if isinstance(doc, dict) else None
    needs = {"pat": ("token",), "app": ("app_id", "installation_id", "private_key")}.get(str(kind))
    if not isinstance(doc, dict) or needs is None or not all(doc.get(k) for k in needs):
        # Name the expected shape, never the content.
        raise GitHubError('the GitHub credential is not {"kind":"pat","token"} or {"kind":"app",...}')
    return doc


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def app_jwt(app_id: str, private_key_pem: str, now: float | None = None) -> str:
    """The App's JWT: issued 60 s back for clock drift, valid 9 minutes (GitHub allows 10)."""
    now = time.time() if now is None else now
    header = _b64url(b'{"alg":"RS256","typ":"JWT"}')
    claims = json.dumps({"iat": int(now) - 60, "exp": int(now) + 540, "iss": str(app_id)}, separators=(",", ":"))
    signing_input = f"{header}.{_b64url(claims.encode())}"
    return f"{signing_input}.{_b64url(rs256(private_key_pem, signing_input.encode()))}"


# DER of DigestInfo{sha256} before the 32-byte hash (RFC 8017 §9.2, note 1).
_SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")


@dataclass(frozen=True)
class RsaKey:
    n: int
    e: int
    d: int
    p: int
    q: int
    dp: int
    dq: int
    qinv: int


def rs256(private_key_pem: str, message: bytes) -> bytes:
    """RSASSA-PKCS1-v1_5 with SHA-256 over `message` (the JWS RS256 signature)."""
    key = parse_rsa_key(private_key_pem)
    size = (key.n.bit_length() + 7) // 8
    digest_info = _SHA256_DIGEST_INFO + hashlib.sha256(message).digest()
    if size < len(digest_info) + 11:
        raise GitHubError("the GitHub App key is too short for RS256")
    encoded = b"\x00\x01" + b"\xff" * (size - len(digest_info) - 3) + b"\x00" + digest_info
    m = int.from_bytes(encoded, "big")
    while True:  # a blinding factor invertible mod n (all but a negligible few are)
        r = secrets.randbelow(key.n - 2) + 2
        try:
            r_inv = pow(r, -1, key.n)
            break
        except ValueError:
            continue
    blinded = (m * pow(r, key.e, key.n)) % key.n
    # CRT: s = m^d mod n from the two half-size exponentiations.
    s1, s2 = pow(blinded, key.dp, key.p), pow(blinded, key.dq, key.q)
    s = (s2 + key.q * ((key.qinv * (s1 - s2)) % key.p)) * r_inv % key.n
    if pow(s, key.e, key.n) != m:
        raise GitHubError("RS256 signature failed its own check")
    return s.to_bytes(size, "big")


def parse_rsa_key(pem: str) -> RsaKey:
    """A PKCS#1 (`RSA PRIVATE KEY`, what GitHub hands out) or PKCS#8 (`PRIVATE KEY`) PEM."""
    lines = [line.strip() for line in pem.strip().splitlines()]
    if len(lines) < 3 or not lines[0].startswith("-----BEGIN") or not lines[-1].startswith("-----END"):
        raise GitHubError("the GitHub App private key is not a PEM block")
    try:
        der = base64.b64decode("".join(lines[1:-1]), validate=True)
        if "BEGIN PRIVATE KEY" in lines[0]:  # PKCS#8: version, algorithm, OCTET STRING(RSAPrivateKey)
            der = _der_sequence(der)[2]
        elif "BEGIN RSA PRIVATE KEY" not in lines[0]:
            raise ValueError(lines[0])
        version, n, e, d, p, q, dp, dq, qinv = (_der_int(v) for v in _der_sequence(der)[:9])
    except (ValueError, IndexError, TypeError):
        raise GitHubError("the GitHub App private key is not an RSA key (PKCS#1 or PKCS#8 PEM)") from None
    if version != 0 or p * q != n:
        raise GitHubError("the GitHub App private key is not a two-prime RSA key")
    return RsaKey(n, e, d, p, q, dp, dq, qinv)


def _der_read(data: bytes, pos: int) -> tuple[int, bytes, int]:
    """(tag, value, next position) of the DER element at `pos`."""
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if not 1 <= count <= 4:
            raise ValueError("DER length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    if pos + length > len(data):
        raise ValueError("DER overrun")
    return tag, data[pos : pos + length], pos + length


def _der_sequence(data: bytes) -> list[bytes]:
    """The elements of the SEQUENCE at the start of `data` (values only; an OCTET STRING's content)."""
    tag, body, _ = _der_read(data, 0)
    if tag != 0x30:
        raise ValueError("not a SEQUENCE")
    items, pos = [], 0
    while pos < len(body):
        _, value, pos = _der_read(body, pos)
        items.append(value)
    return items


def _der_int(value: bytes) -> int:
    return int.from_bytes(value, "big", signed=False)


# --- the client -------------------------------------------------------------------


# The reconcile runs in a function with a 120 s timeout (the deploy side's setting): its
# GitHub scan stops after this long, like when the request budget is spent, and the
# scaling that follows still has time.
SCAN_SECONDS = 60.0


@dataclass
class GitHub:
    """REST client with a request budget and a time budget; `token` is minted lazily and once."""

    api_url: str
    credential: Callable[[], str]  # returns the credential document (read from the cloud's store)
    budget: int
    spent: int = 0
    seconds: float = SCAN_SECONDS
    _token: str | None = None
    _deadline: float | None = None

    def token(self) -> str:
        if self._token is None:
            doc = parse_credential(self.credential())
            if doc["kind"] == "pat":
                self._token = str(doc["token"])
            else:
                jwt = app_jwt(str(doc["app_id"]), str(doc["private_key"]))
                path = f"/app/installations/{doc['installation_id']}/access_tokens"
                answer = self._send("POST", path, jwt, body={})
                if answer.status != 201:
                    raise GitHubError(f"POST {path}: HTTP {answer.status}")
                self._token = str(answer.json()["token"])
        return self._token

    def _send(self, method: str, path: str, token: str, body: Any = None) -> Answer:
        if self.spent >= self.budget:
            raise BudgetExhausted(f"{self.budget} requests spent")
        if self._deadline is None:
            self._deadline = time.monotonic() + self.seconds
        elif time.monotonic() > self._deadline:
            raise BudgetExhausted(f"{self.seconds:.0f} s spent")
        self.spent += 1
        headers = {
            "Accept": "application/vnd.github+json",
            "Authorization": f"Bearer {token}",
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": "gh-runners-scaler",
        }
        try:
            return call(method, self.api_url + path, headers=headers, body=body)
        except HttpError as exc:
            raise GitHubError(str(exc)) from None

    def get(self, path: str, **params: Any) -> Any:
        query = f"?{urlencode(params)}" if params else ""
        answer = self._send("GET", path + query, self.token())
        if answer.status != 200:
            raise GitHubError(f"GET {path}: HTTP {answer.status}")
        return answer.json()

    def pages(self, path: str, key: str, **params: Any) -> Iterator[dict[str, Any]]:
        """Every item of a paginated list (`key` names the list in each page's object, '' for a bare list)."""
        page = 1
        while True:
            doc = self.get(path, **params, per_page=PER_PAGE, page=page)
            items = doc if key == "" else doc.get(key, [])
            yield from items
            if len(items) < PER_PAGE:
                return
            page += 1
