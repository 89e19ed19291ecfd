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
from providers.aws import group as aws_group
from providers.aws.backend import partition_of
from providers.aws.group import HOOK_TIMEOUT_SECONDS, LIFECYCLE_HOOK, UBUNTU_AMI
from tests.gcp.test_upgrade import ignore_changes_recorded
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


NET = "network-eu-central-1"  # the region's shared network


def test_default_pool_builds_public_network_in_two_zones(tmp_path: Path) -> None:
    recording = plan(tmp_path, "  - {name: codex, provider: aws}\n")
    vpc = recording.named(f"{NET}-vpc")
    assert vpc.inputs["cidrBlock"] == "10.0.0.0/16"
    subnets = recording.of_type("aws:ec2/subnet:Subnet")
    assert sorted(s.inputs["availabilityZone"] for s in subnets) == ["eu-central-1a", "eu-central-1b"]
    assert sorted(s.inputs["cidrBlock"] for s in subnets) == ["10.0.0.0/20", "10.0.16.0/20"]
    assert not recording.of_type("aws:ec2/natGateway:NatGateway")
    routes = recording.named(f"{NET}-public-routes").inputs["routes"]
    assert routes == [
        {"cidrBlock": "0.0.0.0/0", "gatewayId": recording.named(f"{NET}-igw").outputs.get("id", routes[0]["gatewayId"])}
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
    recording = plan(tmp_path, "  - {name: codex, provider: aws, size: {min: 2, max: 5}}\n")
    group = recording.named("codex-asg").inputs
    assert (group["minSize"], group["maxSize"], group["desiredCapacity"]) == (2, 5, 2)
    assert group["name"] == "ghr-gh-runners-test-codex"
    assert len(group["vpcZoneIdentifiers"]) == 2
    assert group["launchTemplate"]["version"] == "1"
    assert "mixedInstancesPolicy" not in group
    assert group["instanceRefresh"] == {
        "strategy": "Rolling",
        "preferences": {
            "minHealthyPercentage": 100,
            "maxHealthyPercentage": 200,
            "skipMatching": True,
            "scaleInProtectedInstances": "Refresh",
        },
    }
    (hook,) = group["initialLifecycleHooks"]
    assert hook["lifecycleTransition"] == "autoscaling:EC2_INSTANCE_TERMINATING"
    assert hook["defaultResult"] == "CONTINUE" and hook["heartbeatTimeout"] == 3600
    tags = {t["key"]: (t["value"], t["propagateAtLaunch"]) for t in group["tags"]}
    assert tags["gh-runners-pool"] == ("codex", True)
    assert tags["gh-runners-stack"] == ("test", True)
    assert tags["managed-by"] == ("gh-runners", True)


def test_demand_pools_protect_every_vm_from_scale_in_and_fixed_pools_do_not(tmp_path: Path) -> None:
    """Demand pools: AWS never picks a (busy) VM to scale in; only the agents remove VMs, through
    TerminateInstanceInAutoScalingGroup, which protection does not stop. Fixed pools: the schedules scale
    them in, the drain hook holds a busy VM. An instance refresh still replaces protected VMs."""
    recording = plan(
        tmp_path,
        "  - {name: demand, provider: aws, size: {min: 0, max: 4}}\n"
        "  - {name: fixed, provider: aws, scaling: fixed, size: {min: 1, max: 4}}\n",
    )
    demand, fixed = recording.named("demand-asg").inputs, recording.named("fixed-asg").inputs
    assert demand["protectFromScaleIn"] is True
    assert fixed["protectFromScaleIn"] is False
    for group in (demand, fixed):
        assert group["instanceRefresh"]["preferences"]["scaleInProtectedInstances"] == "Refresh"


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
    routes = recording.named(f"{NET}-private-routes").inputs["routes"]
    assert "natGatewayId" in routes[0]
    # Created after the internet gateway is attached, deleted before it.
    gateway = recording.named(f"{NET}-igw").urn
    (address,) = recording.of_type("aws:ec2/eip:Eip")
    assert gateway in address.dependencies
    assert gateway in recording.named(f"{NET}-nat").dependencies


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
    assert {r.name.split("-")[0] for r in west} == {"agents", "b", "c", "network"}
    assert {r.name for r in recording.of_type("aws:ec2/vpc:Vpc")} == {f"{NET}-vpc", "network-us-west-2-vpc"}
    assert user_data_of(recording, "b")


def test_schedules_of_a_fixed_pool_set_its_size(tmp_path: Path) -> None:
    recording = plan(
        tmp_path,
        "  - name: s\n    provider: aws\n    scaling: fixed\n    size: {min: 1, max: 4}\n    schedules:\n"
        "      - {cron: '0 21 * * *', desired: 0, time_zone: Europe/Berlin}\n"
        "      - {cron: '0 7 * * 1-5', desired: 3, time_zone: Europe/Berlin}\n",
    )
    night, day = (recording.named(f"s-schedule-{i}").inputs for i in (0, 1))
    assert night["recurrence"] == "0 21 * * *" and night["timeZone"] == "Europe/Berlin"
    assert (night["desiredCapacity"], night["minSize"], night["maxSize"]) == (0, 0, 4)
    assert (day["desiredCapacity"], day["minSize"], day["maxSize"]) == (3, 1, 4)
    assert day["autoscalingGroupName"] == "ghr-gh-runners-test-s"


SCHEDULED_DEMAND = (
    "  - name: s\n    provider: aws\n    size: {min: 1, max: 4}\n    schedules:\n"
    "      - {cron: '0 21 * * *', desired: 0, time_zone: Europe/Berlin}\n"
    "      - {cron: '0 7 * * 1-5', desired: 3, time_zone: Europe/Berlin}\n"
)


def test_schedules_of_a_demand_pool_move_only_its_floor(tmp_path: Path) -> None:
    """A demand pool's scheduled actions set MinSize (AWS raises desired to a raised
    min by itself) and leave DesiredCapacity out (-1: the provider's "not in the
    action"): a night-time floor of 0 never terminates VMs that are running jobs."""
    recording = plan(tmp_path, SCHEDULED_DEMAND)
    night, day = (recording.named(f"s-schedule-{i}").inputs for i in (0, 1))
    assert (night["desiredCapacity"], night["minSize"], night["maxSize"]) == (-1, 0, 4)
    assert (day["desiredCapacity"], day["minSize"], day["maxSize"]) == (-1, 3, 4)


@pytest.mark.parametrize(
    ("pool", "policy"),
    [
        ("  - {name: d, provider: aws, size: {max: 6}}\n", True),
        ("  - {name: d, provider: aws, scaling: fixed, size: {min: 1, max: 6}}\n", False),
    ],
    ids=["demand", "fixed"],
)
def test_demand_pools_get_the_scale_up_policy(tmp_path: Path, pool: str, policy: bool) -> None:
    recording = plan(tmp_path, pool)
    found = recording.of_type("aws:autoscaling/policy:Policy")
    if not policy:
        assert not found
        return
    (scale_up,) = found
    assert scale_up.name == "d-scale-up"
    assert scale_up.inputs["autoscalingGroupName"] == recording.named("d-asg").outputs["name"]
    assert (scale_up.inputs["policyType"], scale_up.inputs["adjustmentType"]) == ("SimpleScaling", "ChangeInCapacity")
    assert scale_up.inputs["scalingAdjustment"] == 1
    assert scale_up.parent == recording.named("d-asg").parent  # a child of its pool


@pytest.mark.parametrize(
    ("pool", "ignored"),
    [
        ("  - {name: p, provider: aws, size: {max: 6}}\n", ["desiredCapacity"]),
        (SCHEDULED_DEMAND.replace("name: s", "name: p"), ["desiredCapacity", "minSize"]),
        ("  - {name: p, provider: aws, scaling: fixed, size: {min: 1, max: 6}}\n", []),
        (
            SCHEDULED_DEMAND.replace("name: s", "name: p").replace("aws\n", "aws\n    scaling: fixed\n"),
            ["desiredCapacity", "minSize"],
        ),
    ],
    ids=["demand", "demand-scheduled", "fixed", "fixed-scheduled"],
)
def test_pulumi_up_never_sets_back_what_the_runtime_moves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pool: str, ignored: list[str]
) -> None:
    with ignore_changes_recorded(monkeypatch) as found:
        recording = plan(tmp_path, pool)
    assert sorted(found[recording.named("p-asg").urn]) == ignored


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
    assert parameter.inputs["name"] == "/gh-runners/ghr-gh-runners-test-codex/github-credential"
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
        "LeaveThroughOwnGroup",
        "ListInstancesForGhostSweep",
        "ReadGroupSizeForIdleCheck",
        "FetchTheAgent",  # tests/aws/test_agent_store.py
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
    # An ephemeral VM leaves through its own group, and only its own group.
    assert statements["LeaveThroughOwnGroup"]["Action"] == [
        "autoscaling:CompleteLifecycleAction",
        "autoscaling:TerminateInstanceInAutoScalingGroup",
    ]
    assert statements["LeaveThroughOwnGroup"]["Resource"] == [
        "arn:aws:autoscaling:eu-central-1:123456789012:autoScalingGroup:*:autoScalingGroupName/ghr-gh-runners-test-codex"
    ]
    assert recording.named("codex-policy").inputs["name"] == recording.named("codex-asg").inputs["name"]
    # The only "*" resources are the two read-only actions AWS cannot scope.
    wildcard = [s["Sid"] for s in document["Statement"] if "*" in s["Resource"]]
    assert wildcard == ["ListInstancesForGhostSweep", "ReadGroupSizeForIdleCheck"]
    assert statements["ReadGroupSizeForIdleCheck"]["Action"] == ["autoscaling:DescribeAutoScalingGroups"]
    other_arn = recording.named("other-credential").outputs["arn"]
    assert other_arn not in json.dumps(document)
    assert not analyze_policy_string(json.dumps(document)).findings


