"""GitHub double: the REST endpoints the VM agent calls, plus the runner service.

Three faces on one loopback server:

* **REST API** under ``api_prefix`` ("" like api.github.com, "/api/v3" like
  GitHub Enterprise Server): self-hosted runner endpoints at repo, org and
  enterprise scope, runner groups, App installation tokens, and the
  ``actions/runner`` release metadata. Every request is routed and checked
  against ``tests/bootstrap/openapi/github-subset.json`` (extracted from
  ``@octokit/openapi``); every response the double serves is validated too.
  Anything off-contract lands in ``violations``; the fixture fails the test.
* **Release downloads** at ``/actions/runner/releases/download/v<ver>/<asset>``,
  which (like github.com) redirect to an object URL that serves the tarball.
* **Runner service** under ``/_actions/`` — the part of GitHub the *runner*
  (not the agent) talks to. The fake runner from :mod:`runner_tarball` uses it
  to register (``config.sh``), connect, go online/busy and receive the jobs a
  test queues with :meth:`GitHubDouble.queue_job`. It is deliberately not
  schema-checked: it is our protocol between two doubles, not GitHub's API.

Auth follows GitHub: ``Authorization: Bearer <t>`` or ``token <t>`` with a PAT
or an installation token; a JWT (RS256, verified with the App's public key,
``iat``/``exp``/``iss`` checked) only on ``POST /app/installations/{id}/access_tokens``.

Where the real service is stricter than a convenient double would be, this one
is too (each rule says where it comes from):

* **Self-update.** A runner older than the latest published release that has
  not disabled updates is sent an update message instead of the job it would
  get ("the runner application automatically updates itself when a job is
  assigned to the runner", docs.github.com/en/actions/concepts/runners/
  communicating-with-self-hosted-runners); the job stays queued.
* **Config migration.** Since v2.323.0 the service has runners refresh their
  configuration, which the runner writes to ``.runner_migrated`` /
  ``.credentials_migrated`` (actions/runner src/Runner.Listener/
  RunnerConfigUpdater.cs, SaveMigratedSettings / SaveMigratedCredential): the
  double asks every config.sh-registered runner to do so when it connects
  (``migrate_runner_config``).
* **Busy after a cancelled job.** A runner whose job was cancelled (its session
  ended mid-job) stays busy for ``busy_after_cancel`` seconds, and GitHub
  refuses to delete a busy runner (422).
* **Sessions.** One listener session per runner at a time (a second one is a
  conflict, the runner's ``SessionConflict`` exit code 5); a runner that lost
  its session (e.g. restarted for an update) may open a new one.
* **Secondary rate limits** come as 403 or 429, with or without
  ``Retry-After`` (:meth:`GitHubDouble.rate_limit`), as "Rate limits for the
  REST API" describes; unauthenticated release lookups can be given the
  per-address budget of 60 an hour (``anonymous_budget``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import string
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from ._http import HttpDouble, Request, Response
from .schema import OpenApi

DOCS = "https://docs.github.com/rest"
API_VERSIONS = {"2022-11-28"}
# Statuses GitHub returns on any endpoint though the description rarely lists
# them; their bodies must still be GitHub's basic-error shape.
GENERIC_STATUSES = {401, 403, 404, 429, 500, 502, 503, 504}
# Labels the runner adds itself (type "read-only" in the API).
DEFAULT_LABELS = {"self-hosted", "linux", "x64", "arm64", "arm", "windows", "macos"}
SCOPE_KINDS = ("repo", "org", "enterprise")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _error(status: int, message: str, **extra: Any) -> Response:
    return Response(status, {"message": message, "documentation_url": DOCS, "status": str(status), **extra})


# --- keys and JWT -----------------------------------------------------------------


@cache
def app_keypair() -> tuple[str, str]:
    """A 2048-bit RSA key pair (private PKCS#8 PEM, public PEM), made once per process.

    Tests hand the private key to the agent (it signs the App JWT with openssl);
    the double verifies with the public key.
    """
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
    except ImportError:  # pragma: no cover - cryptography ships with moto
        with tempfile.TemporaryDirectory() as tmp:
            key = Path(tmp) / "key.pem"
            subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                            "-out", str(key)], check=True, capture_output=True)
            pub = subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout"], check=True,
                                 capture_output=True, text=True).stdout
            return key.read_text(), pub
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


def verify_rs256(public_pem: str, signing_input: bytes, signature: bytes) -> bool:
    """RSASSA-PKCS1-v1_5 / SHA-256 verification (``cryptography``, else the openssl CLI)."""
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding
    except ImportError:  # pragma: no cover
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "pub.pem").write_text(public_pem)
            (Path(tmp) / "sig").write_bytes(signature)
            return subprocess.run(
                ["openssl", "dgst", "-sha256", "-verify", f"{tmp}/pub.pem", "-signature", f"{tmp}/sig"],
                input=signing_input, capture_output=True,
            ).returncode == 0
    key = serialization.load_pem_public_key(public_pem.encode())
    try:
        key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())  # type: ignore[union-attr]
    except InvalidSignature:
        return False
    return True


def sign_app_jwt(private_pem: str, app_id: int | str, *, iat: int | None = None, exp: int | None = None,
                 iss: Any = None) -> str:
    """Make an App JWT with the openssl CLI, as the agent does; for double self-tests."""
    now = int(time.time())
    header = {"alg": "RS256", "typ": "JWT"}
    claims = {"iat": now - 60 if iat is None else iat, "exp": now + 540 if exp is None else exp,
              "iss": str(app_id) if iss is None else iss}

    def enc(obj: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj, separators=(",", ":")).encode()).rstrip(b"=").decode()

    signing_input = f"{enc(header)}.{enc(claims)}".encode()
    with tempfile.TemporaryDirectory() as tmp:
        key = Path(tmp) / "key.pem"
        key.write_text(private_pem)
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(key)], input=signing_input,
                             capture_output=True, check=True).stdout
    return f"{signing_input.decode()}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}"


# --- state ---------------------------------------------------------------------------


@dataclass
class RunnerGroup:
    id: int
    name: str
    default: bool = False
    visibility: str = "all"
    allows_public_repositories: bool = False
    restricted_to_workflows: bool = False


@dataclass
class Runner:
    """A registered self-hosted runner, as GitHub sees it."""

    id: int
    name: str
    runner_group_id: int
    labels: list[str]
    status: str = "offline"  # online once the runner process connects
    busy: bool = False
    ephemeral: bool = False
    version: str | None = None
    os: str = "linux"
    credential: str = field(default_factory=lambda: uuid.uuid4().hex)
    jit: bool = False
    sessions: int = 0  # how many times a runner process connected with it
    session_open: bool = False  # a listener is connected right now
    disable_update: bool = False  # registered with --disableupdate
    busy_until: float = 0.0  # still finishing a cancelled job until then
    update_sent: int = -1  # the session in which it was last told to update
    created: float = field(default_factory=time.time)

    @property
    def busy_now(self) -> bool:
        return self.busy or time.time() < self.busy_until

    def api(self) -> dict[str, Any]:
        labels = [
            {"id": i + 1, "name": name, "type": "read-only" if name.lower() in DEFAULT_LABELS else "custom"}
            for i, name in enumerate(self.labels)
        ]
        return {"id": self.id, "name": self.name, "os": self.os, "status": self.status, "busy": self.busy_now,
                "ephemeral": self.ephemeral, "labels": labels, "runner_group_id": self.runner_group_id,
                "version": self.version}


@dataclass
class Scope:
    """Where runners are registered: a repository, an organization or an enterprise."""

    kind: str  # repo | org | enterprise
    name: str  # "owner/repo", "org", "enterprise-slug"
    groups: dict[int, RunnerGroup] = field(default_factory=dict)
    runners: dict[int, Runner] = field(default_factory=dict)
    registration_tokens: dict[str, float] = field(default_factory=dict)
    remove_tokens: dict[str, float] = field(default_factory=dict)
    double: GitHubDouble | None = field(default=None, repr=False)

    @property
    def path(self) -> str:
        """The scope's path, as in ``--url https://github.com/<path>``."""
        return f"enterprises/{self.name}" if self.kind == "enterprise" else self.name

    @property
    def owner(self) -> str:
        return self.name.split("/")[0]

    def add_group(self, name: str, *, id: int | None = None, **kw: Any) -> RunnerGroup:
        assert self.kind != "repo", "repositories have no runner groups"
        gid = id if id is not None else self._next_id()
        self.groups[gid] = RunnerGroup(gid, name, **kw)
        return self.groups[gid]

    def group(self, name: str) -> RunnerGroup | None:
        return next((g for g in self.groups.values() if g.name.lower() == name.lower()), None)

    def add_runner(self, name: str, labels: list[str] | tuple[str, ...] = ("self-hosted", "Linux", "X64"), *,
                   status: str = "online", busy: bool = False, group_id: int = 1, ephemeral: bool = False,
                   version: str | None = "2.330.0") -> Runner:
        """Seed a runner (e.g. a ghost from a dead VM: ``status="offline"``)."""
        runner = Runner(self._next_id(), name, group_id, list(labels), status=status, busy=busy,
                        ephemeral=ephemeral, version=version)
        self.runners[runner.id] = runner
        self._changed()
        return runner

    def runner(self, name: str) -> Runner | None:
        return next((r for r in self.runners.values() if r.name == name), None)

    def set_runner(self, name: str, **changes: Any) -> Runner:
        """Change a runner's state, e.g. ``set_runner("x", status="offline", busy=False)``."""
        runner = self.runner(name)
        assert runner is not None, f"no runner {name!r} in {self.kind} {self.name}"
        for key, value in changes.items():
            setattr(runner, key, value)
        self._changed()
        return runner

    def _next_id(self) -> int:
        assert self.double is not None
        return self.double._next_id()

    def _changed(self) -> None:
        if self.double is not None:
            self.double.changed()


@dataclass
class Installation:
    id: int
    account: str  # org login / enterprise slug / user
    target_type: str = "Organization"  # Organization | Enterprise | User
    permissions: dict[str, str] = field(default_factory=lambda: {
        "organization_self_hosted_runners": "write", "administration": "write", "metadata": "read"})


@dataclass
class App:
    id: int
    public_key: str
    client_id: str = ""
    installations: dict[int, Installation] = field(default_factory=dict)

    def install(self, installation_id: int, account: str, **kw: Any) -> Installation:
        self.installations[installation_id] = Installation(installation_id, account, **kw)
        return self.installations[installation_id]


@dataclass
class InstallationToken:
    token: str
    installation: Installation
    permissions: dict[str, str]
    expires: float


@dataclass
class Job:
    """A workflow job queued for a runner whose labels include all of ``labels``.

    ``duration=None`` keeps it running until :meth:`finish`.
    """

    id: int
    name: str
    labels: list[str]
    duration: float | None
    scope: Scope | None = None
    runner_name: str | None = None
    probe_urls: list[str] = field(default_factory=list)
    command: str | None = None
    state: str = "queued"  # queued | assigned (sent to a runner) | in_progress (runner acknowledged) | completed
    result: str | None = None  # succeeded | failed | cancelled
    runner_id: int | None = None
    started: float | None = None
    double: GitHubDouble | None = field(default=None, repr=False)

    def finish(self, result: str = "succeeded") -> None:
        assert self.double is not None
        with self.double._cond:
            self.double._complete(self, result)

    def wait_started(self, timeout: float = 10.0) -> Job:
        assert self.double is not None
        self.double.wait_for(lambda: self.state in ("in_progress", "completed"), timeout, f"job {self.name} to start")
        return self

    def wait_completed(self, timeout: float = 10.0) -> Job:
        assert self.double is not None
        self.double.wait_for(lambda: self.state == "completed", timeout, f"job {self.name} to complete")
        return self


@dataclass
class Release:
    version: str
    assets: dict[str, bytes]  # asset name -> served bytes
    published: dict[str, str]  # asset name -> published sha256 hex
    digest_in: str  # asset | body | both | none
    ids: dict[str, int]
    id: int


# --- the double ----------------------------------------------------------------------


class GitHubDouble(HttpDouble):
    """See the module docstring. Configure per test; :meth:`reset` runs between tests."""

    name = "github"

    def __init__(self, api: OpenApi | None = None) -> None:
        super().__init__()
        self.api = api or OpenApi.load()
        self._ids = 100
        self.reset()

    # -- configuration -----------------------------------------------------------------

    def reset(self) -> None:
        super().reset()
        with self._cond:
            self.api_prefix = ""
            self.api_versions = set(API_VERSIONS)
            self.scopes: dict[tuple[str, str], Scope] = {}
            self.pats: set[str] = set()
            self.apps: dict[int, App] = {}
            self.installation_tokens: dict[str, InstallationToken] = {}
            self.jobs: list[Job] = []
            self.releases: dict[str, Release] = {}
            self.auth_failures: list[str] = []  # why a credential was refused, for assertions
            self.jwt_max_lifetime = 600  # GitHub refuses JWTs valid for more than 10 minutes
            self.clock_skew = 60  # tolerated future iat (GitHub recommends iat = now - 60)
            self.latest_version: str | None = None  # None: the highest published release
            self.migrate_runner_config = True
            self.busy_after_cancel = 0.5
            self.anonymous_budget: int | None = None  # unauthenticated release lookups left (None: unlimited)
            self.update_messages: list[tuple[str, str]] = []  # (runner name, target version) sent

    @property
    def api_url(self) -> str:
        """What the agent should be given as its GitHub API base URL."""
        return self.url + self.api_prefix

    def _next_id(self) -> int:
        with self._cond:
            self._ids += 1
            return self._ids

    def add_scope(self, kind: str, name: str) -> Scope:
        """Create a repo ("owner/repo"), org or enterprise; orgs and enterprises get the
        "Default" runner group with id 1, repositories use group 1 implicitly."""
        assert kind in SCOPE_KINDS, kind
        with self._cond:
            scope = Scope(kind, name, double=self)
            if kind != "repo":
                scope.add_group("Default", id=1, default=True)
            self.scopes[(kind, name)] = scope
            return scope

    def repo(self, name: str) -> Scope:
        return self.scopes.get(("repo", name)) or self.add_scope("repo", name)

    def org(self, name: str) -> Scope:
        return self.scopes.get(("org", name)) or self.add_scope("org", name)

    def enterprise(self, name: str) -> Scope:
        return self.scopes.get(("enterprise", name)) or self.add_scope("enterprise", name)

    def add_pat(self, token: str | None = None) -> str:
        """Accept a personal access token (all scopes); returns it."""
        token = token or "ghp_" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(36))
        with self._cond:
            self.pats.add(token)
        return token

    def add_app(self, app_id: int, public_key: str | None = None, client_id: str = "") -> App:
        """Register a GitHub App; default key is :func:`app_keypair`'s public half."""
        with self._cond:
            app = App(app_id, public_key or app_keypair()[1], client_id or f"Iv1.{uuid.uuid4().hex[:16]}")
            self.apps[app_id] = app
            return app

    def expire_installation_tokens(self) -> None:
        """Make every installation token minted so far expired (agent must re-mint)."""
        with self._cond:
            for tok in self.installation_tokens.values():
                tok.expires = time.time() - 1
            self.changed()

    def runners(self) -> list[tuple[Scope, Runner]]:
        with self._cond:
            return [(s, r) for s in self.scopes.values() for r in s.runners.values()]

    def find_runner(self, name: str) -> Runner | None:
        return next((r for _, r in self.runners() if r.name == name), None)

    @property
    def latest_runner(self) -> str | None:
        """The runner version GitHub wants every runner on: the newest published release."""
        with self._cond:
            if self.latest_version is not None:
                return self.latest_version
            return max(self.releases, key=_version, default=None)

    def rate_limit(self, path: str, *, kind: str = "secondary", retry_after: int | None = 1,
                   status: int | None = None, times: int = 1, method: str | None = None) -> None:
        """Inject GitHub's rate-limit answers.

        ``secondary``: 403 (or ``status``, e.g. 429) with ``Retry-After``, or with no
        header at all when ``retry_after`` is None (then a client must wait at least
        a minute); ``primary``: 403 with ``x-ratelimit-remaining: 0`` and
        ``x-ratelimit-reset`` ``retry_after`` seconds ahead.
        """
        if kind == "secondary":
            self.inject(path, method=method, status=status or 403, times=times, headers={} if retry_after is None else {
                "Retry-After": str(retry_after)}, body={
                "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
                "documentation_url": f"{DOCS}/overview/rate-limits-for-the-rest-api"})
        elif kind == "primary":
            reset = int(time.time()) + (retry_after or 0)
            self.inject(path, method=method, status=status or 403, times=times, headers={
                "x-ratelimit-limit": "5000", "x-ratelimit-remaining": "0", "x-ratelimit-used": "5000",
                "x-ratelimit-reset": str(reset), "x-ratelimit-resource": "core"}, body={
                "message": "API rate limit exceeded for installation.",
                "documentation_url": f"{DOCS}/overview/rate-limits-for-the-rest-api"})
        else:
            raise ValueError(kind)

    def fault_body(self, status: int) -> Any:
        return {"message": "Server Error" if status >= 500 else f"injected {status}", "documentation_url": DOCS}

    def queue_job(self, labels: list[str] | tuple[str, ...] = ("self-hosted",), *, name: str = "build",
                  duration: float | None = 0.0, scope: Scope | None = None, runner_name: str | None = None,
                  probe_urls: list[str] | None = None, command: str | None = None) -> Job:
        """Queue a job; the first connected idle runner with matching labels takes it.

        ``probe_urls``: the fake job tries to GET each URL and records whether it
        could (e.g. prove the runner user cannot reach the metadata endpoint).
        ``command``: a shell command the fake job runs as the runner user.
        """
        with self._cond:
            job = Job(self._next_id(), name, list(labels), duration, scope, runner_name,
                      list(probe_urls or []), command, double=self)
            self.jobs.append(job)
            self.changed()
            return job

    def add_runner_release(self, version: str, tarballs: dict[str, bytes | Path], *, digest_in: str = "both",
                           corrupt: bool = False) -> dict[str, str]:
        """Publish ``actions/runner`` release ``v<version>``.

        ``tarballs`` maps a platform ("linux-x64", "linux-arm64") to the archive.
        ``digest_in``: where the sha256 is published — the asset ``digest`` field,
        the ``<!-- BEGIN SHA … -->`` markers in the body, ``both`` or ``none``.
        ``corrupt``: serve bytes that do not match the published digest.
        Returns asset name -> published sha256.
        """
        assets: dict[str, bytes] = {}
        published: dict[str, str] = {}
        for platform, data in tarballs.items():
            blob = data.read_bytes() if isinstance(data, Path) else data
            name = f"actions-runner-{platform}-{version}.tar.gz"
            published[name] = hashlib.sha256(blob).hexdigest()
            assets[name] = blob + b"\0corrupted" if corrupt else blob
        with self._cond:
            self.releases[version] = Release(version, assets, published, digest_in,
                                             {n: self._next_id() for n in assets}, self._next_id())
        return published

    # -- request handling ------------------------------------------------------------

    def handle(self, req: Request) -> Response:
        if req.path.startswith("/_actions/"):
            return self._runner_service(req)
        if req.path.startswith("/_objects/"):
            return self._object(req)
        if req.path.startswith("/actions/runner/releases/download/"):
            return self._download_redirect(req)
        if self.api_prefix and not req.path.startswith(self.api_prefix + "/"):
            self.violate(f"{req.method} {req.path}: outside the API prefix {self.api_prefix!r}")
            return _error(404, "Not Found")
        path = req.path[len(self.api_prefix):]
        routed = self.api.match(req.method, path)
        if routed is None:
            self.violate(f"{req.method} {path}: not an operation of the GitHub subset")
            return _error(404, "Not Found")
        op, params = routed
        req.operation = op.operation_id
        resp = self._api_call(req, op.operation_id, op.template, params, op)
        resp.headers = {**self._standard_headers(), **resp.headers}  # its own (e.g. a rate limit's) win
        documented = str(resp.status) in op.spec.get("responses", {})
        if not documented and resp.status in GENERIC_STATUSES:
            problems = _errors_basic(self.api, resp.body)
        else:
            problems = op.check_response(resp.status, resp.body)
        for p in problems:
            self.violate(f"response {resp.status} to {req.method} {path} breaks {op.operation_id}: {p}")
        return resp

    def _standard_headers(self) -> dict[str, str]:
        return {
            "X-GitHub-Api-Version-Selected": "2022-11-28",
            "X-GitHub-Request-Id": uuid.uuid4().hex[:20].upper(),
            "x-ratelimit-limit": "5000", "x-ratelimit-remaining": "4999", "x-ratelimit-used": "1",
            "x-ratelimit-reset": str(int(time.time()) + 3600), "x-ratelimit-resource": "core",
        }

    def _api_call(self, req: Request, op_id: str, template: str, params: dict[str, str], op: Any) -> Response:
        # Contract checks on the request: violations fail the test; GitHub would 4xx.
        if not req.header("user-agent"):
            self.violate(f"{req.method} {req.path}: no User-Agent (GitHub answers 403)")
            return _error(403, "Request forbidden by administrative rules. "
                               "Please make sure your request has a User-Agent header")
        version = req.header("x-github-api-version")
        if version is not None and version not in self.api_versions:
            self.violate(f"{req.method} {req.path}: unsupported X-GitHub-Api-Version {version!r}")
            return _error(400, f"API version {version} is not supported.")
        for problem in op.check_path_params(params):
            self.violate(f"{req.method} {req.path}: {problem}")
            return _error(404, "Not Found")
        for problem in op.check_query(req.query):
            self.violate(f"{req.method} {req.path}: {problem}")
        body_problems = op.check_request_body(req.body, req.header("content-type"))
        if body_problems:
            for problem in body_problems:
                self.violate(f"{req.method} {req.path} request body: {problem}")
            return Response(422, {"message": "Invalid request.\n\n" + "\n".join(body_problems),
                                  "documentation_url": DOCS})
        body = req.json or {}

        with self._cond:
            if template.startswith("/app/installations/"):
                return self._access_token(req, int(params["installation_id"]), body)
            if template.startswith("/repos/{owner}/{repo}/releases/"):
                return self._get_release(req, params)
            scope = self._scope_for(template, params)
            auth = self._authorize(req, scope)
            if auth is not None:
                return auth
            assert scope is not None
            tail = template.split("/actions/", 1)[1]
            if tail == "runners/generate-jitconfig":
                return self._generate_jitconfig(scope, body)
            if tail in ("runners/registration-token", "runners/remove-token"):
                tokens = scope.registration_tokens if "registration" in tail else scope.remove_tokens
                token = "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(29))
                tokens[token] = time.time() + 3600
                return Response(201, {"token": token, "expires_at": _iso(tokens[token])})
            if tail == "runners":
                return self._list_runners(req, scope)
            if tail == "runner-groups":
                groups = [self._group_api(scope, g) for g in scope.groups.values()]
                page = self._paginate(req, groups)
                return Response(200, {"total_count": len(groups), "runner_groups": page.body},
                                headers=page.headers)
            if tail == "runner-groups/{runner_group_id}/runners":
                group_id = int(params["runner_group_id"])
                if group_id not in scope.groups:
                    return _error(404, "Not Found")
                runners = [r.api() for r in scope.runners.values() if r.runner_group_id == group_id]
                page = self._paginate(req, runners)
                return Response(200, {"total_count": len(runners), "runners": page.body}, headers=page.headers)
            if tail == "runners/{runner_id}":
                runner = scope.runners.get(int(params["runner_id"]))
                if runner is None:
                    return _error(404, "Not Found")
                if req.method == "GET":
                    return Response(200, runner.api())
                if runner.busy_now:
                    return Response(422, {"message": f'Bad request - Runner "{runner.name}" is still running a job"',
                                          "documentation_url": DOCS})
                self._drop_runner(scope, runner)
                return Response(204)
        self.violate(f"{op_id} is in the subset but the double does not implement it")
        return _error(404, "Not Found")

    # -- scopes and auth ---------------------------------------------------------------

    def _scope_for(self, template: str, params: dict[str, str]) -> Scope | None:
        if template.startswith("/repos/"):
            return self.scopes.get(("repo", f"{params['owner']}/{params['repo']}"))
        if template.startswith("/orgs/"):
            return self.scopes.get(("org", params["org"]))
        return self.scopes.get(("enterprise", params["enterprise"]))

    def _bearer(self, req: Request) -> str | None:
        header = req.header("authorization") or ""
        scheme, _, token = header.partition(" ")
        return token.strip() if scheme.lower() in ("bearer", "token") and token.strip() else None

    def _authorize(self, req: Request, scope: Scope | None) -> Response | None:
        """None if the caller may use ``scope``'s runner endpoints, else the error to send."""
        token = self._bearer(req)
        if token is None:
            return _error(401, "Requires authentication")
        if token in self.pats:
            return None if scope is not None else _error(404, "Not Found")
        inst = self.installation_tokens.get(token)
        if inst is None:
            self.auth_failures.append(f"unknown token on {req.method} {req.path}")
            return _error(401, "Bad credentials")
        if inst.expires <= time.time():
            self.auth_failures.append(f"expired installation token on {req.method} {req.path}")
            return _error(401, "Bad credentials")
        if scope is None or scope.owner != inst.installation.account:
            return _error(404, "Not Found")
        needed = {"repo": "administration", "org": "organization_self_hosted_runners"}.get(scope.kind)
        level = "read" if req.method == "GET" else "write"
        if needed and not _grants(inst.permissions.get(needed), level):
            self.auth_failures.append(f"installation token lacks {needed}:{level}")
            return _error(403, "Resource not accessible by integration")
        return None

    def _verify_jwt(self, token: str) -> App | str:
        """The App that signed ``token``, or why it is refused (GitHub's wording)."""
        parts = token.split(".")
        if len(parts) != 3:
            return "A JSON web token could not be decoded"
        try:
            header = json.loads(_b64url_decode(parts[0]))
            claims = json.loads(_b64url_decode(parts[1]))
            signature = _b64url_decode(parts[2])
        except ValueError:
            return "A JSON web token could not be decoded"
        if header.get("alg") != "RS256":
            return f"JWT alg {header.get('alg')!r} is not RS256"
        iss = claims.get("iss")
        app = next((a for a in self.apps.values() if str(iss) in (str(a.id), a.client_id)), None)
        if app is None:
            return "Integration not found"
        if not verify_rs256(app.public_key, f"{parts[0]}.{parts[1]}".encode(), signature):
            return "A JSON web token could not be decoded"
        now = time.time()
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int) or iat > now + self.clock_skew:
            return "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued"
        if not isinstance(exp, int) or exp <= now:
            return ("'Expiration time' claim ('exp') must be a numeric value representing the future time at "
                    "which the assertion expires")
        if exp - iat > self.jwt_max_lifetime:
            return "'Expiration time' claim ('exp') is too far in the future"
        return app

    def _access_token(self, req: Request, installation_id: int, body: dict[str, Any]) -> Response:
        header = req.header("authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return _error(401, "A JSON web token could not be decoded")
        app = self._verify_jwt(token.strip())
        if isinstance(app, str):
            self.auth_failures.append(app)
            return _error(401, app)
        installation = app.installations.get(installation_id)
        if installation is None:
            return _error(404, "Not Found")
        wanted = body.get("permissions") or dict(installation.permissions)
        for perm, level in wanted.items():
            if not _grants(installation.permissions.get(perm), level):
                return Response(422, {"message": "The permissions requested are not granted to this installation.",
                                      "documentation_url": DOCS})
        tok = InstallationToken("ghs_" + secrets.token_hex(18), installation, wanted, time.time() + 3600)
        self.installation_tokens[tok.token] = tok
        self.changed()
        return Response(201, {"token": tok.token, "expires_at": _iso(tok.expires), "permissions": wanted,
                              "repository_selection": "all"})

    # -- runner endpoints ----------------------------------------------------------

    def _group_api(self, scope: Scope, g: RunnerGroup) -> dict[str, Any]:
        base = f"{self.api_url}/{'enterprises' if scope.kind == 'enterprise' else 'orgs'}/{scope.name}"
        out: dict[str, Any] = {
            "id": g.id, "name": g.name, "visibility": g.visibility, "default": g.default,
            "runners_url": f"{base}/actions/runner-groups/{g.id}/runners",
            "allows_public_repositories": g.allows_public_repositories,
            "restricted_to_workflows": g.restricted_to_workflows, "selected_workflows": [],
            "workflow_restrictions_read_only": False,
        }
        if scope.kind == "org":
            out.update(inherited=False, hosted_runners_url=f"{base}/actions/runner-groups/{g.id}/hosted-runners")
        return out

    def _paginate(self, req: Request, items: list[Any]) -> Response:
        """GitHub pagination: per_page (default 30, max 100), page, and a Link header."""
        per_page = min(int((req.query.get("per_page") or ["30"])[0] or 30), 100)
        page = max(int((req.query.get("page") or ["1"])[0] or 1), 1)
        last = max((len(items) + per_page - 1) // per_page, 1)
        chunk = items[(page - 1) * per_page: page * per_page]
        links = []
        base = {k: v[0] for k, v in req.query.items()}

        def link(n: int, rel: str) -> str:
            return f'<{self.url}{req.path}?{urlencode({**base, "per_page": per_page, "page": n})}>; rel="{rel}"'

        if page < last:
            links += [link(page + 1, "next"), link(last, "last")]
        if page > 1:
            links += [link(page - 1, "prev"), link(1, "first")]
        return Response(200, chunk, headers={"Link": ", ".join(links)} if links else {})

    def _list_runners(self, req: Request, scope: Scope) -> Response:
        name = (req.query.get("name") or [None])[0]
        runners = [r.api() for r in scope.runners.values() if name is None or r.name == name]
        page = self._paginate(req, runners)
        return Response(200, {"total_count": len(runners), "runners": page.body}, headers=page.headers)

    def _generate_jitconfig(self, scope: Scope, body: dict[str, Any]) -> Response:
        if scope.runner(body["name"]) is not None:
            return Response(409, {"message": f"Already exists - A runner with the name {body['name']} already exists.",
                                  "documentation_url": DOCS, "status": "409"})
        group_id = body["runner_group_id"]
        group = scope.groups.get(group_id) if scope.kind != "repo" else RunnerGroup(1, "Default", default=True)
        if group is None or (scope.kind == "repo" and group_id != 1):
            return _error(404, "Not Found")
        runner = Runner(self._next_id(), body["name"], group.id, list(body["labels"]), ephemeral=True, jit=True)
        scope.runners[runner.id] = runner
        self.changed()
        runner_file = {
            "AgentId": runner.id, "AgentName": runner.name, "PoolId": group.id, "PoolName": group.name,
            "ServerUrl": f"{self.url}/_actions/", "GitHubUrl": f"{self.url}/{scope.path}",
            "WorkFolder": body.get("work_folder", "_work"), "Ephemeral": True, "DisableUpdate": False,
        }
        creds = {"Scheme": "OAuth", "Data": {"ClientId": runner.credential,
                                              "AuthorizationUrl": f"{self.url}/_actions/token"}}
        rsa = {"d": _b64(secrets.token_bytes(32)), "modulus": _b64(secrets.token_bytes(32)), "exponent": "AQAB"}
        encoded = _b64(json.dumps({
            ".runner": _b64(json.dumps(runner_file).encode()),
            ".credentials": _b64(json.dumps(creds).encode()),
            ".credentials_rsaparams": _b64(json.dumps(rsa).encode()),
        }).encode())
        return Response(201, {"runner": runner.api(), "encoded_jit_config": encoded})

    # -- releases and downloads ---------------------------------------------------

    def _get_release(self, req: Request, params: dict[str, str]) -> Response:
        token = self._bearer(req)
        if token is not None and token not in self.pats and token not in self.installation_tokens:
            return _error(401, "Bad credentials")  # public endpoint, but a bad token still fails
        if token is None and self.anonymous_budget is not None:
            if self.anonymous_budget <= 0:
                # Unauthenticated: 60 requests an hour per address ("Rate limits for the REST API").
                return Response(403, {"message": "API rate limit exceeded for 127.0.0.1.",
                                      "documentation_url": f"{DOCS}/overview/rate-limits-for-the-rest-api"},
                                headers={"x-ratelimit-limit": "60", "x-ratelimit-remaining": "0",
                                         "x-ratelimit-reset": str(int(time.time()) + 3600)})
            self.anonymous_budget -= 1
        tag = params.get("tag") or f"v{self.latest_runner}"
        if (params["owner"], params["repo"]) != ("actions", "runner") or not tag.startswith("v") \
                or tag[1:] not in self.releases:
            return _error(404, "Not Found")
        rel = self.releases[tag[1:]]
        return Response(200, self._release_api(rel))

    def _release_api(self, rel: Release) -> dict[str, Any]:
        now = _iso(time.time())
        bot = _user("github-actions[bot]", 41898282, self.url, kind="Bot")
        repo_api = f"{self.api_url}/repos/actions/runner"
        lines = ["## What's Changed", "- fake release served by the gh-runners GitHub double", "",
                 "## SHA-256 Checksums", "",
                 "The SHA-256 checksums for the packages included in this build are shown below:", ""]
        assets = []
        for name, blob in rel.assets.items():
            platform = name.removeprefix("actions-runner-").removesuffix(f"-{rel.version}.tar.gz")
            if rel.digest_in in ("body", "both"):
                lines.append(f"- {name} <!-- BEGIN SHA {platform} -->{rel.published[name]}"
                             f"<!-- END SHA {platform} -->")
            assets.append({
                "url": f"{repo_api}/releases/assets/{rel.ids[name]}", "id": rel.ids[name],
                "node_id": f"RA_{rel.ids[name]}", "name": name, "label": "", "uploader": bot,
                "content_type": "application/octet-stream", "state": "uploaded", "size": len(blob),
                "digest": f"sha256:{rel.published[name]}" if rel.digest_in in ("asset", "both") else None,
                "download_count": 0, "created_at": now, "updated_at": now,
                "browser_download_url": f"{self.url}/actions/runner/releases/download/v{rel.version}/{name}",
            })
        return {
            "url": f"{repo_api}/releases/{rel.id}",
            "html_url": f"{self.url}/actions/runner/releases/tag/v{rel.version}",
            "assets_url": f"{repo_api}/releases/{rel.id}/assets",
            "upload_url": f"{self.url}/uploads/repos/actions/runner/releases/{rel.id}/assets{{?name,label}}",
            "tarball_url": f"{repo_api}/tarball/v{rel.version}", "zipball_url": f"{repo_api}/zipball/v{rel.version}",
            "id": rel.id, "node_id": f"RE_{rel.id}", "tag_name": f"v{rel.version}", "target_commitish": "main",
            "name": f"v{rel.version}", "body": "\n".join(lines), "draft": False, "prerelease": False,
            "immutable": False, "created_at": now, "published_at": now, "updated_at": now, "author": bot,
            "assets": assets,
        }

    def _download_redirect(self, req: Request) -> Response:
        # github.com answers asset downloads with a 302 to an object store URL.
        _, _, rest = req.path.partition("/actions/runner/releases/download/")
        tag, _, name = rest.partition("/")
        rel = self.releases.get(tag[1:])
        if rel is None or name not in rel.assets:
            return Response(404, "Not Found", content_type="text/plain")
        return Response(302, b"", headers={"Location": f"{self.url}/_objects/{rel.ids[name]}?sig={uuid.uuid4().hex}"})

    def _object(self, req: Request) -> Response:
        asset_id = int(req.path.rsplit("/", 1)[1])
        for rel in self.releases.values():
            for name, aid in rel.ids.items():
                if aid == asset_id:
                    return Response(200, rel.assets[name], content_type="application/octet-stream",
                                    headers={"Content-Disposition": f"attachment; filename={name}"})
        return Response(404, "Not Found", content_type="text/plain")

    # -- runner service (/_actions/) -----------------------------------------------

    def _runner_service(self, req: Request) -> Response:
        parts = req.path.strip("/").split("/")[1:]
        body = req.json or {}
        with self._cond:
            if parts == ["register"] and req.method == "POST":
                return self._svc_register(body)
            if parts == ["unregister"] and req.method == "POST":
                return self._svc_unregister(body)
            runner = self._svc_runner(req)
            if isinstance(runner, Response):
                return runner
            scope, run = runner
            if parts == ["sessions"] and req.method == "POST":
                if run.session_open:
                    # The runner's SessionConflict (Constants.Runner.ReturnCode 5).
                    return Response(409, {"message": f"A session for runner {run.name} already exists."})
                run.sessions += 1
                run.session_open = True
                run.status, run.version = "online", body.get("version")
                self.changed()
                # RunnerConfigUpdater: config.sh-registered runners are told to refresh their settings.
                migrate = self.migrate_runner_config and not run.jit
                return Response(200, {"runner": run.api(), "refresh_config": migrate})
            if parts == ["sessions"] and req.method == "DELETE":
                run.status, run.session_open = "offline", False
                for job in self.jobs:  # a runner leaving mid-job loses it; an unacknowledged one is re-queued
                    if job.runner_id == run.id and job.state == "assigned":
                        job.state, job.runner_id = "queued", None
                    elif job.runner_id == run.id and job.state == "in_progress":
                        self._complete(job, "cancelled")
                self.changed()
                return Response(204)
            if parts == ["message"] and req.method == "GET":
                return self._svc_message(run, scope, float((req.query.get("wait") or ["20"])[0]))
            if len(parts) == 3 and parts[0] == "jobs" and parts[2] in ("start", "wait", "cancel"):
                job = next((j for j in self.jobs if j.id == int(parts[1]) and j.runner_id == run.id), None)
                if job is None:
                    return Response(404, {"message": "no such job"})
                if parts[2] == "start" and job.state == "assigned":
                    # The runner acknowledged: now it is busy and the job's clock runs.
                    job.state, job.started, run.busy = "in_progress", time.time(), True
                    self.changed()
                if parts[2] == "cancel":
                    if job.state == "assigned":
                        job.state, job.runner_id = "queued", None
                        self.changed()
                    else:
                        self._complete(job, "cancelled")
                if parts[2] in ("start", "cancel"):
                    return Response(200, {"state": job.state, "result": job.result})
                return self._svc_wait_job(job, float((req.query.get("wait") or ["20"])[0]))
        return Response(404, {"message": f"unknown runner service path {req.path}"})

    def _svc_runner(self, req: Request) -> tuple[Scope, Runner] | Response:
        cred = self._bearer(req)
        for scope in self.scopes.values():
            for run in scope.runners.values():
                if run.credential == cred:
                    return scope, run
        # A deleted registration: the real runner exits with "registration deleted".
        return Response(404, {"message": "Runner registration has been deleted from the server"})

    def _svc_register(self, body: dict[str, Any]) -> Response:
        token = body.get("token", "")
        scope = next((s for s in self.scopes.values() if s.registration_tokens.get(token, 0) > time.time()), None)
        if scope is None:
            return Response(404, {"message": "Invalid or expired registration token"})
        url_path = urlsplit(body.get("url", "")).path.strip("/")
        if url_path != scope.path:
            self.violate(f"config.sh --url path {url_path!r} does not match the token's {scope.kind} {scope.path!r}")
            return Response(404, {"message": f"The registration token is not valid for {body.get('url')}"})
        group_name = body.get("runner_group") or "Default"
        group = scope.group(group_name) if scope.kind != "repo" else RunnerGroup(1, "Default", default=True)
        if group is None:
            return Response(404, {"message": f"Could not find any self-hosted runner group named \"{group_name}\"."})
        existing = scope.runner(body["name"])
        if existing is not None:
            if not body.get("replace"):
                return Response(409, {"message": "A runner exists with the same name"})
            self._drop_runner(scope, existing)
        labels = list(body.get("labels") or [])
        if not body.get("no_default_labels"):
            labels = ["self-hosted", "Linux", body.get("arch", "X64"), *labels]
        run = Runner(self._next_id(), body["name"], group.id, labels, ephemeral=bool(body.get("ephemeral")),
                     disable_update=bool(body.get("disable_update")))
        scope.runners[run.id] = run
        self.changed()
        return Response(200, {"runner": run.api(), "pool_name": group.name, "server_url": f"{self.url}/_actions/",
                              "github_url": f"{self.url}/{scope.path}", "credential": run.credential})

    def _svc_unregister(self, body: dict[str, Any]) -> Response:
        token = body.get("token", "")
        for scope in self.scopes.values():
            run = scope.runners.get(int(body.get("runner_id", 0)))
            if run is None:
                continue
            if scope.remove_tokens.get(token, 0) <= time.time() and token not in self.pats:
                return Response(404, {"message": "Invalid or expired remove token"})
            if run.busy:
                return Response(422, {"message": f'Runner "{run.name}" is still running a job'})
            self._drop_runner(scope, run)
            return Response(204)
        return Response(404, {"message": "Runner not found"})

    def _drop_runner(self, scope: Scope, run: Runner) -> None:
        """Remove a registration; a job sent to it but never started goes to another runner."""
        del scope.runners[run.id]
        for job in self.jobs:
            if job.runner_id == run.id and job.state == "assigned":
                job.state, job.runner_id = "queued", None
        self.changed()

    def _svc_message(self, run: Runner, scope: Scope, wait: float) -> Response:
        deadline = time.monotonic() + wait
        while True:
            # A long poll left over from an earlier test (reset since) must not take this test's jobs.
            if run.id not in scope.runners or self.scopes.get((scope.kind, scope.name)) is not scope:
                return Response(404, {"message": "Runner registration has been deleted from the server"})
            job = self._match_job(run, scope)
            latest = self.latest_runner
            if job is not None and latest and run.version and not run.disable_update \
                    and _version(run.version) < _version(latest):
                # A job for an outdated runner: it must update first; the job waits in the queue
                # (once per session: a runner that failed to update gets no job and no second message).
                if run.update_sent != run.sessions:
                    run.update_sent = run.sessions
                    self.update_messages.append((run.name, latest))
                    self.changed()
                    return Response(200, {"type": "update", "target_version": latest})
                job = None
            if job is not None:
                job.state, job.runner_id = "assigned", run.id
                self.changed()
                return Response(200, {"job_id": job.id, "name": job.name, "probe_urls": job.probe_urls,
                                      "command": job.command})
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return Response(204)
            self._cond.wait(remaining)

    def _match_job(self, run: Runner, scope: Scope) -> Job | None:
        labels = {label.lower() for label in run.labels}
        for job in self.jobs:
            if job.state != "queued" or (job.scope is not None and job.scope is not scope):
                continue
            if job.runner_name is not None and job.runner_name != run.name:
                continue
            if {label.lower() for label in job.labels} <= labels:
                return job
        return None

    def _svc_wait_job(self, job: Job, wait: float) -> Response:
        deadline = time.monotonic() + wait
        while job.state != "completed":
            if job.duration is not None and job.started is not None and time.time() >= job.started + job.duration:
                self._complete(job, "succeeded")
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return Response(200, {"state": job.state, "result": None})
            if job.duration is not None and job.started is not None:
                remaining = min(remaining, job.started + job.duration - time.time())
            self._cond.wait(max(remaining, 0.001))
        return Response(200, {"state": job.state, "result": job.result})

    def _complete(self, job: Job, result: str) -> None:
        """Finish a job; like GitHub, an ephemeral runner is removed after its job."""
        if job.state == "completed":
            return
        job.state, job.result = "completed", result
        for scope in self.scopes.values():
            run = scope.runners.get(job.runner_id or -1)
            if run is not None:
                run.busy = False
                if result == "cancelled":
                    run.busy_until = time.time() + self.busy_after_cancel
                if run.ephemeral:
                    del scope.runners[run.id]
        self.changed()


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def _grants(have: str | None, want: str) -> bool:
    order = {"read": 1, "write": 2, "admin": 3}
    return have is not None and order.get(have, 0) >= order.get(want, 9)


def _errors_basic(api: OpenApi, body: Any) -> list[str]:
    return [f"{e.json_path}: {e.message}" for e in api.component("basic-error").iter_errors(body)]


def _user(login: str, uid: int, base: str, kind: str = "User") -> dict[str, Any]:
    api = f"{base}/users/{login}"
    return {
        "login": login, "id": uid, "node_id": f"U_{uid}", "avatar_url": f"{base}/avatars/{uid}",
        "gravatar_id": "", "url": api, "html_url": f"{base}/{login}", "followers_url": f"{api}/followers",
        "following_url": f"{api}/following{{/other_user}}", "gists_url": f"{api}/gists{{/gist_id}}",
        "starred_url": f"{api}/starred{{/owner}}{{/repo}}", "subscriptions_url": f"{api}/subscriptions",
        "organizations_url": f"{api}/orgs", "repos_url": f"{api}/repos", "events_url": f"{api}/events{{/privacy}}",
        "received_events_url": f"{api}/received_events", "type": kind, "site_admin": False,
    }

