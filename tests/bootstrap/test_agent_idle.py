"""Demand pools: a VM idle past idle_timeout above its pool's floor deregisters, leaves its group lowering
the size, and powers off; at the floor it stays and keeps serving; a busy VM is never touched.

"Busy" is local: a `<runner>/bin/Runner.Worker` process of the runner user (the fake runner starts one per
job, as actions/runner's listener does). GH_RUNNERS_IDLE_TIMEOUT scales the pool's timeout down to a second.
"""

from __future__ import annotations

import signal
import time

import pytest
from doubles.aws import AwsEnv
from doubles.gcp import GcpDoubles
from doubles.github import GitHubDouble, Job
from test_agent_harness import Agent, Vm, render, vm_factory_fixture  # noqa: F401 - fixture

LABELS = ["self-hosted", "e2e"]
IDLE = "1"  # seconds: GH_RUNNERS_IDLE_TIMEOUT
# How long a test watches a VM that must stay: several idle timeouts and checks.
WATCH = 3.5


def _group(aws: AwsEnv) -> dict:  # type: ignore[type-arg]
    return aws.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=["pool-asg"])[
        "AutoScalingGroups"][0]


def _calls(aws: AwsEnv, action: str) -> list:  # type: ignore[type-arg]
    return [c for c in aws.front.calls if c.action == action]


def _mig(gcp: GcpDoubles):  # type: ignore[no-untyped-def]
    return gcp.state.migs[(gcp.state.project_id, gcp.state.region, "pool-mig")]


def _online(github: GitHubDouble, vm: Vm) -> None:
    github.wait_for(lambda: (r := github.find_runner(vm.runner_name)) is not None and r.status == "online", 20,
                    f"runner {vm.runner_name} online")


def _serves_a_job(github: GitHubDouble, vm: Vm) -> Job:
    runner = github.find_runner(vm.runner_name)
    assert runner is not None and runner.status == "online"
    job = github.queue_job(LABELS, duration=0)
    job.wait_completed(20)
    assert job.result == "succeeded" and job.runner_id == runner.id
    return job


def test_the_config_carries_the_timeout_of_demand_pools_only() -> None:
    where = {"cloud": "aws", "secret": "/p", "region": "eu-central-1", "group": "g", "lifecycle_hook": "h"}
    assert render("aws", "organization", where, idle_timeout="15m")[1]["idle_timeout"] == 900
    assert "idle_timeout" not in render("aws", "organization", where, scaling="fixed", size={"min": 1, "max": 2})[1]


# --- above the floor: leave ------------------------------------------------------------------


@pytest.mark.parametrize("ephemeral", [True, False])
def test_an_idle_vm_above_the_floor_leaves_its_auto_scaling_group_lowering_the_size(
        vm_factory, github: GitHubDouble, aws: AwsEnv, ephemeral: bool) -> None:
    """DesiredCapacity 2 > MinSize 0: deregister, stop the runner, TerminateInstanceInAutoScalingGroup with
    the decrement, complete its own termination hook, power off."""
    vm: Vm = vm_factory("aws", ephemeral=ephemeral, min_size=0)
    agent = vm.start(GH_RUNNERS_IDLE_TIMEOUT=IDLE)
    assert agent.wait(30) == 0, agent.output
    assert _calls(aws, "DescribeAutoScalingGroups"), agent.output
    assert github.find_runner(vm.runner_name) is None  # deregistered
    assert aws.front.terminations == [(vm.instance_id, True)]
    assert _group(aws)["DesiredCapacity"] == 1
    assert aws.front.lifecycle_actions[0].wait_completed().result == "CONTINUE"
    assert vm.powered_off
    assert not [r for r in vm.records("job_started")]
    vm.assert_no_leaks()


def test_an_idle_vm_above_the_floor_leaves_its_mig(vm_factory, github: GitHubDouble, gcp: GcpDoubles) -> None:
    vm: Vm = vm_factory("gcp", size={"min": 0, "max": 3})
    mig = _mig(gcp)
    agent = vm.start(GH_RUNNERS_IDLE_TIMEOUT=IDLE)
    assert agent.wait(30) == 0, agent.output
    assert mig.actions == [("deleteInstances", gcp.state.instance_name)], agent.output
    assert mig.target_size == 0
    assert github.find_runner(vm.runner_name) is None and vm.powered_off


