"""The boot path: at most two sequential remote round trips before run.sh with a PAT (secret, JIT), three
with a GitHub App (secret, installation token, JIT); connections reused; the download beside them.

Remote services (the secret store, GitHub) are given latency, so calls made in parallel overlap in time and
calls made one after another do not; link-local ones (IMDS, the GCE metadata server) are not counted.

On AWS the agent itself is one round trip more, first: the loader's S3 GET of the bundle (EC2's 16 KB of user
data no longer hold it; bootstrap/loader.py). Only on a first boot: a restart finds it in place."""

from __future__ import annotations

import pytest
from doubles._http import HttpDouble, Request
from doubles.github import GitHubDouble
from doubles.runner_tarball import DEFAULT_VERSION
from test_agent_harness import Vm, vm_factory_fixture  # noqa: F401 - fixture

LABELS = ["self-hosted", "e2e"]
LATENCY = 0.05


def remote_doubles(vm: Vm, request: pytest.FixtureRequest) -> list[HttpDouble]:
    if vm.cloud == "aws":
        return [vm.github, request.getfixturevalue("aws").front]
    return [vm.github, request.getfixturevalue("gcp").secretmanager]


def sequential(calls: list[Request]) -> int:
    """The longest chain of calls each made after the previous one was answered."""
    chain, end = 0, 0.0
    for call in sorted(calls, key=lambda c: c.answered or 0):
        if call.time >= end:
            chain, end = chain + 1, call.answered or call.time
    return chain


def before_run_sh(vm: Vm, doubles: list[HttpDouble]) -> list[Request]:
    started = next(r["time"] for r in vm.records("invoke") if r["entry"] == "run.sh")
    return sorted((r for d in doubles for r in d.requests() if r.time < started), key=lambda r: r.time)


def boot_with_latency(vm: Vm, github: GitHubDouble, request: pytest.FixtureRequest) -> tuple[list[Request], str]:
    """One boot with LATENCY on every remote double, up to its one job: the calls before run.sh, and the
    agent's output."""
    doubles = remote_doubles(vm, request)
    for double in doubles:
        double.latency = LATENCY
    github.queue_job(LABELS, duration=0)
    agent = vm.run(GH_RUNNERS_SWEEP_CHANCE="0")  # the sweep would start as run.sh does
    assert agent.proc.returncode == 0, agent.output
    return before_run_sh(vm, doubles), agent.output


@pytest.mark.parametrize(("cloud", "kind", "expected"), [
    ("aws", "pat", ["s3:GetObject", "ssm:GetParameter", "actions/generate-runner-jitconfig-for-org"]),
    ("gcp", "pat", ["secretmanager", "actions/generate-runner-jitconfig-for-org"]),
    ("aws", "app", ["s3:GetObject", "ssm:GetParameter", "apps/create-installation-access-token",
                    "actions/generate-runner-jitconfig-for-org"]),
    ("gcp", "app", ["secretmanager", "apps/create-installation-access-token",
                    "actions/generate-runner-jitconfig-for-org"]),
])
def test_two_remote_round_trips_before_run_sh_with_a_pat_three_with_an_app(
        vm_factory, github: GitHubDouble, request: pytest.FixtureRequest, cloud: str, kind: str,
        expected: list[str]) -> None:
    group = github.org("acme").add_group("linux-pool")
    vm: Vm = vm_factory(cloud, "organization", kind, runner_group="linux-pool", group_id=group.id,
                        runner_version=DEFAULT_VERSION)
    vm.prebake_runner()
    calls, output = boot_with_latency(vm, github, request)
    assert [c.operation or "secretmanager" for c in calls] == expected, output
    assert sequential(calls) == len(expected)
    github_calls = [c for c in calls if c in github.requests()]
    assert len({c.connection for c in github_calls}) == 1  # one kept-alive connection: one TLS handshake


def test_the_download_overlaps_the_credential_and_registration(vm_factory, github: GitHubDouble,
                                                                request: pytest.FixtureRequest) -> None:
    """A pinned release whose digest is known before boot (bootstrap/runner_releases.json): no release
    lookup at all, and the download starts while the secret is still being read."""
    vm: Vm = vm_factory("gcp", "organization", runner_version=DEFAULT_VERSION)
    url = f"{github.url}/actions/runner/releases/download/v{DEFAULT_VERSION}/{vm.release.tarball.name}"
    vm.config["runner"].update(url=url, sha256=vm.release.sha256)  # what the renderer writes for a listed pin
    secretmanager = request.getfixturevalue("gcp").secretmanager
    secretmanager.latency = 0.3
    github.queue_job(LABELS, duration=0)
    agent = vm.run()
    assert agent.proc.returncode == 0, agent.output
    assert not github.requests(path=r"^/repos/actions/runner/releases")  # nothing looked up
    secret = secretmanager.requests()[0]
    download = github.requests(path=r"/releases/download/")[0]
    jit = github.requests("POST", r"/generate-jitconfig$")[0]
    assert download.time < secret.answered < jit.time  # type: ignore[operator]


def test_latest_is_looked_up_beside_the_registration(vm_factory, github: GitHubDouble,
                                                      request: pytest.FixtureRequest) -> None:
    """`latest` needs one lookup (with the target's token on github.com); it runs beside the JIT call, not
    before it: still two sequential round trips when the image has that release."""
    group = github.org("acme").add_group("linux-pool")
    vm: Vm = vm_factory("aws", "organization", runner_group="linux-pool", group_id=group.id)
    vm.prebake_runner()
    vm.github.add_runner_release(DEFAULT_VERSION, {"linux-x64": vm.release.tarball})  # prebake cleared it
    calls, _ = boot_with_latency(vm, github, request)
    assert {c.operation for c in calls} >= {"repos/get-latest-release", "actions/generate-runner-jitconfig-for-org"}
    agents = [c for c in calls if c.operation != "s3:GetObject"]  # the loader's fetch comes first, alone
    assert sequential(agents) == 2, [(c.operation, c.time, c.answered) for c in calls]
    lookup = next(c for c in calls if c.operation == "repos/get-latest-release")
    assert lookup.header("authorization")  # github.com: the token's 5,000 an hour, not 60 per address

