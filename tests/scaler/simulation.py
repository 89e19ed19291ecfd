"""The end-to-end loopback simulation: GitHub, the receiver, one cloud group, and VMs that are agents.

Three moving parts beside the doubles, each a thread:

* :class:`Hub` is GitHub as both sides see it. Jobs are queued in the agents' GitHub double
  (tests/bootstrap/doubles/github.py: JIT registration, the runner service the fake runner takes jobs
  from); every change of a job's state there becomes the signed `workflow_job` delivery GitHub sends
  (`queued`, `in_progress`, `completed`, GitHub's example payloads) to every receiver, in order, and is
  mirrored into the reconcile's GitHub double (tests/scaler/receiver_doubles/github.py: workflow runs,
  their jobs, the self-hosted runners), so a reconcile sees the same jobs and runners the agents do.
  A delivery can be dropped: a lost webhook.
* :class:`Fleet` is the cloud's machinery around one group: it boots a "VM" for every instance the group
  gains -- the real agent as a process, through the agent harness's own entry points
  (tests/bootstrap/test_agent_harness.py: make_root, vm_env, render, Vm) with its own IMDS (AWS) or
  metadata server (GCP) -- and removes the VMs the group no longer has. On AWS the group is moto's Auto
  Scaling group behind the scaling front (the receiver's ExecutePolicy and the agents'
  TerminateInstanceInAutoScalingGroup / CompleteLifecycleAction meet there, with the stack's
  termination hook); on GCP it is the one MIG model (GcpState.migs) that the receiver grows and the
  agents leave. What the cloud itself does is played here: a MIG instance is CREATING until its VM runs,
  DELETING until it powered off, RECREATING until it is replaced by a new one of the same name; EC2 takes
  a spot instance back and the group launches a replacement.
* The receiver is `python -m scaler serve` (tests/scaler/conftest.py's start_receiver), reconciled through
  `POST /reconcile`, the entry the scheduler invokes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from doubles.aws import REGION, AwsEnv, MotoServer
from doubles.gcp import GcpState, MetadataDouble, Mig
from doubles.github import GitHubDouble, Job
from doubles.imds import ImdsDouble, Instance
from doubles.runner_tarball import RunnerRelease
from receiver_doubles.github import ActionsDouble
from receiver_doubles.github import Job as RunJob
from receiver_doubles.github import Runner as ListedRunner
from receiver_doubles.webhooks import Sender, job_payload, schema_errors
from test_agent_harness import LDCONFIG, Agent, Vm, make_root, render, vm_env

REPOSITORY = "octo/hello"  # the harness's repository target
POOL = "pool"  # the harness's pool name
POOL_LABELS = ["e2e"]
JOB_LABELS = ["self-hosted", "linux", "x64", "e2e"]
ROLE = "gh-runners-pool"  # the IMDS double's default role name
HOOK = "drain"
SHUTDOWN_GRACE = 5.0  # seconds an agent that is leaving gets before its VM is gone
CONCLUSIONS = {"succeeded": "success", "failed": "failure", "cancelled": "cancelled"}


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, step: float = 0.05) -> Any:
    """Poll `predicate` until truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(step)


# --- GitHub: one job model, webhooks to the receivers, the reconcile's view ---------------------------


@dataclass
class Timing:
    """One job's way through the simulation (wall-clock seconds, as the GitHub double records them)."""

    queued: float
    registered: float | None = None  # the runner that took it was registered (its JIT config made)
    started: float | None = None  # the runner acknowledged the job: it runs


ORDER = ("queued", "in_progress", "completed")


