"""The AWS backend under the recording engine: every resource and its key properties."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml
from parliament import analyze_policy_string

from plan.engine import Recording
from providers.aws.group import UBUNTU_AMI
from tests.providers.harness import run_file

HEADER = "version: 1\ngithub: {repository: spigell/my-reforge-ai}\npools:\n"
GROUP = "aws:autoscaling/group:Group"
TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"


def plan(tmp_path: Path, pools: str, **kwargs: Any) -> Recording:
    return run_file(tmp_path, HEADER + pools, **kwargs)


def policy_of(recording: Recording, pool: str) -> dict[str, Any]:
    return json.loads(recording.named(f"{pool}-policy").inputs["policy"])


def user_data_of(recording: Recording, pool: str) -> dict[str, Any]:
    encoded = recording.named(f"{pool}-template").inputs["userData"]
    packed = base64.b64decode(encoded)
    assert packed[:2] == b"\x1f\x8b", "AWS user data is gzipped (cloud-init unpacks it)"
    return yaml.safe_load(gzip.decompress(packed))


def test_default_pool_builds_public_network_in_two_zones(tmp_path: Path) -> None:
    recording = plan(tmp_path, "  - {name: codex, provider: aws}\n")
    vpc = recording.named("codex-vpc")
    assert vpc.inputs["cidrBlock"] == "10.0.0.0/16"
    subnets = recording.of_type("aws:ec2/subnet:Subnet")
    assert sorted(s.inputs["availabilityZone"] for s in subnets) == ["eu-central-1a", "eu-central-1b"]
    assert sorted(s.inputs["cidrBlock"] for s in subnets) == ["10.0.0.0/20", "10.0.16.0/20"]
    assert not recording.of_type("aws:ec2/natGateway:NatGateway")
    routes = recording.named("codex-public-routes").inputs["routes"]
    assert routes == [
        {"cidrBlock": "0.0.0.0/0", "gatewayId": recording.named("codex-igw").outputs.get("id", routes[0]["gatewayId"])}
    ]
    group = recording.named("codex-sg").inputs
    assert group.get("ingress", []) == []
    assert group["egress"][0]["cidrBlocks"] == ["0.0.0.0/0"]
    template = recording.named("codex-template").inputs
    assert template["networkInterfaces"][0]["associatePublicIpAddress"] == "true"


def test_launch_template_defaults(tmp_path: Path) -> None:
    recording = plan(tmp_path, "  - {name: codex, provider: aws, disk: {size_gb: 64}}\n")
    template = recording.named("codex-template").inputs
    assert template["imageId"] == UBUNTU_AMI.format(arch="amd64")
    assert template["instanceType"] == "m7i.large"
    assert template["instanceInitiatedShutdownBehavior"] == "terminate"
    assert template["metadataOptions"] == {
        "httpEndpoint": "enabled",
        "httpTokens": "required",
        "httpPutResponseHopLimit": 1,
        "instanceMetadataTags": "disabled",
    }
    ebs = template["blockDeviceMappings"][0]["ebs"]
    assert ebs == {"volumeSize": 64, "volumeType": "gp3", "encrypted": "true", "deleteOnTermination": "true"}
    assert template["iamInstanceProfile"]["name"] == recording.named("codex-profile").outputs["name"]
    kinds = sorted(spec["resourceType"] for spec in template["tagSpecifications"])
    assert kinds == ["instance", "network-interface", "volume"]
    assert user_data_of(recording, "codex")  # a cloud-config document


def test_asg_keeps_capacity_and_drains_busy_runners(tmp_path: Path) -> None:
    recording = plan(tmp_path, "  - {name: codex, provider: aws, size: {min: 1, max: 5, desired: 2}}\n")
    group = recording.named("codex-asg").inputs
    assert (group["minSize"], group["maxSize"], group["desiredCapacity"]) == (1, 5, 2)
    assert group["name"] == "ghr-test-codex"
    assert len(group["vpcZoneIdentifiers"]) == 2
    assert group["launchTemplate"]["version"] == "1"
    assert "mixedInstancesPolicy" not in group
    assert group["instanceRefresh"] == {
        "strategy": "Rolling",
        "preferences": {"minHealthyPercentage": 100, "maxHealthyPercentage": 200, "skipMatching": True},
    }
    (hook,) = group["initialLifecycleHooks"]
    assert hook["lifecycleTransition"] == "autoscaling:EC2_INSTANCE_TERMINATING"
    assert hook["defaultResult"] == "CONTINUE" and hook["heartbeatTimeout"] == 3600
    tags = {t["key"]: (t["value"], t["propagateAtLaunch"]) for t in group["tags"]}
    assert tags["gh-runners-pool"] == ("codex", True)
    assert tags["gh-runners-stack"] == ("test", True)
    assert tags["managed-by"] == ("gh-runners", True)


def test_spot_uses_a_mixed_instances_policy(tmp_path: Path) -> None:
    recording = plan(
        tmp_path,
        "  - {name: codex, provider: aws, spot: true, on_demand_base: 1, size: {max: 4},\n"
        "     instance_types: [m7i.large, m6i.large]}\n",
    )
    group = recording.named("codex-asg").inputs
    assert "launchTemplate" not in group
    policy = group["mixedInstancesPolicy"]
    assert [o["instanceType"] for o in policy["launchTemplate"]["overrides"]] == ["m7i.large", "m6i.large"]
    assert policy["instancesDistribution"] == {
        "onDemandBaseCapacity": 1,
        "onDemandPercentageAboveBaseCapacity": 0,
        "spotAllocationStrategy": "price-capacity-optimized",
        "onDemandAllocationStrategy": "prioritized",
    }
    assert group["capacityRebalance"] is True
    assert "instanceType" not in recording.named("codex-template").inputs


def test_several_on_demand_types_are_mixed_but_not_spot(tmp_path: Path) -> None:
    recording = plan(tmp_path, "  - {name: c, provider: aws, instance_types: [m7i.large, m6i.large]}\n")
    distribution = recording.named("c-asg").inputs["mixedInstancesPolicy"]["instancesDistribution"]
    assert distribution["onDemandPercentageAboveBaseCapacity"] == 100


def test_private_network_goes_out_through_one_nat(tmp_path: Path) -> None:
    recording = plan(tmp_path, "  - {name: p, provider: aws, network: {private: true, zones: 3, cidr: 10.9.0.0/16}}\n")
    assert len(recording.of_type("aws:ec2/natGateway:NatGateway")) == 1
    private = [s for s in recording.of_type("aws:ec2/subnet:Subnet") if "private" in s.name]
    assert len(private) == 3
    group = recording.named("p-asg").inputs
    assert (
        sorted(group["vpcZoneIdentifiers"]) == sorted(s.outputs.get("id", s.name) for s in private)
        or len(group["vpcZoneIdentifiers"]) == 3
    )
    assert "associatePublicIpAddress" not in recording.named("p-template").inputs["networkInterfaces"][0]
    routes = recording.named("p-private-routes").inputs["routes"]
    assert "natGatewayId" in routes[0]


def test_existing_subnets_create_no_network(tmp_path: Path) -> None:
    recording = plan(
        tmp_path,
        "  - {name: e, provider: aws, network: {vpc_id: vpc-0123456789abcdef0,\n"
        "     subnet_ids: [subnet-0123456789abcdef0, subnet-0fedcba9876543210]}}\n",
    )
    assert not recording.of_type("aws:ec2/vpc:Vpc")
    assert not recording.of_type("aws:ec2/subnet:Subnet")
    assert recording.named("e-sg").inputs["vpcId"] == "vpc-0123456789abcdef0"
    assert recording.named("e-asg").inputs["vpcZoneIdentifiers"] == [
        "subnet-0123456789abcdef0",
        "subnet-0fedcba9876543210",
    ]


def test_one_provider_per_region(tmp_path: Path) -> None:
    recording = plan(
        tmp_path,
        "  - {name: a, provider: aws}\n  - {name: b, provider: aws, region: us-west-2}\n"
        "  - {name: c, provider: aws, region: us-west-2}\n",
    )
    providers = {p.name: p.inputs["region"] for p in recording.of_type("pulumi:providers:aws")}
    assert providers == {"aws-eu-central-1": "eu-central-1", "aws-us-west-2": "us-west-2"}
    west = [r for r in recording.resources if r.provider.split("::")[-1].startswith("aws-us-west-2")]
    assert {r.name.split("-")[0] for r in west} == {"b", "c"}
    assert user_data_of(recording, "b")


def test_schedules_become_scheduled_actions(tmp_path: Path) -> None:
    recording = plan(
        tmp_path,
        "  - name: s\n    provider: aws\n    size: {min: 1, max: 4}\n    schedules:\n"
        "      - {cron: '0 21 * * *', desired: 0, time_zone: Europe/Berlin}\n"
        "      - {cron: '0 7 * * 1-5', desired: 3, time_zone: Europe/Berlin}\n",
    )
    night, day = (recording.named(f"s-schedule-{i}").inputs for i in (0, 1))
    assert night["recurrence"] == "0 21 * * *" and night["timeZone"] == "Europe/Berlin"
    assert (night["desiredCapacity"], night["minSize"], night["maxSize"]) == (0, 0, 4)
    assert (day["desiredCapacity"], day["minSize"], day["maxSize"]) == (3, 1, 4)
    assert day["autoscalingGroupName"] == "ghr-test-s"


@pytest.mark.parametrize(("ephemeral", "expected"), [(True, True), (False, False)])
def test_ephemeral_flag_reaches_the_agent(tmp_path: Path, ephemeral: bool, expected: bool) -> None:
    recording = plan(tmp_path, f"  - {{name: p, provider: aws, ephemeral: {str(ephemeral).lower()}}}\n")
    document = json.dumps(user_data_of(recording, "p"))
    assert (
        f'\\"ephemeral\\": {str(expected).lower()}' in document or f'"ephemeral": {str(expected).lower()}' in document
    )


def test_arm64_pool_uses_arm_image_and_types(tmp_path: Path) -> None:
    recording = plan(tmp_path, "  - {name: arm, provider: aws, arch: arm64}\n")
    template = recording.named("arm-template").inputs
    assert template["imageId"] == UBUNTU_AMI.format(arch="arm64")
    assert template["instanceType"] == "m7g.large"


def test_credential_parameter_is_a_secure_string_secret(tmp_path: Path) -> None:
    recording = plan(tmp_path, "  - {name: codex, provider: aws}\n")
    parameter = recording.named("codex-credential")
    assert parameter.inputs["type"] == "SecureString"
    assert parameter.inputs["tier"] == "Intelligent-Tiering"
    assert parameter.inputs["name"] == "/gh-runners/ghr-test-codex/github-credential"
    assert parameter.secret_paths == ["value"]
    assert json.loads(parameter.inputs["value"])["kind"] == "pat"


def test_role_policy_is_least_privilege(tmp_path: Path) -> None:
    recording = plan(tmp_path, "  - {name: codex, provider: aws}\n  - {name: other, provider: aws}\n")
    parameter_arn = recording.named("codex-credential").outputs["arn"]
    document = policy_of(recording, "codex")
    statements = {s["Sid"]: s for s in document["Statement"]}
    assert set(statements) == {
        "ReadTheGitHubCredential",
        "DecryptOnlyThroughSsmForThatParameter",
        "FinishOwnTerminationHook",
        "ListInstancesForGhostSweep",
    }
    for statement in document["Statement"]:
        assert statement["Effect"] == "Allow"
        assert all("*" not in action for action in statement["Action"]), statement
    assert statements["ReadTheGitHubCredential"]["Resource"] == [parameter_arn]
    assert statements["ReadTheGitHubCredential"]["Action"] == ["ssm:GetParameter"]
    condition = statements["DecryptOnlyThroughSsmForThatParameter"]["Condition"]["StringEquals"]
    assert condition == {
        "kms:ViaService": "ssm.eu-central-1.amazonaws.com",
        "kms:EncryptionContext:PARAMETER_ARN": parameter_arn,
    }
    assert statements["FinishOwnTerminationHook"]["Resource"] == [
        "arn:aws:autoscaling:eu-central-1:123456789012:autoScalingGroup:*:autoScalingGroupName/ghr-test-codex"
    ]
    # The only "*" resource is the one action AWS cannot scope.
    wildcard = [s["Sid"] for s in document["Statement"] if "*" in s["Resource"]]
    assert wildcard == ["ListInstancesForGhostSweep"]
    other_arn = recording.named("other-credential").outputs["arn"]
    assert other_arn not in json.dumps(document)
    assert not analyze_policy_string(json.dumps(document)).findings


def test_policy_linter_is_a_real_judge() -> None:
    bad = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["ssm:GetParameter"], "Resource": ["arn:aws:s3:::bucket"]}],
    }
    assert analyze_policy_string(json.dumps(bad)).findings


def test_session_manager_only_when_asked(tmp_path: Path) -> None:
    recording = plan(
        tmp_path, "  - {name: a, provider: aws}\n  - {name: b, provider: aws, ssm_session_manager: true}\n"
    )
    assert "SessionManagerShell" not in json.dumps(policy_of(recording, "a"))
    b = policy_of(recording, "b")
    assert "SessionManagerShell" in json.dumps(b)
    assert not analyze_policy_string(json.dumps(b)).findings
    assert not recording.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")


def test_role_trusts_only_ec2(tmp_path: Path) -> None:
    recording = plan(tmp_path, "  - {name: codex, provider: aws}\n")
    trust = json.loads(recording.named("codex-role").inputs["assumeRolePolicy"])
    assert trust["Statement"] == [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ]


def test_long_setup_scripts_fit_thanks_to_gzip_and_too_long_ones_are_located(tmp_path: Path) -> None:
    script = "".join(f"echo step {i}: install something the jobs need\n" for i in range(200))  # ~9 KB
    pool = "  - name: big\n    provider: aws\n    setup_script: |\n{}\n"
    (tmp_path / "fits").mkdir()
    recording = plan(tmp_path / "fits", pool.format("\n".join("      " + line for line in script.splitlines())))
    assert len(base64.b64decode(recording.named("big-template").inputs["userData"])) <= 16 * 1024
    # Incompressible noise: too big even gzipped, and the error names the field.
    noise = "".join(f"echo {hashlib.sha256(str(i).encode()).hexdigest()}\n" for i in range(400))
    (tmp_path / "too-big").mkdir()
    with pytest.raises(
        pulumi.RunError, match=r"runners\.yaml:6:19: pools\[0\]\.setup_script: user data is \d+ bytes gz"
    ):
        plan(tmp_path / "too-big", pool.format("\n".join("      " + line for line in noise.splitlines())))


def test_packed_user_data_is_the_same_bytes_on_every_python() -> None:
    # gzip.compress writes header OS byte 3 on Python 3.11 but 255 on 3.10 and 3.12+: the launch template's
    # user data (and so every VM, by instance refresh) would change with the Python that runs `pulumi up`.
    from providers.aws.group import packed_user_data

    packed = packed_user_data("#cloud-config\nruncmd: [[true]]\n")
    assert packed[:10] == bytes.fromhex("1f8b0800000000000203")  # deflate, mtime 0, max compression, Unix
    assert gzip.decompress(packed) == b"#cloud-config\nruncmd: [[true]]\n"
