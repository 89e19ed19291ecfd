"""The agent's life: boot, run the runner, drain and deregister on the way out.

Boot: instance id -> setup script -> credential -> runner binary -> ghost
sweep -> metadata block -> register (JIT config or config.sh) -> run.sh.
The credential is read when a step needs GitHub and dropped after it; the
drain and deregister steps read it again from the secret store (root can
still reach the metadata endpoint; the runner cannot) instead of holding it
in memory for the hours a runner may live.
"""

from __future__ import annotations

import pwd
import re
import signal
import subprocess
import threading
import time
from types import FrameType
from typing import Protocol

from . import config, credential, firewall, runner
from .github import GitHub
from .http import AgentError, Retry, StatusError, Stopped
from .log import log, setup

# What an instance id looks like in a runner name: ghost sweeps touch only these,
# so pool "a" never mistakes pool "a-b"'s runner "a-b-i-0123..." for its own.
INSTANCE_ID = {"aws": re.compile(r"^i-[0-9a-f]{8,17}$"), "gcp": re.compile(r"^[0-9]{1,20}$")}
SPOT_DRAIN_SECONDS = 90.0  # EC2 gives two minutes between the notice and the interruption


class Cloud(Protocol):
    def instance_id(self) -> str: ...
    def read_secret(self) -> str: ...
    def termination_notice(self) -> str | None: ...
    def complete_termination(self, instance_id: str) -> None: ...
    def alive_instances(self) -> set[str]: ...


def make_cloud(cfg: config.Config, retry: Retry) -> Cloud:
    # Imported here: the user data bundles only the pool's own cloud module.
    if cfg.cloud == "aws":
        from .aws import AwsCloud

        return AwsCloud(cfg, retry)
    from .gcp import GcpCloud

    return GcpCloud(cfg, retry)


