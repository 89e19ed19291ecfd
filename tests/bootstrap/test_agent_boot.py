"""Boot to job to power-off, as a real process: both clouds x PAT and App x three scopes, JIT and config.sh."""

from __future__ import annotations

import pwd
import signal

import pytest
from doubles.github import GitHubDouble
from test_agent_harness import RUNNER_USER, Vm, vm_factory_fixture  # noqa: F401 - fixture

LABELS = ["self-hosted", "linux", "x64", "e2e"]


@pytest.mark.parametrize("scope", ["repository", "organization", "enterprise"])
@pytest.mark.parametrize("kind", ["pat", "app"])
@pytest.mark.parametrize("cloud", ["aws", "gcp"])
def test_ephemeral_runner_runs_one_job_then_powers_off(vm_factory, github: GitHubDouble, cloud: str, kind: str,
                                                        scope: str) -> None:
    vm: Vm = vm_factory(cloud, scope, kind)
    job = github.queue_job(LABELS, duration=0)
    agent = vm.run()
    assert agent.proc.returncode == 0, agent.output
    assert job.state == "completed" and job.result == "succeeded"
    assert vm.powered_off
    # JIT registration: the config went in the environment, the runner ran as the unprivileged user.
    invoke = vm.records("invoke")[0]
    assert invoke["argv"] == ["run"] and invoke["inputs"] == {"jitconfig": "env"}
    assert invoke["uid"] == pwd.getpwnam(RUNNER_USER).pw_uid
    jit = next(r for r in github.requests("POST") if r.path.endswith("/generate-jitconfig"))
    assert jit.json == {"name": vm.runner_name, "runner_group_id": 1, "labels": LABELS, "work_folder": "_work"}
    assert github.find_runner(vm.runner_name) is None  # gone with its job
    vm.assert_no_leaks()


def test_jit_runner_lands_in_the_named_runner_group(vm_factory, github: GitHubDouble) -> None:
    group = github.org("acme").add_group("linux-pool")
    vm: Vm = vm_factory("gcp", "organization", runner_group="linux-pool")
    github.queue_job(LABELS, duration=0)
    assert vm.run().proc.returncode == 0
    jit = next(r for r in github.requests("POST") if r.path.endswith("/generate-jitconfig"))
    assert jit.json["runner_group_id"] == group.id


@pytest.mark.parametrize(("cloud", "scope", "ghes"), [
    ("aws", "repository", False), ("gcp", "organization", False), ("aws", "enterprise", False),
    ("gcp", "organization", True),
])
def test_persistent_runner_registers_with_config_sh_and_leaves_on_sigterm(vm_factory, github: GitHubDouble,
                                                                          cloud: str, scope: str, ghes: bool) -> None:
    pool = {"ephemeral": False}
    if scope != "repository":
        github_scope = github.org("acme") if scope == "organization" else github.enterprise("bigcorp")
        github_scope.add_group("linux-pool")
        pool["runner_group"] = "linux-pool"  # type: ignore[assignment]
    vm: Vm = vm_factory(cloud, scope, ghes=ghes, **pool)
    agent = vm.start()
    agent.wait_for(r"runner .* started")
    job = github.queue_job(LABELS, duration=0)
    job.wait_completed()
    runner = github.find_runner(vm.runner_name)
    assert runner is not None and runner.status == "online" and not runner.ephemeral
    configured = vm.records("configured")[0]
    web = "https://ghe.example.com" if ghes else "https://github.com"
    assert configured["url"] == f"{web}/{vm.scope.path}"
    assert configured["runner_group"] == ("linux-pool" if scope != "repository" else "default")
    config_call = next(r for r in vm.records("invoke") if r["command"] == "configure")
    assert config_call["inputs"]["token"] == "env"  # the registration token never was an argument
    assert {label["name"].lower() for label in configured["labels"]} == set(LABELS)
    vm.assert_no_leaks_in_processes(agent)

    agent.signal(signal.SIGTERM)
    assert agent.wait() == 0, agent.output
    assert github.find_runner(vm.runner_name) is None  # deregistered
    assert not vm.powered_off  # persistent VMs stay; systemd is stopping the agent
    vm.assert_no_leaks()


def test_agent_runs_on_the_oldest_supported_python(vm_factory, github: GitHubDouble) -> None:
    import os
    import shutil
    import sys

    from test_agent_harness import BASE_PYTHON

    # The running interpreter when it is 3.10 (CI's oldest leg), else a python3.10 nearby.
    python = BASE_PYTHON if sys.version_info[:2] == (3, 10) else shutil.which(
        "python3.10", path=os.pathsep.join(["/root/.pyenv/versions/3.10.13/bin", os.environ.get("PATH", "")]))
    if python is None:
        pytest.skip("no Python 3.10 interpreter on this machine")
    vm: Vm = vm_factory("aws", "organization")
    github.queue_job(LABELS, duration=0)
    agent = vm.start(python=python)
    assert agent.wait() == 0, agent.output
    assert vm.powered_off
