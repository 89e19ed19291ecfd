"""The cloud-neutral decision, in process: signature, order of checks, the pool-choice rule."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from receiver_doubles.webhooks import github_headers, job_payload, sign

from scaler.config import Pool, ScalerConfig, load
from scaler.decision import (
    MAX_BODY_BYTES,
    SECRET_REFRESH_SECONDS,
    Grown,
    Receiver,
    ScaleError,
    choose_pool,
    parse_job,
    signature_valid,
)

SECRET = b"It's a Secret to Everybody"


def config(*pools: dict[str, Any], cloud: str = "aws", scope: str = "repository",
           target: str = "octo-org/octo-repo") -> ScalerConfig:
    entries = []
    for order, pool in enumerate(pools):
        entry = {"order": order, "max": 5, "min": 0, **pool}
        if entry["cloud"] == cloud:
            entry[cloud] = ({"region": "us-east-1", "group": f"g-{entry['name']}", "scale_up_policy": "up"}
                            if cloud == "aws" else
                            {"project": "p", "region": "r", "group": f"g-{entry['name']}", "instance_base": "b"})
        entries.append(entry)
    ref = {"location": "/x", "region": "us-east-1"} if cloud == "aws" else {"location": "projects/p/secrets/s"}
    return load(json.dumps({
        "version": 1, "cloud": cloud, "github": {"scope": scope, "target": target, "api_url": "https://api.github.com"},
        "webhook_secret": ref, "github_credential": ref, "pools": entries}))


def pool(name: str, cloud: str, *labels: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "cloud": cloud, "labels": ["self-hosted", "linux", "x64", *labels], **kw}


@dataclass
class Recorder:
    grown: list[tuple[str, int]] = field(default_factory=list)
    fail: bool = False

    def grow(self, pool: Pool, job_id: int) -> Grown:
        if self.fail:
            raise ScaleError("ExecutePolicy: ScalingActivityInProgress")
        self.grown.append((pool.name, job_id))
        return Grown(True, "ok")


def receiver(cfg: ScalerConfig, groups: Recorder | None = None, secret: bytes = SECRET) -> Receiver:
    return Receiver(cfg, lambda: secret, groups or Recorder())


def deliver(rcv: Receiver, payload: Any, *, event: str = "workflow_job", secret: bytes | None = SECRET,
            raw: bytes | None = None) -> tuple[int, str]:
    body = raw if raw is not None else json.dumps(payload).encode()
    reply = rcv.handle(github_headers(event, body, secret), body)
    return reply.status, reply.decision


CODEX = ["self-hosted", "linux", "x64", "codex"]


# --- signature ----------------------------------------------------------------------------


def test_signature_matches_githubs_documented_example() -> None:
    # https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries#testing-the-webhook-payload-validation
    header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert signature_valid(b"It's a Secret to Everybody", b"Hello, World!", header)
    assert not signature_valid(b"It's a Secret to Everybody", b"Hello, World?", header)
    assert not signature_valid(b"", b"Hello, World!", header)  # an empty secret verifies nothing
    for bad in (None, "", "sha256=", header.upper(), header.replace("sha256", "sha1"), "sha256=ü"):
        assert not signature_valid(SECRET, b"Hello, World!", bad)


def test_signature_is_checked_before_parsing() -> None:
    rcv = receiver(config(pool("codex", "aws", "codex")))
    # Garbage with no signature is 401, not 400: nothing unsigned is parsed.
    assert deliver(rcv, None, raw=b"{not json", secret=None) == (401, "bad-signature")
    assert deliver(rcv, None, raw=b"{not json", secret=b"other") == (401, "bad-signature")
    assert deliver(rcv, None, raw=b"{not json") == (400, "malformed")


def test_oversized_bodies_are_refused_before_hashing() -> None:
    hashed: list[int] = []
    rcv = receiver(config(pool("codex", "aws", "codex")))
    rcv.read_secret = lambda: hashed.append(1) or SECRET  # type: ignore[func-returns-value]
    big = b" " * (MAX_BODY_BYTES + 1)
    assert deliver(rcv, None, raw=big) == (400, "too-large")
    assert hashed == []


def test_a_rotated_secret_is_read_again_but_not_on_every_bad_delivery() -> None:
    now = [0.0]
    secrets = [b"old", b"new"]
    reads: list[bytes] = []

    def read() -> bytes:
        reads.append(secrets[0])
        return secrets[0]

    rcv = Receiver(config(pool("codex", "aws", "codex")), read, Recorder(), clock=lambda: now[0])
    payload = job_payload("queued", 1, CODEX)
    assert deliver(rcv, payload, secret=b"old")[0] == 200
    secrets.pop(0)  # the stack rotated it
    assert deliver(rcv, payload, secret=b"new")[0] == 401  # cached copy is fresh: no re-read yet
    now[0] += SECRET_REFRESH_SECONDS
    assert deliver(rcv, payload, secret=b"new")[0] == 200
    for _ in range(5):
        assert deliver(rcv, payload, secret=b"attacker")[0] == 401
    assert reads == [b"old", b"new"]


def test_secret_store_failure_is_503() -> None:
    def broken() -> bytes:
        raise ScaleError("SSM GetParameter: AccessDenied")

    rcv = Receiver(config(pool("codex", "aws", "codex")), broken, Recorder())
    assert deliver(rcv, job_payload("queued", 1, CODEX)) == (503, "secret-unavailable")


# --- what happens per action --------------------------------------------------------------


def test_only_queued_grows_and_only_its_own_clouds_pool() -> None:
    groups = Recorder()
    cfg = config(pool("codex", "aws", "codex"), pool("general", "gcp", "general"))
    rcv = receiver(cfg, groups)
    assert deliver(rcv, job_payload("queued", 11, CODEX)) == (200, "grown")
    assert deliver(rcv, job_payload("queued", 12, ["self-hosted", "general"])) == (200, "other-cloud")
    for action in ("in_progress", "completed", "waiting"):
        assert deliver(rcv, job_payload(action, 11, CODEX, runner_name="codex-i-1")) == (200, "noted")
    assert groups.grown == [("codex", 11)]


def test_fixed_pools_win_their_jobs_but_do_not_grow() -> None:
    groups = Recorder()
    # Both fit; codex has fewer labels, so it wins and grows.
    cfg = config(pool("codex", "aws", "codex"), pool("pinned", "aws", "codex", "x", scales_on_demand=False))
    assert deliver(receiver(cfg, groups), job_payload("queued", 1, CODEX)) == (200, "grown")
    cfg = config(pool("pinned", "aws", "codex", scales_on_demand=False), pool("wide", "aws", "codex", "x"))
    assert deliver(receiver(cfg, groups), job_payload("queued", 2, CODEX)) == (200, "fixed-pool")
    assert groups.grown == [("codex", 1)]


def test_scale_failure_is_503() -> None:
    rcv = receiver(config(pool("codex", "aws", "codex")), Recorder(fail=True))
    assert deliver(rcv, job_payload("queued", 1, CODEX)) == (503, "scale-failed")


@pytest.mark.parametrize(("scope", "target", "repository", "decision"), [
    ("repository", "octo-org/octo-repo", "Octo-Org/Octo-Repo", "grown"),
    ("repository", "octo-org/octo-repo", "octo-org/other", "not-target"),
    ("organization", "octo-org", "octo-org/anything", "grown"),
    ("organization", "octo-org", "someone/else", "not-target"),
    ("enterprise", "acme", "someone/else", "grown"),
])
def test_deliveries_outside_the_target_are_not_scaled_for(scope: str, target: str, repository: str,
                                                          decision: str) -> None:
    rcv = receiver(config(pool("codex", "aws", "codex"), scope=scope, target=target))
    assert deliver(rcv, job_payload("queued", 1, CODEX, repository)) == (200, decision)


@pytest.mark.parametrize(("body", "problem"), [
    (b"[1]", "not an object"),
    (b'{"workflow_job": {}, "repository": {}}', "no action"),
    (b'{"action": "queued", "repository": {}}', "no workflow_job"),
    (b'{"action": "queued", "workflow_job": {"id": true, "labels": []}, "repository": {}}', "id"),
    (b'{"action": "queued", "workflow_job": {"id": 1, "labels": "x"}, "repository": {}}', "labels"),
    (b'{"action": "queued", "workflow_job": {"id": 1, "labels": []}, "repository": {"full_name": "a/b"}}', "owner"),
    (b"\xff\xfe", "not JSON"),
])
def test_malformed_payloads_say_what_is_wrong(body: bytes, problem: str) -> None:
    result = parse_job(body)
    assert isinstance(result, str) and problem in result


# --- the pool-choice rule ------------------------------------------------------------------


def pools_of(*specs: tuple[str, str, list[str]]) -> list[Pool]:
    return list(config(*(pool(name, cloud, *labels) for name, cloud, labels in specs)).pools)


def test_rule_labels_all_belong_case_insensitively() -> None:
    pools = pools_of(("codex", "aws", ["Codex"]), ("general", "gcp", ["general"]))
    assert choose_pool(["SELF-HOSTED", "codex"], pools).name == "codex"  # type: ignore[union-attr]
    assert choose_pool(["codex"], pools).name == "codex"  # type: ignore[union-attr]
    assert choose_pool(["codex", "general"], pools) is None
    assert choose_pool(["ubuntu-latest"], pools) is None
    assert choose_pool([], pools) is None


def test_rule_tightest_fit_then_file_order_across_clouds() -> None:
    pools = pools_of(("gpu", "aws", ["gpu", "big"]), ("general", "gcp", []), ("also", "aws", []))
    # [self-hosted, linux] fits all three: the pools with fewest labels tie, the first in the file wins.
    assert choose_pool(["self-hosted", "linux"], pools).name == "general"  # type: ignore[union-attr]
    assert choose_pool(["gpu"], pools).name == "gpu"  # type: ignore[union-attr]


LABELS = st.sampled_from(["self-hosted", "linux", "x64", "arm64", "gpu", "big", "codex", "GPU", "Linux"])


@settings(max_examples=200, deadline=None)
@given(
    specs=st.lists(st.tuples(st.sampled_from(["aws", "gcp"]), st.lists(LABELS, max_size=4)), min_size=1,
                   max_size=6),
    job=st.lists(LABELS, min_size=1, max_size=4),
    seed=st.randoms(use_true_random=False),
)
def test_rule_is_one_answer_whatever_the_receiver_or_list_order(specs: list[tuple[str, list[str]]],
                                                                  job: list[str], seed: Any) -> None:
    entries = [pool(f"p{i}", cloud, *dict.fromkeys(label.lower() for label in labels))
               for i, (cloud, labels) in enumerate(specs)]
    chosen = {}
    for cloud in ("aws", "gcp"):
        pools = list(config(*entries, cloud=cloud).pools)
        seed.shuffle(pools)  # order in the document must not matter: `order` decides
        chosen[cloud] = choose_pool(job, pools)
    names = {cloud: found.name if found else None for cloud, found in chosen.items()}
    assert names["aws"] == names["gcp"]  # both receivers pick the same pool: one acts, the other defers
    winner = chosen["aws"]
    wanted = {label.lower() for label in job}
    fitting = [p for p in config(*entries).pools if wanted <= p.label_keys]
    if winner is None:
        assert not fitting
    else:
        assert wanted <= winner.label_keys
        assert all((len(winner.label_keys), winner.order) <= (len(p.label_keys), p.order) for p in fitting)


def test_sign_helper_agrees_with_the_receiver() -> None:
    body = b'{"zen": "Design for failure."}'
    assert signature_valid(SECRET, body, sign(SECRET, body))


def test_an_unforeseen_failure_is_500_and_logged_with_the_delivery(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def grow(self, pool: Pool, job_id: int) -> Grown:
            raise KeyError("DesiredCapacity")

    rcv = Receiver(config(pool("codex", "aws", "codex")), lambda: SECRET, Broken())
    body = json.dumps(job_payload("queued", 1, CODEX)).encode()
    headers = github_headers("workflow_job", body, SECRET, delivery="d-500")
    with caplog.at_level("INFO", logger="scaler"):
        reply = rcv.handle(headers, body)
    assert (reply.status, reply.decision) == (500, "internal-error")
    assert any("d-500" in r.getMessage() and "KeyError" in r.getMessage() for r in caplog.records)
