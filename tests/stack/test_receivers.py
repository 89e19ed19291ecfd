"""`build_receivers`: one secret, one receiver per cloud with pools, one webhook per receiver --
what the program adds after its pools (the lead wires it into stack/program.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pulumi
import pulumi_aws as aws
import pulumi_gcp as gcp
import pytest

import providers.scaling
from plan.engine import Recording
from providers.aws.identity import Account
from providers.base import StackContext
from scaler.config import load
from stack.receivers import Clouds, build_receivers
from tests.providers.harness import SENTINEL_TOKEN, everything_shown
from tests.providers.receivers import (
    PROJECT,
    RUNNERS,
    STACK,
    archive_files,
    credential_document,
    fake_package,
    record,
    runners,
    sites_of,
)
from tests.stack.test_webhook import pat


@pytest.fixture(autouse=True)
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    stand_in = fake_package(tmp_path, "aws.py", "gcp.py")
    monkeypatch.setattr(providers.scaling, "SCALER_PACKAGE", stand_in)
    return stand_in


def clouds() -> Clouds:
    aws_providers: dict[str, aws.Provider] = {}
    gcp_providers: dict[tuple[str, str], gcp.Provider] = {}

    def aws_place(region: str) -> tuple[pulumi.ResourceOptions, Account]:
        provider = aws_providers.setdefault(region, aws.Provider(f"aws-{region}", region=region))
        account = Account(pulumi.Output.from_input("aws"), pulumi.Output.from_input("123456789012"))
        return pulumi.ResourceOptions(provider=provider), account

    def gcp_place(project: str, region: str) -> pulumi.ResourceOptions:
        key = (project, region)
        provider = gcp_providers.setdefault(
            key, gcp.Provider(f"gcp-{project}-{region}", project=project, region=region)
        )
        return pulumi.ResourceOptions(provider=provider)

    return Clouds(aws=aws_place, gcp=gcp_place)


def plan(text: str = RUNNERS) -> Recording:
    def program() -> None:
        file = runners(text)
        context = StackContext(
            project=PROJECT, stack=STACK, github=file.github, credential=credential_document(), credential_kind="pat"
        )
        built = build_receivers(file, sites_of(file), context, pat(), clouds())
        pulumi.export("receivers", dict(built.urls))

    return record(program)


def test_both_clouds_get_a_receiver_and_a_webhook_sharing_one_secret() -> None:
    recording = plan()
    assert [r.name for r in recording.of_type("random:index/randomBytes:RandomBytes")] == ["webhook-secret"]
    secret = recording.named("webhook-secret").outputs["hex"]
    assert recording.named("aws-receiver-webhook-secret").inputs["value"] == secret
    assert recording.named("gcp-receiver-webhook-secret-version").inputs["secretData"] == secret
    hooks = {h.name: h.inputs for h in recording.of_type("github:index/repositoryWebhook:RepositoryWebhook")}
    assert hooks["webhook-aws"]["configuration"]["url"] == recording.named("aws-receiver-url").outputs["functionUrl"]
    assert hooks["webhook-gcp"]["configuration"]["url"] == recording.named("gcp-receiver-webhook").outputs["url"]
    assert all(h["configuration"]["secret"] == secret for h in hooks.values())
    assert recording.stack_outputs["receivers"] == {
        "aws": recording.named("aws-receiver-url").outputs["functionUrl"],
        "gcp": recording.named("gcp-receiver-webhook").outputs["url"],
    }


def test_receivers_use_the_pools_providers_and_the_credential_document() -> None:
    recording = plan()
    parameter = recording.named("aws-receiver-credential")
    assert parameter.provider.split("::")[-2] == "aws-eu-central-1"
    assert json.loads(parameter.inputs["value"]) == {"kind": "pat", "token": SENTINEL_TOKEN}
    function = recording.named("gcp-receiver-webhook")
    assert function.provider.split("::")[-2] == "gcp-ci-project-europe-west4"
    assert SENTINEL_TOKEN not in "\n".join(everything_shown(recording))


def test_the_aws_role_may_grow_only_pools_that_scale_on_demand() -> None:
    statements = json.loads(plan().named("aws-receiver-policy").inputs["policy"])["Statement"]
    (grow,) = [s for s in statements if s["Sid"] == "GrowOwnGroups"]
    assert [arn.rsplit("/", 1)[1] for arn in grow["Resource"]] == ["ghr-gh-runners-test-codex"]  # not `arm`: fixed


def test_each_receiver_acts_for_its_cloud_over_the_same_pools() -> None:
    recording = plan()
    aws_config = load(archive_files(recording.named("aws-receiver-function").inputs["code"])["scaler.json"])
    gcp_config = load(archive_files(recording.named("gcp-receiver-source-archive").inputs["source"])["scaler.json"])
    assert [p.name for p in aws_config.pools] == [p.name for p in gcp_config.pools]
    assert {p.name for p in aws_config.own_pools} | {p.name for p in gcp_config.own_pools} == {
        "codex",
        "general",
        "arm",
        "gpu",
    }
    assert not {p.name for p in aws_config.own_pools} & {p.name for p in gcp_config.own_pools}


def test_an_aws_only_stack_builds_no_gcp_receiver() -> None:
    text = "version: 1\ngithub: {organization: acme}\npools:\n  - {name: a, provider: aws}\n"
    recording = plan(text)
    assert not [r for r in recording.resources if r.type.startswith("gcp:")]
    assert [h.name for h in recording.of_type("github:index/organizationWebhook:OrganizationWebhook")] == [
        "webhook-aws"
    ]


def test_a_cloud_whose_pools_are_all_fixed_gets_no_receiver() -> None:
    text = RUNNERS.replace("    size: {min: 0, max: 6}\n", "    size: {min: 1, max: 6}\n    scaling: fixed\n")
    recording = plan(text)  # both AWS pools fixed now; the GCP pools still scale
    assert not [r for r in recording.resources if r.type.startswith("aws:")]
    assert [h.name for h in recording.of_type("github:index/repositoryWebhook:RepositoryWebhook")] == ["webhook-gcp"]
    gcp_config = load(archive_files(recording.named("gcp-receiver-source-archive").inputs["source"])["scaler.json"])
    assert gcp_config.pool("codex").scales_on_demand is False  # still known to the rule


def test_enterprise_gets_receivers_but_no_webhook() -> None:
    text = "version: 1\ngithub: {enterprise: acme-corp}\npools:\n  - {name: g, provider: gcp}\n"
    recording = plan(text)
    assert recording.of_type("gcp:cloudfunctionsv2/function:Function")
    assert not [r for r in recording.resources if r.type.startswith("github:")]
