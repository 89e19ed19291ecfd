"""The replacement audit for AWS: every runners.yaml field, changed alone, applies in one `up`.

The table lists every resource type the AWS program registers (and the GitHub
runner groups an organization or enterprise stack owns), with the inputs the
provider marks ForceNew -- from hashicorp/terraform-provider-aws (and
integrations/terraform-provider-github) schema source, file by file -- and what
names or claims each holds. tests/providers/replacement_audit.py explains the
checks; a new resource type or a new runners.yaml field without an entry here
fails this file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from plan.engine import Recording
from schema.models import AwsPool, GitHubTarget
from tests.providers.harness import run_file
from tests.providers.replacement_audit import (
    Mutation,
    Rule,
    audit,
    global_scope,
    load_snapshot,
    mutate,
    pool_fields,
    record_program,
    replaced_resources,
    uncovered,
)

TF_AWS = "hashicorp/terraform-provider-aws internal/service/"
TF_GITHUB = "integrations/terraform-provider-github github/"
FIXTURES = Path(__file__).parent / "fixtures"

RULES = {
    rule.type: rule
    for rule in [
        # Named: the group, its hook and scheduled actions, the parameter, the grant.
        Rule(
            "aws:autoscaling/group:Group",
            TF_AWS + "autoscaling/group.go",
            force_new=("name", "namePrefix", "initialLifecycleHooks"),
            names=("name",),
        ),
        Rule(
            "aws:autoscaling/lifecycleHook:LifecycleHook",
            TF_AWS + "autoscaling/lifecycle_hook.go (autoscaling_group_name is updated in place)",
            force_new=("name",),
            names=("autoscalingGroupName", "name"),
        ),
        Rule(
            "aws:autoscaling/schedule:Schedule",
            TF_AWS + "autoscaling/schedule.go",
            force_new=("autoscalingGroupName", "scheduledActionName"),
            names=("autoscalingGroupName", "scheduledActionName"),
        ),
        Rule(
            # The receiver's +1 policy of a demand pool: a policy name is unique
            # within its group only, and the group's name changes with
            # everything that replaces the group.
            "aws:autoscaling/policy:Policy",
            TF_AWS + "autoscaling/policy.go",
            force_new=("autoscalingGroupName", "name"),
            names=("autoscalingGroupName", "name"),
        ),
        Rule(
            "aws:ssm/parameter:Parameter",
            TF_AWS + "ssm/parameter.go (tier forces a new parameter only from Advanced to Standard)",
            force_new=("name", "dataType"),
            names=("name",),
        ),
        Rule(
            "aws:iam/rolePolicy:RolePolicy",
            TF_AWS + "iam/role_policy.go",
            force_new=("name", "namePrefix", "role"),
            names=("role", "name"),
            scope=global_scope,
        ),
        # Generated names (Pulumi autonaming or the cloud's id); claims where
        # the cloud holds a value exclusively.
        Rule("aws:iam/role:Role", TF_AWS + "iam/role.go", force_new=("name", "namePrefix", "path")),
        Rule(
            "aws:iam/instanceProfile:InstanceProfile",
            TF_AWS + "iam/instance_profile.go",
            force_new=("name", "namePrefix", "path"),
        ),
        Rule(
            "aws:ec2/launchTemplate:LaunchTemplate",
            TF_AWS + "ec2/ec2_launch_template.go (content changes make a new version: resourceLaunchTemplateUpdate)",
            force_new=("name", "namePrefix"),
        ),
        Rule(
            "aws:ec2/securityGroup:SecurityGroup",
            TF_AWS + "ec2/vpc_security_group.go",
            force_new=("name", "namePrefix", "description", "vpcId"),
        ),
        Rule("aws:ec2/vpc:Vpc", TF_AWS + "ec2/vpc_.go", force_new=("cidrBlock", "ipv4IpamPoolId", "ipv4NetmaskLength")),
        Rule(
            "aws:ec2/internetGateway:InternetGateway",
            TF_AWS + "ec2/vpc_internet_gateway.go (vpc_id moves the gateway; we replace it: replace_on_changes)",
            claims=(("vpcId",),),  # one internet gateway per VPC
        ),
        Rule("aws:ec2/routeTable:RouteTable", TF_AWS + "ec2/vpc_route_table.go", force_new=("vpcId",)),
        Rule(
            "aws:ec2/subnet:Subnet",
            TF_AWS + "ec2/vpc_subnet.go",
            force_new=("availabilityZone", "availabilityZoneId", "cidrBlock", "vpcId", "ipv6Native", "outpostArn"),
            claims=(("vpcId", "cidrBlock"),),  # CIDRs of one VPC may not overlap (ours are equal or disjoint)
        ),
        Rule(
            "aws:ec2/routeTableAssociation:RouteTableAssociation",
            TF_AWS + "ec2/vpc_route_table_association.go",
            force_new=("subnetId", "gatewayId"),
            claims=(("subnetId",),),  # a subnet has one route table association
        ),
        Rule(
            "aws:ec2/eip:Eip",
            TF_AWS + "ec2/ec2_eip.go",
            force_new=("address", "domain", "ipamPoolId", "networkBorderGroup", "publicIpv4Pool"),
        ),
        Rule(
            "aws:ec2/natGateway:NatGateway",
            TF_AWS + "ec2/vpc_nat_gateway.go",
            force_new=("allocationId", "connectivityType", "privateIp", "subnetId"),
            claims=(("allocationId",),),  # an Elastic IP serves one NAT gateway
        ),
        # The agent store, one per region (providers/aws/agent_store.py): the bucket is
        # auto-named; each bucket-level setting is held once per bucket (one public
        # access block, ownership rule, policy: PUT replaces the bucket's one), and
        # an object holds its key in its bucket. The key names the agent's digest,
        # so a new agent is a new key: create-before-delete never meets itself.
        Rule(
            "aws:s3/bucket:Bucket",
            TF_AWS + "s3/bucket.go",
            force_new=("bucket", "bucketPrefix", "bucketNamespace", "objectLockEnabled"),
        ),
        Rule(
            "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
            TF_AWS + "s3/bucket_public_access_block.go",
            force_new=("bucket",),
            claims=(("bucket",),),
        ),
        Rule(
            "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
            TF_AWS + "s3/bucket_ownership_controls.go",
            force_new=("bucket",),
            claims=(("bucket",),),
        ),
        Rule(
            "aws:s3/bucketPolicy:BucketPolicy",
            TF_AWS + "s3/bucket_policy.go",
            force_new=("bucket",),
            claims=(("bucket",),),
        ),
        Rule(
            "aws:s3/bucketObjectv2:BucketObjectv2",
            TF_AWS + "s3/object.go (content changes are uploaded in place: resourceObjectUpdate)",
            force_new=("bucket", "key"),
            claims=(("bucket", "key"),),
        ),
        # Demand scaling, stack-level (providers/aws/scaler.py, stack/webhook.py):
        # everything auto-named by Pulumi except the receiver's two SSM
        # parameters (rule above) and the pools' +1 policies.
        Rule(
            "random:index/randomBytes:RandomBytes",
            "pulumi/pulumi-random (terraform-provider-random internal/provider/resource_bytes.go: RequiresReplace)",
            force_new=("length", "keepers"),
        ),
        Rule(
            "aws:cloudwatch/logGroup:LogGroup",
            TF_AWS + "logs/group.go",
            force_new=("name", "namePrefix", "logGroupClass"),
        ),
        Rule(
            "aws:cloudwatch/eventRule:EventRule",
            TF_AWS + "events/rule.go",
            force_new=("name", "namePrefix", "eventBusName"),
        ),
        Rule(
            "aws:cloudwatch/eventTarget:EventTarget",
            TF_AWS + "events/target.go (target_id is generated when unset)",
            force_new=("rule", "targetId", "eventBusName"),
        ),
        Rule("aws:lambda/function:Function", TF_AWS + "lambda/function.go", force_new=("name", "packageType")),
        Rule(
            "aws:lambda/functionUrl:FunctionUrl",
            TF_AWS + "lambda/function_url.go",
            force_new=("functionName", "qualifier"),
            claims=(("functionName", "qualifier"),),  # one URL per function (and qualifier)
        ),
        Rule(
            "aws:lambda/permission:Permission",
            TF_AWS + "lambda/permission.go (every argument; statement_id is generated when unset)",
            force_new=(
                "action",
                "functionName",
                "principal",
                "qualifier",
                "sourceArn",
                "sourceAccount",
                "statementId",
                "statementIdPrefix",
                "functionUrlAuthType",
                "invokedViaFunctionUrl",
                "eventSourceToken",
                "principalOrgId",
            ),
        ),
        # A webhook has no name; GitHub refuses a second hook with the same URL on
        # one repository or organization, and a hook is replaced only when its
        # repository changes, which puts the new one on another repository.
        Rule(
            "github:index/repositoryWebhook:RepositoryWebhook",
            TF_GITHUB + "resource_github_repository_webhook.go",
            force_new=("repository",),
        ),
        Rule(
            "github:index/organizationWebhook:OrganizationWebhook",
            TF_GITHUB + "resource_github_organization_webhook.go",
        ),
        # GitHub: nothing is ForceNew; a group's name is unique in its owner
        # (organization or enterprise), case-insensitively.
        Rule(
            "github:index/actionsRunnerGroup:ActionsRunnerGroup",
            TF_GITHUB + "resource_github_actions_runner_group.go",
            names=("name",),
            scope=global_scope,
            fold_case=True,
        ),
        Rule(
            "github:index/enterpriseActionsRunnerGroup:EnterpriseActionsRunnerGroup",
            TF_GITHUB + "resource_github_enterprise_actions_runner_group.go",
            names=("enterpriseSlug", "name"),
            scope=global_scope,
            fold_case=True,
        ),
    ]
}

# The files the mutations edit: every kind of AWS pool and network.
PUBLIC = """\
version: 1
github: {repository: spigell/my-reforge-ai}
pools:
  - name: codex
    provider: aws
    labels: [codex]
    spot: true
    on_demand_base: 1
    instance_types: [m7i.large, m6i.large]
    size: {min: 1, max: 4}
    schedules:
      - {cron: '0 21 * * *', desired: 0, time_zone: Europe/Berlin}
    tags: {team: ci}
    setup_script: echo hello
  - name: quiet
    provider: aws
    network: {private: true}
  - name: lone
    provider: aws
    network: {dedicated: true, private: true, cidr: 10.9.0.0/16}