class Hub:
    def __init__(self, github: GitHubDouble, actions: ActionsDouble, receivers: list[Any], secret: bytes) -> None:
        self.github, self.actions = github, actions
        self.senders = [Sender(r.url, secret) for r in receivers]
        self.seen: dict[int, int] = {}  # job id -> index in ORDER of the last delivery made for it
        self.dropped: set[tuple[int, str]] = set()  # (job id, action) deliveries GitHub loses
        self.deliveries: list[tuple[int, str, int]] = []  # (job id, action, HTTP status), every receiver
        self.timings: dict[int, Timing] = {}
        self.runner_created: dict[int, float] = {}  # runner id -> when it was registered
        self.runner_names: dict[int, str] = {}  # job id -> the runner it was given to
        self._outbox: queue.Queue[tuple[int, str, dict[str, Any]] | None] = queue.Queue()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._watch, name="hub-watch", daemon=True),
                         threading.Thread(target=self._send, name="hub-send", daemon=True)]
        for thread in self._threads:
            thread.start()

    def queue(self, *, duration: float | None = 0.2, lose_webhook: bool = False) -> Job:
        """A job for the pool's labels; `duration` None runs until `job.finish()`."""
        with self.github._cond:
            job = self.github.queue_job(JOB_LABELS, duration=duration, scope=self.github.repo(REPOSITORY))
            self.timings[job.id] = Timing(time.time())
            if lose_webhook:
                self.dropped.add((job.id, "queued"))
        return job

    def stop(self) -> None:
        self._stop.set()
        self._outbox.put(None)
        for thread in self._threads:
            thread.join(10)
        for sender in self.senders:
            sender.close()

    def idle(self) -> bool:
        """Every job's latest state was seen and every delivery for it made."""
        with self.github._cond:
            seen = all(self.seen.get(j.id) == _step(j) for j in self.github.jobs)
        return seen and self._outbox.unfinished_tasks == 0

    def _watch(self) -> None:
        gh = self.github
        while not self._stop.is_set():
            with gh._cond:
                for _, run in gh.runners():
                    self.runner_created.setdefault(run.id, run.created)
                for job in list(gh.jobs):
                    self._observe(job)
                self._mirror()
                gh._cond.wait(0.2)

    def _observe(self, job: Job) -> None:
        """Deliver each step of the job's life not delivered yet, in order (a job cancelled while queued
        goes from queued to completed)."""
        now = _step(job)
        last = self.seen.get(job.id, -1)
        if now == last:
            return
        timing = self.timings.setdefault(job.id, Timing(time.time()))
        runner = next((r.name for _, r in self.github.runners() if r.id == job.runner_id), None)
        if runner is not None:
            self.runner_names[job.id] = runner
        if job.started is not None and timing.started is None:
            timing.started = job.started
            timing.registered = self.runner_created.get(job.runner_id or -1)
        for step in range(last + 1, now + 1):
            if ORDER[step] == "in_progress" and job.started is None:
                continue
            self._deliver(job, ORDER[step])
        self.seen[job.id] = now

    def _deliver(self, job: Job, action: str) -> None:
        if (job.id, action) in self.dropped:
            return
        # The runner that took it (an ephemeral one is deregistered by the time its job completed).
        runner = self.runner_names.get(job.id) if action != "queued" else None
        payload = job_payload(action, job.id, list(job.labels), REPOSITORY, runner_name=runner)
        if action == "completed":
            payload["workflow_job"]["conclusion"] = CONCLUSIONS.get(job.result or "", "success")
            assert not schema_errors("workflow_job", payload)
        self._outbox.put((job.id, action, payload))

    def _send(self) -> None:
        while True:
            item = self._outbox.get()
            try:
                if item is None:
                    return
                job_id, action, payload = item
                for sender in self.senders:
                    status, _ = sender.deliver("workflow_job", payload)
                    self.deliveries.append((job_id, action, status))
            finally:
                self._outbox.task_done()

    def _mirror(self) -> None:
        """The reconcile's GitHub: the same jobs (a run per job) and the same runners."""
        jobs = {}
        for job in self.github.jobs:
            status = {"assigned": "queued"}.get(job.state, job.state)
            runner = next((r.name for _, r in self.github.runners() if r.id == job.runner_id), None)
            jobs[job.id] = RunJob(job.id, job.id * 10, REPOSITORY, list(job.labels), status, runner)
        runners = [ListedRunner(r.id, r.name, list(r.labels), r.busy_now, r.status) for _, r in self.github.runners()]
        with self.actions._cond:
            self.actions.jobs = jobs
            self.actions.runners = runners
            if REPOSITORY not in self.actions.repositories:
                self.actions.repositories.append(REPOSITORY)


