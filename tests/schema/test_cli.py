"""`python -m schema` as a process: exit codes, stderr format, no pulumi import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).parent


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "schema", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )


def test_valid_default_file_exits_0() -> None:
    result = run("validate")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "runners.yaml: ok (2 pools)"


def test_every_error_of_every_file_on_stderr_exit_1() -> None:
    result = run("validate", "arch.yaml", "cron.yaml", "syntax.yaml", cwd=HERE / "invalid")
    assert result.returncode == 1
    expected = "".join(
        (HERE / "invalid" / name).read_text() for name in ("arch.expected", "cron.expected", "syntax.expected")
    )
    assert result.stderr == expected
    assert "Traceback" not in result.stderr


def test_bad_usage_exits_2() -> None:
    assert run("frobnicate").returncode == 2
    assert run().returncode == 2


def test_validator_never_imports_pulumi() -> None:
    code = (
        "import sys, runpy; sys.argv = ['schema', 'validate', 'runners.yaml'];\n"
        "try:\n    runpy.run_module('schema', run_name='__main__')\nexcept SystemExit: pass\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0].startswith('pulumi')))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_jsonschema_command_matches_committed_file() -> None:
    result = run("jsonschema")
    assert result.returncode == 0
    committed = json.loads((ROOT / "schema" / "runners.schema.json").read_text())
    assert json.loads(result.stdout) == committed, "run: python -m schema jsonschema > schema/runners.schema.json"


def test_example_points_editors_at_the_schema() -> None:
    first = (ROOT / "runners.yaml").read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=schema/runners.schema.json"