"""
ORGANIZATION = """\
version: 1
github: {organization: acme}
pools:
  - name: build
    provider: aws
    ephemeral: false
    runner_group: {name: ci, repositories: [app], workflows: ['acme/app/.github/workflows/ci.yml@refs/heads/main']}
    network: {private: true, zones: 3}
  - name: arm
    provider: aws
    region: us-west-2
    arch: arm64
    ssm_session_manager: true
    network: {vpc_id: vpc-0123456789abcdef0, subnet_ids: [subnet-0123456789abcdef0]}
"""
ENTERPRISE = """\
version: 1
github: {enterprise: acme-corp}
pools:
  - name: ent
    provider: aws
    runner_group: {name: shared, organizations: [acme]}
"""
BASES = {"public": PUBLIC, "organization": ORGANIZATION, "enterprise": ENTERPRISE}


def _set(pool: dict[str, Any], path: str, value: Any, when: bool = True) -> dict[str, Any] | None:
    """`pool` with `path` (dotted) set to `value`, or None when `when` is false."""
    if not when:
        return None
    head, _, rest = path.partition(".")
    if not rest:
        return {**pool, head: value}
    inner = pool.get(head)
    inner = {"name": inner} if isinstance(inner, str) else dict(inner or {})
    return {**pool, head: _set(inner, rest, value)}


def _group(pool: dict[str, Any]) -> dict[str, Any] | None:
    group = pool.get("runner_group")
    return group if isinstance(group, dict) else None


def _created_network(pool: dict[str, Any]) -> bool:
    return "vpc_id" not in (pool.get("network") or {})


MUTATIONS = [
    Mutation("name", lambda p: {**p, "name": p["name"] + "-2"}),
    Mutation("provider", lambda p: None, "another cloud: covered by that cloud's table"),
    Mutation("labels", lambda p: {**p, "labels": [*p.get("labels", []), "extra"]}),
    Mutation("ephemeral", lambda p: {**p, "ephemeral": not p.get("ephemeral", True)}),
    Mutation("size.min", lambda p: _set(p, "size", {**p.get("size", {}), "min": 2, "max": 4})),
    Mutation("size.max", lambda p: _set(p, "size", {**p.get("size", {}), "max": 9})),
    # A fixed pool needs a floor above 0 (else it never runs a VM): give it one.
    Mutation("scaling", lambda p: {**p, "scaling": "fixed", "size": {**p.get("size", {}), "min": 1, "max": 4}}),
    Mutation("idle_timeout", lambda p: _set(p, "idle_timeout", "30m")),
    Mutation("arch", lambda p: _set(p, "arch", "arm64", "instance_types" not in p and p.get("arch") != "arm64")),
    Mutation("spot", lambda p: _set(p, "spot", True, not p.get("spot"))),
    Mutation("on_demand_base", lambda p: _set(p, "on_demand_base", 0, "on_demand_base" in p)),
    Mutation("instance_types", lambda p: _set(p, "instance_types", ["m7i.xlarge"], p.get("arch", "x64") == "x64")),
    Mutation("image", lambda p: {**p, "image": "ami-0123456789abcdef0"}),
    Mutation("setup_script", lambda p: {**p, "setup_script": "echo changed"}),
    Mutation("docker", lambda p: {**p, "docker": True}),
    Mutation("sudo", lambda p: {**p, "sudo": True}),
    Mutation("runner_version", lambda p: {**p, "runner_version": "2.330.0"}),
    Mutation("schedules", lambda p: _set(p, "schedules", [], bool(p.get("schedules"))), "remove-all"),
    Mutation(
        "schedules",
        lambda p: _set(p, "schedules", [{"cron": "0 7 * * 1-5", "desired": 1}], not p.get("schedules")),
        "add",
    ),
    Mutation("tags", lambda p: {**p, "tags": {**p.get("tags", {}), "cost": "runners"}}),
    Mutation("disk.size_gb", lambda p: _set(p, "disk.size_gb", 80)),
    Mutation("disk.type", lambda p: _set(p, "disk.type", "gp2")),
    Mutation("region", lambda p: {**p, "region": "eu-west-1"}),
    Mutation("ssm_session_manager", lambda p: {**p, "ssm_session_manager": not p.get("ssm_session_manager", False)}),
    Mutation("network.cidr", lambda p: _set(p, "network.cidr", "10.42.0.0/16", _created_network(p))),
    Mutation(
        "network.cidr",
        lambda p: _set(p, "network.cidr", "10.43.0.0/16", (p.get("network") or {}).get("dedicated", False)),
        "dedicated",
    ),
    Mutation(
        "network.zones",
        lambda p: _set(p, "network.zones", 3, _created_network(p) and (p.get("network") or {}).get("zones", 2) == 2),
    ),
    Mutation(
        "network.private",
        lambda p: _set(p, "network.private", True, _created_network(p) and not (p.get("network") or {}).get("private")),
    ),
    Mutation(
        "network.private",
        lambda p: _set(p, "network.private", False, (p.get("network") or {}).get("private", False)),
        "off",
    ),
    Mutation(
        "network.dedicated",
        lambda p: _set(
            p, "network.dedicated", True, _created_network(p) and not (p.get("network") or {}).get("dedicated")
        ),
    ),
    Mutation(
        "network.dedicated",
        lambda p: _set(p, "network.dedicated", False, (p.get("network") or {}).get("dedicated", False)),
        "off",
    ),
    Mutation(
        "network.vpc_id",
        lambda p: _set(
            p,
            "network",
            {"vpc_id": "vpc-0fedcba9876543210", "subnet_ids": ["subnet-0fedcba9876543210"]},
            not _created_network(p),
        ),
    ),
    Mutation(
        "network.subnet_ids",
        lambda p: _set(
            p, "network.subnet_ids", ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"], not _created_network(p)
        ),
    ),
    Mutation(
        "network.vpc_id",
        lambda p: _set(
            p,
            "network",
            {"vpc_id": "vpc-0123456789abcdef0", "subnet_ids": ["subnet-0123456789abcdef0"]},
            _created_network(p),
        ),
        "from-created",
    ),
    Mutation("runner_group.name", lambda p: _set(p, "runner_group.name", "ci-2", _group(p) is not None)),
    Mutation(
        "runner_group.name",
        lambda p: _set(p, "runner_group.name", "CI", _group(p) is not None and _group(p)["name"] == "ci"),
        "case",
    ),
    Mutation("runner_group.managed", lambda p: _set(p, "runner_group.managed", False, _group(p) is not None)),
    Mutation("runner_group.visibility", lambda p: _set(p, "runner_group.visibility", "all", _group(p) is not None)),
    Mutation(
        "runner_group.repositories",
        lambda p: _set(p, "runner_group.repositories", ["app", "web"], bool((_group(p) or {}).get("repositories"))),
    ),
    Mutation(
        "runner_group.organizations",
        lambda p: _set(p, "runner_group.organizations", ["acme", "beta"], bool((_group(p) or {}).get("organizations"))),
    ),
    Mutation(
        "runner_group.workflows",
        lambda p: _set(p, "runner_group.workflows", [], bool((_group(p) or {}).get("workflows"))),
    ),
    Mutation(
        "runner_group.allow_public_repositories",
        lambda p: _set(p, "runner_group.allow_public_repositories", True, _group(p) is not None),
    ),
    Mutation("github.repository", lambda d: _set(d, "github.repository", "spigell/other", "repository" in d["github"])),
    Mutation("github.organization", lambda d: _set(d, "github.organization", "acme-2", "organization" in d["github"])),
    Mutation("github.enterprise", lambda d: _set(d, "github.enterprise", "acme-2", "enterprise" in d["github"])),
    Mutation("github.url", lambda d: _set(d, "github.url", "https://ghe.example.com")),
]

_RUNS: dict[str, Recording] = {}


def mutation(id_: str) -> Mutation:
    (found,) = [m for m in MUTATIONS if m.id == id_]
    return found


def plan(tmp_path_factory: pytest.TempPathFactory, name: str, text: str) -> Recording:
    if text not in _RUNS:
        _RUNS[text] = run_file(tmp_path_factory.mktemp(name), text, stack="dev")
    return _RUNS[text]


def applied(mutation: Mutation) -> tuple[str, str, str]:
    """(base name, base text, mutated text) for the first base file the mutation fits."""
    for name, text in BASES.items():
        changed = mutate(text, mutation)
        if changed is not None:
            return name, text, changed
    raise AssertionError(f"mutation {mutation.id} fits no base file")


def test_every_runners_yaml_field_has_a_mutation() -> None:
    fields = pool_fields(AwsPool) | {f"github.{name}" for name in GitHubTarget.model_fields}
    assert not uncovered(fields, MUTATIONS), "add a Mutation for each new runners.yaml field"


@pytest.mark.parametrize("mutation", [m for m in MUTATIONS if m.field != "provider"], ids=lambda m: m.id)
def test_a_single_field_change_applies_in_one_up(tmp_path_factory: pytest.TempPathFactory, mutation: Mutation) -> None:
    name, base, changed = applied(mutation)
    before = plan(tmp_path_factory, name, base)
    after = plan(tmp_path_factory, f"{name}-{mutation.id}", changed)
    assert audit(before, after, RULES) == []


def test_the_audit_is_a_real_judge(tmp_path_factory: pytest.TempPathFactory) -> None:
    """It catches what used to break: a group renamed in place (fixed name,
    ForceNew input), a NAT gateway keeping its address across a replacement, a
    type without a rule, a generated name set explicitly."""
    before = plan(tmp_path_factory, "public", PUBLIC)
    after = plan(tmp_path_factory, "public-cidr", mutate(PUBLIC, mutation("network.cidr")) or "")
    group = after.named("codex-asg")
    old_hooks = group.inputs["initialLifecycleHooks"]
    try:
        group.inputs["initialLifecycleHooks"] = [{**old_hooks[0], "heartbeatTimeout": 1800}]
        findings = audit(before, after, RULES)
    finally:
        group.inputs["initialLifecycleHooks"] = old_hooks
    assert any("aws:autoscaling/group:Group codex-asg is replaced create-before-delete" in f for f in findings)

    # The address used to stay when its NAT gateway's subnet was replaced.
    address = next(r for r in after.resources if r.type == "aws:ec2/eip:Eip" and r.name.startswith("network-"))
    (old_address,) = [r for r in before.resources if r.type == "aws:ec2/eip:Eip" and r.name.startswith("network-")]
    nat = after.named("network-eu-central-1-nat")
    kept = (address.urn, address.id, address.aliases, nat.inputs["allocationId"])
    try:
        address.urn, address.id, address.aliases = old_address.urn, old_address.id, []
        nat.inputs["allocationId"] = old_address.id
        findings = audit(before, after, RULES)
    finally:
        address.urn, address.id, address.aliases, nat.inputs["allocationId"] = kept
    assert any(f.startswith("aws:ec2/natGateway:NatGateway network-eu-central-1-nat is replaced") for f in findings)

    partial = {k: v for k, v in RULES.items() if k != "aws:ec2/subnet:Subnet"}
    assert any("aws:ec2/subnet:Subnet" in f and "no rule" in f for f in audit(before, after, partial))
    role = next(r for r in after.resources if r.type == "aws:iam/role:Role")
    role.inputs["name"] = "fixed"
    try:
        assert any("the program sets one" in f for f in audit(before, after, RULES))
    finally:
        del role.inputs["name"]


def test_what_a_network_change_replaces(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A new VPC block replaces the network under the pools, never their groups."""
    before = plan(tmp_path_factory, "public", PUBLIC)
    after = plan(tmp_path_factory, "public-cidr", mutate(PUBLIC, mutation("network.cidr")) or "")
    replaced = replaced_resources(before, after, RULES)
    assert "network-eu-central-1-vpc" in replaced and "network-eu-central-1-nat" in replaced
    assert not [name for name in replaced if name.endswith("-asg")]


