"""The whole program (`__main__.py`) under the recording engine: scopes, credentials, GitHub side, outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.providers.harness import SENTINEL_KEY, SENTINEL_TOKEN, run_file

GROUP = "github:index/actionsRunnerGroup:ActionsRunnerGroup"
ENTERPRISE_GROUP = "github:index/enterpriseActionsRunnerGroup:EnterpriseActionsRunnerGroup"
AWS_POOL = "  - {name: a, provider: aws, runner_group: %s}\n"


def test_repository_scope_needs_no_github_resources(tmp_path: Path) -> None:
    text = "version: 1\ngithub: {repository: spigell/my-reforge-ai}\npools:\n  - {name: a, provider: aws}\n"
    recording = run_file(tmp_path, text)
    assert not [r for r in recording.resources if r.type.startswith(("github:", "pulumi:providers:github"))]


def test_organization_groups_are_created_once_per_name(tmp_path: Path) -> None:
    text = (
        "version: 1\ngithub: {organization: acme}\npools:\n"
        "  - {name: a, provider: aws, runner_group: {name: ci, repositories: [api, web],"
        " workflows: [acme/api/.github/workflows/ci.yml@refs/heads/main]}}\n"
        "  - {name: b, provider: aws, region: us-east-1, runner_group: {name: ci, repositories: [api, web],"
        " workflows: [acme/api/.github/workflows/ci.yml@refs/heads/main]}}\n"
        "  - {name: c, provider: aws, runner_group: {name: everyone, visibility: all}}\n"
        "  - {name: d, provider: aws, runner_group: {name: existing, managed: false}}\n"
        "  - {name: e, provider: aws}\n"
    )
    recording = run_file(tmp_path, text)
    groups = {g.inputs["name"]: g.inputs for g in recording.of_type(GROUP)}
    assert set(groups) == {"ci", "everyone"}
    assert groups["ci"]["visibility"] == "selected"
    assert len(groups["ci"]["selectedRepositoryIds"]) == 2
    assert groups["ci"]["restrictedToWorkflows"] is True
    assert groups["ci"]["selectedWorkflows"] == ["acme/api/.github/workflows/ci.yml@refs/heads/main"]
    assert groups["everyone"]["visibility"] == "all" and "selectedRepositoryIds" not in groups["everyone"]
    (provider,) = recording.of_type("pulumi:providers:github")
    assert provider.inputs["owner"] == "acme"
    assert provider.inputs["baseUrl"] == "https://api.github.com/"
    assert provider.secret_paths == ["token"]


def test_enterprise_groups_on_ghes_with_app_credential(tmp_path: Path) -> None:
    text = (
        "version: 1\ngithub: {enterprise: acme-corp, url: https://ghe.example.com}\npools:\n"
        "  - {name: a, provider: aws, runner_group: {name: shared, organizations: [acme, labs]}}\n"
    )
    recording = run_file(tmp_path, text, app=True)
    (group,) = recording.of_type(ENTERPRISE_GROUP)
    assert group.inputs["enterpriseSlug"] == "acme-corp"
    assert group.inputs["visibility"] == "selected"
    assert len(group.inputs["selectedOrganizationIds"]) == 2
    (provider,) = recording.of_type("pulumi:providers:github")
    assert provider.inputs["baseUrl"] == "https://ghe.example.com/api/v3/"
    # Provider config travels as JSON strings; the whole appAuth object is secret.
    assert json.loads(provider.inputs["appAuth"])["id"] == "12345"
    assert provider.secret_paths == ["appAuth"]
    assert SENTINEL_KEY.splitlines()[1] not in json.dumps(provider.shown)


def test_pools_wait_for_their_runner_group(tmp_path: Path) -> None:
    text = "version: 1\ngithub: {organization: acme}\npools:\n" + AWS_POOL % "ci"
    recording = run_file(tmp_path, text)
    assert recording.of_type(GROUP)


@pytest.mark.parametrize("app", [False, True])
def test_outputs_per_pool_never_hold_the_secret(tmp_path: Path, app: bool) -> None:
    text = "version: 1\ngithub: {organization: acme}\npools:\n" + AWS_POOL % "ci"
    recording = run_file(tmp_path, text, app=app)
    pool = recording.stack_outputs["pools"]["a"]
    assert pool == {
        "provider": "aws",
        "region": "eu-central-1",
        "project": None,
        "labels": ["self-hosted", "linux", "x64"],
        "runsOn": "[self-hosted, linux, x64]",
        "groupName": "ghr-gh-runners-test-a",
        "runnerGroup": "ci",
        "secretLocation": "/gh-runners/ghr-gh-runners-test-a/github-credential",
    }
    dumped = json.dumps(recording.stack_outputs)
    assert SENTINEL_TOKEN not in dumped and "SENTINELKEYMATERIAL" not in dumped


def test_agent_document_kind_follows_the_credential(tmp_path: Path) -> None:
    text = "version: 1\ngithub: {repository: a/b}\npools:\n  - {name: a, provider: aws}\n"
    (tmp_path / "pat").mkdir()
    (tmp_path / "app").mkdir()
    pat = json.loads(run_file(tmp_path / "pat", text).named("a-credential").inputs["value"])
    app = json.loads(run_file(tmp_path / "app", text, app=True).named("a-credential").inputs["value"])
    assert pat == {"kind": "pat", "token": SENTINEL_TOKEN}
    assert app == {"kind": "app", "app_id": "12345", "installation_id": "678", "private_key": SENTINEL_KEY}