def test_a_floor_raised_during_the_leave_keeps_the_vm_and_it_registers_again(vm_factory, github: GitHubDouble,
                                                                              aws: AwsEnv) -> None:
    """A schedule raises MinSize between the floor check and the leave: AWS refuses the decrement. A
    replacement would boot a new VM only to wait where this one waits, so this one stays; it has
    deregistered already, so the agent exits 1 and systemd (Restart=on-failure) starts it again, which
    registers a new runner."""
    vm: Vm = vm_factory("aws", min_size=0)

    def floor_rises(req: object) -> None:
        if getattr(req, "operation", "") == "autoscaling:DescribeAutoScalingGroups":
            aws.client("autoscaling").update_auto_scaling_group(AutoScalingGroupName="pool-asg", MinSize=2)

    aws.front.after("/", floor_rises, times=1000)
    agent = vm.start(GH_RUNNERS_IDLE_TIMEOUT=IDLE)
    assert agent.wait(30) == 1, agent.output
    leaves = _calls(aws, "TerminateInstanceInAutoScalingGroup")
    decrements = [c.params["ShouldDecrementDesiredCapacity"] for c in leaves]
    assert decrements == ["true"], agent.output  # and no replacement asked for
    assert not aws.front.terminations and not vm.powered_off
    assert github.find_runner(vm.runner_name) is None
    again = vm.start()  # systemd's restart
    _online(github, vm)
    _serves_a_job(github, vm)
    assert again.wait(30) == 0, again.output
    assert aws.front.terminations == [(vm.instance_id, False)]  # at MinSize now: replaced after its job


def test_a_vm_that_left_meanwhile_keeps_this_one_in_its_mig(vm_factory, github: GitHubDouble,
                                                             gcp: GcpDoubles) -> None:
    """A MIG holds no floor: two idle VMs above it could both leave. The size is read again right before
    deleteInstances; another VM left in between, so this one is the floor now: it stays (no
    recreateInstances either) and registers again after systemd's restart."""
    vm: Vm = vm_factory("gcp", size={"min": 1, "max": 3})
    mig = _mig(gcp)
    mig.add_instance("pool-other")  # target size 2, floor 1

    def other_vm_leaves(_: object) -> None:
        mig.remove_instance("pool-other")
        mig.target_size -= 1

    gcp.compute.after(r"instanceGroupManagers/pool-mig$", other_vm_leaves, method="GET")
    agent = vm.start(GH_RUNNERS_IDLE_TIMEOUT=IDLE)
    assert agent.wait(30) == 1, agent.output
    assert mig.actions == [] and mig.target_size == 1 and not vm.powered_off
    again = vm.start()  # systemd's restart
    _online(github, vm)
    again.signal(signal.SIGTERM)
    assert again.wait() == 0, again.output


# --- at the floor: stay and serve ------------------------------------------------------------


def test_an_idle_vm_at_the_floor_stays_registered_and_serving_on_aws(vm_factory, github: GitHubDouble,
                                                                    aws: AwsEnv) -> None:
    """DesiredCapacity 2 = MinSize 2: no call that lowers the group, no GitHub call while idle; it checks again
    after each further idle_timeout, and runs the next job."""
    vm: Vm = vm_factory("aws", ephemeral=False, min_size=2)
    agent = vm.start(GH_RUNNERS_IDLE_TIMEOUT=IDLE)
    _online(github, vm)
    aws.front.wait_for(lambda: len(_calls(aws, "DescribeAutoScalingGroups")) >= 2, 20, "two idle checks")
    assert agent.proc.poll() is None, agent.output
    assert not _calls(aws, "TerminateInstanceInAutoScalingGroup") and not aws.front.terminations
    assert _group(aws)["DesiredCapacity"] == 2
    assert not github.requests("DELETE"), agent.output  # the floor is checked first: no GitHub call
    _serves_a_job(github, vm)
    assert not vm.powered_off
    agent.signal(signal.SIGTERM)
    assert agent.wait() == 0, agent.output


def test_an_idle_vm_at_the_floor_stays_registered_and_serving_on_gcp(vm_factory, github: GitHubDouble,
                                                                    gcp: GcpDoubles) -> None:
    """A schedule holds the floor at 1 (it fires every minute): targetSize 1 is not above it."""
    vm: Vm = vm_factory("gcp", ephemeral=False, size={"min": 0, "max": 3},
                        schedules=[{"cron": "* * * * *", "desired": 1}])
    agent = vm.start(GH_RUNNERS_IDLE_TIMEOUT=IDLE)
    _online(github, vm)
    gcp.compute.wait_for(lambda: len(gcp.compute.requests("GET", r"instanceGroupManagers/pool-mig$")) >= 2, 20,
                         "two idle checks")
    assert agent.proc.poll() is None and _mig(gcp).actions == [] and _mig(gcp).target_size == 1, agent.output
    _serves_a_job(github, vm)
    agent.signal(signal.SIGTERM)
    assert agent.wait() == 0, agent.output