def _step(job: Job) -> int:
    """Where the job is in ORDER (a job sent to a runner that has not acknowledged it is still queued)."""
    return ORDER.index({"assigned": "queued"}.get(job.state, job.state))


# --- the cloud: VMs for the group's instances -------------------------------------------------------------


class VmMetadata(MetadataDouble):
    """This VM's metadata server: its own name, id, zone and preemption flag; tokens, secrets and MIGs are
    the project's (shared state)."""

    def __init__(self, state: GcpState, name: str, instance_id: str, zone: str) -> None:
        super().__init__(state, identity=(name, instance_id))
        self.zone, self.preempted = zone, False

    def _tree(self) -> dict[str, Any]:
        tree = super()._tree()
        tree["instance"]["zone"] = f"projects/{self.state.project_number}/zones/{self.zone}"
        tree["instance"]["preempted"] = "TRUE" if self.preempted else "FALSE"
        return tree

    def preempt(self) -> None:
        with self._cond:
            self.preempted = True
            self.changed()


@dataclass
class Machine:
    """One simulated VM: the group's instance, the harness's Vm, and its own metadata server."""

    instance: str  # AWS instance id | MIG instance name
    vm: Vm
    agent: Agent
    server: ImdsDouble | VmMetadata
    booted: float = field(default_factory=time.monotonic)
    gone: bool = False
    server_stopped: bool = False

    @property
    def running(self) -> bool:
        return self.agent.proc.poll() is None


