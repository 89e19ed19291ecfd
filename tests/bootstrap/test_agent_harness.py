"""Run the real VM agent, as a process, against the loopback doubles (no tests here).

The agent under test is the one the user data ships: `render_user_data` for a
pool, then /opt/gh-runners/agent.py and /etc/gh-runners/config.json taken out
of the cloud-config and written into a per-test "VM root". On AWS the user data
carries the loader instead, as the AWS backend renders it: the bundle is
uploaded to moto's S3 and each start runs the loader first (the unit's
ExecStartPre), which fetches it through the SigV4-checking front. GH_RUNNERS_*
variables point it at the doubles and at that root; the runner user is
`nobody`. curl and openssl are wrapped by shims that record their argv, so a
test can prove no secret ever reached a command line.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from doubles.aws import AwsEnv
from doubles.gcp import GcpDoubles
from doubles.github import GitHubDouble, Scope, app_keypair
from doubles.runner_tarball import DEFAULT_VERSION, RunnerRelease, build_runner_tarball

from bootstrap.cloud_config import (
    AGENT_PATH,
    CONFIG_PATH,
    LOADER_PATH,
    AgentObject,
    agent_bytes,
    agent_key,
    render_user_data,
)
from schema.models import AwsPool, GcpPool, GitHubTarget

POOL = "pool"
RUNNER_USER = "nobody"
# The interpreter behind the venv: the agent must not need anything the venv adds.
BASE_PYTHON = getattr(sys, "_base_executable", sys.executable)
# Our own test tarballs: the "data" filter where this Python has extraction filters
# (3.10.12+, 3.11.4+, 3.12+); Debian 12's 3.11.2 has none.
DATA_FILTER: dict[str, Any] = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
TARGETS = {"repository": "octo/hello", "organization": "acme", "enterprise": "bigcorp"}
APP_ID, INSTALLATION_ID = 4242, 777
SHIM = """#!/bin/sh
printf '%s\\n' "$0 $*" >> {log}
exec {real} "$@"
"""
FAKE_IPTABLES = """#!/bin/sh
printf '%s\\n' "$(basename "$0") $*" >> {log}
case "$1" in -C|-L|-n) exit 1;; esac
exit 0
"""
# The VM's linker cache: the fake runner's (see RunnerRelease.ldcache) when the test wrote one.
LDCONFIG = """#!/bin/sh
if [ -f {cache} ]; then cat {cache}; exit 0; fi
exec /sbin/ldconfig "$@"
"""
POWEROFF = """#!/bin/sh
touch {marker}
"""
# Another agent to run these tests against, e.g. the last release's bootstrap/agent/ (to watch a new test
# fail on the code it was written for): GHR_TEST_AGENT_DIR=/path/to/agent venv/bin/python -m pytest ...
# Such an agent gets the pinned fake release, as it knew no "latest".
OTHER_AGENT = os.environ.get("GHR_TEST_AGENT_DIR")


@dataclass
class Agent:
    """A running agent process; its output is collected line by line."""

    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.lines.append("")  # EOF marker for waiters
            self.cond.notify_all()

    @property
    def output(self) -> str:
        with self.cond:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 20) -> str:
        """Block until a line matches `pattern` (regex); fail with the output so far otherwise."""
        regex = re.compile(pattern)

        def found() -> str | None:
            return next((line for line in self.lines if regex.search(line)), None)

        with self.cond:
            line = self.cond.wait_for(found, timeout)
        if line is None:
            pytest.fail(f"agent never logged /{pattern}/ in {timeout}s; output:\n{self.output}")
        return line

    def wait(self, timeout: float = 30) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail(f"agent still running after {timeout}s; output:\n{self.output}")
        with self.cond:
            self.cond.wait_for(lambda: self.lines[-1:] == [""], 5)
        return code

    def signal(self, sig: signal.Signals = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)


@dataclass
class Vm:
    """One simulated VM: a root directory, the rendered agent, and its environment."""

    root: Path
    cloud: str
    github: GitHubDouble
    scope: Scope
    instance_id: str
    env: dict[str, str]
    config: dict[str, Any]
    agent_source: str
    release: RunnerRelease
    secrets: list[str] = field(default_factory=list)
    agents: list[Agent] = field(default_factory=list)
    loader: str = ""  # AWS: /opt/gh-runners/loader.py from the user data (agent_source is then unused)
    loader_output: list[str] = field(default_factory=list)

    @property
    def runner_name(self) -> str:
        return f"{self.config['runner_prefix']}-{self.instance_id}"

    @property
    def prefix(self) -> str:
        """`<pool>-<hash of this deployment's group>`: what its runner names start with."""
        return str(self.config["runner_prefix"])

    @property
    def runner_dir(self) -> Path:
        return self.root / "actions-runner"

    @property
    def argv_log(self) -> Path:
        return self.root / "argv.log"

    @property
    def record(self) -> Path:
        """The fake runner's JSON-lines record (the ``runner_release`` fixture's)."""
        return self.release.record

    def records(self, event: str | None = None) -> list[dict[str, Any]]:
        return self.release.records(event)

    def publish_runner(self, version: str) -> RunnerRelease:
        """Publish another release of the fake runner (x64 and arm64), recording where this VM's does."""
        dist = self.root / "dist"
        dist.mkdir(exist_ok=True)
        tarballs = {f"linux-{arch}": build_runner_tarball(dist, version, arch, control_url=self.github.url,
                                                          record=self.release.record, ldcache=self.release.ldcache)
                    for arch in ("x64", "arm64")}
        published = self.github.add_runner_release(version, tarballs)
        x64 = tarballs["linux-x64"]
        return RunnerRelease(version, x64, published[x64.name], self.release.record, self.release.ldcache)

    def republish_runner(self, **kw: Any) -> RunnerRelease:
        """Publish the fake runner again with ``GitHubDouble.add_runner_release`` options
        (``corrupt``, ``digest_in``), replacing the fixture's release."""
        published = self.github.add_runner_release(self.release.version, {"linux-x64": self.release.tarball}, **kw)
        return RunnerRelease(self.release.version, self.release.tarball, published[self.release.tarball.name],
                             self.release.record)

    @property
    def lib_dir(self) -> Path:
        """Root's own state across boots (the agent's /var/lib/gh-runners)."""
        return self.root / "lib"

    def prebake_runner(self) -> None:
        """The runner already in place, as on a prebaked image (root's, with root's version marker);
        any download now fails. The pool should pin the version: `latest` would still look it up."""
        self.github.releases.clear()
        self.runner_dir.mkdir()
        with tarfile.open(self.release.tarball) as tar:
            tar.extractall(self.runner_dir, **DATA_FILTER)  # noqa: S202 - our own tarball
        self.runner_dir.chmod(0o1775)
        os.chown(self.runner_dir, 0, pwd.getpwnam(RUNNER_USER).pw_gid)
        self.lib_dir.mkdir(mode=0o700, exist_ok=True)
        (self.lib_dir / "runner-version").write_text(f"{self.release.version} linux-x64\n")

    def give_to_runner(self, *paths: Path) -> None:
        """chown each path (and everything below it) to the runner user."""
        owner = pwd.getpwnam(RUNNER_USER)
        for top in paths:
            for path in [top, *top.rglob("*")]:
                os.lchown(path, owner.pw_uid, owner.pw_gid)

    def argv(self) -> list[str]:
        return self.argv_log.read_text().splitlines() if self.argv_log.exists() else []

    def start(self, python: str = BASE_PYTHON, **env: str) -> Agent:
        (self.root / "etc").mkdir(exist_ok=True)
        (self.root / "etc" / "config.json").write_text(json.dumps(self.config))
        agent_py = self.root / "opt" / "agent.py"
        agent_py.parent.mkdir(exist_ok=True)
        if self.loader:
            self.load(agent_py, env)
        else:
            agent_py.write_text(self.agent_source)
        proc = subprocess.Popen([python, "-I", str(agent_py)], env={**self.env, **env}, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, cwd=self.root)
        agent = Agent(proc)
        self.agents.append(agent)
        return agent

    def load(self, agent_py: Path, env: dict[str, str]) -> None:
        """What the unit's ExecStartPre does on AWS: the loader puts the agent in place (or finds it there)."""
        loader = self.root / "opt" / "loader.py"
        loader.parent.mkdir(exist_ok=True)
        loader.write_text(self.loader)
        done = subprocess.run([BASE_PYTHON, "-I", str(loader)], env={**self.env, **env,
                              "GH_RUNNERS_AGENT_PATH": str(agent_py)}, capture_output=True, text=True, timeout=60,
                              check=False, cwd=self.root)
        self.loader_output.append(done.stderr)
        if done.returncode != 0:
            pytest.fail(f"the loader failed ({done.returncode}):\n{done.stderr}")

    def run(self, timeout: float = 30, **env: str) -> Agent:
        agent = self.start(**env)
        agent.wait(timeout)
        return agent

    @property
    def powered_off(self) -> bool:
        return (self.root / "poweroff").exists()

    def assert_no_leaks(self, *extra: str) -> None:
        """No secret in any agent output, any file under the VM root, the runner's record, or any recorded argv."""
        secrets = [s for s in (*self.secrets, *extra, *self.github.installation_tokens) if s]
        for agent in self.agents:
            for secret in secrets:
                assert secret not in agent.output, "a secret reached the agent's log"
            assert "eyJ" not in agent.output, "something JWT- or JIT-config-shaped reached the agent's log"
        for path in [*self.root.rglob("*"), self.record]:
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                for secret in secrets:
                    assert secret.encode() not in data, f"a secret was written to {path}"

    def process_tree(self, agent: Agent) -> list[int]:
        """The agent and all its descendants (runner, listener, jobs)."""
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    ppid = int(re.search(r"^PPid:\s+(\d+)", (entry / "status").read_text(), re.M)[1])  # type: ignore[index]
                except (OSError, TypeError):
                    continue
                children.setdefault(ppid, []).append(int(entry.name))
        tree, todo = [], [agent.proc.pid]
        while todo:
            pid = todo.pop()
            tree.append(pid)
            todo.extend(children.get(pid, []))
        return tree

    def assert_no_leaks_in_processes(self, agent: Agent) -> None:
        """The credential is in no environment and no command line of the agent's process tree."""
        secrets = [s for s in (*self.secrets, *self.github.installation_tokens) if s]
        seen = 0
        for pid in self.process_tree(agent):
            for name in ("environ", "cmdline"):
                try:
                    data = Path(f"/proc/{pid}/{name}").read_bytes()
                except OSError:
                    continue
                seen += 1
                for secret in secrets:
                    assert secret.encode() not in data, f"a secret is in /proc/{pid}/{name}"
        assert seen >= 4, "expected to inspect the agent and the runner processes"


