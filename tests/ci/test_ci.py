"""The project's own CI and contributor tooling: the GitHub workflow, .ci/run, our shell
scripts, the skip policy, and the release tag the README's pre-commit snippet pins."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.judges.shellcheck import shellcheck

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest itself depends on tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
BIN = Path(sys.executable).parent


def workflow() -> dict[Any, Any]:
    return yaml.safe_load(WORKFLOW.read_text())


def steps() -> list[dict[str, Any]]:
    return workflow()["jobs"]["test"]["steps"]


def check_workflow(path: Path) -> subprocess.CompletedProcess[str]:
    # check-jsonschema carries SchemaStore's GitHub workflow schema: no network.
    return subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(path)],
                          capture_output=True, text=True, check=False)


# --- the GitHub workflow ------------------------------------------------------------


def test_the_workflow_is_valid_for_github_actions(tmp_path: Path) -> None:
    done = check_workflow(WORKFLOW)
    assert done.returncode == 0, done.stdout + done.stderr
    broken = workflow()
    del broken["jobs"]["test"]["runs-on"]  # the judge notices a job with nowhere to run
    (tmp_path / "ci.yml").write_text(yaml.safe_dump(broken))
    assert check_workflow(tmp_path / "ci.yml").returncode != 0


def test_the_workflow_runs_make_test_on_the_oldest_and_newest_python_on_push_and_pull_request() -> None:
    flow = workflow()
    assert set(flow[True]) == {"push", "pull_request"}  # YAML 1.1 reads the key `on` as true
    job = flow["jobs"]["test"]
    assert job["runs-on"].startswith("ubuntu-")
    versions = job["strategy"]["matrix"]["python"]
    oldest = PYPROJECT["project"]["requires-python"].removeprefix(">=")
    assert versions[0] == oldest and versions == sorted(versions, key=lambda v: tuple(map(int, v.split("."))))
    assert len(versions) == 2
    runs = [step.get("run", "") for step in steps()]
    assert any("make plan" in run for run in runs)
    assert any("-m schema validate runners.yaml" in run for run in runs)
    test_step = next(run for run in runs if "make test" in run)
    assert "sudo" in test_step and "CI=true" in test_step  # root, and a skip is a failure


def test_actions_are_pinned_by_commit_with_their_tag_beside() -> None:
    uses = re.findall(r"uses:\s*(\S+)(.*)", WORKFLOW.read_text())
    assert {ref.split("@")[0] for ref, _ in uses} == {"actions/checkout", "actions/setup-python"}
    for ref, comment in uses:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", ref), ref
        assert re.fullmatch(r"\s*# v\d+\.\d+\.\d+", comment), f"{ref}: say which release the commit is"


def test_the_local_ci_entry_still_runs_make_test() -> None:
    lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if not line.startswith("#")]
    assert "make test" in lines


# --- our shell scripts --------------------------------------------------------------


SCRIPTS = [".ci/run", *sorted(str(path.relative_to(ROOT)) for path in (ROOT / "scripts").glob("*.sh"))]


@pytest.mark.parametrize("script", SCRIPTS)
def test_our_shell_scripts_pass_shellcheck(script: str) -> None:
    done = shellcheck((ROOT / script).read_text(), "--external-sources")
    assert done.returncode == 0, f"{script}:\n{done.stdout}"


# --- pre-commit ---------------------------------------------------------------------


def test_the_readme_pins_the_current_release_tag_for_pre_commit() -> None:
    readme = (ROOT / "README.md").read_text()
    revs = re.findall(r"repo: https://github.com/\S+/gh-runners\s+rev: (\S+)", readme)
    assert revs == [f"v{PYPROJECT['project']['version']}"]


# --- the skip policy (tests/skip_policy.py) ---------------------------------------------

SAMPLE = '''
import pytest

def test_passes():
    pass

def test_skips():
    pytest.skip("no widget here")

@pytest.mark.linux_root("it needs a widget")
def test_needs_root():
    pass
'''
# Only the policy under test: no third-party plugins (hypothesis & co. cost seconds at startup).
SUBPYTEST_ENV = {"PYTHONPATH": str(ROOT), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
NOT_ROOT = "import tests.skip_policy as policy\npolicy.linux_root = lambda: False\n"


def run_sample(tmp_path: Path, ci: str | None, *, root: bool = True) -> str:
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    (tmp_path / "conftest.py").write_text("" if root else NOT_ROOT)
    env = {k: v for k, v in os.environ.items() if k != "CI"} | SUBPYTEST_ENV
    if ci is not None:
        env["CI"] = ci
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.skip_policy", "-p", "no:cacheprovider",
                           "-rsfE", "-q", "--rootdir", str(tmp_path), str(tmp_path)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, check=False, timeout=60)
    return done.stdout


def test_outside_ci_a_linux_root_test_skips_saying_why(tmp_path: Path) -> None:
    out = run_sample(tmp_path, None, root=False)
    assert "1 passed, 2 skipped" in out
    assert re.search(r"SKIPPED .*needs Linux and root \(it needs a widget\); here: ", out), out


def test_under_ci_every_skip_is_a_failure(tmp_path: Path) -> None:
    out = run_sample(tmp_path, "true", root=False)
    # The marker's skip fails at setup (an error), pytest.skip() in the test body a failure.
    assert "1 failed, 1 passed, 1 error" in out, out
    assert "FAILED test_sample.py::test_skips - skipped under CI=true, where nothing may be skipped: no widget" in out
    assert "ERROR test_sample.py::test_needs_root - skipped under CI=true, where nothing may be skipped: needs Linux" \
        in out


@pytest.mark.linux_root("the policy as root")
def test_as_linux_root_the_marked_test_runs(tmp_path: Path) -> None:
    assert "2 passed, 1 skipped" in run_sample(tmp_path, "false")


def test_a_module_skipped_at_import_fails_under_ci(tmp_path: Path) -> None:
    module = tmp_path / "module"
    module.mkdir()
    (module / "test_optional.py").write_text("import pytest\npytest.importorskip('no_such_module_here')\n")
    env = {k: v for k, v in os.environ.items() if k != "CI"} | SUBPYTEST_ENV | {"CI": "true"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.skip_policy", "-p", "no:cacheprovider",
                           "-q", "--rootdir", str(module), str(module)], env=env, capture_output=True, text=True,
                          check=False, timeout=60)
    assert done.returncode != 0 and "skipped under CI=true" in done.stdout, done.stdout