class Fleet:
    """VMs for one cloud's group; see the module docstring. `machines` keeps every VM ever booted."""

    def __init__(self, cloud: str, *, github: GitHubDouble, release: RunnerRelease, group: str,
                 pool: dict[str, Any], extra_env: dict[str, str] | None = None, aws: Any = None, moto: Any = None,
                 gcp: Any = None) -> None:
        self.cloud, self.github, self.release, self.group = cloud, github, release, group
        self.pool, self.extra_env = pool, dict(extra_env or {})
        self.aws, self.gcp = aws, gcp
        self.machines: list[Machine] = []
        self.errors: list[str] = []
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self.secret = self._seed_credential(moto)
        self._thread = threading.Thread(target=self._loop, name=f"fleet-{cloud}", daemon=True)
        self._thread.start()

    # -- setup -------------------------------------------------------------------------------

    def _seed_credential(self, moto: MotoServer | None) -> str:
        token = self.github.add_pat()
        self.github.repo(REPOSITORY)
        secret = f'{{"kind": "pat", "token": "{token}"}}'
        if self.cloud == "aws":
            assert moto is not None
            # Role credentials from moto STS, trusted by the front: the agents sign with real keys.
            self.aws_env = AwsEnv(moto, self.aws, ImdsDouble())
            self.aws_env.client("ssm").put_parameter(Name="/gh-runners/pool/credential", Value=secret,
                                                     Type="SecureString")
            self.aws_env.create_role(ROLE)
            self.aws_env.client("autoscaling").put_lifecycle_hook(
                LifecycleHookName=HOOK, AutoScalingGroupName=self.group,
                LifecycleTransition="autoscaling:EC2_INSTANCE_TERMINATING", HeartbeatTimeout=300,
                DefaultResult="CONTINUE")
        else:
            self.gcp.add_secret("gh-runners-pool", secret.encode())
        return secret

    @property
    def mig(self) -> Mig:
        state = self.gcp.state
        mig: Mig = state.migs[(state.project_id, state.region, self.group)]
        return mig

    # -- what the group holds ---------------------------------------------------------------------

    def desired(self) -> int:
        """The group's desired capacity / target size."""
        if self.cloud == "aws":
            group = self.aws_env.client("autoscaling").describe_auto_scaling_groups(
                AutoScalingGroupNames=[self.group])["AutoScalingGroups"][0]
            return int(group["DesiredCapacity"])
        return self.mig.target_size

    def _instances(self) -> dict[str, str]:
        """Instance -> its state in the group (AWS lifecycle state | MIG current action)."""
        if self.cloud == "aws":
            group = self.aws_env.client("autoscaling").describe_auto_scaling_groups(
                AutoScalingGroupNames=[self.group])["AutoScalingGroups"][0]
            return {i["InstanceId"]: i["LifecycleState"] for i in group["Instances"]}
        with self.gcp.compute._cond:
            return {i.name: i.action for i in self.mig.instances}

    def live(self) -> list[Machine]:
        """VMs whose agent still runs."""
        with self._lock:
            return [m for m in self.machines if m.running]

    def serving(self) -> list[Machine]:
        """VMs whose runner is registered with GitHub right now."""
        names = {r.name for _, r in self.github.runners()}
        return [m for m in self.live() if m.vm.runner_name in names]

    # -- the loop ---------------------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except Exception as error:  # kept for the test to report; the loop goes on
                self.errors.append(repr(error))
            self._stop.wait(0.05)

    def _step(self) -> None:
        instances = self._instances()
        with self._lock:
            known = {m.instance: m for m in self.machines if not m.gone}
        for instance, status in instances.items():
            machine = known.get(instance)
            if machine is None and status in ("InService", "Pending", "CREATING"):
                self._boot(instance)
            elif machine is not None and self.cloud == "gcp" and status in ("DELETING", "RECREATING") \
                    and not machine.running:
                self._gcp_settle(machine, status)
        for instance, machine in known.items():
            if instance not in instances:  # the group let it go: the VM is off
                self._remove(machine)

    def _gcp_settle(self, machine: Machine, status: str) -> None:
        """A MIG instance whose VM powered off: deleted, or recreated as a new VM of the same name."""
        compute = self.gcp.compute
        with compute._cond:
            inst = self.mig.vm(machine.instance)
            if status == "DELETING":
                self.mig.instances.remove(inst)
            else:
                assert inst is not None
                fresh = dataclasses.replace(inst, action="CREATING", status="PROVISIONING")
                fresh.id = str(int(inst.id) + 1)
                self.mig.instances[self.mig.instances.index(inst)] = fresh
            compute.changed()
        self._remove(machine)

    def _boot(self, instance: str) -> Machine:
        root = make_root()
        (root / "bin" / "ldconfig").write_text(LDCONFIG.format(cache=self.release.ldcache))
        (root / "bin" / "ldconfig").chmod(0o755)
        env = vm_env(root, self.github)
        env.update({"GH_RUNNERS_RELEASES_URL": self.github.api_url, "GH_RUNNERS_SWEEP_CHANCE": "0",
                    "GH_RUNNERS_STOP_SECONDS": "3"})
        server: ImdsDouble | VmMetadata
        if self.cloud == "aws":
            server = ImdsDouble()
            server.start()
            server.credentials_provider = self._role_credentials
            server.set(instance_id=instance, region=REGION, availability_zone=f"{REGION}a", role_name=ROLE)
            location = {"cloud": "aws", "secret": "/gh-runners/pool/credential", "region": REGION,
                        "group": self.group, "lifecycle_hook": HOOK}
            env.update(GH_RUNNERS_IMDS_URL=server.url, GH_RUNNERS_SSM_URL=self.aws.url,
                       GH_RUNNERS_AUTOSCALING_URL=self.aws.url, GH_RUNNERS_EC2_URL=self.aws.url)
            instance_id = instance
        else:
            state = self.gcp.state
            with self.gcp.compute._cond:
                inst = self.mig.vm(instance)
                assert inst is not None
                instance_id, zone = inst.id, inst.zone
            server = VmMetadata(state, instance, instance_id, zone)
            server.start()
            location = {"cloud": "gcp", "secret": f"projects/{state.project_id}/secrets/gh-runners-pool",
                        "region": state.region, "group": self.group, "project": state.project_id}
            env.update(GH_RUNNERS_GCE_METADATA_URL=server.url, GH_RUNNERS_SECRETMANAGER_URL=self.gcp.secrets.url,
                       GH_RUNNERS_COMPUTE_URL=self.gcp.compute.url)
        env.update(self.extra_env)
        agent_source, config = render(self.cloud, "repository", location, name=POOL, labels=POOL_LABELS,
                                      **self.pool)
        config["github"]["api_url"] = self.github.api_url
        vm = Vm(root, self.cloud, self.github, self.github.repo(REPOSITORY), instance_id, env, config, agent_source,
                self.release, [self.secret])
        machine = Machine(instance, vm, vm.start(), server)
        with self._lock:
            self.machines.append(machine)
        if self.cloud == "gcp":
            self.gcp.compute.boot(self.mig, instance)  # the MIG shows it RUNNING
        return machine

    def _role_credentials(self, instance: Instance) -> dict[str, str]:
        return self.aws_env.role_credentials(instance)

    def _remove(self, machine: Machine) -> None:
        """The group let the instance go: the cloud shuts the VM down. An agent that is on its way out (it
        completed the hook or left the MIG and is powering off) gets a moment to finish; then whatever
        still runs on the VM ends."""
        machine.gone = True

        def shut_down() -> None:
            with contextlib.suppress(Exception):
                machine.agent.proc.wait(SHUTDOWN_GRACE)
            self._kill(machine)
            self._stop_server(machine)

        threading.Thread(target=shut_down, name=f"shutdown-{machine.instance}", daemon=True).start()

    def _stop_server(self, machine: Machine) -> None:
        """Its IMDS / metadata server goes with the VM (once: the fleet's stop may race the shutdown)."""
        with self._lock:
            stopped, machine.server_stopped = machine.server_stopped, True
        if not stopped:
            machine.server.stop()

    def _kill(self, machine: Machine) -> None:
        if machine.running:
            for pid in reversed(machine.vm.process_tree(machine.agent)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            machine.agent.proc.wait(10)

    # -- what the cloud does to a VM ----------------------------------------------------------------

    def interrupt_spot(self, machine: Machine, notice_seconds: int = 120) -> None:
        """AWS: a spot interruption notice on the VM's IMDS; once the agent is done (or the notice ran out)
        EC2 takes the instance back and the group, whose desired capacity did not change, launches a
        replacement."""
        assert isinstance(machine.server, ImdsDouble)
        machine.server.interrupt_spot(in_seconds=notice_seconds)
        machine.agent.wait(notice_seconds)
        self.aws_env.client("autoscaling").terminate_instance_in_auto_scaling_group(
            InstanceId=machine.instance, ShouldDecrementDesiredCapacity=False)

    def preempt(self, machine: Machine) -> None:
        """GCP: preemption -- `instance/preempted` turns TRUE and the ACPI shutdown reaches the agent as
        SIGTERM; once it is done the MIG recreates the instance (a MIG's spot VMs are recreated, same name)."""
        assert isinstance(machine.server, VmMetadata)
        machine.server.preempt()
        machine.agent.signal(signal.SIGTERM)
        machine.agent.wait(60)
        with self.gcp.compute._cond:
            inst = self.mig.vm(machine.instance)
            assert inst is not None
            inst.action = "RECREATING"
            self.gcp.compute.changed()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        with self._lock:
            machines = list(self.machines)
        for machine in machines:
            self._kill(machine)
            self._stop_server(machine)