def _write(path: Path, text: str, mode: int = 0o755) -> None:
    path.write_text(text)
    path.chmod(mode)


def make_root() -> Path:
    # Not pytest's tmp_path: its parents are root-only and the runner user must traverse ours.
    root = Path(tempfile.mkdtemp(prefix="ghr-vm-", dir="/tmp"))
    root.chmod(0o755)
    (root / "bin").mkdir()
    log = root / "argv.log"
    for tool in ("curl", "openssl"):
        _write(root / "bin" / tool, SHIM.format(log=log, real=shutil.which(tool, path="/usr/bin:/bin")))
    for tool in ("iptables", "ip6tables"):
        _write(root / "bin" / tool, FAKE_IPTABLES.format(log=log))
    _write(root / "bin" / "poweroff", POWEROFF.format(marker=root / "poweroff"))
    return root


def vm_env(root: Path, github: GitHubDouble) -> dict[str, str]:
    """The agent's environment on a VM rooted at `root` (from make_root): the doubles' and the root's
    GH_RUNNERS_* overrides with short waits; the cloud's endpoints are added by the caller."""
    return {
        "PATH": f"{root}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
        "GH_RUNNERS_CONFIG": str(root / "etc" / "config.json"),
        "GH_RUNNERS_RUNNER_DIR": str(root / "actions-runner"),
        "GH_RUNNERS_RUNNER_USER": RUNNER_USER,
        "GH_RUNNERS_STATE_DIR": str(root / "state"),
        "GH_RUNNERS_LIB_DIR": str(root / "lib"),
        "GH_RUNNERS_RELEASES_URL": github.url,
        "GH_RUNNERS_IPTABLES": str(root / "bin" / "iptables"),
        "GH_RUNNERS_IP6TABLES": str(root / "bin" / "ip6tables"),
        "GH_RUNNERS_APT_LOCKS": str(root / "apt.lock"),  # not the test machine's dpkg lock
        "GH_RUNNERS_POWEROFF": str(root / "bin" / "poweroff"),
        "GH_RUNNERS_RETRY_SECONDS": "4",
        "GH_RUNNERS_RETRY_BASE": "0.02",
        "GH_RUNNERS_POLL_SECONDS": "0.1",
        "GH_RUNNERS_BUSY_POLL_SECONDS": "0.1",
        "GH_RUNNERS_STOP_SECONDS": "5",
        "GH_RUNNERS_LEAVE_SECONDS": "4",
        "GH_RUNNERS_RATE_LIMIT_WAIT": "0.3",  # GitHub asks for a minute; the tests check it is waited
        "GH_RUNNERS_SWEEP_CHANCE": "1",
        "GH_RUNNERS_SWEEP_DELAY": "0",
    }


