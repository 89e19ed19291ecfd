"""The deployed entry points, called the way each platform calls them.

* Lambda: `scaler.aws.handler(event, context)` with a function URL event
  (payload format 2.0: https://docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html)
  and with EventBridge's scheduled event.
* Cloud Run functions: `scaler.gcp.webhook(request)` / `reconcile(request)`
  with the flask.Request the Functions Framework passes
  (functions-framework-python: `function(request._get_current_object())`).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flask
import pytest
from receiver_doubles.stack import CREDENTIAL_PARAMETER, PAT, RECEIVER_KEY, WEBHOOK_PARAMETER, WEBHOOK_SECRET
from receiver_doubles.webhooks import github_headers, job_payload
from receiver_doubles.world import PoolSpec, aws_desired, document, seed_aws_group

import scaler.aws
import scaler.gcp
from scaler.config import CONFIG_ENV, CONFIG_FILE_ENV, load_deployed

POOLS = [PoolSpec("codex", "aws", ["codex"], max=2), PoolSpec("general", "gcp", ["general"], max=2)]
CODEX = ["self-hosted", "linux", "x64", "codex"]
GENERAL = ["self-hosted", "linux", "x64", "general"]


@pytest.fixture
def fresh_functions(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test is a cold start: no warm state carried over."""
    monkeypatch.setattr(scaler.aws, "_function", None)
    monkeypatch.setattr(scaler.gcp, "_function", None)
    yield


@pytest.fixture
def lambda_env(monkeypatch: pytest.MonkeyPatch, aws_front: Any, github_api: Any, fresh_functions: None) -> Any:
    from doubles.aws import REGION

    ssm = aws_front.seed("ssm")
    ssm.put_parameter(Name=WEBHOOK_PARAMETER, Value=WEBHOOK_SECRET.decode(), Type="SecureString")
    ssm.put_parameter(Name=CREDENTIAL_PARAMETER, Value=json.dumps({"kind": "pat", "token": PAT}),
                      Type="SecureString")
    seed_aws_group(aws_front, POOLS[0])
    doc = document("aws", POOLS, github_url=github_api.url, endpoints={"aws": aws_front.url},
                   webhook_secret={"location": WEBHOOK_PARAMETER, "region": REGION},
                   credential={"location": CREDENTIAL_PARAMETER, "region": REGION})
    monkeypatch.setenv(CONFIG_ENV, json.dumps(doc))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", RECEIVER_KEY[0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", RECEIVER_KEY[1])
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return aws_front


def url_event(body: bytes, headers: dict[str, str], *, base64_body: bool = False) -> dict[str, Any]:
    """A Lambda function URL event, payload format 2.0 (lower-case header names)."""
    return {
        "version": "2.0", "routeKey": "$default", "rawPath": "/", "rawQueryString": "",
        "headers": {k.lower(): v for k, v in headers.items()},
        "requestContext": {"http": {"method": "POST", "path": "/", "protocol": "HTTP/1.1",
                                    "sourceIp": "140.82.115.1", "userAgent": "GitHub-Hookshot/6bd4b29"}},
        "body": base64.b64encode(body).decode() if base64_body else body.decode(),
        "isBase64Encoded": base64_body,
    }


@pytest.mark.parametrize("base64_body", [False, True])
def test_lambda_function_url_delivery(lambda_env: Any, base64_body: bool) -> None:
    body = json.dumps(job_payload("queued", 4242, CODEX)).encode()
    reply = scaler.aws.handler(url_event(body, github_headers("workflow_job", body, WEBHOOK_SECRET),
                                         base64_body=base64_body))
    assert reply["statusCode"] == 200 and json.loads(reply["body"])["decision"] == "grown"
    assert aws_desired(lambda_env, POOLS[0]) == 1


def test_lambda_refuses_unsigned_and_unknown_events(lambda_env: Any) -> None:
    body = json.dumps(job_payload("queued", 4243, CODEX)).encode()
    reply = scaler.aws.handler(url_event(body, github_headers("workflow_job", body, None)))
    assert reply["statusCode"] == 401
    assert scaler.aws.handler({"Records": []})["statusCode"] == 400
    assert aws_desired(lambda_env, POOLS[0]) == 0


