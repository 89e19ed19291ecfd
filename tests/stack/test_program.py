"""The whole program (`__main__.py`) under the recording engine: scopes, credentials, GitHub side, outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.providers.harness import SENTINEL_KEY, SENTINEL_TOKEN, run_file

GROUP = "github:index/actionsRunnerGroup:ActionsRunnerGroup"
ENTERPRISE_GROUP = "github:index/enterpriseActionsRunnerGroup:EnterpriseActionsRunnerGroup"
AWS_POOL = "  - {name: a, provider: aws, runner_group: %s}\n"


def test_repository_scope_with_fixed_pools_needs_no_github_resources(tmp_path: Path) -> None:
    text = (
        "version: 1\ngithub: {repository: spigell/my-reforge-ai}\npools:\n"
        "  - {name: a, provider: aws, scaling: fixed, size: {min: 1}}\n"
    )
    recording = run_file(tmp_path, text)
    assert not [r for r in recording.resources if r.type.startswith(("github:", "pulumi:providers:github", "random:"))]
    assert not [r for r in recording.resources if r.type.endswith(":Receiver")]
    assert "receivers" not in recording.stack_outputs


MIXED = """\
version: 1
github: {repository: spigell/my-reforge-ai}
pools:
  - {name: a, provider: aws, labels: [big], size: {max: 6}}
  - {name: f, provider: aws, region: us-west-2, scaling: fixed, size: {min: 1}}
  - {name: g, provider: gcp, size: {min: 1, max: 3}, schedules: [{cron: '0 8 * * 1-5', desired: 2}]}
"""


def test_the_program_builds_a_receiver_per_cloud_and_its_webhook(tmp_path: Path) -> None:
    """`pulumi up` wires demand scaling: the receivers reuse the pools' providers,
    name every pool's group, and their URLs are exported and set on the webhooks."""
    recording = run_file(tmp_path, MIXED)
    assert sorted(r.name for r in recording.resources if r.type.endswith(":Receiver")) == [
        "aws-receiver",
        "gcp-receiver",
    ]
    urls = recording.stack_outputs["receivers"]
    assert urls == {
        "aws": recording.named("aws-receiver-url").outputs["functionUrl"],
        "gcp": recording.named("gcp-receiver-webhook").outputs["url"],
    }
    hooks = {h.name: h.inputs for h in recording.of_type("github:index/repositoryWebhook:RepositoryWebhook")}
    assert {name: hook["configuration"]["url"] for name, hook in hooks.items()} == {
        "webhook-aws": urls["aws"],
        "webhook-gcp": urls["gcp"],
    }
    assert all(hook["events"] == ["workflow_job"] for hook in hooks.values())
    # Where the webhook secret lives is exported; the secret itself never is.
    secret = recording.named("webhook-secret").outputs["hex"]
    assert recording.stack_outputs["webhookSecrets"]["aws"] == "/gh-runners/ghs-gh-runners-test-receiver/webhook-secret"
    assert secret not in json.dumps(recording.stack_outputs)
    # One provider per region/project: the receivers use the pools' own.
    assert len(recording.of_type("pulumi:providers:aws")) == 2 and len(recording.of_type("pulumi:providers:gcp")) == 1
    (eu,) = [p for p in recording.of_type("pulumi:providers:aws") if p.inputs["region"] == "eu-central-1"]
    assert recording.named("aws-receiver-function").provider.startswith(eu.urn + "::")
    # The AWS receiver may execute the +1 policy of the demand pool only; the fixed pool has none.
    statements = json.loads(recording.named("aws-receiver-policy").inputs["policy"])["Statement"]
    (grow,) = [s for s in statements if s["Sid"] == "GrowOwnGroups"]
    assert grow["Resource"] == [
        "arn:aws:autoscaling:eu-central-1:123456789012:autoScalingGroup:*:autoScalingGroupName/ghr-gh-runners-test-a"
    ]
    assert [p.name for p in recording.of_type("aws:autoscaling/policy:Policy")] == ["a-scale-up"]


def test_the_receivers_configuration_names_the_real_groups(tmp_path: Path) -> None:
    recording = run_file(tmp_path, MIXED)
    aws_assets = recording.named("aws-receiver-function").inputs["code"]["assets"]
    gcp_assets = recording.named("gcp-receiver-source-archive").inputs["source"]["assets"]
    aws_config = json.loads(aws_assets["scaler.json"]["text"])
    gcp_config = json.loads(gcp_assets["scaler.json"]["text"])
    assert [p["name"] for p in aws_config["pools"]] == [p["name"] for p in gcp_config["pools"]] == ["a", "f", "g"]
    a, f, _ = aws_config["pools"]
    assert a["aws"] == {
        "region": "eu-central-1",
        "group": recording.named("a-asg").inputs["name"],
        "scale_up_policy": recording.named("a-scale-up").inputs["name"],
    }
    assert f["scales_on_demand"] is False
    g = gcp_config["pools"][2]
    group = recording.named("g-group").inputs
    assert g["gcp"] == {
        "project": "ci-project",
        "region": "europe-west4",
        "group": group["name"],
        "instance_base": group["baseInstanceName"],
    }
    assert g["schedules"] == [{"cron": "0 8 * * 1-5", "desired": 2, "time_zone": "UTC"}]
    # The code the functions run is the receiver's package with its entry points.
    assert "scaler/aws.py" in aws_assets and "scaler/gcp.py" in gcp_assets and "main.py" in gcp_assets


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
    (provider,) = [p for p in recording.of_type("pulumi:providers:github") if p.name != "github-webhooks"]
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