def test_switching_scale_in_protection_updates_the_group_in_place(tmp_path_factory: pytest.TempPathFactory) -> None:
    """`scaling: fixed` turns the group's scale-in protection off (demand pools protect every VM):
    protect_from_scale_in is not ForceNew in group.go (resourceGroupUpdate sends it with
    UpdateAutoScalingGroup), so the fixed-name group is updated, not replaced."""
    name, base, changed = applied(mutation("scaling"))
    before = plan(tmp_path_factory, name, base)
    after = plan(tmp_path_factory, f"{name}-scaling", changed)
    groups = [(old, new) for old in before.of_type("aws:autoscaling/group:Group")
              for new in after.of_type("aws:autoscaling/group:Group") if old.name == new.name]
    switched = [new.name for old, new in groups if old.inputs["protectFromScaleIn"] != new.inputs["protectFromScaleIn"]]
    assert switched == ["codex-asg"]
    assert "protectFromScaleIn" not in RULES["aws:autoscaling/group:Group"].force_new
    assert "codex-asg" not in replaced_resources(before, after, RULES)
    assert audit(before, after, RULES) == []


# --- upgrade from the previous release ------------------------------------------------------
#
# tests/aws/fixtures/release-463b1aa-*.json hold the graph the release before
# these changes built for BASES (commit 463b1aa, the parent of this work),
# reduced by replacement_audit.snapshot(); the old program cannot read
# `dedicated`, so those pools are recorded without it. Regenerate with
#   venv/bin/python -m tests.aws.test_replacement_audit <old checkout> tests/aws/fixtures

