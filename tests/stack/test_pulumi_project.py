"""Pulumi.yaml passes the CLI's own checks with every kind of stack a user sets up.

The rules come from the CLI's source (see tests/stack/pulumi_cli.py); the
project JSON Schema is the CLI's own file, vendored by
scripts/vendor_pulumi_project_schema.py. A PAT-only and an App-only stack file
must both get past `pulumi preview`'s config check, and the program must then
accept the same stack files.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import yaml

from plan.engine import run_project
from tests.providers.harness import ROOT, SENTINEL_KEY, SENTINEL_TOKEN
from tests.stack.pulumi_cli import CliError, check_stack, load_project, validate_project, vendored_schemas

PROJECT_TEXT = (ROOT / "Pulumi.yaml").read_text()
RUNNERS = "version: 1\ngithub: {repository: spigell/my-reforge-ai}\npools:\n  - {name: codex, provider: aws}\n"

# Pulumi.<stack>.yaml files as `pulumi config set [--secret] [--path]` writes them.
PAT_STACK = """\
config:
  aws:region: eu-central-1
  {ns}:githubToken:
    secure: v1:c2VjcmV0:AAAAPAT
"""
APP_STACK = """\
config:
  aws:region: eu-central-1
  {ns}:githubApp:
    appId: "12345"
    installationId: "678"
    privateKey:
      secure: v1:c2VjcmV0:AAAAKEY
"""
STACKS = {"pat": PAT_STACK, "app": APP_STACK}
# The declaration this file had before: `pulumi preview` could not run at all.
OLD_CONFIG = """\
name: gh-runners
runtime: python
config:
  githubToken: {type: string, secret: true}
  githubApp: {type: object}
  runnersFile: {type: string, default: runners.yaml}
"""


def stack_config(kind: str, namespace: str = "gh-runners") -> dict[str, Any]:
    document = yaml.safe_load(STACKS[kind].format(ns=namespace))
    return dict(document["config"])


@pytest.mark.parametrize("schema_name", sorted(vendored_schemas()))
def test_pulumi_yaml_matches_the_cli_project_schema(schema_name: str) -> None:
    validate_project(load_project(PROJECT_TEXT), vendored_schemas()[schema_name])


@pytest.mark.parametrize("kind", sorted(STACKS))
def test_the_cli_accepts_a_stack_with_one_credential(kind: str) -> None:
    project = load_project(PROJECT_TEXT)
    merged = check_stack(project, "dev", stack_config(kind))
    assert merged["gh-runners:runnersFile"] == "runners.yaml"  # the project default is applied


def test_the_rules_are_a_real_judge() -> None:
    """The previous declaration fails both checks, as the CLI failed it."""
    old = load_project(OLD_CONFIG)
    with pytest.raises(CliError, match=r"^Stack 'dev' is missing configuration value 'githubApp'$"):
        check_stack(old, "dev", stack_config("pat"))
    with pytest.raises(CliError, match=r"^Stack 'dev' is missing configuration value 'githubToken'$"):
        check_stack(old, "dev", stack_config("app"))
    for schema in vendored_schemas().values():
        with pytest.raises(CliError, match="githubApp"):  # `type: object`: older CLIs have no such type
            validate_project(old, schema)
    plain = {"gh-runners:githubToken": "ghp_plain", "gh-runners:githubApp": {"appId": "1"}}
    with pytest.raises(CliError, match="must be encrypted as it's secret"):
        check_stack(old, "dev", plain)


def test_every_key_the_program_reads_is_documented() -> None:
    project = yaml.safe_load(PROJECT_TEXT)
    documented = set(project["config"]) | set(project["template"]["config"])
    assert {"githubToken", "githubApp", "runnersFile"} <= documented
    for key in ("githubToken", "githubApp"):
        entry = project["template"]["config"][key]
        assert entry["secret"] is True and "pulumi config set" in entry["description"]


@pytest.mark.parametrize("kind", sorted(STACKS))
def test_the_program_accepts_the_same_stack_files(tmp_path: Path, kind: str) -> None:
    merged = check_stack(load_project(PROJECT_TEXT), "dev", stack_config(kind))
    config, secrets = program_config(merged, tmp_path)
    recording = run_project(ROOT, config=config, secret_keys=secrets, stack="dev")
    assert recording.of_type("aws:autoscaling/group:Group")


def test_a_renamed_project_reads_its_own_namespace(tmp_path: Path) -> None:
    """`pulumi config set --secret githubToken` in a project renamed in Pulumi.yaml
    stores `<new name>:githubToken`; the program must find it there (it used a
    hard-coded "gh-runners:" before)."""
    project = load_project(PROJECT_TEXT.replace("name: gh-runners", "name: acme-runners", 1))
    merged = check_stack(project, "dev", stack_config("pat", "acme-runners"))
    config, secrets = program_config(merged, tmp_path)
    recording = run_project(ROOT, config=config, secret_keys=secrets, stack="dev", project="acme-runners")
    assert SENTINEL_TOKEN in recording.named("codex-credential").inputs["value"]
    # The receiver's copy (for its reconcile) too, under a name with the project.
    receiver_copy = recording.named("aws-receiver-credential").inputs
    assert SENTINEL_TOKEN in receiver_copy["value"] and "acme-runners" in receiver_copy["name"]
    # Names carry the project too: a second deployment does not collide with the first.
    assert recording.named("codex-asg").inputs["name"] == "ghr-acme-runners-dev-codex"


def program_config(stack: dict[str, Any], tmp_path: Path) -> tuple[dict[str, Any], list[str]]:
    """What the CLI hands the program for a stack file: secure values decrypted and marked secret."""
    runners = tmp_path / "runners.yaml"
    runners.write_text(RUNNERS)
    config: dict[str, Any] = {}
    secrets = []
    for key, value in stack.items():
        if key.endswith(":runnersFile"):
            value = str(runners)
        config[key] = _decrypt(value)
        if _has_secure(value):
            secrets.append(key)
    return config, secrets


def _decrypt(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"secure"}:
            return SENTINEL_KEY if value["secure"].endswith("KEY") else SENTINEL_TOKEN
        return {k: _decrypt(v) for k, v in value.items()}
    return value


def _has_secure(value: Any) -> bool:
    return isinstance(value, dict) and (set(value) == {"secure"} or any(_has_secure(v) for v in value.values()))


def test_vendored_schemas_are_the_recorded_upstream_files() -> None:
    spec = importlib.util.spec_from_file_location("vendor", ROOT / "scripts" / "vendor_pulumi_project_schema.py")
    assert spec and spec.loader
    vendor = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(vendor)
    assert {vendor.target(c).name for c in vendor.COMMITS} == set(vendored_schemas())
    assert vendor.main([]) == 0  # every copy has the digest recorded when it was taken
