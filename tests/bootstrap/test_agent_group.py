"""A VM that is done leaves through its group; the windows it leaves in; boots that must not register."""

from __future__ import annotations

import fcntl
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from doubles.aws import AwsEnv
from doubles.gcp import GcpDoubles
from doubles.github import GitHubDouble
from test_agent_harness import Vm, vm_factory_fixture  # noqa: F401 - fixture

LABELS = ["self-hosted", "e2e"]


def _group(aws: AwsEnv) -> dict:  # type: ignore[type-arg]
    return aws.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=["pool-asg"])[
        "AutoScalingGroups"][0]


# --- issue 10 §4: leaving through the group ------------------------------------------------


@pytest.mark.parametrize(("min_size", "decremented"), [(0, True), (2, False)])
def test_a_finished_ephemeral_vm_leaves_through_its_auto_scaling_group(vm_factory, github: GitHubDouble, aws: AwsEnv,
                                                                     min_size: int, decremented: bool) -> None:
    """TerminateInstanceInAutoScalingGroup lowers the desired capacity; at MinSize AWS refuses that (the
    double enforces it, moto does not) and the VM asks to be replaced. Then its own termination hook is
    completed, so no dead instance waits in Terminating:Wait for the hook's timeout."""
    vm: Vm = vm_factory("aws", min_size=min_size)
    github.queue_job(LABELS, duration=0)
    agent = vm.run()
    assert agent.proc.returncode == 0, agent.output
    calls = [c for c in aws.front.calls if c.action == "TerminateInstanceInAutoScalingGroup"]
    assert [c.params["ShouldDecrementDesiredCapacity"] for c in calls] == (
        ["true"] if decremented else ["true", "false"])
    assert aws.front.terminations == [(vm.instance_id, decremented)]
    action = aws.front.lifecycle_actions[0]
    assert action.instance_id == vm.instance_id and action.wait_completed().result == "CONTINUE"
    assert _group(aws)["DesiredCapacity"] == (1 if decremented else 2)
    assert vm.powered_off
    vm.assert_no_leaks()


@pytest.mark.parametrize(("size", "schedule_desired", "verb"), [
    ({"min": 0, "max": 3}, None, "deleteInstances"),  # above the floor: the group shrinks
    ({"min": 1, "max": 3}, None, "recreateInstances"),  # at min: the group replaces it
    ({"min": 0, "max": 3}, 1, "recreateInstances"),  # a schedule holds the floor at 1 (it fires every minute)
])
def test_a_finished_ephemeral_vm_leaves_through_its_mig(vm_factory, github: GitHubDouble, gcp: GcpDoubles,
                                                        size: dict, schedule_desired: int | None,  # type: ignore[type-arg]
                                                        verb: str) -> None:
    schedules = [{"cron": "* * * * *", "desired": schedule_desired}] if schedule_desired is not None else []
    vm: Vm = vm_factory("gcp", size=size, schedules=schedules)
    mig = gcp.state.migs[(gcp.state.project_id, gcp.state.region, "pool-mig")]
    github.queue_job(LABELS, duration=0)
    agent = vm.run()
    assert agent.proc.returncode == 0, agent.output
    assert mig.actions == [(verb, gcp.state.instance_name)], agent.output
    assert mig.target_size == (0 if verb == "deleteInstances" else 1)
    assert vm.powered_off


def test_a_vm_that_cannot_leave_its_group_still_powers_off(vm_factory, github: GitHubDouble, gcp: GcpDoubles) -> None:
    vm: Vm = vm_factory("gcp")
    gcp.state.migs[(gcp.state.project_id, gcp.state.region, "pool-mig")].updaters.clear()  # no permission
    github.queue_job(LABELS, duration=0)
    agent = vm.run()
    assert agent.proc.returncode == 0, agent.output
    assert "could not leave the group" in agent.output and vm.powered_off


# --- issue 10 §5: a spot notice cuts any drain short ---------------------------------------


def test_a_spot_notice_cuts_a_lifecycle_drain_short_and_leaves_time_to_deregister(vm_factory, github: GitHubDouble,
                                                                                  aws: AwsEnv) -> None:
    """Capacity rebalance usually takes a spot VM through the termination hook first: its drain (up to 50
    minutes) must end when the two-minute notice comes. The harness scales the notice to 30 s."""
    vm: Vm = vm_factory("aws", ephemeral=False)
    job = github.queue_job(LABELS, duration=None)  # runs until stopped
    agent = vm.start(GH_RUNNERS_SPOT_NOTICE_SECONDS="30")
    job.wait_started()
    action = aws.begin_termination(vm.instance_id, "pool-asg", "drain")
    agent.wait_for(r"is busy; waiting")
    noticed = time.monotonic()
    aws.imds.interrupt_spot()
    agent.wait_for(r"spot interruption notice: the drain ends within")
    assert agent.wait(30) == 0, agent.output
    assert time.monotonic() - noticed < 30  # inside the (scaled) notice
    assert job.result == "cancelled"
    assert github.find_runner(vm.runner_name) is None  # deregistered, after the cancelled job let go (422s)
    assert action.wait_completed().result == "CONTINUE"