def github_scope(github: GitHubDouble, scope: str) -> Scope:
    target = TARGETS[scope]
    return {"repository": github.repo, "organization": github.org, "enterprise": github.enterprise}[scope](target)


def credential(github: GitHubDouble, kind: str, scope: str) -> tuple[str, list[str]]:
    """(secret document, the strings in it that must never leak)."""
    if kind == "pat":
        token = github.add_pat()
        return json.dumps({"kind": "pat", "token": token}), [token]
    owner = TARGETS[scope].split("/")[0]
    github.add_app(APP_ID).install(INSTALLATION_ID, owner,
                                   target_type={"enterprise": "Enterprise", "repository": "User"}.get(
                                       scope, "Organization"))
    private = app_keypair()[0]
    doc = {"kind": "app", "app_id": str(APP_ID), "installation_id": str(INSTALLATION_ID), "private_key": private}
    key_lines = [line for line in private.splitlines() if line and not line.startswith("-----")]
    return json.dumps(doc), key_lines


def render(cloud: str, scope: str, location: dict[str, str], *, url: str = "https://github.com",
           group_id: int | None = None, agent: AgentObject | None = None, **pool: Any) -> tuple[str, dict[str, Any]]:
    """(agent.py, config.json) exactly as the rendered user data writes them; (loader.py, config.json) when
    the VM fetches its `agent` (AWS)."""
    fields = {"name": POOL, "provider": cloud, "labels": ["e2e"], **pool}
    if OTHER_AGENT:
        fields.setdefault("runner_version", DEFAULT_VERSION)
    model = AwsPool.model_validate(fields) if cloud == "aws" else GcpPool.model_validate(fields)
    target = GitHubTarget.model_validate({scope: TARGETS[scope], "url": url})
    with _agent_from(OTHER_AGENT):
        doc = yaml.safe_load(render_user_data(model, target, location, runner_group_id=group_id, agent=agent))
    files = {f["path"]: f["content"] for f in doc["write_files"]}
    return files[LOADER_PATH if agent else AGENT_PATH], json.loads(files[CONFIG_PATH])


