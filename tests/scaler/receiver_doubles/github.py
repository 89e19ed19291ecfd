"""GitHub for the receiver: the REST operations the reconcile calls, over a small model of jobs and runners.

Every request is routed and checked (query parameters, body) and every
response validated against GitHub's own OpenAPI description, pruned to these
operations by scripts/extract_webhooks.py (tests/scaler/fixtures/github-reconcile.json).
Objects are filled from the schemas' `required` lists, so a field GitHub
requires is always there, with the model's values where they matter.

Authentication: a PAT is any token in `tokens`; a GitHub App's JWT is checked
with `openssl dgst -verify` against the App's public key (a judge that is not
our own RSA code), and exchanged for an installation token.
"""

from __future__ import annotations

import base64
import json
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from doubles._http import HttpDouble, Request, Response
from doubles.schema import OpenApi

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "github-reconcile.json"


@dataclass
class Job:
    id: int
    run_id: int
    repository: str
    labels: list[str]
    status: str = "queued"  # queued | in_progress | completed
    runner_name: str | None = None


@dataclass
class Runner:
    id: int
    name: str
    labels: list[str]
    busy: bool = False
    status: str = "online"


@dataclass
class App:
    app_id: str
    installation_id: str
    public_key_pem: str


class ActionsDouble(HttpDouble):
    name = "github-actions"

    def __init__(self) -> None:
        super().__init__()
        self.api = OpenApi.load(FIXTURE)
        self.reset()

    def reset(self) -> None:
        super().reset()
        with self._cond:
            self.tokens: set[str] = set()
            self.app: App | None = None
            self.jobs: dict[int, Job] = {}
            self.runners: list[Runner] = []
            self.repositories: list[str] = []
            self.archived: set[str] = set()
            self._next = 1000

    # -- model ------------------------------------------------------------------------------

    def queue(self, job_id: int, repository: str, labels: list[str], *, run_id: int | None = None) -> Job:
        with self._cond:
            job = Job(job_id, run_id or job_id * 10, repository, list(labels))
            self.jobs[job_id] = job
            if repository not in self.repositories:
                self.repositories.append(repository)
            self.changed()
            return job

    def add_runner(self, name: str, labels: list[str], *, busy: bool = False) -> Runner:
        with self._cond:
            self._next += 1
            runner = Runner(self._next, name, list(labels), busy)
            self.runners.append(runner)
            self.changed()
            return runner

    def run_status(self, run_id: int) -> str:
        statuses = {job.status for job in self.jobs.values() if job.run_id == run_id}
        if statuses == {"queued"}:
            return "queued"
        if statuses == {"completed"}:
            return "completed"
        return "in_progress"

    # -- requests ---------------------------------------------------------------------------

    def handle(self, req: Request) -> Response:
        found = self.api.match(req.method, req.path)
        if found is None:
            self.violate(f"{req.method} {req.path}: not an operation of the reconcile's subset")
            return Response(404, {"message": "Not Found"})
        op, params = found
        req.operation = op.operation_id
        for problem in op.check_query(req.query) + op.check_path_params(params):
            self.violate(f"{op.operation_id}: {problem}")
        for problem in op.check_request_body(req.body, req.header("content-type")):
            self.violate(f"{op.operation_id} request: {problem}")
        if req.header("x-github-api-version") != "2022-11-28":
            self.violate(f"{op.operation_id}: no X-GitHub-Api-Version: 2022-11-28")
        auth = req.header("authorization") or ""
        token = auth.removeprefix("Bearer ").strip()
        query = {k: v[0] for k, v in req.query.items()}
        with self._cond:
            if op.operation_id == "apps/create-installation-access-token":
                resp = self._installation_token(token, params)
            elif token not in self.tokens:
                resp = Response(401, {"message": "Bad credentials", "documentation_url": "https://docs.github.com"})
            else:
                resp = self._serve(op.operation_id, params, query)
        if resp.status in (200, 201):
            for problem in op.check_response(resp.status, resp.body):
                self.violate(f"{op.operation_id} response: {problem}")
        return resp

    def _installation_token(self, jwt: str, params: dict[str, str]) -> Response:
        if self.app is None or params.get("installation_id") != self.app.installation_id or not _jwt_ok(
                jwt, self.app):
            return Response(401, {"message": "A JSON web token could not be decoded",
                                  "documentation_url": "https://docs.github.com"})
        token = f"ghs_{base64.b32encode(str(time.time_ns()).encode()).decode().rstrip('=').lower()}"
        self.tokens.add(token)
        expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
        return Response(201, {"token": token, "expires_at": expires})

    def _serve(self, operation: str, params: dict[str, str], query: dict[str, str]) -> Response:
        per_page, page = int(query.get("per_page", 30)), int(query.get("page", 1))

        def paged(items: list[Any]) -> list[Any]:
            return items[(page - 1) * per_page: page * per_page]

        if operation.startswith("actions/list-self-hosted-runners"):
            runners = [self._runner(r) for r in self.runners]
            return Response(200, {"total_count": len(runners), "runners": paged(runners)})
        if operation == "repos/list-for-org":
            repos = sorted(self.repositories) if query.get("sort") == "full_name" else list(self.repositories)
            return Response(200, paged([self._repository(name) for name in repos]))
        repository = f"{params['owner']}/{params['repo']}"
        if operation == "actions/list-workflow-runs-for-repo":
            run_ids = sorted({j.run_id for j in self.jobs.values() if j.repository == repository}, reverse=True)
            wanted = query.get("status")
            runs = [self._run(run_id, repository) for run_id in run_ids
                    if wanted is None or self.run_status(run_id) == wanted]
            return Response(200, {"total_count": len(runs), "workflow_runs": paged(runs)})
        if operation == "actions/list-jobs-for-workflow-run":
            run_id = int(params["run_id"])
            jobs = [self._job(j) for j in self.jobs.values() if j.run_id == run_id and j.repository == repository]
            return Response(200, {"total_count": len(jobs), "jobs": paged(jobs)})
        self.violate(f"{operation}: modelled nowhere")
        return Response(404, {"message": "Not Found"})

    # -- objects ------------------------------------------------------------------------------

    def sample(self, schema_name: str, /, **values: Any) -> dict[str, Any]:
        """An object of schema `schema_name` with every required field, then `values` on top."""
        schema = self.api.document["components"]["schemas"][schema_name]
        out = {key: _value(self.api, schema["properties"][key], key) for key in schema.get("required", [])}
        out.update(values)
        return out

    def _user(self, login: str) -> dict[str, Any]:
        return self.sample("simple-user", login=login, id=abs(hash(login)) % 10**8, type="Organization")

    def _repository(self, full_name: str) -> dict[str, Any]:
        owner, name = full_name.split("/")
        return self.sample("minimal-repository", id=abs(hash(full_name)) % 10**8, name=name, full_name=full_name,
                           owner=self._user(owner), archived=full_name in self.archived,
                           html_url=f"https://github.com/{full_name}")

    def _run(self, run_id: int, repository: str) -> dict[str, Any]:
        return self.sample("workflow-run", id=run_id, status=self.run_status(run_id), conclusion=None,
                           repository=self._repository(repository), head_repository=self._repository(repository),
                           head_commit=None, pull_requests=[])

    def _job(self, job: Job) -> dict[str, Any]:
        return self.sample("job", id=job.id, run_id=job.run_id, status=job.status, labels=list(job.labels),
                           runner_name=job.runner_name, runner_id=None, runner_group_id=None,
                           runner_group_name=None, conclusion="success" if job.status == "completed" else None,
                           completed_at=None)

    def _runner(self, runner: Runner) -> dict[str, Any]:
        labels = [{"id": i + 1, "name": label, "type": "read-only" if i < 3 else "custom"}
                  for i, label in enumerate(runner.labels)]
        return self.sample("runner", id=runner.id, name=runner.name, os="linux", status=runner.status,
                           busy=runner.busy, labels=labels)


