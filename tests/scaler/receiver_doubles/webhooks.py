"""Webhook deliveries as GitHub sends them: its own example payloads, its schemas, its signature.

Payloads start from GitHub's examples (npm @octokit/webhooks-examples, kept in
tests/scaler/fixtures/webhook-examples.json): a test changes only the job's id,
labels, status and repository, and every payload is validated against the
event's schema from @octokit/openapi-webhooks (webhook-schemas.json, OpenAPI
3.1, i.e. JSON Schema 2020-12) before it is sent. Headers are the ones that
description lists for the event; the signature is `sha256=` + HMAC-SHA256 of
the exact body bytes under the secret, as GitHub documents
(https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries).
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import http.client
import json
import uuid
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
URI = "urn:gh-runners:webhooks"
HOOK_ID = "512342179"


@cache
def examples() -> dict[str, list[dict[str, Any]]]:
    return json.loads((FIXTURES / "webhook-examples.json").read_text())["events"]


@cache
def schemas() -> dict[str, Any]:
    return json.loads((FIXTURES / "webhook-schemas.json").read_text())


@cache
def _validator(webhook: str) -> jsonschema.Draft202012Validator:
    registry: Registry = Registry().with_resource(URI, Resource(contents=schemas(), specification=DRAFT202012))
    return jsonschema.Draft202012Validator(
        {"$ref": f"{URI}#/components/schemas/webhook-{webhook}"}, registry=registry,
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def schema_errors(event: str, payload: dict[str, Any]) -> list[str]:
    """Problems of `payload` against the schema of `event` (`ping` or `workflow_job`'s action)."""
    webhook = "ping" if event == "ping" else f"workflow-job-{payload['action'].replace('_', '-')}"
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in _validator(webhook).iter_errors(payload)]


def header_names(event: str, action: str | None = None) -> list[str]:
    """The request headers the description lists for this webhook."""
    webhook = "ping" if event == "ping" else f"workflow-job-{(action or 'queued').replace('_', '-')}"
    return [p["name"] for p in schemas()["webhooks"][webhook]["post"]["parameters"] if p["in"] == "header"]


def example(action: str) -> dict[str, Any]:
    """GitHub's first example workflow_job delivery with this action that its schema accepts.

    (One older `in_progress` example lacks run_attempt, workflow_name and
    head_branch, which the schema now requires; it is skipped here.)
    """
    return copy.deepcopy(_valid_example(action))


@cache
def _valid_example(action: str) -> dict[str, Any]:
    return next(e for e in examples()["workflow_job"] if e["action"] == action and not schema_errors("workflow_job", e))


def job_payload(action: str, job_id: int, labels: list[str], repository: str = "octo-org/octo-repo", *,
                runner_name: str | None = None, run_id: int | None = None) -> dict[str, Any]:
    """A workflow_job delivery: GitHub's example for `action` with this job's facts; schema-checked."""
    doc = example(action)
    job = doc["workflow_job"]
    owner, name = repository.split("/")
    run = run_id or job_id * 10
    job.update({
        "id": job_id, "run_id": run, "labels": list(labels), "status": action,
        "url": f"https://api.github.com/repos/{repository}/actions/jobs/{job_id}",
        "html_url": f"https://github.com/{repository}/actions/runs/{run}/job/{job_id}",
        "run_url": f"https://api.github.com/repos/{repository}/actions/runs/{run}",
        "runner_name": runner_name if action in ("in_progress", "completed") else None,
        "runner_id": 7 if runner_name and action in ("in_progress", "completed") else None,
        "conclusion": "success" if action == "completed" else None,
    })
    if action not in ("in_progress", "completed"):
        job.update({"runner_group_id": None, "runner_group_name": None})
    repo = doc["repository"]
    repo.update({"name": name, "full_name": repository, "html_url": f"https://github.com/{repository}",
                 "url": f"https://api.github.com/repos/{repository}"})
    repo["owner"]["login"] = owner
    problems = schema_errors("workflow_job", doc)
    assert not problems, f"test payload breaks GitHub's schema: {problems[:3]}"
    return doc


def ping_payload() -> dict[str, Any]:
    doc = copy.deepcopy(examples()["ping"][0])
    problems = schema_errors("ping", doc)
    assert not problems, problems[:3]
    return doc


def sign(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def github_headers(event: str, body: bytes, secret: bytes | None, *, delivery: str | None = None,
                   action: str | None = None) -> dict[str, str]:
    """Every header GitHub sends with this delivery (names from the description)."""
    values = {
        "User-Agent": "GitHub-Hookshot/6bd4b29",
        "X-Github-Hook-Id": HOOK_ID,
        "X-Github-Event": event,
        "X-Github-Hook-Installation-Target-Id": "186853002",
        "X-Github-Hook-Installation-Target-Type": "repository",
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
    }
    headers = {name: values[name] for name in header_names(event, action) if name in values}
    if secret is not None:
        headers["X-Hub-Signature-256"] = sign(secret, body)
        # GitHub also sends the legacy SHA-1 signature; the receiver must not rely on it.
        headers["X-Hub-Signature"] = "sha1=" + hmac.new(secret, body, hashlib.sha1).hexdigest()
    headers["Content-Type"] = "application/json"
    return headers


SIGNED = b"<the receiver's secret>"  # a sentinel: sign with the secret the Sender was given


class Sender:
    """Deliveries to one receiver URL over a kept-alive connection (one per thread)."""

    def __init__(self, url: str, secret: bytes) -> None:
        parts = urlsplit(url)
        self.host, self.port, self.secret = parts.hostname or "127.0.0.1", parts.port or 80, secret
        self.conn: http.client.HTTPConnection | None = None

    def post(self, body: bytes, headers: dict[str, str], path: str = "/") -> tuple[int, dict[str, Any]]:
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
            try:
                self.conn.request("POST", path, body=body, headers=headers)
                resp = self.conn.getresponse()
                data = resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    self.close()
                return resp.status, json.loads(data) if data else {}
            except (ConnectionError, http.client.HTTPException):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def deliver(self, event: str, payload: dict[str, Any], *, secret: bytes | None = SIGNED,
                delivery: str | None = None) -> tuple[int, dict[str, Any]]:
        """`secret`: the receiver's (default), another key, or None for an unsigned delivery."""
        body = json.dumps(payload).encode()
        key = self.secret if secret is SIGNED else secret
        headers = github_headers(event, body, key, delivery=delivery, action=payload.get("action"))
        return self.post(body, headers)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