UPGRADE_BASES = {name: text.replace("dedicated: true, ", "") for name, text in BASES.items()}
PUBLIC_OLD = UPGRADE_BASES["public"]


@pytest.mark.parametrize("name", sorted(UPGRADE_BASES))
def test_upgrading_from_the_previous_release_applies_in_one_up(
    tmp_path_factory: pytest.TempPathFactory, name: str
) -> None:
    fixture = FIXTURES / f"release-463b1aa-{name}.json"
    before = load_snapshot(json.loads(fixture.read_text()))
    after = plan(tmp_path_factory, f"upgrade-{name}", BASES[name])
    assert audit(before, after, RULES) == []


def test_an_upgrade_that_leaves_a_local_zone_is_the_one_known_collision(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """An earlier release put the first subnet of an account with an opted-in
    Local Zone there (it sorted first). Moving it to a standard zone replaces it
    with the same CIDR, which AWS refuses while the old one exists: README tells
    such stacks to move to a new network.cidr in the same `up` (a new VPC)."""
    before = load_snapshot(json.loads((FIXTURES / "release-463b1aa-local-zone.json").read_text()))
    after = plan(tmp_path_factory, "upgrade-public", BASES["public"])
    findings = audit(before, after, RULES)
    assert findings and all("aws:ec2/subnet:Subnet" in f and "claim vpcId+cidrBlock" in f for f in findings)
    moved = BASES["public"].replace(
        "    provider: aws\n    labels", "    provider: aws\n    network: {cidr: 10.42.0.0/16}\n    labels"
    )
    moved = moved.replace("cidr: 10.9.0.0/16", "cidr: 10.10.0.0/16")
    assert audit(before, plan(tmp_path_factory, "upgrade-moved", moved), RULES) == []


def test_an_upgrade_keeps_the_first_pools_network_and_moves_the_group_once(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    before = load_snapshot(json.loads((FIXTURES / "release-463b1aa-public.json").read_text()))
    after = plan(tmp_path_factory, "upgrade-public", BASES["public"])
    replaced = replaced_resources(before, after, RULES)
    # The group and its parameter get their project-scoped names (and the grant
    # named after the group): new ones first, the old ones drain and go last.
    assert {"codex-asg", "codex-credential", "codex-policy"} <= set(replaced)
    # codex's VPC becomes the shared one, unchanged; its public subnets stay.
    assert not {"network-eu-central-1-vpc", "network-eu-central-1-public-0"} & set(replaced)


if __name__ == "__main__":
    import sys

    old, out = Path(sys.argv[1]).resolve(), Path(sys.argv[2])
    cases = [*((name, text, False) for name, text in UPGRADE_BASES.items()), ("local-zone", PUBLIC_OLD, True)]
    for name, text, local_zone in cases:
        document = record_program(old, text, local_zone=local_zone)
        (out / f"release-463b1aa-{name}.json").write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
