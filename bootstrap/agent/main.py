"""The agent's life: boot, run the runner, drain, deregister, and leave through the group.

Boot, two sequential remote round trips before run.sh with a PAT (three with
a GitHub App): the secret store, [the App's installation token,] then GitHub's
JIT config; the runner group id comes with the config. Meanwhile a second
thread resolves the release (from the config when it is pinned and known, else
one lookup), downloads, verifies and installs it (skipped when the image has
it). Then the metadata block, [config.sh for persistent pools,] and run.sh.
The ghost sweep runs afterwards, in the background, on a share of boots.

The credential is read when a step needs GitHub and dropped after it; the
drain and deregister steps read it again from the secret store (root can still
reach the metadata endpoint; the runner cannot) instead of holding it in
memory for the hours a runner may live.
"""

from __future__ import annotations

import pwd
import random
import re
import signal
import subprocess
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING

from . import config, credential, firewall, runner, state
from .github import GitHub
from .http import AgentError, NetworkError, Retry, StatusError, Stopped
from .log import log, setup

# What an instance id looks like in a runner name: ghost sweeps touch only these,
# so pool "a" never mistakes pool "a-b"'s runner "a-b-<tag>-i-0123..." for its own.
INSTANCE_ID = {"aws": re.compile(r"^i-[0-9a-f]{8,17}$"), "gcp": re.compile(r"^[0-9]{1,20}$")}
# After a spot interruption notice (seen up to one poll late) the drain, the runner's stop and the
# deregistration must fit in EC2's two minutes (config.spot_notice), with a margin.
SPOT_STOP_SECONDS = 15.0
SPOT_MARGIN_SECONDS = 10.0
LIFECYCLE_WAIT_SECONDS = 120.0  # for the hook's action to appear after our own TerminateInstanceInAutoScalingGroup


def spot_drain_seconds(cfg: config.Config) -> float:
    """How long a running job may go on after a spot notice."""
    return cfg.spot_notice - cfg.poll_seconds - SPOT_STOP_SECONDS - cfg.leave_seconds - SPOT_MARGIN_SECONDS