class Agent:
    def __init__(self, cfg: config.Config, stop: threading.Event, wake: threading.Event) -> None:
        self.cfg, self.stop, self.wake = cfg, stop, wake
        self.retry = Retry(cfg.retry_seconds, cfg.retry_base, stop)
        self.cloud = make_cloud(cfg, self.retry)
        self.instance = ""
        self.name = ""
        self.runner_id: int | None = None

    def github(self) -> GitHub:
        """A client whose token comes from a fresh read of the credential."""
        secret = self.cloud.read_secret()
        token = credential.github_token(secret, self.cfg.secret, self.cfg.api_url, self.retry)
        del secret
        return GitHub(self.cfg, token, self.retry)

    def checkpoint(self) -> None:
        if self.stop.is_set():
            raise Stopped("stop requested")

    # --- boot ---------------------------------------------------------------

    def run(self) -> int:
        cfg = self.cfg
        self.instance = self.cloud.instance_id()
        self.name = f"{cfg.pool}-{self.instance}"
        kind = "ephemeral" if cfg.ephemeral else "persistent"
        log.info("runner %s: %s %s runner for %s %s", self.name, kind, cfg.cloud, cfg.scope, cfg.target)
        user = runner.account(cfg.runner_user)
        try:
            runner.run_setup_script(cfg)
            self.checkpoint()
            gh = self.github()
            runner.install(cfg, gh, user)
            self.sweep(gh)
            firewall.block_metadata(cfg, user.pw_uid)
            self.checkpoint()
            extra_env = self.register(gh, user)
            del gh
            self.checkpoint()
        except Stopped:
            self.leave("stopped while booting")
            return 0
        except AgentError:
            if self.runner_id is not None:
                self.leave("boot failed after registration", complete=False)
            raise
        proc = runner.start(cfg, user, extra_env)
        del extra_env
        log.info("runner %s started (pid %d)", self.name, proc.pid)
        reason = self.supervise(proc)
        return self.finish(proc, reason)

    def register(self, gh: GitHub, user: pwd.struct_passwd) -> dict[str, str]:
        """Register the runner; returns the environment run.sh needs."""
        if self.cfg.ephemeral:
            group = gh.runner_group_id()
            try:
                self.runner_id, jit = gh.jit_config(self.name, group)
            except StatusError as error:
                if error.status != 409:
                    raise
                self.clear_name_conflict(gh)
                self.runner_id, jit = gh.jit_config(self.name, group)
            log.info("registered just-in-time runner %s (id %d, group %d)", self.name, self.runner_id, group)
            # run.sh reads any argument from ACTIONS_RUNNER_INPUT_<NAME>: this keeps it out of argv.
            return {"ACTIONS_RUNNER_INPUT_JITCONFIG": jit}
        token = gh.registration_token()
        runner.configure(self.cfg, user, self.name, token)
        del token
        found = gh.find_runner(self.name)
        self.runner_id = int(found["id"]) if found else None
        log.info("registered runner %s (id %s)", self.name, self.runner_id)
        return {}

    def clear_name_conflict(self, gh: GitHub) -> None:
        existing = gh.find_runner(self.name)
        if existing is None:
            raise AgentError(f"GitHub reports a runner named {self.name} exists but does not list it")
        if existing.get("status") != "offline":
            raise AgentError(f"a runner named {self.name} is already registered and {existing.get('status')}; "
                             "refusing to replace it")
        log.info("removing offline runner %s (id %s) left by an earlier boot", self.name, existing["id"])
        gh.delete_runner(int(existing["id"]))

    def sweep(self, gh: GitHub) -> None:
        """Remove offline runners of this pool whose instances no longer exist."""
        prefix = f"{self.cfg.pool}-"
        shape = INSTANCE_ID[self.cfg.cloud]
        try:
            offline = [r for r in gh.runners() if r["name"].startswith(prefix) and r.get("status") == "offline"
                       and shape.match(r["name"][len(prefix):])]
            if not offline:
                return
            alive = self.cloud.alive_instances() | {self.instance}
            for ghost in offline:
                if ghost["name"][len(prefix):] not in alive:
                    log.info("ghost sweep: removing runner %s (id %s): its instance is gone",
                             ghost["name"], ghost["id"])
                    gh.delete_runner(int(ghost["id"]))
        except Stopped:
            raise
        except AgentError as error:
            # Hygiene, not a reason to keep this VM from serving jobs.
            log.warning("ghost sweep skipped: %s", error)

    # --- running ------------------------------------------------------------

    def supervise(self, proc: subprocess.Popen[bytes]) -> str:
        """Wait for the runner to exit, a stop signal, or (AWS) a termination notice."""

        def waiter() -> None:
            proc.wait()
            self.wake.set()

        threading.Thread(target=waiter, daemon=True).start()
        while True:
            self.wake.clear()
            if proc.poll() is not None:
                return "exited"
            if self.stop.is_set():
                return "signal"
            notice = self.cloud.termination_notice()
            if notice:
                return notice
            self.wake.wait(self.cfg.poll_seconds)

    def finish(self, proc: subprocess.Popen[bytes], reason: str) -> int:
        # From here on a stop is under way: retries must not be cut short by the stop request.
        self.retry.stop = None
        if reason == "exited":
            log.info("runner %s exited with code %s", self.name, proc.returncode)
            if not self.cfg.ephemeral:
                return 1  # systemd restarts the agent, which registers again
            self.leave("ephemeral runner finished", complete=self.cloud.termination_notice() == "lifecycle")
            log.info("powering off: the group replaces this VM")
            subprocess.run(list(self.cfg.poweroff), check=False)
            return 0
        bound = min(self.cfg.drain_seconds, SPOT_DRAIN_SECONDS) if reason == "spot" else self.cfg.drain_seconds
        log.info("stopping runner %s (%s); waiting up to %.0fs for a running job", self.name, reason, bound)
        self.drain(proc, bound)
        code = runner.stop(proc, self.cfg.stop_seconds)
        log.info("runner %s stopped (exit code %s)", self.name, code)
        self.leave(reason)
        return 0

    def drain(self, proc: subprocess.Popen[bytes], bound: float) -> None:
        """Wait while the runner is busy, up to `bound` seconds."""
        deadline = time.monotonic() + bound
        try:
            gh = self.github()
            while proc.poll() is None and time.monotonic() < deadline:
                found = gh.runner(self.runner_id) if self.runner_id else gh.find_runner(self.name)
                if not found or not found.get("busy"):
                    return
                log.info("runner %s is busy; waiting", self.name)
                self.wake.clear()  # set when the runner exits (an ephemeral one does after its job)
                self.wake.wait(min(self.cfg.busy_poll_seconds, max(0.0, deadline - time.monotonic())))
            if proc.poll() is None:
                log.warning("runner %s still busy after %.0fs; stopping it anyway", self.name, bound)
        except AgentError as error:
            log.warning("could not check whether runner %s is busy: %s", self.name, error)

    def leave(self, why: str, complete: bool = True) -> None:
        """Deregister (fresh credential), then let the cloud finish terminating us."""
        self.retry.stop = None  # a stop request must not cut the deregistration short
        try:
            gh = self.github()
            runner_id = self.runner_id
            if runner_id is None:
                found = gh.find_runner(self.name) if self.name else None
                runner_id = int(found["id"]) if found else None
            if runner_id is not None:
                gh.delete_runner(runner_id)
                log.info("deregistered runner %s (id %d): %s", self.name, runner_id, why)
            del gh
        except AgentError as error:
            log.warning("could not deregister runner %s (the next ghost sweep will): %s", self.name, error)
        if complete and self.instance:
            try:
                self.cloud.complete_termination(self.instance)
            except AgentError as error:
                log.warning("could not complete the termination lifecycle action: %s", error)


def main() -> int:
    setup()
    stop, wake = threading.Event(), threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()
        wake.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        cfg = config.load()
    except (OSError, ValueError, KeyError) as error:
        log.error("cannot read the agent configuration: %s", error)
        return 1
    try:
        return Agent(cfg, stop, wake).run()
    except AgentError as error:
        log.error("%s", error)
        return 1