def test_an_ephemeral_vm_that_stays_at_the_floor_still_takes_its_one_job(vm_factory, github: GitHubDouble,
                                                                         aws: AwsEnv) -> None:
    vm: Vm = vm_factory("aws", min_size=2)
    agent = vm.start(GH_RUNNERS_IDLE_TIMEOUT=IDLE)
    _online(github, vm)
    aws.front.wait_for(lambda: len(_calls(aws, "DescribeAutoScalingGroups")) >= 1, 20, "an idle check")
    _serves_a_job(github, vm)
    assert agent.wait(30) == 0, agent.output
    assert aws.front.terminations == [(vm.instance_id, False)]  # at MinSize: replaced, as after any job


# --- busy: never touched -------------------------------------------------------------------


def test_a_busy_vm_is_not_touched_and_its_idle_time_starts_when_the_job_ends(vm_factory, github: GitHubDouble,
                                                                             aws: AwsEnv) -> None:
    """A persistent runner busy for several idle timeouts: no floor check, no deregistration, no group call.
    After its job it waits a whole idle_timeout again, then leaves."""
    vm: Vm = vm_factory("aws", ephemeral=False, min_size=0)
    job = github.queue_job(LABELS, duration=None)
    agent = vm.start(GH_RUNNERS_IDLE_TIMEOUT=IDLE)
    job.wait_started(20)
    time.sleep(WATCH)  # nothing to await: the point is that nothing happens
    assert job.state == "in_progress" and agent.proc.poll() is None, agent.output
    assert not _calls(aws, "DescribeAutoScalingGroups") and not aws.front.terminations
    assert not github.requests("DELETE", r"/actions/runners/")
    job.finish()
    ended = time.monotonic()
    agent.wait_for(r"deregistered idle runner")
    assert time.monotonic() - ended >= float(IDLE)
    assert agent.wait(30) == 0, agent.output
    assert job.result == "succeeded" and aws.front.terminations == [(vm.instance_id, True)]


def test_a_job_handed_over_during_the_idle_check_keeps_its_runner(vm_factory, github: GitHubDouble,
                                                                  gcp: GcpDoubles) -> None:
    """The job arrives after the /proc look, while the agent reads the group's size: GitHub refuses to
    delete the now busy runner (422), so the VM stays, runs the job, and then leaves as ephemeral VMs do."""
    vm: Vm = vm_factory("gcp", size={"min": 0, "max": 3})
    jobs: list[Job] = []

    def job_arrives(_: object) -> None:
        jobs.append(github.queue_job(LABELS, duration=None))
        jobs[0].wait_started(5)

    gcp.compute.after(r"instanceGroupManagers/pool-mig$", job_arrives, method="GET")
    agent = vm.start(GH_RUNNERS_IDLE_TIMEOUT=IDLE)
    github.wait_for(lambda: [r for r in github.requests("DELETE", r"/actions/runners/\d+$")], 20, "the DELETE")
    assert jobs and jobs[0].state == "in_progress", agent.output
    assert agent.proc.poll() is None and github.find_runner(vm.runner_name) is not None
    assert _mig(gcp).actions == []
    jobs[0].finish()
    assert agent.wait(30) == 0, agent.output
    assert jobs[0].result == "succeeded"
    assert _mig(gcp).actions == [("deleteInstances", gcp.state.instance_name)]


# --- fixed pools: never --------------------------------------------------------------------


def test_a_fixed_pool_never_leaves_on_idle(vm_factory, github: GitHubDouble, aws: AwsEnv) -> None:
    """No idle_timeout in its config: even the test override does not make it leave."""
    vm: Vm = vm_factory("aws", ephemeral=False, scaling="fixed", size={"min": 1, "max": 3}, min_size=0)
    agent: Agent = vm.start(GH_RUNNERS_IDLE_TIMEOUT=IDLE)
    _online(github, vm)
    time.sleep(WATCH)  # nothing to await: the point is that nothing happens
    assert agent.proc.poll() is None, agent.output
    assert not _calls(aws, "DescribeAutoScalingGroups") and not aws.front.terminations
    _serves_a_job(github, vm)
    agent.signal(signal.SIGTERM)
    assert agent.wait() == 0, agent.output