if TYPE_CHECKING:  # for mypy only: the bundle leaves this block out
    from typing import Protocol

    class Cloud(Protocol):
        def instance_id(self) -> str: ...
        def read_secret(self) -> str: ...
        def lifecycle_state(self) -> str: ...
        def termination_notice(self) -> str | None: ...
        def above_floor(self) -> bool: ...
        def leave_group(self, instance_id: str, replace: bool, shrink_only: bool = False) -> bool: ...
        def complete_termination(self, instance_id: str, wait: float = 0) -> None: ...
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
        self.retry = Retry(cfg.retry_seconds, cfg.retry_base, stop, rate_limit_wait=cfg.rate_limit_wait)
        self.cloud = make_cloud(cfg, self.retry)
        self.instance = ""
        self.name = ""
        self.runner_id: int | None = None
        self.group_id = cfg.runner_group_id
        self.deregistered = False

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
        self.name = f"{cfg.prefix}-{self.instance}"
        kind = "ephemeral" if cfg.ephemeral else "persistent"
        log.info("runner %s: %s %s runner for %s %s", self.name, kind, cfg.cloud, cfg.scope, cfg.target)
        user = runner.account(cfg.runner_user)
        try:
            notice = self.cloud.termination_notice()
        except (NetworkError, AgentError):
            notice = None
        if notice:
            # Restarted on a VM that is already going away: a new runner would only become a ghost.
            log.info("this VM is being terminated (%s): not registering a runner", notice)
            self.complete()
            return 0
        failures = int(state.read(cfg.lib_dir, "boot-failures") or 0)
        try:
            extra_env = self.boot(user)
        except Stopped:
            self.leave("stopped while booting")
            return 0
        except AgentError as error:
            if self.runner_id is not None:
                self.leave("boot failed after registration")
            return self.failed(error, failures + 1)
        state.remove(cfg.lib_dir, "boot-failures")
        proc = runner.start(cfg, user, extra_env)
        log.info("runner %s started (pid %d)", self.name, proc.pid)
        self.sweep_later()
        return self.finish(proc, self.supervise(proc, user.pw_uid))

    def boot(self, user: pwd.struct_passwd) -> dict[str, str]:
        """Everything up to run.sh; returns the environment run.sh needs."""
        cfg = self.cfg
        runner.run_setup_script(cfg)
        self.checkpoint()
        shared: dict[str, GitHub] = {}
        ready = threading.Event()  # set once this thread has (or failed to get) a GitHub client
        failed: list[AgentError] = []

        def install() -> None:
            """Release -> download -> verify -> root-owned install -> dependencies, beside the registration."""
            # GitHub asked this VM's runner for a newer release than the pin (it created bin.<version>).
            version = runner.update_request(cfg) or cfg.version
            try:
                if cfg.sha256 and version == cfg.version:
                    release = runner.Release(version, cfg.url, cfg.sha256)  # known before boot: no lookup
                elif version != "latest" and runner.installed(cfg) == version:
                    release = runner.Release(version, "", "")  # on the image already
                else:
                    if cfg.releases_url == cfg.api_url:  # github.com: with the token, 5,000 lookups an hour
                        ready.wait()
                    # GHES, ghe.com: anonymous, 60 an hour per address
                    gh = shared.get("gh") or GitHub(cfg, "", self.retry)
                    release = runner.release_of(gh.release(version), cfg.arch)
                runner.install(cfg, release, user, self.retry)
                runner.ensure_dependencies(cfg)
            except AgentError as error:
                failed.append(error)
            except Exception as error:  # e.g. a broken tarball: still one line and a counted boot failure
                failed.append(AgentError(f"installing the runner: {error!r}"))

        installer = threading.Thread(target=install, daemon=True)
        installer.start()
        try:
            gh = shared["gh"] = self.github()
            ready.set()
            extra_env = self.register_jit(gh) if cfg.ephemeral else {}
            while installer.is_alive():
                installer.join(0.2)
                self.checkpoint()
            if failed:
                raise failed[0]
            firewall.block_metadata(cfg, user.pw_uid)
            self.checkpoint()
            if not cfg.ephemeral:
                self.register_persistent(gh, user)
        finally:
            ready.set()
            shared.clear()
        self.checkpoint()
        return extra_env

    def failed(self, error: AgentError, failures: int) -> int:
        """Count a failed boot; after `failure_limit` in a row the VM leaves its group, which replaces it
        (the failure shows in the group's activity, instead of a VM the group thinks is healthy)."""
        log.error("%s", error)
        state.write(self.cfg.lib_dir, "boot-failures", str(failures))
        if failures < self.cfg.failure_limit:
            return 1
        log.error("%d failed boots in a row: leaving the group to be replaced", failures)
        state.remove(self.cfg.lib_dir, "boot-failures")
        self.leave_group(replace=True)
        return 0

    def register_jit(self, gh: GitHub) -> dict[str, str]:
        if self.group_id is None:
            self.group_id = gh.runner_group_id()
        try:
            self.runner_id, jit = gh.jit_config(self.name, self.group_id)
        except StatusError as error:
            if error.status != 409:
                raise
            self.clear_name_conflict(gh)
            self.runner_id, jit = gh.jit_config(self.name, self.group_id)
        log.info("registered just-in-time runner %s (id %d, group %d)", self.name, self.runner_id, self.group_id)
        # run.sh reads any argument from ACTIONS_RUNNER_INPUT_<NAME>: this keeps it out of argv.
        return {"ACTIONS_RUNNER_INPUT_JITCONFIG": jit}

    def register_persistent(self, gh: GitHub, user: pwd.struct_passwd) -> None:
        token = gh.registration_token()
        runner.configure(self.cfg, user, self.name, token)
        del token
        found = gh.find_runner(self.name)
        self.runner_id = int(found["id"]) if found else None
        log.info("registered runner %s (id %s)", self.name, self.runner_id)

    def clear_name_conflict(self, gh: GitHub) -> None:
        existing = gh.find_runner(self.name)
        if existing is None:
            raise AgentError(f"GitHub reports a runner named {self.name} exists but does not list it")
        if existing.get("status") != "offline":
            raise AgentError(f"a runner named {self.name} is already registered and {existing.get('status')}; "
                             "refusing to replace it")
        log.info("removing offline runner %s (id %s) left by an earlier boot", self.name, existing["id"])
        gh.delete_runner(int(existing["id"]))

    # --- ghost sweep (off the boot path) --------------------------------------

    def sweep_later(self) -> None:
        """On a share of boots, a while after run.sh started, sweep this pool's ghosts."""
        if random.random() >= self.cfg.sweep_chance:  # noqa: S311 - spreading load, not crypto
            return

        def work() -> None:
            if self.stop.wait(random.uniform(0, self.cfg.sweep_delay)):  # noqa: S311
                return
            try:
                self.sweep(self.github())
            except AgentError as error:  # hygiene, not a reason to stop serving jobs
                log.warning("ghost sweep skipped: %s", error)

        threading.Thread(target=work, name="sweep", daemon=True).start()

    def sweep(self, gh: GitHub) -> None:
        """Remove offline runners of this pool (this project's and stack's: same prefix) whose instances
        no longer exist; list only the pool's runner group where it has one."""
        prefix = f"{self.cfg.prefix}-"
        shape = INSTANCE_ID[self.cfg.cloud]
        group = self.group_id if self.cfg.scope != "repository" else None
        offline = [r for r in gh.runners(group_id=group) if r["name"].startswith(prefix)
                   and r.get("status") == "offline" and shape.match(r["name"][len(prefix):])]
        if not offline:
            return
        alive = self.cloud.alive_instances() | {self.instance}
        for ghost in offline:
            if ghost["name"][len(prefix):] not in alive:
                log.info("ghost sweep: removing runner %s (id %s): its instance is gone", ghost["name"], ghost["id"])
                gh.delete_runner(int(ghost["id"]), wait_while_busy=False)

    # --- running ------------------------------------------------------------

    def supervise(self, proc: subprocess.Popen[bytes], uid: int) -> str:
        """Wait for the runner to exit, a stop signal, a termination notice, an update it cannot apply, or
        (demand pools) for it to be idle past idle_timeout above the pool's floor."""

        def waiter() -> None:
            proc.wait()
            self.wake.set()

        threading.Thread(target=waiter, daemon=True).start()
        idle_since: float | None = time.monotonic()  # None while a job runs
        while True:
            self.wake.clear()
            if proc.poll() is not None:
                return "exited"
            if self.stop.is_set():
                return "signal"
            notice = self.cloud.termination_notice()
            if notice:
                return notice
            if runner.update_request(self.cfg):
                return "update"
            if self.cfg.idle_timeout:
                now = time.monotonic()
                # Idle time counts from the first look that finds no job, never from before the job ended.
                if runner.busy(self.cfg, uid):
                    idle_since = None
                elif idle_since is None:
                    idle_since = now
                elif now - idle_since >= self.cfg.idle_timeout:
                    idle_since = now  # if it stays (at the floor, or a job came): again after another timeout
                    try:
                        # GitHub refuses to remove a busy runner: a job handed over since the /proc look keeps it.
                        if self.cloud.above_floor() and self.remove_if_idle(self.github()):
                            return "idle"
                    except (AgentError, NetworkError) as error:
                        log.warning("idle check: %s", error)
            self.wake.wait(self.cfg.poll_seconds)

    def finish(self, proc: subprocess.Popen[bytes], reason: str) -> int:
        # From here on a stop is under way: retries must not be cut short by the stop request.
        self.retry.stop = None
        if reason == "update":
            # The runner cannot replace root's files: stop it; the agent's restart installs that release,
            # verified, and registers again.
            log.warning("GitHub asks runner %s to update to %s first; restarting to install it", self.name,
                        runner.update_request(self.cfg))
            runner.stop(proc, self.cfg.stop_seconds)
            return 1
        if reason == "idle":
            runner.stop(proc, self.cfg.stop_seconds)
            # Still needed (the floor rose meanwhile): exit 1, systemd restarts the agent, it registers again.
            return 0 if self.leave_group(False, shrink_only=True) else 1
        if reason == "exited":
            log.info("runner %s exited with code %s", self.name, proc.returncode)
            if not self.cfg.ephemeral:
                return 1  # systemd restarts the agent, which registers again
            self.leave("ephemeral runner finished")
            self.leave_group(replace=False)
            return 0
        reason = self.drain(proc, reason)
        code = runner.stop(proc, SPOT_STOP_SECONDS if reason == "spot" else self.cfg.stop_seconds)
        log.info("runner %s stopped (exit code %s)", self.name, code)
        # Deregistering and completing the hook share one budget: what is left of the window.
        self.retry.deadline = time.monotonic() + self.cfg.leave_seconds
        self.leave(reason)
        self.complete()
        return 0

    def drain(self, proc: subprocess.Popen[bytes], reason: str) -> str:
        """Wait while the runner is busy, within the window of `reason`; returns the reason it ended with.

        When it is idle it is removed through the API before it is stopped: GitHub refuses that while it
        is busy, so a job handed to it after an idle check is never cut off by the stop. A spot notice
        (also during a drain that a lifecycle hook started) cuts the drain short.
        """
        began = now = time.monotonic()
        deadline = now + (spot_drain_seconds(self.cfg) if reason == "spot" else self.cfg.drain_seconds)
        self.retry.deadline = deadline  # GitHub calls while draining end with the drain
        log.info("stopping runner %s (%s); waiting up to %.0fs for a running job", self.name, reason,
                 deadline - now)
        try:
            gh: GitHub | None = self.github()
        except AgentError as error:
            log.warning("could not check whether runner %s is busy: %s", self.name, error)
            gh = None
        check = now
        while proc.poll() is None and gh is not None:
            now = time.monotonic()
            if reason != "spot" and self.cloud.termination_notice() == "spot":
                reason, deadline = "spot", min(deadline, now + spot_drain_seconds(self.cfg))
                self.retry.deadline = deadline
                log.warning("spot interruption notice: the drain ends within %.0fs", deadline - now)
            if now >= deadline:
                log.warning("runner %s still busy after %.0fs; stopping it anyway", self.name, now - began)
                break
            if now >= check:
                try:
                    if self.remove_if_idle(gh):
                        break
                except AgentError as error:
                    log.warning("could not check whether runner %s is busy: %s", self.name, error)
                    break
                log.info("runner %s is busy; waiting", self.name)
                check = now + self.cfg.busy_poll_seconds
            self.wake.clear()  # set when the runner exits (an ephemeral one does after its job)
            self.wake.wait(max(0.0, min(self.cfg.poll_seconds, deadline - now, check - now)))
        self.retry.deadline = None
        return reason

    def remove_if_idle(self, gh: GitHub) -> bool:
        if self.runner_id is None:
            found = gh.find_runner(self.name)
            self.runner_id = int(found["id"]) if found else None
        if self.runner_id is None or gh.delete_runner(self.runner_id, wait_while_busy=False):
            self.deregistered = True
            log.info("deregistered idle runner %s (id %s)", self.name, self.runner_id)
            return True
        return False

    def leave(self, why: str) -> None:
        """Deregister (fresh credential), within the leave budget, waiting out a just-cancelled job (422)."""
        if self.deregistered:
            return
        self.retry.stop = None  # a stop request must not cut the deregistration short
        own = self.retry.deadline is None
        if own:
            self.retry.deadline = time.monotonic() + self.cfg.leave_seconds
        try:
            gh = self.github()
            runner_id = self.runner_id
            if runner_id is None:
                found = gh.find_runner(self.name) if self.name else None
                runner_id = int(found["id"]) if found else None
            if runner_id is not None:
                gh.delete_runner(runner_id)
                log.info("deregistered runner %s (id %d): %s", self.name, runner_id, why)
            self.deregistered = True
            del gh
        except AgentError as error:
            log.warning("could not deregister runner %s (the next ghost sweep will): %s", self.name, error)
        finally:
            if own:
                self.retry.deadline = None

    def complete(self) -> None:
        """Let a pending termination lifecycle hook continue (AWS)."""
        if self.instance:
            try:
                self.cloud.complete_termination(self.instance)
            except AgentError as error:
                log.warning("could not complete the termination lifecycle action: %s", error)

    def leave_group(self, replace: bool, shrink_only: bool = False) -> bool:
        """A VM that is done leaves through its group (unless the group is taking it already), then powers
        off. `shrink_only` (idle): only by lowering the group's size; False when it stays."""
        try:
            if self.cloud.lifecycle_state() == "Terminated" \
                    or self.cloud.leave_group(self.instance, replace, shrink_only):
                self.cloud.complete_termination(self.instance, wait=LIFECYCLE_WAIT_SECONDS)
            elif shrink_only:
                return False
        except (AgentError, NetworkError) as error:
            log.warning("could not leave the group (%s); powering off: the group replaces a stopped VM", error)
        log.info("powering off")
        subprocess.run(list(self.cfg.poweroff), check=False)
        return True


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