def test_only_demand_pools_may_read_their_group_size(tmp_path: Path) -> None:
    """Fixed pools never leave on idle: their VMs need no DescribeAutoScalingGroups."""
    recording = plan(tmp_path, "  - {name: fixed, provider: aws, scaling: fixed, size: {min: 1, max: 2}}\n")
    assert "DescribeAutoScalingGroups" not in json.dumps(policy_of(recording, "fixed"))


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


def test_names_are_unique_per_project_stack_and_pool(tmp_path: Path) -> None:
    """Two projects with a `dev` stack and the same pool share an account and a
    region: their group, parameter and grant must not collide."""
    names = {}
    for project in ("gh-runners", "gh-runners-staging"):
        (tmp_path / project).mkdir()
        recording = run_file(
            tmp_path / project, HEADER + "  - {name: codex, provider: aws}\n", stack="dev", project=project
        )
        names[project] = {
            recording.named("codex-asg").inputs["name"],
            recording.named("codex-credential").inputs["name"],
            recording.named("codex-policy").inputs["name"],
        }
    assert names["gh-runners"] == {"ghr-gh-runners-dev-codex", "/gh-runners/ghr-gh-runners-dev-codex/github-credential"}
    assert not names["gh-runners"] & names["gh-runners-staging"]


@pytest.mark.parametrize(
    ("region", "partition"),
    [("cn-north-1", "aws-cn"), ("us-iso-east-1", "aws-iso"), ("us-isob-east-1", "aws-iso-b")],
)
def test_regions_outside_amazonaws_com_are_refused_where_they_are_written(
    tmp_path: Path, region: str, partition: str
) -> None:
    with pytest.raises(pulumi.RunError) as caught:
        plan(tmp_path, f"  - {{name: codex, provider: aws, region: {region}}}\n")
    assert f"runners.yaml:4:42: pools[0].region: {region} is in the {partition} partition" in str(caught.value)


