"""Retries: 5xx, 429, rate limits and network errors are retried within a bounded budget; then one clear line."""

from __future__ import annotations

import signal
import time

import pytest
from doubles.github import GitHubDouble
from test_agent_harness import APP_ID, INSTALLATION_ID, Vm, vm_factory_fixture  # noqa: F401 - fixture

LABELS = ["self-hosted", "e2e"]


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("ERROR")]


def test_github_5xx_and_every_kind_of_rate_limit_are_retried(vm_factory, github: GitHubDouble) -> None:
    """GitHub's secondary rate limits come as 403 or 429, with Retry-After or without; without it a client
    waits at least a minute (docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api,
    "Handle rate limit errors appropriately"; the harness makes that minute 0.3 s)."""
    vm: Vm = vm_factory("gcp", "organization")
    github.inject(r"/generate-jitconfig$", status=503, times=1)
    github.rate_limit(r"/generate-jitconfig$", kind="secondary", status=403, retry_after=1)
    github.rate_limit(r"/generate-jitconfig$", kind="secondary", status=429, retry_after=None)
    github.rate_limit(r"/actions/runner-groups$", kind="secondary", status=403, retry_after=None)
    github.rate_limit(r"/actions/runner-groups$", kind="primary", retry_after=2)
    reset = int(github.faults[-1].response.headers["x-ratelimit-reset"])  # type: ignore[union-attr]
    github.inject(r"/releases/latest$", kind="reset", times=1)
    github.queue_job(LABELS, duration=0)
    started = time.monotonic()
    agent = vm.run()
    assert agent.proc.returncode == 0, agent.output
    jit = github.requests("POST", r"/generate-jitconfig$")
    assert [r.status for r in jit] == [503, 403, 429, 201]
    assert jit[2].time - jit[1].time >= 1  # Retry-After honoured
    assert jit[3].time - jit[2].time >= 0.3  # no header: the minimum wait
    groups = github.requests("GET", r"/actions/runner-groups$")
    assert [r.status for r in groups] == [403, 403, 200]
    assert groups[1].time - groups[0].time >= 0.3 and groups[2].time >= reset  # x-ratelimit-reset honoured
    assert len(github.requests(path=r"/releases/latest$")) == 2
    assert time.monotonic() - started < 15


def test_a_permission_403_is_not_a_rate_limit(vm_factory, github: GitHubDouble) -> None:
    vm: Vm = vm_factory("aws", "organization", kind="app")
    github.apps[APP_ID].installations[INSTALLATION_ID].permissions.pop("organization_self_hosted_runners")
    agent = vm.run()
    assert agent.proc.returncode == 1
    errors = error_lines(agent.output)
    assert "HTTP 403 Resource not accessible by integration" in errors[0], agent.output
    assert len(github.requests("GET", r"/runner-groups$")) == 1  # final at once
    vm.assert_no_leaks()


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
    assert len(github.requests(path=r"/runner-groups$")) == 1
    vm.assert_no_leaks()


def test_deregistration_retries_end_with_the_leave_budget(vm_factory, github: GitHubDouble) -> None:
    """GitHub down while the VM leaves: the DELETE is retried until the leave budget (4 s in the harness),
    not for the 300 s a call may take at boot; the window the VM leaves in is not overrun."""
    vm: Vm = vm_factory("gcp", ephemeral=False)
    agent = vm.start(GH_RUNNERS_RETRY_SECONDS="300", GH_RUNNERS_DRAIN_SECONDS="1")
    agent.wait_for(r"runner .* started")
    github.wait_for(lambda: (r := github.find_runner(vm.runner_name)) is not None and r.status == "online", 20)
    github.inject(r"/actions/runners/\d+$", method="DELETE", status=503, times=1000)
    stopping = time.monotonic()
    agent.signal(signal.SIGTERM)
    assert agent.wait(30) == 0, agent.output
    assert time.monotonic() - stopping < 1 + 5 + 4 + 3  # drain + the runner's stop + leave + slack
    assert "could not deregister runner" in agent.output
