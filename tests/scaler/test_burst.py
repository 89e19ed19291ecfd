"""A burst: 1,000 deliveries for three pools across both clouds, duplicated and out of order.

Both receivers run as processes and get every delivery, as GitHub sends the
same events to each webhook. A step-by-step model plays GitHub and the VMs:

* GitHub queues 200 jobs in the first seven steps (most for one of the three
  pools, some for `ubuntu-latest`, which no pool has); each job's `queued`,
  `in_progress` and `completed` events are sent when they happen but arrive
  0-3 steps late, in any order, 400 of them twice;
* a VM registers a step after its group created it, takes one queued job its
  labels fit, runs it 1-3 steps, then leaves its group as the agent will:
  AWS TerminateInstanceInAutoScalingGroup with decrement (AWS refuses that
  below MinSize, and the VM then leaves without decrement and is replaced),
  GCP deleteInstances unless that goes below the floor (then it is recreated);
  a VM idle past its timeout leaves the same way;
* the reconcile runs every six steps (five minutes at 50 s a step).

Checked throughout: no group above max or below its floor; after every
reconcile each pool has at least min(max, busy + queued) VMs (no scale-up is
lost for longer than one reconcile); at the end every job ran and every group
is back at its floor. 100 deliveries with bad signatures change nothing.
"""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
from receiver_doubles.github import Job
from receiver_doubles.stack import PAT, RECEIVER_KEY, WEBHOOK_SECRET, Stack, build_stack
from receiver_doubles.webhooks import Sender, job_payload
from receiver_doubles.world import PoolSpec

POOLS = [
    PoolSpec("codex", "aws", ["codex"], max=8, min=0),
    PoolSpec("big", "aws", ["big"], max=5, min=1),
    PoolSpec("general", "gcp", ["general"], max=6, min=1),
]
JOBS = {"codex": 80, "big": 40, "general": 60, None: 20}  # None: ubuntu-latest, no pool of ours
DUPLICATES = 400
IDLE_STEPS, RECONCILE_EVERY, MAX_STEPS = 2, 6, 400
REPOSITORY = "octo-org/octo-repo"


@dataclass
class Vm:
    pool: str
    name: str
    born: int
    registered: bool = False
    job: Job | None = None
    done_at: int = 0
    idle_since: int = 0


@dataclass
class Delivery:
    due: int
    job: Job
    action: str
    runner: str | None
    delivery: str


