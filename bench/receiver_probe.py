"""Run by bench/receiver.py under pytest, never collected by `make test` (testpaths = tests).

It starts the webhook receivers exactly as tests/scaler does -- the same
session doubles (conftest.py fixtures: moto behind the SigV4 front, the GCP
metadata/Secret Manager/MIG doubles, the GitHub REST double) and `python -m
scaler serve` per cloud -- and times deliveries one after another over one
kept-alive connection, as GitHub's own deliveries arrive one request at a
time. One JSON line per case goes to $BENCH_RECEIVER_OUT.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

SCALER_TESTS = Path(__file__).resolve().parent.parent / "tests" / "scaler"
sys.path.insert(0, str(SCALER_TESTS))

import conftest as scaler_fixtures  # type: ignore[import-not-found,unused-ignore]  # noqa: E402
from receiver_doubles.stack import PAT, WEBHOOK_SECRET, build_stack  # type: ignore[import-not-found,unused-ignore]  # noqa: E402
from receiver_doubles.webhooks import Sender, github_headers, job_payload  # type: ignore[import-not-found,unused-ignore]  # noqa: E402
from receiver_doubles.world import PoolSpec  # type: ignore[import-not-found,unused-ignore]  # noqa: E402

REPS = int(os.environ.get("BENCH_RECEIVER_REPS", "20"))
OUT = Path(os.environ.get("BENCH_RECEIVER_OUT", "receiver.jsonl"))
# Every fixture of tests/scaler/conftest.py, as a module attribute so pytest finds it here too.
for _name, _value in vars(scaler_fixtures).items():
    if type(_value).__name__ == "FixtureFunctionDefinition" or hasattr(_value, "_pytestfixturefunction"):
        globals()[_name] = _value

POOLS = [PoolSpec("codex", "aws", ["codex"], max=1000), PoolSpec("general", "gcp", ["general"], max=1000)]
SHRINK_EVERY = 20
LABELS = {"aws": ["self-hosted", "linux", "x64", "codex"], "gcp": ["self-hosted", "linux", "x64", "general"]}


def _time(sender: Sender, body: bytes, headers: dict[str, str]) -> tuple[float, int, str]:
    start = time.perf_counter()
    status, reply = sender.post(body, headers)
    return time.perf_counter() - start, status, reply.get("decision", "")


def _shrink(cloud: str, aws_front: Any, gcp: Any) -> None:
    """Empty the pool's group again (straight in the double, not through the receiver)."""
    if cloud == "aws":
        aws_front.seed("autoscaling").set_desired_capacity(AutoScalingGroupName=POOLS[0].group, DesiredCapacity=0)
    else:
        group = gcp.compute.groups[("gh-runners-test", "us-central1", POOLS[1].group)]
        with gcp.compute._cond:
            group.vms.clear()
            group.target_size = 0


def _cloud_alone(cloud: str, stack: Any, aws_front: Any, gcp: Any) -> list[float]:
    """The same cloud calls a scale-up makes, from this process: what the doubles themselves cost."""
    import boto3
    from receiver_doubles.stack import RECEIVER_KEY  # type: ignore[import-not-found,unused-ignore]

    from scaler.config import load
    from scaler.gcp import GcpGroups

    timings = []
    if cloud == "aws":
        client = boto3.client("autoscaling", endpoint_url=aws_front.url, region_name="us-east-1",
                              aws_access_key_id=RECEIVER_KEY[0], aws_secret_access_key=RECEIVER_KEY[1])
        client.describe_auto_scaling_groups(AutoScalingGroupNames=[POOLS[0].group])  # connection + signer warm
        for n in range(REPS):
            if n % SHRINK_EVERY == 0:
                _shrink(cloud, aws_front, gcp)
            start = time.perf_counter()
            client.execute_policy(AutoScalingGroupName=POOLS[0].group, PolicyName="gh-runners-scale-up",
                                  HonorCooldown=False)
            timings.append(time.perf_counter() - start)
        return timings
    config = load(stack.gcp.config_path.read_text())
    groups = GcpGroups(config)
    pool = config.pool("general")
    for n in range(REPS):
        if n % SHRINK_EVERY == 0:
            _shrink(cloud, aws_front, gcp)
        start = time.perf_counter()
        groups.grow(pool, 9_000_000 + n)
        timings.append(time.perf_counter() - start)
    return timings


class Cases:
    """Timed deliveries to one receiver, by case."""

    def __init__(self, sender: Sender, first_job: int, shrink: Any) -> None:
        self.sender, self.job_id, self.shrink = sender, first_job, shrink
        self.timings: dict[str, list[tuple[float, int, str]]] = {}

    def run(self, case: str, action: str, labels: list[str], *, times: int,
            secret: bytes | None = WEBHOOK_SECRET, runner: str | None = None) -> None:
        for n in range(times):
            if n and n % SHRINK_EVERY == 0:
                self.shrink()  # untimed: keep the group small, as a pool is, and moto fast
            self.job_id += 1
            body = json.dumps(job_payload(action, self.job_id, labels, runner_name=runner)).encode()
            headers = github_headers("workflow_job", body, secret, action=action)
            self.timings.setdefault(case, []).append(_time(self.sender, body, headers))


@pytest.mark.timeout(900)
def test_receiver_handling_time(aws_front: Any, gcp: Any, github_api: Any, start_receiver: Any) -> None:
    stack = build_stack(POOLS, aws_front=aws_front, gcp=gcp, github_api=github_api, start_receiver=start_receiver,
                        secret=WEBHOOK_SECRET, pat=PAT)
    results: list[dict[str, Any]] = []
    for cloud, receiver in (("aws", stack.aws), ("gcp", stack.gcp)):
        other = "gcp" if cloud == "aws" else "aws"
        cases = Cases(Sender(receiver.url, WEBHOOK_SECRET), 1_000_000 if cloud == "aws" else 2_000_000,
                      lambda cloud=cloud: _shrink(cloud, aws_front, gcp))
        # The first delivery after start: the secret is read, boto3 (AWS) is imported, the token fetched.
        cases.run("first delivery (cold: secret read, clients made) + scale-up", "queued", LABELS[cloud], times=1)
        cases.run("queued: scale-up", "queued", LABELS[cloud], times=REPS)
        cases.run("in_progress / completed: noted", "in_progress", LABELS[cloud], times=REPS, runner=f"x-{cloud}")
        cases.run("queued for the other cloud's pool", "queued", LABELS[other], times=REPS)
        cases.run("bad signature (401)", "queued", LABELS[cloud], times=REPS, secret=b"wrong")
        cases.sender.close()
        for case, timings in cases.timings.items():
            results.append({"cloud": cloud, "case": case, "seconds": [t for t, _, _ in timings],
                            "statuses": sorted({s for _, s, _ in timings}),
                            "decisions": sorted({d for _, _, d in timings})})
        results.append({"cloud": cloud, "case": "the scale-up's cloud calls alone, no receiver (the doubles' share)",
                        "seconds": _cloud_alone(cloud, stack, aws_front, gcp), "statuses": [], "decisions": []})
        lines = [line for line in receiver.log() if "ms" in line]
        for label, picked in (("scale-ups", [li for li in lines if li["decision"] == "grown"]),
                              ("no cloud call", [li for li in lines if li["decision"] != "grown"])):
            results.append({"cloud": cloud, "case": f"inside the handler (its own log), {label}",
                            "seconds": [li["ms"] / 1000 for li in picked], "statuses": [], "decisions": []})
    with OUT.open("a") as out:
        for result in results:
            out.write(json.dumps(result) + "\n")