def test_lambda_scheduled_event_reconciles(lambda_env: Any, github_api: Any) -> None:
    github_api.queue(77, "octo-org/octo-repo", CODEX)
    event = {"version": "0", "id": "7bf73129-1428-4cd3-a780-95db273d1602", "detail-type": "Scheduled Event",
             "source": "aws.events", "account": "123456789012", "time": "2025-06-02T12:00:00Z",
             "region": "us-east-1", "resources": ["arn:aws:events:us-east-1:123456789012:rule/ghs-reconcile"],
             "detail": {}}
    (plan,) = scaler.aws.handler(event)["reconciled"]
    assert (plan["pool"], plan["queued"], plan["added"]) == ("codex", 1, 1)
    assert aws_desired(lambda_env, POOLS[0]) == 1


@pytest.fixture
def cloud_run_env(monkeypatch: pytest.MonkeyPatch, gcp: Any, github_api: Any, fresh_functions: None) -> Any:
    webhook = gcp.add_secret("ghs-test-webhook-secret", WEBHOOK_SECRET)
    credential = gcp.add_secret("ghs-test-credential", json.dumps({"kind": "pat", "token": PAT}).encode())
    gcp.compute.add_group(POOLS[1].group)
    doc = document("gcp", POOLS, github_url=github_api.url,
                   endpoints={"gcp_compute": gcp.compute.url, "gcp_metadata": gcp.metadata.url,
                              "gcp_secretmanager": gcp.secrets.url},
                   webhook_secret={"location": webhook, "region": None},
                   credential={"location": credential, "region": None})
    monkeypatch.setenv(CONFIG_ENV, json.dumps(doc))
    return gcp


def test_cloud_run_webhook_with_a_flask_request(cloud_run_env: Any) -> None:
    app = flask.Flask("functions-framework-stand-in")
    body = json.dumps(job_payload("queued", 4244, GENERAL)).encode()
    headers = github_headers("workflow_job", body, WEBHOOK_SECRET)
    with app.test_request_context("/", method="POST", data=body, headers=headers):
        text, status, reply_headers = scaler.gcp.webhook(flask.request._get_current_object())  # type: ignore[attr-defined]
    assert (status, json.loads(text)["decision"]) == (200, "grown")
    assert reply_headers["Content-Type"] == "application/json"
    group = cloud_run_env.compute.groups[("gh-runners-test", "us-central1", POOLS[1].group)]
    assert [vm.name for vm in group.live] == [f"{POOLS[1].group}-j4244"]
    big = b"x" * (2 << 20)
    with app.test_request_context("/", method="POST", data=big, headers=headers):
        assert scaler.gcp.webhook(flask.request._get_current_object())[1] == 400  # type: ignore[attr-defined]


def test_cloud_run_reconcile(cloud_run_env: Any, github_api: Any) -> None:
    github_api.queue(78, "octo-org/octo-repo", GENERAL)
    app = flask.Flask("functions-framework-stand-in")
    with app.test_request_context("/", method="POST"):
        text, status, _ = scaler.gcp.reconcile(flask.request._get_current_object())  # type: ignore[attr-defined]
    (plan,) = json.loads(text)["reconciled"]
    assert (status, plan["queued"], plan["added"]) == (200, 1, 1)


def test_deployed_configuration_is_read_from_the_archive_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             github_api: Any) -> None:
    doc = document("gcp", POOLS, github_url=github_api.url, endpoints={},
                   webhook_secret={"location": "projects/p/secrets/w/versions/latest", "region": None},
                   credential={"location": "projects/p/secrets/c/versions/latest", "region": None})
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.delenv(CONFIG_FILE_ENV, raising=False)
    (tmp_path / "scaler.json").write_text(json.dumps(doc))
    assert load_deployed(tmp_path).cloud == "gcp"
    other = tmp_path / "elsewhere.json"
    other.write_text(json.dumps({**doc, "stack": "other"}))
    monkeypatch.setenv(CONFIG_FILE_ENV, str(other))
    assert load_deployed(tmp_path).stack == "other"
