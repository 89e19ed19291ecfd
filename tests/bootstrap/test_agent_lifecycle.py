"""Stopping: drain a busy runner, deregister, complete the ASG lifecycle action; ghost sweep; name conflicts."""

from __future__ import annotations

import re
import signal

import pytest
from doubles.github import GitHubDouble
from test_agent_harness import POOL, Vm, vm_factory_fixture  # noqa: F401 - fixture

LABELS = ["self-hosted", "e2e"]


@pytest.mark.parametrize(("cloud", "trigger", "ephemeral"), [
    ("aws", "lifecycle", True),  # ASG scale-in / instance refresh: IMDS target-lifecycle-state turns Terminated
    ("aws", "sigterm", False),
    ("gcp", "sigterm", True),  # MIG deletion, preemption: ACPI shutdown, systemd stops the agent
    ("gcp", "sigterm", False),
])
def test_stop_while_busy_waits_for_the_job_then_deregisters(vm_factory, github: GitHubDouble,
                                                            request: pytest.FixtureRequest, cloud: str,
                                                            trigger: str, ephemeral: bool) -> None:
    vm: Vm = vm_factory(cloud, ephemeral=ephemeral)
    job = github.queue_job(LABELS, duration=None)  # runs until the test finishes it
    agent = vm.start()
    job.wait_started()
    action = None
    if trigger == "lifecycle":
        action = request.getfixturevalue("aws").begin_termination(vm.instance_id, "pool-asg", "drain")
    else:
        agent.signal(signal.SIGTERM)
    agent.wait_for(r"is busy; waiting")
    if cloud == "aws" and trigger == "sigterm":  # systemd's SIGTERM while a lifecycle action is pending
        action = request.getfixturevalue("aws").begin_termination(vm.instance_id, "pool-asg", "drain")
    assert agent.proc.poll() is None and job.state == "in_progress"  # the job is not cut short
    vm.assert_no_leaks_in_processes(agent)
    job.finish()  # GitHub also drops an ephemeral runner now, whether or not it is polling the job
    assert agent.wait() == 0, agent.output
    assert job.result == "succeeded"
    assert github.find_runner(vm.runner_name) is None
    if not ephemeral:  # an ephemeral runner is removed by GitHub with its job; a persistent one by the agent
        assert github.requests("DELETE", r"/actions/runners/\d+$")[-1].status == 204
    if action is not None:
        assert action.wait_completed().result == "CONTINUE"
        assert "completed lifecycle action drain" in agent.output
    assert not vm.powered_off  # the platform is taking the VM away already
    vm.assert_no_leaks()


def test_drain_is_bounded(vm_factory, github: GitHubDouble) -> None:
    vm: Vm = vm_factory("gcp", ephemeral=False)
    job = github.queue_job(LABELS, duration=None)
    agent = vm.start(GH_RUNNERS_DRAIN_SECONDS="0.5")
    job.wait_started()
    agent.signal(signal.SIGTERM)
    assert agent.wait() == 0, agent.output
    assert re.search(r"still busy after \d+s; stopping it anyway", agent.output)
    assert job.result == "cancelled"
    assert github.find_runner(vm.runner_name) is None


def test_spot_interruption_notice_stops_and_deregisters(vm_factory, github: GitHubDouble, aws) -> None:
    vm: Vm = vm_factory("aws", ephemeral=False)
    agent = vm.start()
    agent.wait_for(r"runner .* started")
    github.wait_for(lambda: (r := github.find_runner(vm.runner_name)) is not None and r.status == "online")
    aws.imds.interrupt_spot()
    assert agent.wait() == 0, agent.output
    assert "(spot)" in agent.output
    assert github.find_runner(vm.runner_name) is None
    assert "no termination lifecycle action is pending" in agent.output