def _value(api: OpenApi, schema: dict[str, Any], key: str) -> Any:
    schema = api.deref(schema)
    if schema.get("nullable"):
        return None
    if "enum" in schema:
        return schema["enum"][0]
    for combo in ("allOf", "anyOf", "oneOf"):
        if combo in schema:
            return _value(api, schema[combo][0], key)
    kind = schema.get("type")
    if kind == "string":
        fmt = schema.get("format")
        if fmt == "date-time":
            return "2025-01-01T00:00:00Z"
        if fmt == "uri" or key.endswith("url"):
            return f"https://api.github.com/{key}"
        return key
    if kind == "integer":
        return 1
    if kind == "number":
        return 1.0
    if kind == "boolean":
        return False
    if kind == "array":
        return []
    if kind == "object" or "properties" in schema:
        return {k: _value(api, schema["properties"][k], k) for k in schema.get("required", [])}
    return None


def _jwt_ok(jwt: str, app: App) -> bool:
    """RS256 over `header.payload`, checked by openssl; claims as GitHub requires (iss, iat, exp <= 10 min)."""
    try:
        header, payload, signature = jwt.split(".")
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        sig = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    except ValueError:
        return False
    now = time.time()
    if str(claims.get("iss")) != app.app_id or not claims["iat"] <= now < claims["exp"] <= now + 600:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        key, sig_file = Path(tmp, "key.pem"), Path(tmp, "sig")
        key.write_text(app.public_key_pem)
        sig_file.write_bytes(sig)
        done = subprocess.run(["openssl", "dgst", "-sha256", "-verify", str(key), "-signature", str(sig_file)],
                              input=f"{header}.{payload}".encode(), capture_output=True, check=False)
    return done.returncode == 0

