"""The AWS receiver under the recording engine: the function, its URL, its schedule, and a role
that may grow exactly the stack's groups and read exactly its two secrets (parliament judges the policy)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws
import pytest
from parliament import analyze_policy_string

from plan.engine import Recording
from providers.aws.identity import Account
from providers.aws.scaler import (
    ARCHITECTURE,
    HANDLER,
    RUNTIME,
    AwsReceiver,
    AwsReceiverNames,
    policy_statements,
    scale_up_policy,
)
from providers.scaling import CONFIG_FILE, RECONCILE_SECONDS, SCALE_UP_POLICY, receiver_document, render
from scaler.config import load
from stack.webhook import webhook_secret
from tests.providers.harness import SENTINEL_TOKEN, everything_shown
from tests.providers.receivers import PROJECT, STACK, archive_files, credential_document, fake_package, record, sites_of
from tests.providers.receivers import runners as load_runners

REGION = "eu-central-1"


def build(package: Path, region: str = REGION) -> None:
    file = load_runners()
    sites = sites_of(file)
    names = AwsReceiverNames.of(PROJECT, STACK)
    webhook, credential = names.refs(region)
    document = receiver_document(file, sites, "aws", webhook_secret=webhook, github_credential=credential, stack=STACK)
    provider = aws.Provider(f"aws-{region}", region=region)
    AwsReceiver(
        "aws-receiver",
        document_text=render(document),
        region=region,
        names=names,
        groups=[(site.region, site.group_name) for site in sites.values() if site.cloud == "aws"],
        account=Account(pulumi.Output.from_input("aws"), pulumi.Output.from_input("123456789012")),
        webhook_secret=webhook_secret(),
        credential=credential_document(),
        tags={"managed-by": "gh-runners"},
        opts=pulumi.ResourceOptions(provider=provider),
        package=package,
    )


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Recording:
    package = fake_package(tmp_path_factory.mktemp("code"), "aws.py")
    return record(lambda: build(package))


def policy_of(recording: Recording) -> dict[str, Any]:
    return json.loads(recording.named("aws-receiver-policy").inputs["policy"])


def test_function_runs_the_receivers_package_on_a_runtime_with_boto3(recording: Recording) -> None:
    function = recording.named("aws-receiver-function").inputs
    assert (function["runtime"], function["handler"], function["architectures"]) == (RUNTIME, HANDLER, [ARCHITECTURE])
    assert function["role"] == recording.named("aws-receiver-role").outputs["arn"]
    assert function["loggingConfig"] == {
        "logFormat": "Text",
        "logGroup": recording.named("aws-receiver-logs").outputs["name"],
    }
    files = archive_files(function["code"])
    assert sorted(files) == [
        CONFIG_FILE,
        "scaler/__init__.py",
        "scaler/aws.py",
        "scaler/config.py",
        "scaler/decision.py",
    ]
    config = load(files[CONFIG_FILE])
    assert config.cloud == "aws"
    assert config.webhook_secret.location == "/gh-runners/ghs-gh-runners-test-receiver/webhook-secret"
    assert config.github_credential.location == "/gh-runners/ghs-gh-runners-test-receiver/github-credential"
    assert {pool.name for pool in config.own_pools} == {"codex", "arm"}


def test_function_waits_for_its_permissions_and_log_group(recording: Recording) -> None:
    function = recording.named("aws-receiver-function")
    for name in ("aws-receiver-policy", "aws-receiver-logs", "aws-receiver-webhook-secret", "aws-receiver-credential"):
        assert recording.named(name).urn in function.dependencies


def test_url_is_public_and_only_through_the_url(recording: Recording) -> None:
    url = recording.named("aws-receiver-url").inputs
    assert url["authorizationType"] == "NONE"
    function = recording.named("aws-receiver-function").outputs["name"]
    url_only = recording.named("aws-receiver-url-invoke").inputs
    assert url_only == {
        "function": function,
        "action": "lambda:InvokeFunctionUrl",
        "principal": "*",
        "functionUrlAuthType": "NONE",
    }
    through_url = recording.named("aws-receiver-url-invoke-function").inputs
    assert through_url == {
        "function": function,
        "action": "lambda:InvokeFunction",
        "principal": "*",
        "invokedViaFunctionUrl": True,
    }


def test_reconcile_runs_on_a_schedule_only_this_rule_may_invoke(recording: Recording) -> None:
    rule = recording.named("aws-receiver-reconcile")
    assert rule.inputs["scheduleExpression"] == f"rate({RECONCILE_SECONDS // 60} minutes)"
    target = recording.named("aws-receiver-reconcile-target").inputs
    assert target["arn"] == recording.named("aws-receiver-function").outputs["arn"]
    assert target["rule"] == rule.outputs["name"]
    permission = recording.named("aws-receiver-reconcile-invoke").inputs
    assert (permission["principal"], permission["action"]) == ("events.amazonaws.com", "lambda:InvokeFunction")
    assert permission["sourceArn"] == rule.outputs["arn"]


def test_role_may_grow_exactly_the_stacks_groups(recording: Recording) -> None:
    statements = {s["Sid"]: s for s in policy_of(recording)["Statement"]}
    assert set(statements) == {
        "GrowOwnGroups",
        "ReadGroupCapacity",
        "ReadOwnSecrets",
        "DecryptOnlyThroughSsmForThoseParameters",
        "WriteOwnLogs",
    }
    assert statements["GrowOwnGroups"]["Action"] == ["autoscaling:ExecutePolicy"]
    # Both AWS pools, each in its own region; the GCP pools are not AWS groups.
    assert statements["GrowOwnGroups"]["Resource"] == [
        "arn:aws:autoscaling:eu-central-1:123456789012:autoScalingGroup:*:autoScalingGroupName/ghr-gh-runners-test-codex",
        "arn:aws:autoscaling:us-west-2:123456789012:autoScalingGroup:*:autoScalingGroupName/ghr-gh-runners-test-arm",
    ]
    wildcard = [sid for sid, s in statements.items() if "*" in s["Resource"]]
    assert wildcard == ["ReadGroupCapacity"]
    assert statements["ReadGroupCapacity"]["Action"] == ["autoscaling:DescribeAutoScalingGroups"]
    for statement in statements.values():
        assert statement["Effect"] == "Allow"
        assert all("*" not in action for action in statement["Action"])


def test_role_reads_exactly_its_two_secrets_through_ssm(recording: Recording) -> None:
    statements = {s["Sid"]: s for s in policy_of(recording)["Statement"]}
    arns = sorted(recording.named(n).outputs["arn"] for n in ("aws-receiver-webhook-secret", "aws-receiver-credential"))
    assert statements["ReadOwnSecrets"] == {
        "Sid": "ReadOwnSecrets",
        "Effect": "Allow",
        "Action": ["ssm:GetParameter"],
        "Resource": arns,
    }
    condition = statements["DecryptOnlyThroughSsmForThoseParameters"]["Condition"]["StringEquals"]
    assert condition == {"kms:ViaService": f"ssm.{REGION}.amazonaws.com", "kms:EncryptionContext:PARAMETER_ARN": arns}
    logs = recording.named("aws-receiver-logs").outputs["name"]
    arn = f"arn:aws:logs:{REGION}:123456789012:log-group:{logs}"
    assert statements["WriteOwnLogs"]["Resource"] == [f"{arn}:*", f"{arn}:log-stream:*"]
    assert statements["WriteOwnLogs"]["Action"] == ["logs:CreateLogStream", "logs:PutLogEvents"]


def test_policy_passes_the_linter(recording: Recording) -> None:
    assert not analyze_policy_string(json.dumps(policy_of(recording))).findings


def test_no_group_to_grow_means_no_grow_statement() -> None:
    """IAM refuses a statement with an empty Resource list."""
    statements = policy_statements(
        partition="aws", account_id="1", region=REGION, groups=[], parameter_arns=["arn:p"], log_group="g"
    )
    assert "GrowOwnGroups" not in {s["Sid"] for s in statements}
    assert all(s["Resource"] for s in statements)


def test_role_trusts_only_lambda(recording: Recording) -> None:
    trust = json.loads(recording.named("aws-receiver-role").inputs["assumeRolePolicy"])
    assert trust["Statement"] == [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ]


def test_secrets_are_secure_strings_and_never_shown(recording: Recording) -> None:
    for name in ("aws-receiver-webhook-secret", "aws-receiver-credential"):
        parameter = recording.named(name)
        assert parameter.inputs["type"] == "SecureString"
        assert parameter.secret_paths == ["value"]
    assert json.loads(recording.named("aws-receiver-credential").inputs["value"])["token"] == SENTINEL_TOKEN
    webhook = recording.named("aws-receiver-webhook-secret").inputs["value"]
    assert len(webhook) == 64
    shown = "\n".join(everything_shown(recording))
    assert SENTINEL_TOKEN not in shown
    assert webhook not in shown


def test_every_child_uses_the_receivers_region(recording: Recording) -> None:
    receiver = recording.named("aws-receiver")
    children = recording.descendants_of(receiver.urn)
    assert len(children) == 12
    assert all(child.provider.split("::")[-2].endswith(f"aws-{REGION}") for child in children)


def test_scale_up_policy_adds_one_atomically() -> None:
    def program() -> None:
        group = aws.autoscaling.Group("codex-asg", name="ghr-x-codex", min_size=0, max_size=6)
        scale_up_policy("codex", group, pulumi.ResourceOptions())

    policy = record(program).named("codex-scale-up").inputs
    assert policy == {
        "name": SCALE_UP_POLICY,
        "autoscalingGroupName": "ghr-x-codex",
        "policyType": "SimpleScaling",
        "adjustmentType": "ChangeInCapacity",
        "scalingAdjustment": 1,
        "cooldown": 0,
    }


def test_missing_entry_point_stops_the_program(tmp_path: Path) -> None:
    package = fake_package(tmp_path)  # no aws.py
    with pytest.raises(Exception, match=r"lacks scaler/aws\.py"):
        record(lambda: build(package))
