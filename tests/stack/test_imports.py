"""The registry imports backends lazily: a file loads only the SDKs its pools need."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import sys
from plan.engine import run_project
from pathlib import Path
run_project(Path({root!r}), config={{
    "gh-runners:githubToken": "t", "gh-runners:runnersFile": {file!r},
    "aws:region": "eu-central-1", "gcp:project": "p-123456", "gcp:region": "europe-west4"}},
    secret_keys=["gh-runners:githubToken"])
print(sorted({{m.split(".")[0] for m in sys.modules if m.startswith("pulumi_")}}))
"""


@pytest.mark.parametrize(
    ("pools", "target", "expected"),
    [
        # Pools that scale on demand (the default) load pulumi_github and
        # pulumi_random: their receiver's webhook and its random secret.
        ("  - {name: a, provider: aws}\n", "repository: a/b", ["pulumi_aws", "pulumi_github", "pulumi_random"]),
        # Fixed pools have no receiver: nothing but the cloud's SDK.
        ("  - {name: a, provider: aws, scaling: fixed, size: {min: 1}}\n", "repository: a/b", ["pulumi_aws"]),
        # GCP pools load pulumi_random anyway: their custom role id has a random suffix.
        (
            "  - {name: g, provider: gcp, scaling: fixed, size: {min: 1}}\n",
            "repository: a/b",
            ["pulumi_gcp", "pulumi_random"],
        ),
        ("  - {name: g, provider: gcp}\n", "repository: a/b", ["pulumi_gcp", "pulumi_github", "pulumi_random"]),
        (
            "  - {name: a, provider: aws}\n  - {name: g, provider: gcp}\n",
            "repository: a/b",
            ["pulumi_aws", "pulumi_gcp", "pulumi_github", "pulumi_random"],
        ),
        (
            "  - {name: g, provider: gcp, scaling: fixed, size: {min: 1}, runner_group: ci}\n",
            "organization: acme",
            ["pulumi_gcp", "pulumi_github", "pulumi_random"],
        ),
    ],
    ids=["aws-only", "aws-fixed", "gcp-fixed", "gcp-only", "mixed", "gcp-with-groups"],
)
def test_only_the_needed_sdks_load(tmp_path: Path, pools: str, target: str, expected: list[str]) -> None:
    path = tmp_path / "runners.yaml"
    path.write_text(f"version: 1\ngithub: {{{target}}}\npools:\n{pools}")
    code = PROBE.format(root=str(ROOT), file=str(path))
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == repr(expected)
