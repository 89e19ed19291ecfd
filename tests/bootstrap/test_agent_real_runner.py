"""What the real runner does that a kind fake would not: migrated registrations, self-updates, missing
dependencies, and a job that tampers with the runner's files. The fake runner models each (see
doubles/fake_runner/listener.py for the actions/runner source it follows)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
from pathlib import Path

import pytest
from doubles.github import GitHubDouble
from doubles.runner_tarball import DEFAULT_VERSION
from test_agent_harness import RUNNER_USER, Vm, vm_factory_fixture  # noqa: F401 - fixture

LABELS = ["self-hosted", "e2e"]
NEWER = "2.331.0"  # a release GitHub publishes after the one the fixture installs


def _online(github: GitHubDouble, name: str) -> bool:
    runner = github.find_runner(name)
    return runner is not None and runner.status == "online"


def _kill_tree(vm: Vm, agent) -> None:  # type: ignore[no-untyped-def]
    """What a VM reboot does to the agent and its runner: no signal handler runs."""
    for pid in reversed(vm.process_tree(agent)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    agent.proc.wait()


# --- 1. re-registration after the runner migrated its settings -------------------------


def test_a_persistent_runner_survives_any_number_of_agent_and_vm_restarts(vm_factory, github: GitHubDouble) -> None:
    """Since v2.323.0 a connected runner writes .runner_migrated/.credentials_migrated, and config.sh calls a
    runner with either file configured (ConfigurationStore.cs IsConfigured): a re-registration must clear
    both names, or config.sh refuses "already configured" after every restart."""
    vm: Vm = vm_factory("aws", "repository", ephemeral=False)
    for boot, stop in enumerate(["sigterm", "crash", "sigterm", "crash"]):
        sessions = len(github.requests("POST", r"/_actions/sessions$"))
        agent = vm.start()
        github.wait_for(lambda n=sessions: len(github.requests("POST", r"/_actions/sessions$")) > n, 20,
                        f"boot {boot}: the runner's session")
        # The runner migrates right after it connects, before it first asks for a job.
        github.wait_for(lambda n=sessions: len(github.requests("GET", r"/_actions/message$")) > n, 20,
                        "its first poll")
        assert (vm.runner_dir / ".runner_migrated").exists() and _online(github, vm.runner_name), agent.output
        if stop == "sigterm":
            agent.signal(signal.SIGTERM)
            assert agent.wait() == 0, agent.output
        else:
            _kill_tree(vm, agent)
    assert len(vm.records("migrated")) == 4
    assert [r["code"] for r in vm.records("exit") if r["command"] == "configure"] == [0, 0, 0, 0]
    job = github.queue_job(LABELS, duration=0)  # and the last registration still takes jobs
    agent = vm.start()
    try:
        job.wait_completed(20)
    except TimeoutError:
        pytest.fail(agent.output + "\n" + "\n".join(str(r) for r in vm.records()[-8:]))
    agent.signal(signal.SIGTERM)
    assert agent.wait() == 0, agent.output


# --- 2. no self-update before the first job ------------------------------------------------


def test_a_fresh_ephemeral_vm_takes_its_first_job_without_self_updating(vm_factory, github: GitHubDouble) -> None:
    vm: Vm = vm_factory("gcp")  # runner_version: latest
    vm.publish_runner(NEWER)
    job = github.queue_job(LABELS, duration=0)
    agent = vm.run()
    assert agent.proc.returncode == 0, agent.output
    assert job.result == "succeeded"
    assert github.update_messages == [] and not vm.records("update_message")
    assert vm.records("connected")[0]["version"] == NEWER
    assert len(github.requests(path=r"/releases/download/")) == 1  # one download, verified by the agent


def test_a_pinned_runner_that_github_wants_updated_is_updated_by_the_agent(vm_factory,
                                                                         github: GitHubDouble) -> None:
    """GitHub sends an outdated runner an update instead of the job. The runner cannot replace root's files
    (SelfUpdater fails); the agent notices, and on its restart installs that release itself, verified."""
    vm: Vm = vm_factory("aws", runner_version=DEFAULT_VERSION)
    newer = vm.publish_runner(NEWER)
    job = github.queue_job(LABELS, duration=0)
    first = vm.run()
    assert first.proc.returncode == 1, first.output  # systemd restarts it
    assert f"GitHub asks runner {vm.runner_name} to update to {NEWER} first" in first.output
    assert vm.records("self_update")[0]["ok"] is False  # it could not replace root's files
    assert job.state == "queued"
    second = vm.run()  # the restart
    assert second.proc.returncode == 0, second.output
    assert f"installed runner {NEWER} (sha256 {newer.sha256} verified)" in second.output
    assert job.result == "succeeded" and vm.records("connected")[-1]["version"] == NEWER


def test_a_persistent_runner_is_registered_without_self_updates(vm_factory, github: GitHubDouble) -> None:
    vm: Vm = vm_factory("gcp", ephemeral=False, runner_version=DEFAULT_VERSION)
    vm.publish_runner(NEWER)
    agent = vm.start()
    job = github.queue_job(LABELS, duration=0)
    job.wait_completed(20)
    agent.signal(signal.SIGTERM)
    assert agent.wait() == 0, agent.output
    configure = next(r for r in vm.records("invoke") if r["command"] == "configure")
    assert "--disableupdate" in configure["argv"]
    assert github.update_messages == [] and vm.records("connected")[0]["version"] == DEFAULT_VERSION


# --- 3. the runner's dependencies -------------------------------------------------------------


@pytest.mark.parametrize("ephemeral", [True, False])
def test_missing_runner_dependencies_are_installed_first(vm_factory, github: GitHubDouble, ephemeral: bool) -> None:
    vm: Vm = vm_factory("gcp", ephemeral=ephemeral)
    vm.release.hide_libicu()  # a minimal image: config.sh and .NET would both fail
    job = github.queue_job(LABELS, duration=0)
    agent = vm.start()
    try:
        job.wait_completed(20)
    except TimeoutError:
        pytest.fail(agent.output + "\n" + "\n".join(str(r) for r in vm.records()[-8:]))
    if not ephemeral:
        agent.signal(signal.SIGTERM)
    assert agent.wait() == 0, agent.output
    installs = vm.records("installdependencies")
    assert len(installs) == 1 and installs[0]["uid"] == 0, agent.output  # bin/installdependencies.sh, as root
    assert "dependencies are missing (libicu)" in agent.output


def test_dependencies_already_there_are_not_installed_again(vm_factory, github: GitHubDouble) -> None:
    vm: Vm = vm_factory("aws")
    github.queue_job(LABELS, duration=0)
    agent = vm.run()
    assert agent.proc.returncode == 0, agent.output
    assert not vm.records("installdependencies")


# --- 8. root trusts nothing the runner user can write -----------------------------------------


def test_root_never_writes_through_a_link_the_runner_planted(vm_factory, github: GitHubDouble) -> None:
    """The version marker used to live in the runner's directory: a job could swap it for a symlink to a
    file root would then truncate."""
    vm: Vm = vm_factory("aws")
    victim = vm.root / "victim"
    victim.write_text("root's file\n")
    vm.runner_dir.mkdir()
    (vm.runner_dir / ".runner-version").symlink_to(victim)
    vm.give_to_runner(vm.runner_dir)
    github.queue_job(LABELS, duration=0)
    agent = vm.run()
    assert agent.proc.returncode == 0, agent.output
    assert victim.read_text() == "root's file\n"
    assert (vm.lib_dir / "runner-version").read_text().startswith(DEFAULT_VERSION)
    assert oct((vm.lib_dir).stat().st_mode & 0o777) == "0o700"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_job_cannot_replace_the_runners_scripts_or_binaries(vm_factory, github: GitHubDouble) -> None:
    """config.sh receives the next registration token of a persistent pool: a job that could replace it, or
    env.sh, or bin/Runner.Listener which it runs, would receive that token at the agent's next start."""
    vm: Vm = vm_factory("gcp", ephemeral=False)
    attempts = ["echo evil > config.sh", "mv config.sh config.old", "rm -f env.sh", "echo evil > bin/Runner.Listener",
                "mv bin bin.old", "ln -sf /tmp bin/x"]
    command = "; ".join(f"({attempt}) 2>/dev/null && echo done || echo refused" for attempt in attempts)
    agent = vm.start()
    github.wait_for(lambda: _online(github, vm.runner_name), 20, "the runner online")
    before = {p: _digest(vm.runner_dir / p) for p in ("config.sh", "env.sh", "run.sh", "bin/Runner.Listener")}
    job = github.queue_job(LABELS, duration=0, command=f"cd {vm.runner_dir} && {{ {command}; }}")
    job.wait_completed(20)
    agent.signal(signal.SIGTERM)
    assert agent.wait() == 0, agent.output
    assert vm.records("command")[0]["stdout"].split() == ["refused"] * len(attempts)
    assert {p: _digest(vm.runner_dir / p) for p in before} == before
    owner = os.stat(vm.runner_dir)
    assert owner.st_uid == 0 and owner.st_mode & 0o1000  # root's, sticky: the runner adds only its own files
    runner_files = [p for p in vm.runner_dir.iterdir() if p.stat().st_uid != 0]
    assert {p.name for p in runner_files} <= {".runner", ".runner_migrated", ".credentials",
                                              ".credentials_migrated", ".credentials_rsaparams", ".env", ".path",
                                              "_diag", "_work", "run-helper.sh"}
    assert RUNNER_USER  # the runner ran as the unprivileged user throughout (see the harness)