# --- item 4: no job is cut off between the idle check and the stop ------------------------


def test_a_job_handed_over_at_the_idle_check_is_not_cancelled(vm_factory, github: GitHubDouble) -> None:
    vm: Vm = vm_factory("gcp", ephemeral=False)
    agent = vm.start()
    github.wait_for(lambda: (r := github.find_runner(vm.runner_name)) is not None and r.status == "online", 20)
    jobs = []

    def job_arrives(_: object) -> None:
        # Decided "idle", not yet told: a job reaches the runner right now.
        jobs.append(github.queue_job(LABELS, duration=None))
        github.wait_for(lambda: jobs[0].state != "queued" or github.find_runner(vm.runner_name) is None, 5)

    github.after(r"/actions/runners/\d+$", job_arrives)
    agent.signal(signal.SIGTERM)
    assert agent.wait() == 0, agent.output
    assert jobs and jobs[0].result != "cancelled", agent.output  # still queued for another runner
    assert github.find_runner(vm.runner_name) is None


# --- items 9 and 10: boots that must not register, and boots that keep failing -------------


def test_an_agent_restarted_on_a_terminating_vm_registers_nothing(vm_factory, github: GitHubDouble,
                                                                  aws: AwsEnv) -> None:
    vm: Vm = vm_factory("aws")
    action = aws.begin_termination(vm.instance_id, "pool-asg", "drain")
    agent = vm.run()
    assert agent.proc.returncode == 0, agent.output
    assert "being terminated (lifecycle): not registering" in agent.output
    assert not github.requests("POST") and not vm.records()
    assert action.wait_completed().result == "CONTINUE"


def test_a_boot_that_keeps_failing_leaves_the_group_to_be_replaced(vm_factory, github: GitHubDouble,
                                                                   aws: AwsEnv) -> None:
    vm: Vm = vm_factory("aws", setup_script="exit 3\n")
    script = vm.root / "setup.sh"
    script.write_text("#!/bin/sh\nexit 3\n")
    script.chmod(0o700)
    env = {"GH_RUNNERS_SETUP_SCRIPT": str(script), "GH_RUNNERS_FAILURE_LIMIT": "3"}
    codes = [vm.run(**env).proc.returncode for _ in range(3)]  # systemd restarts it each time
    assert codes == [1, 1, 0], vm.agents[-1].output
    assert "3 failed boots in a row: leaving the group to be replaced" in vm.agents[-1].output
    assert aws.front.terminations == [(vm.instance_id, False)]  # replaced: the failure shows in the activity
    assert _group(aws)["DesiredCapacity"] == 2 and vm.powered_off


def test_a_successful_boot_clears_the_failure_count(vm_factory, github: GitHubDouble, gcp: GcpDoubles) -> None:
    vm: Vm = vm_factory("gcp")
    vm.lib_dir.mkdir(mode=0o700)
    (vm.lib_dir / "boot-failures").write_text("4\n")
    github.queue_job(LABELS, duration=0)
    assert vm.run(GH_RUNNERS_FAILURE_LIMIT="5").proc.returncode == 0
    assert not (vm.lib_dir / "boot-failures").exists()


def test_the_setup_script_waits_for_apt(vm_factory, github: GitHubDouble, tmp_path: Path) -> None:
    """On a first boot apt's daily jobs hold the dpkg and lists locks for minutes: apt-get in a setup script
    would fail at once. The agent waits for them (and cloud-init sets DPkg::Lock::Timeout)."""
    vm: Vm = vm_factory("gcp", setup_script="true\n")
    lock = vm.root / "apt.lock"  # the harness's stand-in for /var/lib/dpkg/lock-frontend
    ran = vm.root / "ran"
    script = vm.root / "setup.sh"
    script.write_text(f"#!/bin/sh\ndate +%s.%N > {ran}\n")
    script.chmod(0o700)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.lockf(fd, fcntl.LOCK_EX)  # held, the way apt holds it
    github.queue_job(LABELS, duration=0)
    agent = vm.start(GH_RUNNERS_SETUP_SCRIPT=str(script))
    agent.wait_for(r"waiting for .*apt\.lock")
    released = time.time()

    def release() -> None:
        fcntl.lockf(fd, fcntl.LOCK_UN)
        os.close(fd)

    threading.Thread(target=release).start()
    assert agent.wait() == 0, agent.output
    assert float(ran.read_text()) >= released
