"""Run by bench/agent.py under pytest, never collected by `make test` (testpaths = tests).

It starts the real VM agent exactly as tests/bootstrap does -- the same
session doubles (conftest.py fixtures) and the same `vm_factory` (the user data
rendered for a pool, the agent as a process in a per-test VM root) -- with the
runner already installed (the `.runner-version` marker an image or a previous
boot leaves), and records when `run.sh` is exec'd and every request the
doubles saw before it. One JSON line per run goes to $BENCH_AGENT_OUT.
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
from test_agent_harness import (  # type: ignore[import-not-found,unused-ignore]  # noqa: E402
    Vm,
    vm_factory_fixture,  # noqa: F401 - the fixture, found by pytest under its name
)

LABELS = ["self-hosted", "linux", "x64", "e2e"]
CASES = [case for case in os.environ.get("BENCH_AGENT_CASES", "aws:pat,gcp:pat").split(",") if case]
REPS = int(os.environ.get("BENCH_AGENT_REPS", "1"))
STAMP = "run-sh-exec"
# Polled only by the agent's supervise loop, which starts right after it spawned run.sh: such a request
# may still land before run.sh's first line runs, but it is not on the path to the exec.
AFTER_START = ("/latest/meta-data/autoscaling/target-lifecycle-state", "/latest/meta-data/spot/instance-action")
# Every fixture of tests/bootstrap/conftest.py, as a module attribute so pytest finds it here too.
for _name, _value in vars(bootstrap_fixtures).items():
    if type(_value).__name__ == "FixtureFunctionDefinition" or hasattr(_value, "_pytestfixturefunction"):
        globals()[_name] = _value


def _prebake(vm: Vm) -> Path:
    """The pinned runner already in place, as on a prebaked image: no release lookup, no download.

    `Vm.prebake_runner`, as the prebaked-image test uses it; `run.sh` also notes the
    moment it is exec'd in the returned file.
    """
    vm.prebake_runner()
    stamps = vm.root / "bench"
    stamps.mkdir()
    run_sh = vm.runner_dir / "run.sh"
    shebang, rest = run_sh.read_text().split("\n", 1)
    run_sh.write_text(f'{shebang}\ndate +%s.%N >> "{stamps / STAMP}"\n{rest}')
    vm.give_to_runner(stamps, run_sh)
    return stamps / STAMP


@pytest.mark.parametrize("rep", range(REPS))
@pytest.mark.parametrize("case", CASES)
def test_agent_start_to_run_sh(vm_factory: Any, request: pytest.FixtureRequest, case: str, rep: int) -> None:
    cloud, kind = case.split(":")
    github: GitHubDouble = request.getfixturevalue("github")
    vm: Vm = vm_factory(cloud, "organization", kind)
    stamp = _prebake(vm)
    github.queue_job(LABELS, duration=0)
    if cloud == "aws":
        env = request.getfixturevalue("aws")
        doubles = [github, env.imds, env.front]
    else:
        doubles = [github, *request.getfixturevalue("gcp").servers]
    for double in doubles:
        double.log.clear()

    started = time.time()
    agent = vm.start()
    code = agent.wait(60)
    assert code == 0 and stamp.exists(), agent.output
    exec_at = float(stamp.read_text().split()[0])
    requests = sorted(
        ({"at": r.time - started, "double": d.name, "method": r.method, "path": r.path, "status": r.status,
          "operation": r.operation}
         for d in doubles for r in list(d.log) if r.time <= exec_at and r.path not in AFTER_START),
        key=lambda r: r["at"],
    )
    line = {"case": case, "rep": rep, "to_run_sh": exec_at - started, "requests": requests,
            "downloads": sum(1 for r in requests if "/releases" in r["path"] or "download" in r["path"])}
    with open(os.environ["BENCH_AGENT_OUT"], "a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")