@pytest.mark.parametrize("cloud", ["aws", "gcp"])
def test_ghost_sweep_removes_only_this_deployments_offline_runners_of_dead_instances(
        vm_factory, github: GitHubDouble, request: pytest.FixtureRequest, cloud: str) -> None:
    vm: Vm = vm_factory(cloud, "organization")
    if cloud == "aws":
        aws = request.getfixturevalue("aws")
        alive = next(i for i in aws.instances("pool-asg") if i != vm.instance_id)
        dead, dead_online = "i-0deadbeef0000001", "i-0deadbeef0000002"
    else:
        gcp = request.getfixturevalue("gcp")
        alive = gcp.state.migs[(gcp.state.project_id, gcp.state.region, "pool-mig")].add_instance("pool-x64-efgh").id
        dead, dead_online = "1234567890123456789", "2234567890123456789"
    org = github.org("acme")
    other = f"{POOL}-0a1b2c"  # the pool of the same name in another stack or project
    seeded = {
        f"{vm.prefix}-{dead}": "offline",  # the ghost
        f"{vm.prefix}-{alive}": "offline",  # its VM lives (booting or rebooting): kept
        f"{vm.prefix}-{dead_online}": "online",  # online: not ours to judge
        f"{other}-{dead}": "offline",  # another deployment's, e.g. a JIT runner that has not connected yet
        f"{POOL}-{dead}": "offline",  # no deployment hash: not ours either
        f"other-{dead}": "offline",  # another pool's
        f"{vm.prefix}-builder": "offline",  # not an instance-named runner
    }
    for name, status in seeded.items():
        org.add_runner(name, status=status)
    job = github.queue_job(LABELS, duration=None)
    agent = vm.start()
    job.wait_started()
    github.wait_for(lambda: github.requests("DELETE"), 20, "the sweep's DELETE")
    job.finish()
    assert agent.wait() == 0, agent.output
    remaining = {r.name for _, r in github.runners()}
    assert remaining == set(seeded) - {f"{vm.prefix}-{dead}"}, agent.output
    assert f"ghost sweep: removing runner {vm.prefix}-{dead}" in agent.output
    # Off the boot path: the runner was registered before the sweep listed anything.
    listing = github.requests("GET", r"/runners$")[0]  # the Default group's (its id is known by then)
    assert github.requests("POST", r"/generate-jitconfig$")[0].time < listing.time


def test_the_sweep_lists_only_the_pools_runner_group(vm_factory, github: GitHubDouble) -> None:
    group = github.org("acme").add_group("linux-pool")
    vm: Vm = vm_factory("gcp", "organization", runner_group="linux-pool", group_id=group.id)
    github.org("acme").add_runner(f"{vm.prefix}-1234567890123456789", status="offline", group_id=group.id)
    job = github.queue_job(LABELS, duration=None)
    agent = vm.start()
    job.wait_started()
    github.wait_for(lambda: github.requests("DELETE"), 20, "the sweep's DELETE")
    job.finish()
    assert agent.wait() == 0, agent.output
    assert github.requests("GET", rf"/actions/runner-groups/{group.id}/runners$")
    assert not github.requests("GET", r"/actions/runners$") and not github.requests("GET", r"/runner-groups$")


def test_an_offline_runner_with_our_name_is_replaced(vm_factory, github: GitHubDouble) -> None:
    vm: Vm = vm_factory("aws", "organization")
    stale = github.org("acme").add_runner(vm.runner_name, status="offline")
    github.queue_job(LABELS, duration=0)
    agent = vm.run()
    assert agent.proc.returncode == 0, agent.output
    statuses = [r.status for r in github.requests("POST", r"/generate-jitconfig$")]
    assert statuses == [409, 201]
    assert any(r.path.endswith(f"/runners/{stale.id}") for r in github.requests("DELETE"))


def test_an_online_runner_with_our_name_is_not_touched(vm_factory, github: GitHubDouble) -> None:
    vm: Vm = vm_factory("gcp", "organization")
    github.org("acme").add_runner(vm.runner_name, status="online")
    agent = vm.run()
    assert agent.proc.returncode == 1
    assert f"a runner named {vm.runner_name} is already registered and online" in agent.output
    assert github.find_runner(vm.runner_name) is not None
    assert not github.requests("DELETE")
