"""A scale-up burst: 50 VMs boot at once, of two stacks whose pools have the same name, against a GitHub
that answers with secondary rate limits (403 and 429, with and without Retry-After) and 5xx.

Behind the `burst` marker (`-m "not burst"` skips it while iterating); `make test` runs it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator

import pytest
from doubles.gcp import GcpDoubles, MetadataDouble
from doubles.github import GitHubDouble
from doubles.runner_tarball import RunnerRelease
from test_agent_harness import Agent, Vm, credential, make_root, render

pytestmark = pytest.mark.burst

VMS = 50
STACKS = ("ghr-proj-dev-pool", "ghr-proj-prod-pool")  # one project, two stacks, a pool named "pool" in each
LABELS = ["self-hosted", "e2e"]
REGISTERED_WITHIN = 90.0  # seconds for all 50 JIT registrations, faults and all, on a shared 2-core machine


@pytest.fixture
def fleet(github: GitHubDouble, gcp: GcpDoubles, runner_release: RunnerRelease) -> Iterator[list[Vm]]:
    secret, hidden = credential(github, "pat", "organization")
    gcp.add_secret("gh-runners-pool", secret)
    vms: list[Vm] = []
    servers: list[MetadataDouble] = []
    for index in range(VMS):
        stack = STACKS[index % 2]
        mig = gcp.state.migs.get((gcp.state.project_id, gcp.state.region, stack)) or gcp.add_mig(stack)
        name = f"{stack}-{index:04d}"
        instance = mig.add_instance(name)
        metadata = MetadataDouble(gcp.state, identity=(name, instance.id)).start()
        servers.append(metadata)
        root = make_root()
        (root / "bin" / "ldconfig").write_text("#!/bin/sh\nexec /sbin/ldconfig \"$@\"\n")
        (root / "bin" / "ldconfig").chmod(0o755)
        location = {"cloud": "gcp", "secret": f"projects/{gcp.state.project_id}/secrets/gh-runners-pool",
                    "region": gcp.state.region, "group": stack, "project": gcp.state.project_id}
        agent_source, config = render("gcp", "organization", location)
        config["github"]["api_url"] = github.api_url
        env = {
            "PATH": f"{root}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
            "GH_RUNNERS_CONFIG": str(root / "etc" / "config.json"),
            "GH_RUNNERS_RUNNER_DIR": str(root / "actions-runner"), "GH_RUNNERS_RUNNER_USER": "nobody",
            "GH_RUNNERS_STATE_DIR": str(root / "state"), "GH_RUNNERS_LIB_DIR": str(root / "lib"),
            "GH_RUNNERS_RELEASES_URL": github.api_url, "GH_RUNNERS_APT_LOCKS": str(root / "apt.lock"),
            "GH_RUNNERS_IPTABLES": str(root / "bin" / "iptables"),
            "GH_RUNNERS_IP6TABLES": str(root / "bin" / "ip6tables"),
            "GH_RUNNERS_POWEROFF": str(root / "bin" / "poweroff"),
            "GH_RUNNERS_GCE_METADATA_URL": metadata.url, "GH_RUNNERS_SECRETMANAGER_URL": gcp.secretmanager.url,
            "GH_RUNNERS_COMPUTE_URL": gcp.compute.url,
            "GH_RUNNERS_RETRY_SECONDS": "60", "GH_RUNNERS_RETRY_BASE": "0.05", "GH_RUNNERS_RATE_LIMIT_WAIT": "1",
            "GH_RUNNERS_POLL_SECONDS": "0.5", "GH_RUNNERS_BUSY_POLL_SECONDS": "0.5", "GH_RUNNERS_STOP_SECONDS": "5",
            "GH_RUNNERS_LEAVE_SECONDS": "20", "GH_RUNNERS_SWEEP_CHANCE": "1", "GH_RUNNERS_SWEEP_DELAY": "2",
        }
        vms.append(Vm(root, "gcp", github, github.org("acme"), instance.id, env, config, agent_source,
                      runner_release, [secret, *hidden]))
    yield vms
    for vm in vms:
        for agent in vm.agents:
            for pid in reversed(vm.process_tree(agent)) if agent.proc.poll() is None else []:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            agent.proc.wait()
    for server in servers:
        server.stop()


def test_fifty_vms_boot_at_once_through_rate_limits_and_5xx(fleet: list[Vm], github: GitHubDouble,
                                                             gcp: GcpDoubles) -> None:
    org = github.org("acme")
    prefixes = {vm.prefix for vm in fleet}
    assert len(prefixes) == 2  # the same pool name, two deployments: two runner-name prefixes
    # Each stack's ghost: an offline runner whose instance is gone. Plus a runner of each stack that looks
    # like a ghost to the other stack only: never touched by it.
    ghosts = {prefix: org.add_runner(f"{prefix}-1234567890123456789", status="offline").id for prefix in prefixes}
    jit = r"/generate-jitconfig$"
    github.rate_limit(jit, kind="secondary", status=403, retry_after=1, times=10)
    github.rate_limit(jit, kind="secondary", status=429, retry_after=None, times=10)
    github.rate_limit(jit, kind="secondary", status=403, retry_after=None, times=5)
    github.rate_limit(jit, kind="secondary", status=429, retry_after=2, times=5)
    github.inject(jit, status=502, times=5)
    github.inject(r"/releases/latest$", status=503, times=5)
    github.rate_limit(r"/runner-groups$", kind="secondary", status=429, retry_after=1, times=10)
    gcp.secretmanager.inject(r":access$", status=503, times=10)
    jobs = [github.queue_job(LABELS, duration=0) for _ in fleet]

    started = time.monotonic()
    agents: list[Agent] = [vm.start() for vm in fleet]
    github.wait_for(lambda: sum(r.status == 201 for r in github.requests("POST", jit)) >= VMS,
                    REGISTERED_WITHIN, "every VM's JIT registration")
    registered = time.monotonic() - started
    try:
        for job in jobs:
            job.wait_completed(60)
    except TimeoutError:
        waiting = [(j.id, j.state, j.runner_id) for j in jobs if j.state != "completed"]
        ran = {r["name"] for r in fleet[0].records("job_started")}
        idle = [a.output for a in agents if not any(n in a.output for n in ran)]
        pytest.fail(f"jobs not completed: {waiting}\n" + "\n=====\n".join(idle)[-8000:])
    codes = [agent.wait(120) for agent in agents]
    assert codes == [0] * VMS, next(a.output for a in agents if a.proc.returncode)  # none exits for good
    assert registered < REGISTERED_WITHIN
    assert all(vm.powered_off for vm in fleet)

    # The faults were all met, and retried.
    statuses = [r.status for r in github.requests("POST", jit)]
    assert statuses.count(403) == 15 and statuses.count(429) == 15 and statuses.count(502) == 5
    # Every runner name carries its deployment's prefix; the sweeps removed each stack's own ghost and
    # nothing of the other stack: every DELETE names a runner of the deleting VM's own prefix.
    deleted = {int(r.path.rsplit("/", 1)[1]) for r in github.requests("DELETE", r"/actions/runners/\d+$")}
    assert set(ghosts.values()) <= deleted
    names = {run["runner_id"]: run["name"] for run in fleet[0].records("connected")}
    assert len(names) == VMS and all(name.rsplit("-", 1)[0] in prefixes for name in names.values())
    for vm in fleet:
        for agent in vm.agents:
            for line in agent.output.splitlines():
                if line.startswith("INFO ghost sweep: removing runner "):
                    assert line.split()[5].startswith(f"{vm.prefix}-"), line
    # No credential in any log, file, record or argv of any VM.
    for vm in fleet:
        vm.assert_no_leaks()
    assert json.dumps(github.violations) == "[]"
