"""End to end on loopback: a queued job -> the receiver scales the group -> a VM (the real agent) registers
-> the job runs -> the VM leaves its group -> the group is back at its floor. On both clouds.

The pieces (tests/scaler/simulation.py): GitHub's jobs and signed `workflow_job` deliveries (Hub), the
receiver process per cloud (`python -m scaler serve`), the cloud's group -- moto's Auto Scaling group
behind the scaling front, or the one MIG model -- and a Fleet that boots the agent as a process for each
instance the group gains. The reconcile is invoked as the scheduler invokes it (`POST /reconcile`).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from doubles.github import GitHubDouble, Job
from doubles.runner_tarball import DEFAULT_VERSION, RunnerRelease, build_runner_tarball
from receiver_doubles.stack import PAT, WEBHOOK_SECRET, Stack, build_stack
from receiver_doubles.world import PoolSpec
from simulation import POOL, POOL_LABELS, REPOSITORY, Fleet, Hub, Machine, wait_until

MAX = 6
# The agent's GH_RUNNERS_* overrides for this simulation (the harness's short waits, plus these).
AGENT_ENV = {"GH_RUNNERS_POLL_SECONDS": "0.1", "GH_RUNNERS_BUSY_POLL_SECONDS": "0.2"}
BOOT_SECONDS = 60  # for a burst of agents booting at once on a shared 2-core machine
# Where the measurement of queued -> registered / started goes (bench/simulation.py reads it).
METRICS = os.environ.get("GHR_E2E_METRICS")
CLOUDS = ["aws", "gcp"]

pytestmark = pytest.mark.linux_root("the VM agent chowns the runner to the runner user and starts it as that user")


@pytest.fixture(scope="module")
def e2e_github() -> Iterator[GitHubDouble]:
    server = GitHubDouble().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def e2e_tarballs(e2e_github: GitHubDouble) -> Iterator[tuple[Path, dict[str, Path]]]:
    """The fake runner, built once; its record in a directory the runner user may write."""
    records = Path(tempfile.mkdtemp(prefix="ghr-e2e-", dir="/tmp"))
    records.chmod(0o1777)
    record, ldcache = records / "runner-calls.jsonl", records / "ld.so.cache.txt"
    tarballs = {f"linux-{arch}": build_runner_tarball(records, DEFAULT_VERSION, arch, control_url=e2e_github.url,
                                                      record=record, ldcache=ldcache) for arch in ("x64", "arm64")}
    yield records, tarballs
    import shutil

    shutil.rmtree(records, ignore_errors=True)


@pytest.fixture
def e2e_release(e2e_github: GitHubDouble, e2e_tarballs: tuple[Path, dict[str, Path]]) -> Iterator[RunnerRelease]:
    e2e_github.reset()
    records, tarballs = e2e_tarballs
    published = e2e_github.add_runner_release(DEFAULT_VERSION, tarballs)
    x64 = tarballs["linux-x64"]
    yield RunnerRelease(DEFAULT_VERSION, x64, published[x64.name], records / "runner-calls.jsonl",
                        records / "ld.so.cache.txt")
    assert not e2e_github.violations, e2e_github.violations


@dataclass
class World:
    cloud: str
    stack: Stack
    hub: Hub
    fleet: Fleet
    aws_front: Any
    gcp: Any
    github: GitHubDouble

    @property
    def receiver(self) -> Any:
        return self.stack.aws if self.cloud == "aws" else self.stack.gcp

    def reconcile(self) -> list[dict[str, Any]]:
        """What the scheduler does every few minutes."""
        self.settle()
        status, body = self.hub.senders[0].post(b"", {}, path="/reconcile")
        assert status == 200, body
        reconciled: list[dict[str, Any]] = body["reconciled"]
        return reconciled

    def settle(self) -> None:
        """Every webhook GitHub meant to send so far was answered."""
        wait_until(self.hub.idle, 10, "the deliveries so far")

    def desired(self) -> int:
        return self.fleet.desired()

    def peak(self) -> int:
        """The most VMs the group was ever asked for."""
        if self.cloud == "aws":
            return max(self.aws_front.desired_history.get(self.stack.pools[0].group, [0]))
        return int(self.fleet.mig.peak)

    def wait_serving(self, count: int, timeout: float = BOOT_SECONDS) -> list[Machine]:
        serving: list[Machine] = wait_until(lambda: len(self.fleet.serving()) == count and self.fleet.serving(),
                                            timeout, f"{count} VMs with a registered runner ({self.describe()})")
        return serving

    def wait_empty(self, timeout: float = 30) -> None:
        wait_until(lambda: self.desired() == 0 and not self.fleet.live(), timeout,
                   f"the group back at 0 ({self.describe()})")

    def describe(self) -> str:
        outputs = "\n---\n".join(m.agent.output[-1500:] for m in self.fleet.machines[-3:])
        return (f"desired {self.desired()}, live {len(self.fleet.live())}, booted {len(self.fleet.machines)}, "
                f"jobs {[(j.id, j.state) for j in self.github.jobs]}, errors {self.fleet.errors}\n{outputs}")

    def finish_running(self, jobs: list[Job]) -> list[Job]:
        running = [j for j in jobs if j.state == "in_progress"]
        for job in running:
            job.finish()
        return running


@pytest.fixture
def world(request: pytest.FixtureRequest, aws_front: Any, gcp: Any, github_api: Any, start_receiver: Any,
          _moto: Any, e2e_github: GitHubDouble, e2e_release: RunnerRelease) -> Iterator[Callable[..., World]]:
    """world(cloud, min=0, schedules=[], env={}) -> World: the stack, the receiver, GitHub, and the fleet."""
    made: list[World] = []

    def make(cloud: str, *, min_size: int = 0, schedules: list[dict[str, Any]] | None = None,
             env: dict[str, str] | None = None) -> World:
        spec = PoolSpec(POOL, cloud, POOL_LABELS, max=MAX, min=min_size, schedules=list(schedules or []))
        stack = build_stack([spec], aws_front=aws_front, gcp=gcp, github_api=github_api,
                            start_receiver=start_receiver, secret=WEBHOOK_SECRET, pat=PAT, clouds=(cloud,),
                            target=REPOSITORY)
        receiver = stack.aws if cloud == "aws" else stack.gcp
        hub = Hub(e2e_github, github_api, [receiver], WEBHOOK_SECRET)
        pool = {"size": {"min": min_size, "max": MAX}, "schedules": list(schedules or [])}
        fleet = Fleet(cloud, github=e2e_github, release=e2e_release, group=spec.group, pool=pool,
                      extra_env={**AGENT_ENV, **(env or {})}, aws=aws_front, moto=_moto, gcp=gcp)
        made.append(World(cloud, stack, hub, fleet, aws_front, gcp, e2e_github))
        return made[-1]

    yield make
    for built in made:
        built.hub.stop()
        built.fleet.stop()
        assert not built.fleet.errors, built.fleet.errors
        assert all(200 <= status < 300 for _, _, status in built.hub.deliveries), built.hub.deliveries
        for machine in built.fleet.machines:
            machine.vm.assert_no_leaks()


def _record(world: World, case: str, jobs: list[Job]) -> None:
    """Append queued -> registered / started of each job a webhook scaled for, for bench/simulation.py."""
    if not METRICS:
        return
    rows = [world.hub.timings[j.id] for j in jobs if j.id in world.hub.timings]
    with open(METRICS, "a", encoding="utf-8") as out:
        out.write(json.dumps({
            "cloud": world.cloud, "case": case,
            "registered": [t.registered - t.queued for t in rows if t.registered is not None],
            "started": [t.started - t.queued for t in rows if t.started is not None],
        }) + "\n")


@pytest.mark.parametrize("cloud", CLOUDS)
@pytest.mark.parametrize("jobs_queued", [3, 8])
def test_the_pool_grows_to_the_queued_jobs_capped_at_max_and_shrinks_to_zero(
        world: Callable[..., World], cloud: str, jobs_queued: int) -> None:
    w = world(cloud)
    # Nothing queued: no VM, and the scheduled reconcile adds none.
    (plan,) = w.reconcile()
    assert (plan["target"], plan["added"]) == (0, 0)
    assert w.desired() == 0 and w.fleet.machines == []

    began = time.monotonic()
    jobs = [w.hub.queue(duration=None) for _ in range(jobs_queued)]
    first = min(jobs_queued, MAX)
    w.wait_serving(first)
    wait_until(lambda: sum(j.state == "in_progress" for j in jobs) == first, BOOT_SECONDS,
               f"{first} jobs running ({w.describe()})")
    first_wave = [j for j in jobs if j.state == "in_progress"]  # served by the webhooks' scale-up
    w.settle()
    # Exactly one VM per queued job, never more than max, even with more jobs queued.
    assert w.desired() == first and len(w.fleet.machines) == first and w.peak() == first
    assert [j.state for j in jobs].count("queued") == jobs_queued - first

    w.finish_running(jobs)
    if jobs_queued > MAX:
        # The jobs beyond max wait until VMs free up. Ephemeral VMs leave after their job; the scheduled
        # reconcile then sees the queued jobs (their webhooks found the group at max) and adds VMs for them.
        wait_until(lambda: w.desired() == 0, 30, f"the first VMs gone ({w.describe()})")
        (plan,) = w.reconcile()
        assert (plan["queued"], plan["added"]) == (jobs_queued - MAX, jobs_queued - MAX), plan
        w.wait_serving(jobs_queued - MAX)
        wait_until(lambda: all(j.state in ("in_progress", "completed") for j in jobs), BOOT_SECONDS,
                   f"the rest running ({w.describe()})")
        w.finish_running(jobs)
    wait_until(lambda: all(j.state == "completed" for j in jobs), 30, f"every job done ({w.describe()})")
    w.wait_empty()
    assert {j.result for j in jobs} == {"succeeded"}
    assert len(w.fleet.machines) == jobs_queued  # one ephemeral VM per job
    assert w.peak() == first
    assert all(m.vm.powered_off for m in w.fleet.machines)
    assert w.github.runners() == []  # every runner deregistered
    # Each VM left through its group's API: AWS through the termination hook it completed itself, GCP by
    # deleting itself from the MIG.
    if cloud == "aws":
        assert sorted(a.instance_id for a in w.aws_front.lifecycle_actions if a.result == "CONTINUE") == sorted(
            m.instance for m in w.fleet.machines)
        assert all(decrement for _, decrement in w.aws_front.terminations)
    else:
        assert sorted(w.fleet.mig.actions) == sorted(("deleteInstances", m.instance) for m in w.fleet.machines)
    assert time.monotonic() - began < 120
    _record(w, f"{jobs_queued} jobs queued at once", first_wave)


@pytest.mark.parametrize("cloud", CLOUDS)
def test_a_lost_webhook_is_repaired_by_the_reconcile(world: Callable[..., World], cloud: str) -> None:
    w = world(cloud)
    job = w.hub.queue(duration=0.2, lose_webhook=True)
    w.settle()
    assert w.desired() == 0 and w.fleet.machines == []  # nobody heard of it
    (plan,) = w.reconcile()
    assert (plan["queued"], plan["added"]) == (1, 1), plan
    job.wait_completed(BOOT_SECONDS)
    w.wait_empty()
    assert job.result == "succeeded" and len(w.fleet.machines) == 1


EVERY_MINUTE = [{"cron": "* * * * *", "desired": 2}]  # a schedule that has always just fired: floor 2


@pytest.mark.parametrize("cloud", CLOUDS)
def test_a_schedule_raises_the_floor_and_vms_at_the_floor_are_replaced_after_their_job(
        world: Callable[..., World], cloud: str) -> None:
    if cloud == "aws":
        # AWS keeps the floor as the group's MinSize, moved by the stack's scheduled actions (MinSize only,
        # for demand pools: providers/aws/group.py scheduled_sizes).
        w = world(cloud)
        w.fleet.aws_env.client("autoscaling").update_auto_scaling_group(AutoScalingGroupName=w.stack.pools[0].group,
                                                                         MinSize=2)
    else:
        # GCP: the floor is the schedule's, worked out by the receiver (scaler/floor.py) and the agent alike.
        w = world(cloud, schedules=EVERY_MINUTE)
    (plan,) = w.reconcile()
    assert plan["floor"] == 2 and plan["target"] == 2, plan
    warm = w.wait_serving(2)
    # A job taken by a warm VM (its webhook lost, so no VM is added for it): after the job the VM leaves
    # through its group, which replaces it -- the group stays at its floor.
    job = w.hub.queue(duration=0.2, lose_webhook=True)
    job.wait_completed(BOOT_SECONDS)
    wait_until(lambda: len(w.fleet.machines) == 3 and len(w.fleet.serving()) == 2, BOOT_SECONDS,
               f"the VM that ran the job replaced ({w.describe()})")
    assert w.desired() == 2
    assert sum(m.running for m in warm) == 1

    if cloud == "gcp":
        return  # lowering it needs the clock to pass the next schedule: the AWS half shows the rule
    # The schedule lowers the floor (MinSize 0): a VM above it leaves after its job, lowering the size.
    w.fleet.aws_env.client("autoscaling").update_auto_scaling_group(AutoScalingGroupName=w.stack.pools[0].group,
                                                                     MinSize=0)
    job = w.hub.queue(duration=0.2, lose_webhook=True)
    job.wait_completed(BOOT_SECONDS)
    wait_until(lambda: w.desired() == 1 and len(w.fleet.live()) == 1, 30,
               f"the VM that ran the job gone, not replaced ({w.describe()})")
    assert len(w.fleet.machines) == 3


@pytest.mark.parametrize("cloud", CLOUDS)
def test_a_spot_vm_lost_mid_job_is_replaced_and_the_retry_is_served(world: Callable[..., World],
                                                                    cloud: str) -> None:
    # AWS: the two-minute notice, shortened so the drain ends at once; GCP: the preemption's ACPI shutdown
    # with a 1 s drain (a real spot pool's window is 30 s).
    env = {"GH_RUNNERS_SPOT_NOTICE_SECONDS": "30"} if cloud == "aws" else {"GH_RUNNERS_DRAIN_SECONDS": "1"}
    w = world(cloud, env=env)
    job = w.hub.queue(duration=None)
    (vm,) = w.wait_serving(1)
    job.wait_started(BOOT_SECONDS)
    if cloud == "aws":
        w.fleet.interrupt_spot(vm, notice_seconds=30)
    else:
        w.fleet.preempt(vm)
    # The job is lost, as GitHub shows it; the runner was deregistered on the way down.
    assert job.state == "completed" and job.result == "cancelled", vm.agent.output
    assert w.github.find_runner(vm.vm.runner_name) is None
    # The group, whose size did not change, replaces the VM: a fresh runner registers.
    (fresh,) = w.wait_serving(1)
    assert fresh is not vm and w.desired() == 1
    # The job's retry is a new job: queued, delivered, served.
    retry = w.hub.queue(duration=0.2)
    retry.wait_completed(BOOT_SECONDS)
    assert retry.result == "succeeded"
    w.settle()
    # One VM per job is left serving (the one the retry's webhook added, or the replacement): an idle VM
    # above the floor, which leaves after idle_timeout (see the idle test below).
    wait_until(lambda: w.desired() == 1 and len(w.fleet.serving()) == 1, BOOT_SECONDS, w.describe())


# --- idle timeout ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("cloud", CLOUDS)
def test_idle_timeout_idle_vms_above_the_floor_leave(world: Callable[..., World], cloud: str) -> None:
    """A VM above the floor with no job for idle_timeout deregisters and leaves through its group, lowering
    its size; at the floor it stays."""
    w = world(cloud, env={"GH_RUNNERS_IDLE_TIMEOUT": "2"})
    # A job cancelled before any runner took it: its VM is added, boots, and finds nothing to do.
    job = w.hub.queue(duration=None)
    wait_until(lambda: w.desired() == 1, 10, "the scale-up")
    job.finish("cancelled")  # still queued: the VM is only booting
    w.wait_serving(1)
    w.wait_empty(timeout=30)
    assert len(w.fleet.machines) == 1 and w.github.runners() == []
    # At the floor an idle VM stays (and keeps serving).
    if cloud == "aws":
        w.fleet.aws_env.client("autoscaling").update_auto_scaling_group(
            AutoScalingGroupName=w.stack.pools[0].group, MinSize=1, DesiredCapacity=1)
        (warm,) = w.wait_serving(1)
        time.sleep(4)  # two idle timeouts: it must still be there
        assert warm.running and w.desired() == 1