def test_a_refused_region_from_stack_config_points_at_the_pool(tmp_path: Path) -> None:
    with pytest.raises(pulumi.RunError, match=r"runners\.yaml:4:5: pools\[0\]\.region: cn-north-1 is in the aws-cn"):
        plan(tmp_path, "  - {name: codex, provider: aws}\n", config={"aws:region": "cn-north-1"})


def test_govcloud_shares_the_dns_suffix_and_is_accepted(tmp_path: Path) -> None:
    recording = plan(tmp_path, "  - {name: gov, provider: aws, region: us-gov-west-1}\n")
    assert recording.named("gov-asg").inputs["name"] == "ghr-gh-runners-test-gov"


def test_partitions_agree_with_botocore() -> None:
    """Our region -> (partition, DNS suffix) table against botocore's own partitions.json."""
    import botocore

    document = json.loads((Path(botocore.__file__).parent / "data" / "partitions.json").read_text())
    checked = 0
    for entry in document["partitions"]:
        for region in entry["regions"]:
            if region.endswith("-global"):
                continue
            assert partition_of(region) == (entry["id"], entry["outputs"]["dnsSuffix"]), region
            checked += 1
    assert checked > 30


# What every earlier release created the group with: the group's
# initial_lifecycle_hook is ForceNew, so the group must keep exactly this.
PREVIOUS_INITIAL_HOOKS = [
    {
        "defaultResult": "CONTINUE",
        "heartbeatTimeout": 3600,
        "lifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING",
        "name": "gh-runners-drain",
    }
]


