"""Run by bench/agent.py under pytest, never collected by `make test` (testpaths = tests).

It starts the real VM agent exactly as tests/bootstrap does -- the same
session doubles (conftest.py fixtures) and the same `vm_factory` (the user data
rendered for a pool, the agent as a process in a per-test VM root) -- and
records when `run.sh` is exec'd and every request the doubles saw before it.

The remote services (GitHub, the secret store) answer after $BENCH_AGENT_LATENCY
seconds, standing for a regional round trip; the link-local ones (IMDS, the GCE
metadata server) at once. Calls made one after another then add up, calls made
side by side overlap, so the longest chain of calls each made after the
previous one was answered is the number of sequential round trips.

Cases: `<cloud>:<pat|app>` boots an image that already has the pinned runner;
`<cloud>:pat:download` installs a pinned release whose digest is known before
boot (its download runs beside the credential and the registration).
One JSON line per run goes to $BENCH_AGENT_OUT.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

BOOTSTRAP_TESTS = Path(__file__).resolve().parent.parent / "tests" / "bootstrap"
sys.path.insert(0, str(BOOTSTRAP_TESTS))

import conftest as bootstrap_fixtures  # type: ignore[import-not-found,unused-ignore]  # noqa: E402
from doubles.github import GitHubDouble  # type: ignore[import-not-found,unused-ignore]  # noqa: E402
from doubles.runner_tarball import DEFAULT_VERSION  # type: ignore[import-not-found,unused-ignore]  # noqa: E402
from test_agent_harness import (  # type: ignore[import-not-found,unused-ignore]  # noqa: E402
    Vm,
    vm_factory_fixture,  # noqa: F401 - the fixture, found by pytest under its name
)

LABELS = ["self-hosted", "linux", "x64", "e2e"]
CASES = [case for case in os.environ.get("BENCH_AGENT_CASES", "aws:pat,gcp:pat").split(",") if case]
REPS = int(os.environ.get("BENCH_AGENT_REPS", "1"))
LATENCY = float(os.environ.get("BENCH_AGENT_LATENCY", "0.05"))
STAMP = "run-sh-exec"
# Every fixture of tests/bootstrap/conftest.py, as a module attribute so pytest finds it here too.
for _name, _value in vars(bootstrap_fixtures).items():
    if type(_value).__name__ == "FixtureFunctionDefinition" or hasattr(_value, "_pytestfixturefunction"):
        globals()[_name] = _value


def _stamp_run_sh(vm: Vm) -> Path:
    """`run.sh` (root's, as installed) notes the moment it is exec'd, in a file the runner user may write."""
    stamps = vm.root / "bench"
    stamps.mkdir()
    run_sh = vm.runner_dir / "run.sh"
    shebang, rest = run_sh.read_text().split("\n", 1)
    run_sh.write_text(f'{shebang}\ndate +%s.%N >> "{stamps / STAMP}"\n{rest}')
    vm.give_to_runner(stamps)
    return stamps / STAMP


def _chain(calls: list[dict[str, Any]]) -> int:
    """The longest chain of calls each made after the previous one was answered."""
    chain, end = 0, -1.0
    for call in sorted(calls, key=lambda c: c["answered"]):
        if call["at"] >= end:
            chain, end = chain + 1, call["answered"]
    return chain


@pytest.mark.parametrize("rep", range(REPS))
@pytest.mark.parametrize("case", CASES)
def test_agent_start_to_run_sh(vm_factory: Any, request: pytest.FixtureRequest, case: str, rep: int) -> None:
    cloud, kind, *mode = case.split(":")
    github: GitHubDouble = request.getfixturevalue("github")
    group = github.org("acme").add_group("linux-pool")  # managed by the stack: its id is in the user data
    vm: Vm = vm_factory(cloud, "organization", kind, runner_group="linux-pool", group_id=group.id,
                        runner_version=DEFAULT_VERSION)
    if mode == ["download"]:
        # A pin listed in bootstrap/runner_releases.json: the renderer writes its URL and digest.
        vm.config["runner"].update(sha256=vm.release.sha256, url=(
            f"{github.url}/actions/runner/releases/download/v{DEFAULT_VERSION}/{vm.release.tarball.name}"))
    else:
        vm.prebake_runner()  # the pinned runner on the image
    if cloud == "aws":
        env = request.getfixturevalue("aws")
        remote, local = [github, env.front], [env.imds]
    else:
        servers = request.getfixturevalue("gcp")
        remote, local = [github, servers.secretmanager, servers.compute], [servers.metadata]
    for double in remote:
        double.latency = LATENCY
    github.queue_job(LABELS, duration=0)
    stamp: Path | None = None
    if mode != ["download"]:
        stamp = _stamp_run_sh(vm)
    if vm.loader:
        # AWS: the unit's ExecStartPre fetches the agent from S3 first (one more regional round trip on a
        # first boot, bootstrap/loader.py); measured here is the agent's own start to run.sh.
        vm.load(vm.root / "opt" / "agent.py", {})
    for double in [*remote, *local]:
        double.log.clear()
        double.connections = 0

    started = time.time()
    agent = vm.start(GH_RUNNERS_SWEEP_CHANCE="0")  # the sweep starts with run.sh, off the boot path
    code = agent.wait(60)
    assert code == 0, agent.output
    if stamp is not None:
        exec_at = float(stamp.read_text().split()[0])
    else:
        exec_at = next(r["time"] for r in vm.records("invoke") if r["entry"] == "run.sh")
    calls = sorted(
        ({"at": r.time - started, "answered": (r.answered or r.time) - started, "double": d.name,
          "remote": d in remote, "method": r.method, "path": r.path, "status": r.status, "operation": r.operation,
          "connection": f"{d.name}#{r.connection}"}
         for d in [*remote, *local] for r in list(d.log) if r.time <= exec_at),
        key=lambda c: c["at"],
    )
    remote_calls = [c for c in calls if c["remote"]]
    download = [c for c in remote_calls if "/releases/download/" in c["path"] or c["path"].startswith("/_objects/")]
    boot_path = [c for c in remote_calls if c not in download]  # the credential and the registration
    line = {"case": case, "rep": rep, "to_run_sh": exec_at - started, "latency": LATENCY, "requests": calls,
            "sequential": _chain(boot_path), "remote": len(boot_path),
            "connections": len({c["connection"] for c in boot_path}),
            "download_calls": len(download),
            # The download began before the credential path was done: it ran beside it, not after it.
            "download_beside": bool(download) and min(c["at"] for c in download) < max(
                c["answered"] for c in boot_path)}
    with open(os.environ["BENCH_AGENT_OUT"], "a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")
