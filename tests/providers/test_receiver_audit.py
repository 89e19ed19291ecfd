"""Replacement audit of the receivers: every cloud name the program fixes, the inputs that
force its replacement (from the provider's schema source), and proof that a replacement,
created before the old one is deleted, never meets a resource of the same name.

Everything else of the receivers (functions, log group, role, rule, bucket, scheduler job)
is auto-named by Pulumi, so a replacement gets a fresh name by construction; the last test
checks that nothing else carries a fixed name unnoticed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pulumi
import pulumi_aws as aws
import pytest

from plan.engine import Recording
from providers.aws.identity import Account
from providers.aws.scaler import AwsReceiver, AwsReceiverNames, scale_up_policy
from providers.gcp.scaler import GcpReceiver, GcpReceiverNames
from providers.scaling import receiver_document, receiver_place, render
from stack.webhook import webhook_secret
from tests.providers.receivers import (
    PROJECT,
    RUNNERS,
    STACK,
    credential_document,
    fake_package,
    record,
    runners,
    sites_of,
)

# type -> (the input holding the fixed name, ForceNew inputs we set, where the provider says so)
NAMED: dict[str, tuple[str, list[str], str]] = {
    "aws:ssm/parameter:Parameter": ("name", ["name"], "terraform-provider-aws internal/service/ssm/parameter.go"),
    "gcp:secretmanager/secret:Secret": (
        "secretId",
        ["secret_id", "project", "replication"],
        "terraform-provider-google google/services/secretmanager/resource_secret_manager_secret.go",
    ),
    "gcp:serviceaccount/account:Account": (
        "accountId",
        ["account_id", "project"],
        "terraform-provider-google google/services/resourcemanager/resource_google_service_account.go",
    ),
    "gcp:projects/iAMCustomRole:IAMCustomRole": (
        "roleId",
        ["role_id", "project"],
        "terraform-provider-google google/services/resourcemanager/resource_google_project_iam_custom_role.go",
    ),
    # bucket, name, source, content, detect_md5hash and metadata are all ForceNew
    # (google/services/storage/resource_storage_bucket_object.go). Pulumi zips an
    # archive with a constant modification time (pulumi/pulumi
    # sdk/go/common/resource/archive.go), so the same files are the same bytes.
    "gcp:storage/bucketObject:BucketObject": (
        "name",
        ["bucket", "name", "source"],
        "terraform-provider-google google/services/storage/resource_storage_bucket_object.go",
    ),
}
FIXED_NAME_KEYS = ("name", "secretId", "accountId", "roleId")


def first_gcp_region(region: str) -> str:
    """runners.yaml with the first GCP pool (where the receiver lives) moved to `region`."""
    return RUNNERS.replace("    labels: [general]\n", f"    labels: [general]\n    region: {region}\n", 1)


def plan_receivers(package: Path, text: str = RUNNERS) -> Recording:
    def program() -> None:
        file = runners(text)
        sites = sites_of(file)
        aws_place, gcp_place = receiver_place(file, sites, "aws"), receiver_place(file, sites, "gcp")
        aws_names = AwsReceiverNames.of(PROJECT, STACK)
        gcp_names = GcpReceiverNames.of(PROJECT, STACK, gcp_place.region)
        assert gcp_place.project
        docs = {
            cloud: render(
                receiver_document(file, sites, cloud, webhook_secret=refs[0], github_credential=refs[1], stack=STACK)
            )
            for cloud, refs in (("aws", aws_names.refs(aws_place.region)), ("gcp", gcp_names.refs(gcp_place.project)))
        }
        secret, credential = webhook_secret(), credential_document()
        AwsReceiver(
            "aws-receiver",
            document_text=docs["aws"],
            region=aws_place.region,
            names=aws_names,
            groups=[(s.region, s.group_name) for s in sites.values() if s.cloud == "aws"],
            account=Account(pulumi.Output.from_input("aws"), pulumi.Output.from_input("123456789012")),
            webhook_secret=secret,
            credential=credential,
            tags={},
            opts=pulumi.ResourceOptions(provider=aws.Provider(f"aws-{aws_place.region}", region=aws_place.region)),
            package=package,
        )
        GcpReceiver(
            "gcp-receiver",
            document_text=docs["gcp"],
            project=gcp_place.project,
            region=gcp_place.region,
            names=gcp_names,
            group_projects=[s.project or "" for s in sites.values() if s.cloud == "gcp"],
            webhook_secret=secret,
            credential=credential,
            labels={},
            package=package,
        )

    return record(program)


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fake_package(tmp_path_factory.mktemp("code"), "aws.py", "gcp.py")


@pytest.fixture(scope="module")
def before(package: Path) -> Recording:
    return plan_receivers(package)


def names_of(recording: Recording, type_: str) -> dict[str, str]:
    key = NAMED[type_][0]
    return {r.name: str(r.inputs[key]) for r in recording.of_type(type_)}


def test_every_fixed_name_is_audited(before: Recording) -> None:
    """A new resource with a name of our own must join the table above."""
    audited = set(NAMED)
    for record_ in before.resources:
        # Providers and random values have no cloud name; IAM members only
        # reference other resources by name.
        kind = record_.type.rsplit(":", 1)[-1].lower()
        if (
            not record_.custom
            or record_.type.startswith(("pulumi:providers:", "random:"))
            or kind.endswith("iammember")
        ):
            continue
        owned = [key for key in FIXED_NAME_KEYS if key in record_.inputs]
        if owned:
            assert record_.type in audited, f"{record_.type} {record_.name} has a fixed {owned}: audit it"


def test_secrets_follow_the_region_that_forces_them(package: Path, before: Recording) -> None:
    moved = plan_receivers(package, first_gcp_region("us-east1"))
    old, new = (names_of(r, "gcp:secretmanager/secret:Secret") for r in (before, moved))
    assert old.keys() == new.keys()
    assert all(old[name] != new[name] for name in old)
    assert all("us-east1" in value for value in new.values())


def test_accounts_and_roles_change_only_with_their_project(package: Path, before: Recording) -> None:
    moved = plan_receivers(package, first_gcp_region("us-east1"))
    for type_ in ("gcp:serviceaccount/account:Account",):
        assert names_of(before, type_) == names_of(moved, type_)  # nothing we set forces them
    roles = before.of_type("gcp:projects/iAMCustomRole:IAMCustomRole")
    # One role per project: the same id in two projects is two resources.
    assert sorted(r.inputs["project"] for r in roles) == ["ci-project", "other-project-1"]
    suffixes = before.of_type("random:index/randomId:RandomId")
    assert all(s.inputs["keepers"] == {"project": s.name.split("role-suffix-")[1]} for s in suffixes)


def test_parameters_keep_their_names_in_their_own_region(package: Path, before: Recording) -> None:
    """SSM names are regional: a receiver that moves region creates its parameters in the new
    region (a new provider) while the old ones still exist in the old one."""
    moved_text = RUNNERS.replace("    region: eu-central-1\n", "    region: eu-west-1\n", 1)
    moved = plan_receivers(package, moved_text)
    assert names_of(before, "aws:ssm/parameter:Parameter") == names_of(moved, "aws:ssm/parameter:Parameter")

    def regions(recording: Recording) -> set[str]:
        return {p.provider.split("::")[-2] for p in recording.of_type("aws:ssm/parameter:Parameter")}

    assert regions(before) == {"aws-eu-central-1"} and regions(moved) == {"aws-eu-west-1"}


def test_source_object_name_follows_its_content(package: Path, before: Recording) -> None:
    changed = plan_receivers(package, RUNNERS.replace("size: {min: 1, max: 3}", "size: {min: 1, max: 5}"))
    again = plan_receivers(package)
    key = "gcp:storage/bucketObject:BucketObject"
    assert names_of(before, key) == names_of(again, key)
    assert names_of(before, key) != names_of(changed, key)


def test_scale_up_policy_is_replaced_only_with_its_group() -> None:
    """ForceNew: name and autoscaling_group_name (internal/service/autoscaling/policy.go). The
    name is fixed, so a replacement happens only when the group's name changes -- and then the
    new policy is on the new group, where the name is free."""

    def plan_for(group_name: str) -> dict[str, str]:
        def program() -> None:
            group = aws.autoscaling.Group("p-asg", name=group_name, min_size=0, max_size=1)
            scale_up_policy("p", group, pulumi.ResourceOptions())

        inputs = record(program).named("p-scale-up").inputs
        return {"name": inputs["name"], "group": inputs["autoscalingGroupName"]}

    first, second = plan_for("ghr-a-p"), plan_for("ghr-b-p")
    assert first["name"] == second["name"]
    assert first["group"] != second["group"]


# Pulumi names the rest `<logical name>-<7 hex>`; each must fit its cloud's limit.
AUTO_NAMED_LIMITS = {
    "aws:lambda/function:Function": 64,
    "aws:iam/role:Role": 64,
    "aws:cloudwatch/eventRule:EventRule": 64,
    "aws:cloudwatch/logGroup:LogGroup": 512,
    "gcp:cloudfunctionsv2/function:Function": 63,  # also its Cloud Run service's name
    "gcp:storage/bucket:Bucket": 63,
    "gcp:cloudscheduler/job:Job": 500,
}


def test_auto_names_fit_their_clouds(before: Recording) -> None:
    for type_, limit in AUTO_NAMED_LIMITS.items():
        found = before.of_type(type_)
        assert found, type_
        for resource in found:
            assert len(resource.name) + 8 <= limit, (type_, resource.name)
            assert re.fullmatch(r"[a-z][-a-z0-9]*", resource.name)


def test_fixed_names_fit_with_long_projects_and_stacks() -> None:
    long = AwsReceiverNames.of("a-very-long-project-name-" * 4, "production-" * 8)
    for parameter in (long.webhook_parameter, long.credential_parameter):
        # SSM: at most 1011 characters and 15 levels
        # (https://docs.aws.amazon.com/systems-manager/latest/userguide/sysman-parameter-name-constraints.html).
        assert len(parameter) <= 1011 and parameter.count("/") <= 15
        assert re.fullmatch(r"[a-zA-Z0-9_.\-/]+", parameter)