def test_the_drain_hook_is_its_own_resource_updated_in_place(tmp_path: Path) -> None:
    recording = plan(tmp_path, "  - {name: codex, provider: aws, size: {min: 1, max: 2}}\n")
    group = recording.named("codex-asg")
    hook = recording.named("codex-drain-hook")
    assert hook.type == "aws:autoscaling/lifecycleHook:LifecycleHook"
    assert hook.inputs == {
        "name": LIFECYCLE_HOOK,
        "autoscalingGroupName": group.inputs["name"],
        "lifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING",
        "heartbeatTimeout": HOOK_TIMEOUT_SECONDS,
        "defaultResult": "CONTINUE",
    }
    # Deleted with its group, never before it: destroy still drains busy VMs.
    assert hook.deleted_with == group.urn
    # The group keeps the frozen initial hook (no VM runs before a hook exists)
    # of the same name, which the agent completes.
    assert group.inputs["initialLifecycleHooks"] == PREVIOUS_INITIAL_HOOKS
    assert agent_config_of(recording, "codex")["location"]["lifecycle_hook"] == LIFECYCLE_HOOK


def agent_config_of(recording: Recording, pool: str) -> dict[str, Any]:
    files = {f["path"]: f["content"] for f in user_data_of(recording, pool)["write_files"]}
    return dict(json.loads(files["/etc/gh-runners/config.json"]))


def test_changing_the_drain_changes_the_hook_not_the_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pools = "  - {name: codex, provider: aws}\n"
    (tmp_path / "before").mkdir()
    (tmp_path / "after").mkdir()
    before = plan(tmp_path / "before", pools)
    monkeypatch.setattr(aws_group, "HOOK_TIMEOUT_SECONDS", 1800)
    after = plan(tmp_path / "after", pools)
    assert after.named("codex-drain-hook").inputs["heartbeatTimeout"] == 1800
    for key in ("name", "initialLifecycleHooks"):  # the group's ForceNew inputs
        assert after.named("codex-asg").inputs[key] == before.named("codex-asg").inputs[key]


def test_up_does_not_wait_for_capacity(tmp_path: Path) -> None:
    recording = plan(tmp_path, "  - {name: codex, provider: aws, spot: true, size: {min: 2, max: 4}}\n")
    assert recording.named("codex-asg").inputs["waitForCapacityTimeout"] == "0"


def test_local_zones_are_never_used(tmp_path: Path) -> None:
    """The account has a Local Zone, which sorts before the standard zones by name."""
    recording = plan(tmp_path, "  - {name: codex, provider: aws, network: {zones: 3}}\n")
    zones = sorted(s.inputs["availabilityZone"] for s in recording.of_type("aws:ec2/subnet:Subnet"))
    assert zones == ["eu-central-1a", "eu-central-1b", "eu-central-1c"]


def test_packed_user_data_is_the_same_bytes_on_every_python() -> None:
    # gzip.compress writes header OS byte 3 on Python 3.11 but 255 on 3.10 and 3.12+: the launch template's
    # user data (and so every VM, by instance refresh) would change with the Python that runs `pulumi up`.
    from providers.aws.group import packed_user_data

    packed = packed_user_data("#cloud-config\nruncmd: [[true]]\n")
    assert packed[:10] == bytes.fromhex("1f8b0800000000000203")  # deflate, mtime 0, max compression, Unix
    assert gzip.decompress(packed) == b"#cloud-config\nruncmd: [[true]]\n"


def test_a_runner_group_the_stack_creates_gives_its_id_to_the_vms(tmp_path: Path) -> None:
    """The agent registers into the group without looking it up (issue 11: two round trips with a PAT)."""
    header = "version: 1\ngithub: {organization: acme}\npools:\n"
    pools = "  - {name: codex, provider: aws, runner_group: ci}\n  - {name: plain, provider: aws}\n"
    recording = run_file(tmp_path, header + pools)
    (group,) = recording.of_type("github:index/actionsRunnerGroup:ActionsRunnerGroup")
    assert agent_config_of(recording, "codex")["runner_group_id"] == int(group.id)
    # The org's default group is looked up by name on the VM: the stack does not own it.
    assert "runner_group_id" not in agent_config_of(recording, "plain")