@dataclass
class Sim:
    stack: Stack
    aws_front: Any
    gcp: Any
    github: Any
    rng: random.Random
    step: int = 0
    vms: dict[str, Vm] = field(default_factory=dict)
    net: list[Delivery] = field(default_factory=list)
    sent: int = 0
    replies: Counter[tuple[str, int, str]] = field(default_factory=Counter)
    duplicate: set[tuple[int, str]] = field(default_factory=set)
    wanted: dict[int, str | None] = field(default_factory=dict)  # job id -> pool it needs
    started: dict[int, int] = field(default_factory=dict)
    queued_at: dict[int, int] = field(default_factory=dict)
    worst_after_reconcile: list[str] = field(default_factory=list)
    delivered: Counter[str] = field(default_factory=Counter)
    payloads: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        import boto3
        from doubles.aws import REGION

        # The VM's own calls go through the front, so AWS's MinSize rule applies to them.
        self.autoscaling = boto3.client("autoscaling", endpoint_url=self.aws_front.url, region_name=REGION,
                                        aws_access_key_id=RECEIVER_KEY[0], aws_secret_access_key=RECEIVER_KEY[1])
        self.local = threading.local()  # one kept-alive connection per worker thread and cloud
        self.all_senders: list[Sender] = []

    # -- GitHub's side ----------------------------------------------------------------------

    def emit(self, job: Job, action: str, runner: str | None = None) -> None:
        # A duplicate is a redelivery: the same delivery id, GitHub's GUID for the event.
        copies = 2 if (job.id, action) in self.duplicate else 1
        for _ in range(copies):
            self.net.append(Delivery(self.step + self.rng.randint(0, 3), job, action, runner, f"{job.id}-{action}"))

    def create_jobs(self, plan: list[str | None]) -> None:
        for pool_name in plan:
            job_id = 10_000 + len(self.wanted)
            labels = (["ubuntu-latest"] if pool_name is None else
                      self.rng.choice([["self-hosted", pool_name], ["Self-Hosted", "linux", "X64", pool_name]]))
            job = self.github.queue(job_id, REPOSITORY, labels, run_id=job_id // 3)
            self.wanted[job_id] = pool_name
            self.queued_at[job_id] = self.step
            self.emit(job, "queued")

    def deliver_due(self) -> None:
        due = [d for d in self.net if d.due <= self.step]
        self.net = [d for d in self.net if d.due > self.step]
        self.rng.shuffle(due)

        def send(d: Delivery) -> list[tuple[str, int, str]]:
            payload = self.payloads.get(d.delivery)
            if payload is None:  # a redelivery carries the very same body
                payload = self.payloads[d.delivery] = job_payload(
                    d.action, d.job.id, d.job.labels, REPOSITORY, runner_name=d.runner, run_id=d.job.run_id)
            out = []
            for cloud in ("aws", "gcp"):
                status, body = self.sender(cloud).deliver("workflow_job", payload, delivery=d.delivery)
                out.append((cloud, status, body.get("decision", "")))
            return out

        with ThreadPoolExecutor(8) as workers:
            for results in workers.map(send, due):
                self.replies.update(results)
        self.sent += len(due)
        self.delivered.update(d.delivery for d in due)

    def sender(self, cloud: str) -> Sender:
        found = getattr(self.local, cloud, None)
        if found is None:
            found = Sender((self.stack.aws if cloud == "aws" else self.stack.gcp).url, WEBHOOK_SECRET)
            setattr(self.local, cloud, found)
            self.all_senders.append(found)
        return found

    # -- the clouds, as the VMs see them -----------------------------------------------------

    def read_aws(self) -> None:
        """One DescribeAutoScalingGroups for every AWS pool (straight to moto: not a receiver call)."""
        names = [p.group for p in POOLS if p.cloud == "aws"]
        found = self.aws_front.seed("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=names)
        self.aws_groups = {g["AutoScalingGroupName"]: g for g in found["AutoScalingGroups"]}

    def live_names(self, pool: PoolSpec) -> list[str]:
        if pool.cloud == "aws":
            return [i["InstanceId"] for i in self.aws_groups[pool.group]["Instances"]
                    if i["LifecycleState"] in ("InService", "Pending")]
        return [vm.name for vm in self.mig(pool).live]

    def mig(self, pool: PoolSpec) -> Any:
        return self.gcp.compute.groups[("gh-runners-test", "us-central1", pool.group)]

    def size(self, pool: PoolSpec) -> int:
        if pool.cloud == "aws":
            return int(self.aws_groups[pool.group]["DesiredCapacity"])
        return len(self.mig(pool).live)

    def observe(self) -> None:
        self.read_aws()
        for pool in POOLS:
            names = set(self.live_names(pool))
            for name in names - {n for n, vm in self.vms.items() if vm.pool == pool.name}:
                self.vms[name] = Vm(pool.name, name, self.step, idle_since=self.step)
            for name in [n for n, vm in self.vms.items() if vm.pool == pool.name and n not in names]:
                # Gone without our model asking: only the receiver's trim of a booting surplus does that.
                vm = self.vms.pop(name)
                assert vm.job is None and not vm.registered, f"{name} vanished while serving"

    def leave(self, vm: Vm) -> None:
        pool = next(p for p in POOLS if p.name == vm.pool)
        self.github.runners = [r for r in self.github.runners if r.name != f"{vm.pool}-{vm.name}"]
        if pool.cloud == "aws":
            from botocore.exceptions import ClientError

            try:
                self.autoscaling.terminate_instance_in_auto_scaling_group(
                    InstanceId=vm.name, ShouldDecrementDesiredCapacity=True)
            except ClientError as exc:  # at MinSize: AWS refuses; the agent leaves and is replaced
                assert "min size" in str(exc)
                self.autoscaling.terminate_instance_in_auto_scaling_group(
                    InstanceId=vm.name, ShouldDecrementDesiredCapacity=False)
            del self.vms[vm.name]
            return
        group = self.mig(pool)
        with self.gcp.compute._cond:
            if len(group.live) - 1 >= pool.min:
                group.vm(vm.name).action = "DELETING"
                group.target_size -= 1
                del self.vms[vm.name]
            else:  # recreated in place: a fresh VM of the same name boots
                group.vm(vm.name).action = "CREATING"
                self.vms[vm.name] = Vm(vm.pool, vm.name, self.step, idle_since=self.step)
        self.gcp.compute.finish_deletes(group)

    def advance(self) -> None:
        for name, vm in list(self.vms.items()):
            pool = next(p for p in POOLS if p.name == vm.pool)
            if not vm.registered and vm.born < self.step:
                vm.registered, vm.idle_since = True, self.step
                if pool.cloud == "gcp":
                    self.gcp.compute.boot(self.mig(pool), name)
                self.github.add_runner(f"{vm.pool}-{name}", pool.all_labels)
            if vm.job is not None and vm.done_at <= self.step:
                vm.job.status = "completed"
                self.emit(vm.job, "completed", f"{vm.pool}-{name}")
                self.leave(vm)  # ephemeral: one job, then out
        # GitHub hands each queued job to an idle runner whose labels include the job's.
        idle = [vm for vm in self.vms.values() if vm.registered and vm.job is None]
        self.rng.shuffle(idle)
        for vm in idle:
            pool = next(p for p in POOLS if p.name == vm.pool)
            keys = {label.lower() for label in pool.all_labels}
            job = next((j for j in sorted(self.github.jobs.values(), key=lambda j: j.id)
                        if j.status == "queued" and {lb.lower() for lb in j.labels} <= keys), None)
            if job is None:
                continue
            runner = f"{vm.pool}-{vm.name}"
            job.status, job.runner_name = "in_progress", runner
            vm.job, vm.done_at = job, self.step + self.rng.randint(1, 3)
            self.started[job.id] = self.step
            next(r for r in self.github.runners if r.name == runner).busy = True
            self.emit(job, "in_progress", runner)
        for vm in [vm for vm in self.vms.values() if vm.registered and vm.job is None]:
            if self.step - vm.idle_since > IDLE_STEPS:
                self.leave(vm)
        # GitHub's own runners take the jobs no pool of ours has.
        for job in self.github.jobs.values():
            if self.wanted[job.id] is None and job.status != "completed":
                job.status = "in_progress" if job.status == "queued" else "completed"
                self.emit(job, job.status, "GitHub Actions 5")

    # -- invariants ---------------------------------------------------------------------------

    def check_bounds(self) -> None:
        for pool in POOLS:
            size = self.size(pool)
            assert pool.min <= size <= pool.max, f"step {self.step}: {pool.name} at {size}"
            if pool.cloud == "gcp":
                running = [vm for vm in self.mig(pool).live if vm.action == "NONE"]
                assert len(running) <= pool.max

    def reconcile(self) -> None:
        for receiver in (self.stack.aws, self.stack.gcp):
            sender = Sender(receiver.url, WEBHOOK_SECRET)
            status, _ = sender.post(b"", {}, path="/reconcile")
            sender.close()
            assert status == 200
        self.observe()
        for pool in POOLS:
            busy = sum(1 for vm in self.vms.values() if vm.pool == pool.name and vm.job is not None)
            queued = sum(1 for j in self.github.jobs.values()
                         if j.status == "queued" and self.wanted[j.id] == pool.name)
            if self.size(pool) < min(pool.max, busy + queued):
                self.worst_after_reconcile.append(f"step {self.step}: {pool.name} {self.size(pool)} < "
                                                  f"min({pool.max}, {busy} + {queued})")

    def done(self) -> bool:
        self.read_aws()
        return (self.sent >= 1000 and not self.net
                and all(j.status == "completed" for j in self.github.jobs.values())
                and all(self.size(p) == p.min for p in POOLS))

    def close(self) -> None:
        for sender in self.all_senders:
            sender.close()


@pytest.fixture
def stack(aws_front: Any, gcp: Any, github_api: Any, start_receiver: Any) -> Stack:
    return build_stack(POOLS, aws_front=aws_front, gcp=gcp, github_api=github_api, start_receiver=start_receiver,
                       secret=WEBHOOK_SECRET, pat=PAT, budget=400)


# ~35 s alone; the default 120 s limit is too tight for it on a loaded CI machine.
@pytest.mark.timeout(300)
def test_burst_of_1000_deliveries(stack: Stack, aws_front: Any, gcp: Any, github_api: Any) -> None:
    rng = random.Random(20250602)  # noqa: S311 - a reproducible simulation, not a secret
    sim = Sim(stack, aws_front, gcp, github_api, rng)
    plan = [pool for pool, count in JOBS.items() for _ in range(count)]
    rng.shuffle(plan)
    total_jobs = len(plan)
    events = [(10_000 + i, action) for i in range(total_jobs) for action in ("queued", "in_progress", "completed")]
    sim.duplicate = set(rng.sample(events, DUPLICATES))
    assert len(events) + DUPLICATES == 1000
    try:
        while not sim.done():
            assert sim.step < MAX_STEPS, f"not settled after {MAX_STEPS} steps"
            if plan:
                sim.create_jobs([plan.pop() for _ in range(min(30, len(plan)))])
            sim.deliver_due()
            sim.observe()
            sim.check_bounds()
            if sim.step == 12:
                bad_signatures_change_nothing(sim)
            sim.advance()
            sim.observe()
            sim.check_bounds()
            if sim.step % RECONCILE_EVERY == RECONCILE_EVERY - 1:
                sim.reconcile()
            sim.step += 1
    finally:
        sim.close()
    assert sim.sent == 1000
    statuses = Counter(status for (_, status, _) in sim.replies.elements())
    assert set(statuses) == {200}, statuses
    decisions = Counter(decision for (_, _, decision) in sim.replies.elements())
    assert decisions["grown"] > 0 and decisions["other-cloud"] > 0 and decisions["no-pool"] > 0
    assert sim.worst_after_reconcile == []
    assert len(sim.started) == total_jobs - JOBS[None]  # every job of ours ran (GitHub ran the others)
    for pool in POOLS:
        assert sim.size(pool) == pool.min  # back at the floor
        if pool.cloud == "aws":
            history = aws_front.desired_history[pool.group]
            assert max(history) <= pool.max and min(history) >= pool.min
    # Only the capped, atomic verbs ever grew a group: no read-modify-write of a size.
    verbs = Counter(call.action for call in aws_front.calls)
    assert not {"SetDesiredCapacity", "UpdateAutoScalingGroup"} & set(verbs)
    assert gcp.compute.requests(path="/resize$") == []
    for receiver in (stack.aws, stack.gcp):  # each receiver logged every delivery, by its id
        logged = Counter(line["delivery"] for line in receiver.log() if "delivery" in line)
        assert {d: logged[d] for d in sim.delivered} == dict(sim.delivered)


def bad_signatures_change_nothing(sim: Sim) -> None:
    sim.read_aws()
    before = (Counter(c.action for c in sim.aws_front.calls), len(sim.gcp.compute.log),
              {p.name: sim.size(p) for p in POOLS})
    payload = job_payload("queued", 99_999, ["self-hosted", "codex"], REPOSITORY)
    body = json.dumps(payload).encode()
    for i in range(100):
        cloud = "aws" if i % 2 else "gcp"
        sender = sim.sender(cloud)
        key = [None, b"guess", WEBHOOK_SECRET + b"x"][i % 3]
        status, reply = sender.deliver("workflow_job", payload, secret=key, delivery=f"bad-{i}")
        assert (status, reply["decision"]) == (401, "bad-signature")
    assert body  # the same payload a valid delivery would carry
    sim.read_aws()
    after = (Counter(c.action for c in sim.aws_front.calls), len(sim.gcp.compute.log),
             {p.name: sim.size(p) for p in POOLS})
    # Our own size reads above are DescribeAutoScalingGroups through moto directly, not the front.
    assert after == before
