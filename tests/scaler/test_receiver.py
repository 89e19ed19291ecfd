"""The receiver as a process on loopback, fed GitHub's own example deliveries, signed as GitHub signs.

Each test starts `python -m scaler serve` with the configuration document the
deploy side renders, pointed at moto (Auto Scaling, SSM) behind the SigV4
front and at the GCP doubles (metadata token, Secret Manager, MIGs).
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from receiver_doubles.stack import PAT, WEBHOOK_SECRET, Stack, build_stack
from receiver_doubles.webhooks import Sender, github_headers, job_payload, ping_payload, sign
from receiver_doubles.world import PoolSpec, aws_desired

POOLS = [
    PoolSpec("codex", "aws", ["codex"], max=3),
    PoolSpec("general", "gcp", ["general"], max=2, min=1),
]
CODEX = ["self-hosted", "linux", "x64", "codex"]
GENERAL = ["self-hosted", "Linux", "X64", "general"]  # case differs from the pool's: still a match


@pytest.fixture
def stack(aws_front: Any, gcp: Any, github_api: Any, start_receiver: Any) -> Stack:
    return build_stack(POOLS, aws_front=aws_front, gcp=gcp, github_api=github_api, start_receiver=start_receiver,
                       secret=WEBHOOK_SECRET, pat=PAT)


def send(stack: Stack, cloud: str, event: str, payload: dict[str, Any], **kw: Any) -> tuple[int, dict[str, Any]]:
    receiver = stack.aws if cloud == "aws" else stack.gcp
    sender = Sender(receiver.url, WEBHOOK_SECRET)
    try:
        return sender.deliver(event, payload, **kw)
    finally:
        sender.close()


def executes(aws_front: Any) -> list[Any]:
    return [c for c in aws_front.calls if c.action == "ExecutePolicy"]


def test_queued_job_grows_its_aws_pool_by_one(stack: Stack, aws_front: Any) -> None:
    status, body = send(stack, "aws", "workflow_job", job_payload("queued", 9001, CODEX))
    assert (status, body["decision"], body["pool"]) == (200, "grown", "codex")
    assert aws_desired(aws_front, stack.pool("codex")) == 1
    (call,) = executes(aws_front)
    assert call.params["HonorCooldown"] == "false"
    assert call.params["PolicyName"] == "gh-runners-scale-up"


def test_the_other_clouds_receiver_leaves_the_job_alone(stack: Stack, gcp: Any, aws_front: Any) -> None:
    status, body = send(stack, "gcp", "workflow_job", job_payload("queued", 9002, CODEX))
    assert (status, body["decision"], body["pool"]) == (200, "other-cloud", "codex")
    assert gcp.compute.requests(method="POST", path="createInstances$") == []
    assert executes(aws_front) == []


def test_queued_job_creates_an_instance_named_after_it_on_gcp(stack: Stack, gcp: Any) -> None:
    status, body = send(stack, "gcp", "workflow_job", job_payload("queued", 9003, GENERAL))
    assert (status, body["decision"]) == (200, "grown")
    group = gcp.compute.groups[("gh-runners-test", "us-central1", "ghr-test-general")]
    assert [vm.name for vm in group.live][-1] == "ghr-test-general-j9003"
    assert group.target_size == 2


def test_a_redelivered_job_adds_nothing_on_gcp(stack: Stack, gcp: Any) -> None:
    group = gcp.compute.groups[("gh-runners-test", "us-central1", "ghr-test-general")]
    payload = job_payload("queued", 9004, GENERAL)
    assert send(stack, "gcp", "workflow_job", payload, delivery="d-1")[1]["decision"] == "grown"
    # GitHub's redelivery carries the same delivery id and body.
    status, body = send(stack, "gcp", "workflow_job", payload, delivery="d-1")
    assert (status, body["decision"]) == (200, "held")
    assert "exists already" in body["detail"]
    assert group.target_size == 2


def test_aws_group_stops_at_max(stack: Stack, aws_front: Any) -> None:
    pool = stack.pool("codex")
    decisions = [send(stack, "aws", "workflow_job", job_payload("queued", 9100 + i, CODEX))[1]["decision"]
                 for i in range(pool.max + 2)]
    assert decisions == ["grown"] * (pool.max + 2)  # AWS does not say it capped; the group shows it
    assert aws_desired(aws_front, pool) == pool.max
    assert max(aws_front.desired_history[pool.group]) == pool.max


def test_gcp_group_stops_at_max_even_when_deliveries_race(stack: Stack, gcp: Any) -> None:
    pool = stack.pool("general")
    group = gcp.compute.groups[("gh-runners-test", "us-central1", pool.group)]
    payloads = [job_payload("queued", 9200 + i, GENERAL) for i in range(8)]
    with ThreadPoolExecutor(8) as workers:
        replies = list(workers.map(lambda p: send(stack, "gcp", "workflow_job", p), payloads))
    assert all(status == 200 for status, _ in replies)
    # Deliveries that raced past max deleted the surplus while it was still being created
    # (no runner on it): the group ends at max. A reply may say "grown" for an instance a
    # later delivery trimmed; its job then waits for the reconcile, like any job at max.
    assert len(group.live) == pool.max
    assert all(vm.action in ("NONE", "CREATING") for vm in group.live)
    assert sum(body["decision"] == "grown" for _, body in replies) >= pool.max - pool.min


def test_scaling_activity_in_progress_is_retried(stack: Stack, aws_front: Any) -> None:
    aws_front.contend(2)
    status, body = send(stack, "aws", "workflow_job", job_payload("queued", 9300, CODEX))
    assert (status, body["decision"]) == (200, "grown")
    assert len(executes(aws_front)) == 3
    assert aws_desired(aws_front, stack.pool("codex")) == 1


def test_scale_failure_answers_503_for_githubs_record(stack: Stack, aws_front: Any) -> None:
    aws_front.contend(1000)  # never clears within the webhook's budget
    status, body = send(stack, "aws", "workflow_job", job_payload("queued", 9301, CODEX))
    assert (status, body["decision"]) == (503, "scale-failed")
    aws_front.contend(-aws_front.contended)


@pytest.mark.parametrize("action", ["in_progress", "completed", "waiting"])
def test_other_actions_change_nothing(stack: Stack, aws_front: Any, action: str) -> None:
    status, body = send(stack, "aws", "workflow_job", job_payload(action, 9400, CODEX, runner_name="codex-i-1"))
    assert (status, body["decision"]) == (200, "noted")
    assert executes(aws_front) == []


def test_jobs_for_labels_no_pool_has_are_ignored(stack: Stack, aws_front: Any) -> None:
    for labels in (["ubuntu-latest"], ["self-hosted", "linux", "x64", "codex", "gpu"]):
        status, body = send(stack, "aws", "workflow_job", job_payload("queued", 9500, labels))
        assert (status, body["decision"]) == (200, "no-pool")
    assert executes(aws_front) == []


def test_githubs_own_examples_are_understood(stack: Stack, aws_front: Any) -> None:
    from receiver_doubles.webhooks import examples

    for payload in examples()["workflow_job"]:
        status, body = send(stack, "aws", "workflow_job", payload)
        # The examples come from another repository and ask for labels no pool has.
        assert status == 200, body
        assert body["decision"] in ("noted", "not-target", "no-pool")
    assert executes(aws_front) == []


def test_jobs_of_another_repository_are_not_scaled_for(stack: Stack, aws_front: Any) -> None:
    status, body = send(stack, "aws", "workflow_job", job_payload("queued", 9600, CODEX, "someone/else"))
    assert (status, body["decision"]) == (200, "not-target")
    assert executes(aws_front) == []


def test_ping_and_other_events(stack: Stack) -> None:
    assert send(stack, "aws", "ping", ping_payload()) == (200, {"decision": "pong"})
    status, body = send(stack, "gcp", "push", {"ref": "refs/heads/main"})
    assert (status, body["decision"]) == (202, "ignored-event")


@pytest.mark.parametrize("cloud", ["aws", "gcp"])
def test_bad_or_missing_signature_is_401_and_changes_nothing(stack: Stack, aws_front: Any, gcp: Any,
                                                           cloud: str) -> None:
    payload = job_payload("queued", 9700, CODEX if cloud == "aws" else GENERAL)
    for secret in (None, b"wrong secret", WEBHOOK_SECRET[:-1]):
        status, body = send(stack, cloud, "workflow_job", payload, secret=secret)
        assert (status, body) == (401, {"decision": "bad-signature"})
    receiver = stack.aws if cloud == "aws" else stack.gcp
    sender = Sender(receiver.url, WEBHOOK_SECRET)
    body_bytes = json.dumps(payload).encode()
    headers = github_headers("workflow_job", body_bytes, WEBHOOK_SECRET, action="queued")
    for bad in ("sha1=" + sign(WEBHOOK_SECRET, body_bytes)[7:], sign(WEBHOOK_SECRET, body_bytes).upper(),
                "sha256=", "sha256=ü" + "0" * 63):
        assert sender.post(body_bytes, {**headers, "X-Hub-Signature-256": bad})[0] == 401
    # A signature over other bytes: the body was changed in transit.
    assert sender.post(body_bytes + b" ", headers)[0] == 401
    sender.close()
    assert executes(aws_front) == []
    assert gcp.compute.requests(method="POST", path="createInstances$") == []


def test_malformed_and_oversized_bodies_are_400(stack: Stack) -> None:
    sender = Sender(stack.aws.url, WEBHOOK_SECRET)
    no_repository = {"action": "queued", "workflow_job": {"id": "7", "labels": []}, "repository": {}}
    for body in (b"{not json", b"[]", json.dumps({"action": "queued"}).encode(), json.dumps(no_repository).encode()):
        headers = github_headers("workflow_job", body, WEBHOOK_SECRET, action="queued")
        status, reply = sender.post(body, headers)
        assert (status, reply["decision"]) == (400, "malformed"), body
    big = b"{" + b" " * (1 << 20) + b"}"
    status, reply = sender.post(big, github_headers("workflow_job", big, WEBHOOK_SECRET))
    assert (status, reply["decision"]) == (400, "too-large")
    sender.close()


def test_logs_carry_the_delivery_never_the_secret_or_payload(stack: Stack) -> None:
    payload = job_payload("queued", 9800, CODEX)
    send(stack, "aws", "workflow_job", payload, delivery="7a9c1e00-0000-4000-8000-00000000abcd")
    send(stack, "aws", "workflow_job", payload, secret=b"guess", delivery="bad-1")
    stack.aws.stop()
    text = stack.aws.log_path.read_text()
    lines = stack.aws.log()
    assert {line["delivery"] for line in lines} >= {"7a9c1e00-0000-4000-8000-00000000abcd", "bad-1"}
    assert WEBHOOK_SECRET.decode() not in text and PAT not in text
    assert payload["repository"]["owner"]["avatar_url"] not in text  # no payload echoed
    assert sign(WEBHOOK_SECRET, json.dumps(payload).encode()) not in text


def test_gcp_receiver_fetches_a_new_token_when_its_cached_one_is_refused(stack: Stack, gcp: Any) -> None:
    assert send(stack, "gcp", "workflow_job", job_payload("queued", 9900, GENERAL))[1]["decision"] == "grown"
    with gcp.metadata._cond:
        gcp.state.tokens.clear()  # every token issued so far is now refused (revoked, or expired early)
    assert send(stack, "gcp", "workflow_job", job_payload("queued", 9901, GENERAL))[1]["decision"] == "held"
    tokens = gcp.metadata.requests(path="/token$")
    assert len(tokens) == 2
