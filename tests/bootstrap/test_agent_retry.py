"""Retries: 5xx, 429, rate limits and network errors are retried within a bounded budget; then one clear line."""

from __future__ import annotations

import time

import pytest
from doubles.github import GitHubDouble
from test_agent_harness import Vm, vm_factory_fixture  # noqa: F401 - fixture

LABELS = ["self-hosted", "e2e"]


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("ERROR")]


def test_github_5xx_429_and_rate_limits_are_retried(vm_factory, github: GitHubDouble) -> None:
    vm: Vm = vm_factory("gcp", "organization")
    github.inject(r"/generate-jitconfig$", status=503, times=2)
    github.rate_limit(r"/actions/runner-groups$", kind="secondary", status=429, retry_after=1)
    github.rate_limit(r"/actions/runners$", kind="primary", retry_after=1)
    github.inject(r"/releases/tags/", kind="reset", times=1)
    github.queue_job(LABELS, duration=0)
    started = time.monotonic()
    agent = vm.run()
    assert agent.proc.returncode == 0, agent.output
    assert len(github.requests("POST", r"/generate-jitconfig$")) == 3
    groups = github.requests("GET", r"/actions/runner-groups$")
    assert [r.status for r in groups] == [429, 200]
    assert groups[1].time - groups[0].time >= 1  # Retry-After honoured
    listing = github.requests("GET", r"/actions/runners$")
    assert [r.status for r in listing][:2] == [403, 200]
    assert len(github.requests("GET", r"/releases/tags/")) == 2
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("cloud", ["aws", "gcp"])
def test_secret_store_5xx_and_resets_are_retried(vm_factory, github: GitHubDouble, request: pytest.FixtureRequest,
                                                 cloud: str) -> None:
    vm: Vm = vm_factory(cloud)
    if cloud == "aws":
        aws = request.getfixturevalue("aws")
        aws.front.inject(r"^/$", status=500, times=2)
        aws.imds.inject(r"/api/token$", kind="reset", times=1)
    else:
        gcp = request.getfixturevalue("gcp")
        gcp.secretmanager.inject(r":access$", status=503, times=2)
        gcp.metadata.inject(r"/token$", kind="reset", times=1)
    github.queue_job(LABELS, duration=0)
    agent = vm.run()
    assert agent.proc.returncode == 0, agent.output


@pytest.mark.parametrize("cloud", ["aws", "gcp"])
def test_unreachable_secret_store_gives_up_in_bounded_time(vm_factory, refused_url: str, cloud: str) -> None:
    vm: Vm = vm_factory(cloud)
    budget = 1.5
    store = "GH_RUNNERS_SSM_URL" if cloud == "aws" else "GH_RUNNERS_SECRETMANAGER_URL"
    started = time.monotonic()
    agent = vm.run(**{store: refused_url, "GH_RUNNERS_RETRY_SECONDS": str(budget)})
    elapsed = time.monotonic() - started
    assert agent.proc.returncode == 1
    errors = error_lines(agent.output)
    assert len(errors) == 1, agent.output
    assert "gave up after" in errors[0] and refused_url in errors[0]
    attempts = int(errors[0].split("gave up after ")[1].split()[0])
    assert attempts > 1
    assert elapsed < budget + 3  # the budget bounds the retries (it stops early when the next wait would not fit)
    vm.assert_no_leaks()


def test_a_refused_credential_is_not_retried(vm_factory, github: GitHubDouble) -> None:
    vm: Vm = vm_factory("aws", "organization")
    github.pats.clear()  # the stored PAT was revoked
    agent = vm.run()
    assert agent.proc.returncode == 1
    errors = error_lines(agent.output)
    assert len(errors) == 1 and "HTTP 401 Bad credentials" in errors[0], agent.output
    assert len(github.requests(path=r"/releases/tags/")) == 1
    vm.assert_no_leaks()