def upload_agent(aws: AwsEnv) -> AgentObject:
    """The AWS bundle in moto's S3, as providers/aws/agent_store.py uploads it (from OTHER_AGENT if set)."""
    with _agent_from(OTHER_AGENT):
        body, key = agent_bytes("aws"), agent_key("aws")
    bucket, key = aws.put_agent(body, key)
    return AgentObject(bucket, key, aws.region, hashlib.sha256(body).hexdigest())


@contextlib.contextmanager
def _agent_from(directory: str | None) -> Iterator[None]:
    if directory is None:
        yield
        return
    import bootstrap.cloud_config as cloud_config

    saved, cloud_config.AGENT_DIR = cloud_config.AGENT_DIR, Path(directory)
    cloud_config.agent_file.cache_clear()
    cloud_config.agent_bytes.cache_clear()
    try:
        yield
    finally:
        cloud_config.AGENT_DIR = saved
        cloud_config.agent_file.cache_clear()
        cloud_config.agent_bytes.cache_clear()


@pytest.fixture(name="vm_factory")
def vm_factory_fixture(github: GitHubDouble, runner_release: RunnerRelease,
                       request: pytest.FixtureRequest) -> Iterator[Any]:
    """vm_factory(cloud, scope, kind="pat", **pool) -> Vm; the `aws` / `gcp` fixture must be requested too.

    The runner the VM downloads is the `runner_release` fixture's (`vm.release`; `vm.records()` reads what it
    recorded); `vm.republish_runner(corrupt=True, ...)` serves it differently.
    """
    made: list[Vm] = []

    def make(cloud: str, scope: str = "organization", kind: str = "pat", *, ghes: bool = False, min_size: int = 0,
             group_id: int | None = None, **pool: Any) -> Vm:
        root = make_root()
        _write(root / "bin" / "ldconfig", LDCONFIG.format(cache=runner_release.ldcache))
        scope_obj = github_scope(github, scope)
        secret, hidden = credential(github, kind, scope)
        env = vm_env(root, github)
        if cloud == "aws":
            aws: AwsEnv = request.getfixturevalue("aws")
            aws.create_role(aws.imds.instance.role_name)
            aws.put_secure_parameter("/gh-runners/pool/credential", secret)
            instance_id = aws.create_asg("pool-asg", desired=2, min_size=min_size)[0]
            aws.become(instance_id)
            location = {"cloud": "aws", "secret": "/gh-runners/pool/credential", "region": aws.region,
                        "group": "pool-asg", "lifecycle_hook": "drain"}
            env.update(GH_RUNNERS_IMDS_URL=aws.imds.url, GH_RUNNERS_SSM_URL=aws.endpoint_url,
                       GH_RUNNERS_AUTOSCALING_URL=aws.endpoint_url, GH_RUNNERS_EC2_URL=aws.endpoint_url,
                       GH_RUNNERS_S3_URL=aws.endpoint_url, GH_RUNNERS_LOADER_SECONDS="5")
            fetched: AgentObject | None = upload_agent(aws)
        else:
            gcp: GcpDoubles = request.getfixturevalue("gcp")
            gcp.add_secret("gh-runners-pool", secret)
            gcp.add_mig("pool-mig").add_instance(gcp.state.instance_name, id=gcp.state.instance_id)
            instance_id = gcp.state.instance_id
            location = {"cloud": "gcp", "secret": f"projects/{gcp.state.project_id}/secrets/gh-runners-pool",
                        "region": gcp.state.region, "group": "pool-mig", "project": gcp.state.project_id}
            fetched = None
            env.update(GH_RUNNERS_GCE_METADATA_URL=gcp.metadata.url, GH_RUNNERS_SECRETMANAGER_URL=gcp.secretmanager.url,
                       GH_RUNNERS_COMPUTE_URL=gcp.compute.url)
        if ghes:
            github.api_prefix = "/api/v3"
        agent_source, config = render(cloud, scope, location, url="https://ghe.example.com" if ghes else
                                      "https://github.com", group_id=group_id, agent=fetched, **pool)
        config["github"]["api_url"] = github.api_url  # the double stands for the target's API
        env["GH_RUNNERS_RELEASES_URL"] = github.api_url
        vm = Vm(root, cloud, github, scope_obj, instance_id, env, config, agent_source, runner_release,
                [secret, *hidden], loader=agent_source if fetched else "")
        made.append(vm)
        return vm

    yield make
    for vm in made:
        for agent in vm.agents:
            # A failed test may leave the agent and its runner running: end exactly those processes.
            for pid in reversed(vm.process_tree(agent)) if agent.proc.poll() is None else []:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            agent.proc.wait()
        shutil.rmtree(vm.root, ignore_errors=True)
