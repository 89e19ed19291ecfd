"""Turn a Recording into a reviewer's plan: a tree per pool, or stable JSON."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from typing import Any

from plan.engine import SECRET, Recorded, Recording
from schema.models import AwsPool, GcpPool, Pool, RunnersFile

POOL_TYPE = "ghrunners:index:RunnerPool"
# The properties a reviewer looks at, per resource type (wire names). Types not
# listed show every scalar input.
KEY_PROPERTIES: dict[str, list[str]] = {
    "aws:ec2/vpc:Vpc": ["cidrBlock"],
    "aws:ec2/subnet:Subnet": ["availabilityZone", "cidrBlock"],
    "aws:ec2/securityGroup:SecurityGroup": ["ingress", "egress"],
    "aws:ec2/routeTable:RouteTable": ["routes"],
    "aws:ssm/parameter:Parameter": ["name", "type", "value"],
    "aws:iam/role:Role": ["assumeRolePolicy"],
    "aws:iam/rolePolicy:RolePolicy": ["policy"],
    "aws:ec2/launchTemplate:LaunchTemplate": [
        "imageId",
        "instanceType",
        "instanceInitiatedShutdownBehavior",
        "metadataOptions",
        "blockDeviceMappings",
        "networkInterfaces",
        "userData",
    ],
    "aws:autoscaling/group:Group": [
        "name",
        "minSize",
        "maxSize",
        "desiredCapacity",
        "launchTemplate",
        "mixedInstancesPolicy",
        "capacityRebalance",
        "protectFromScaleIn",
        "instanceRefresh",
        "instanceMaintenancePolicy",
        "initialLifecycleHooks",
        "waitForCapacityTimeout",
    ],
    "aws:autoscaling/lifecycleHook:LifecycleHook": ["name", "lifecycleTransition", "heartbeatTimeout", "defaultResult"],
    "aws:autoscaling/schedule:Schedule": ["recurrence", "timeZone", "desiredCapacity", "minSize", "maxSize"],
    "aws:s3/bucket:Bucket": ["forceDestroy"],
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": [
        "blockPublicAcls",
        "blockPublicPolicy",
        "ignorePublicAcls",
        "restrictPublicBuckets",
    ],
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": ["rule"],
    "aws:s3/bucketPolicy:BucketPolicy": ["policy"],
    "aws:s3/bucketObjectv2:BucketObjectv2": ["key", "content"],
    "gcp:compute/network:Network": ["autoCreateSubnetworks"],
    "gcp:compute/subnetwork:Subnetwork": ["region", "ipCidrRange", "privateIpGoogleAccess"],
    "gcp:compute/routerNat:RouterNat": ["natIpAllocateOption", "sourceSubnetworkIpRangesToNat"],
    "gcp:compute/firewall:Firewall": ["direction", "priority", "allows", "denies", "sourceRanges", "targetTags"],
    "gcp:secretmanager/secret:Secret": ["secretId", "replication"],
    "gcp:secretmanager/secretVersion:SecretVersion": ["secretData"],
    "gcp:secretmanager/secretIamMember:SecretIamMember": ["role", "member"],
    "gcp:serviceaccount/account:Account": ["accountId"],
    "gcp:projects/iAMMember:IAMMember": ["role", "member"],
    "gcp:projects/iAMCustomRole:IAMCustomRole": ["roleId", "permissions"],
    "gcp:compute/regionInstanceTemplate:RegionInstanceTemplate": [
        "machineType",
        "disks",
        "networkInterfaces",
        "scheduling",
        "shieldedInstanceConfig",
        "serviceAccount",
        "metadata",
    ],
    "gcp:compute/regionInstanceGroupManager:RegionInstanceGroupManager": [
        "name",
        "targetSize",
        "distributionPolicyZones",
        "distributionPolicyTargetShape",
        "updatePolicy",
        "instanceLifecyclePolicy",
    ],
    "gcp:compute/regionAutoscaler:RegionAutoscaler": ["autoscalingPolicy"],
    # Demand scaling: the +1 policy, the receivers and their webhooks.
    "aws:autoscaling/policy:Policy": ["name", "policyType", "adjustmentType", "scalingAdjustment", "cooldown"],
    "aws:lambda/function:Function": ["runtime", "handler", "architectures", "memorySize", "timeout", "code"],
    "aws:lambda/functionUrl:FunctionUrl": ["authorizationType"],
    "aws:lambda/permission:Permission": [
        "action",
        "principal",
        "functionUrlAuthType",
        "invokedViaFunctionUrl",
        "sourceArn",
    ],
    "aws:cloudwatch/eventRule:EventRule": ["scheduleExpression"],
    "aws:cloudwatch/eventTarget:EventTarget": ["rule", "arn"],
    "aws:cloudwatch/logGroup:LogGroup": ["retentionInDays"],
    "gcp:cloudfunctionsv2/function:Function": ["location", "buildConfig", "serviceConfig"],
    "gcp:cloudrunv2/serviceIamMember:ServiceIamMember": ["name", "role", "member"],
    "gcp:cloudscheduler/job:Job": ["schedule", "timeZone", "httpTarget"],
    "gcp:storage/bucket:Bucket": ["location", "uniformBucketLevelAccess", "publicAccessPrevention"],
    "gcp:storage/bucketIAMMember:BucketIAMMember": ["role", "member"],
    "gcp:storage/bucketObject:BucketObject": ["name", "source"],
    "github:index/repositoryWebhook:RepositoryWebhook": ["repository", "events", "active", "configuration"],
    "github:index/organizationWebhook:OrganizationWebhook": ["events", "active", "configuration"],
}
# The receiver's code archive (providers/scaling.py): its configuration is what a
# reviewer reads; the package is the same source for every stack and shows as
# a note, and the archive's content digest in names as a placeholder -- so the
# plan changes with runners.yaml, not with every edit of the receiver's code.
RECEIVER_CONFIG = "scaler.json"
RECEIVER_PACKAGE_NOTE = "the receiver's package (scaler/*.py), as source"
RECEIVER_ARCHIVE = re.compile(r"^receiver-[0-9a-f]{20}\.zip$")
RECEIVER_ARCHIVE_SHOWN = "receiver-<content digest>.zip"
NOISE = {"tags", "labels", "description", "tagSpecifications", "tagsAll"}
# What `pulumi preview` asks the cloud and an offline plan cannot: said per pool.
NOT_CHECKED_OFFLINE = [
    "whether the cloud offers the pool's machine types in its zones "
    "(`pulumi preview` checks it with your credentials and fails on a zone that offers none)",
]


def summarize(key: str, value: Any) -> Any:
    """Large values a reviewer can't read inline: user data and the agent object as size + digest, policies as
    statements, the receiver's code as its configuration."""
    if isinstance(value, dict) and isinstance(value.get("assets"), dict):
        return _archive(value["assets"])
    if isinstance(value, str) and RECEIVER_ARCHIVE.match(value):
        return RECEIVER_ARCHIVE_SHOWN
    if key in ("userData", "user-data", "content") and isinstance(value, str) and value != SECRET:
        return {"bytes": len(value), "sha256": hashlib.sha256(value.encode()).hexdigest()[:16]}
    if key in ("policy", "assumeRolePolicy", "policyData") and isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    if isinstance(value, dict):
        return {k: summarize(k, v) for k, v in value.items()}
    return value


def _archive(assets: dict[str, Any]) -> dict[str, Any]:
    """A code archive: its configuration document parsed, other root files as text, the package as a note."""
    shown: dict[str, Any] = {}
    for name, asset in sorted(assets.items()):
        text = asset.get("text") if isinstance(asset, dict) else None
        if name.startswith("scaler/"):
            shown["scaler/"] = RECEIVER_PACKAGE_NOTE
        elif name == RECEIVER_CONFIG and isinstance(text, str):
            shown[name] = json.loads(text)
        else:
            shown[name] = text if isinstance(text, str) else "(asset)"
    return shown


def resource_view(record: Recorded, full: bool) -> dict[str, Any]:
    shown = record.shown
    keys = KEY_PROPERTIES.get(record.type) if not full else None
    if keys is None:
        keys = [k for k in sorted(shown) if k not in NOISE and (full or not isinstance(shown[k], (dict, list)))]
    return {k: summarize(k, shown[k]) for k in keys if k in shown}


def pool_warnings(pool: Pool, runners: RunnersFile) -> list[str]:
    warnings = []
    if pool.sudo or pool.docker:
        what = " and ".join(w for w, on in (("sudo", pool.sudo), ("docker", pool.docker)) if on)
        warnings.append(
            f"{what}: the runner user is root-equivalent on its VM; job code can lift the metadata "
            "block and use the VM identity to read the GitHub credential"
        )
    if isinstance(pool, AwsPool) and not pool.network.existing and not pool.network.private:
        warnings.append("public network path: VMs get public IPv4 addresses (no inbound rules)")
    if isinstance(pool, GcpPool) and pool.iap_ssh:
        warnings.append("SSH through Identity-Aware Proxy is open to whoever IAM allows")
    if isinstance(pool, AwsPool) and pool.ssm_session_manager:
        warnings.append("SSM Session Manager shell access is enabled for whoever IAM allows")
    if not pool.ephemeral:
        warnings.append("persistent runners: one job can leave changes behind for the next")
    if runners.github.scope == "repository":
        warnings.append(
            "self-hosted runners on a public repository run code from anyone's pull request: "
            "keep the repository private or require approval for fork pull requests"
        )
    group = pool.runner_group
    if group and group.allow_public_repositories:
        warnings.append(f"runner group {group.name} allows public repositories")
    return warnings


def stack_warnings(runners: RunnersFile) -> list[str]:
    """What a reviewer should know about the stack-level resources (demand scaling)."""
    clouds = list(dict.fromkeys(pool.provider for pool in runners.pools if pool.on_demand))
    warnings = []
    if "aws" in clouds:
        warnings.append(
            "AWS receiver: its Lambda function URL is public (auth type NONE; GitHub cannot sign AWS requests): "
            "every request is checked against the webhook's HMAC-SHA256 signature before anything is parsed"
        )
    if "gcp" in clouds:
        warnings.append(
            "GCP receiver: its webhook function is public (run.invoker for allUsers): every request is checked "
            "against the webhook's HMAC-SHA256 signature before anything is parsed; organizations that restrict "
            "IAM members to their domain refuse allUsers (README: Demand scaling)"
        )
        warnings.append(
            "GCP receiver: it may update every instance group in the pools' projects (GCP grants "
            "instanceGroupManagers permissions per project, not per group); a project for runners only makes it exact"
        )
    if clouds and runners.github.scope == "enterprise":
        warnings.append(
            "enterprise target: the stack cannot create the workflow_job webhooks; add them by hand "
            "(`pulumi up` prints the URLs and where the secret is)"
        )
    return warnings


def _entry(record: Recorded) -> dict[str, Any]:
    return {
        "type": record.type,
        "name": record.name,
        "properties": resource_view(record, full=True),
        "secrets": record.secret_paths,
    }


def _by_type_and_name(records: Iterable[Recorded]) -> list[Recorded]:
    return sorted(records, key=lambda r: (r.type, r.name))


def _split(recording: Recording) -> tuple[dict[str, Recorded], dict[str, list[Recorded]], list[Recorded]]:
    """Pool components by name, each pool's resources, and the stack-level (shared) rest."""
    pools = {r.name: r for r in recording.resources if r.type == POOL_TYPE}
    members = {name: recording.descendants_of(pool.urn) for name, pool in pools.items()}
    pooled = {r.urn for found in members.values() for r in found} | {p.urn for p in pools.values()}
    shared = [r for r in recording.resources if r.urn not in pooled]
    return pools, members, _by_type_and_name(shared)


def plan_document(recording: Recording, runners: RunnersFile, placeholders: dict[str, str]) -> dict[str, Any]:
    """The stable, sorted, machine-readable plan."""
    _, members, shared = _split(recording)
    return {
        "github": {"scope": runners.github.scope, "target": runners.github.target, "url": runners.github.web_url},
        "placeholders": dict(sorted(placeholders.items())),
        "pools": [
            {
                "name": pool.name,
                "provider": pool.provider,
                "labels": pool.all_labels,
                "warnings": pool_warnings(pool, runners),
                "not_checked_offline": NOT_CHECKED_OFFLINE,
                "resources": [_entry(r) for r in _by_type_and_name(members.get(pool.name, []))],
            }
            for pool in runners.pools
        ],
        "shared": [_entry(r) for r in shared],
        "shared_warnings": stack_warnings(runners),
        "outputs": recording.stack_outputs_shown,
    }


def plan_text(recording: Recording, runners: RunnersFile, placeholders: dict[str, str]) -> str:
    github = runners.github
    lines = [f"gh-runners plan for GitHub {github.scope} {github.target} ({github.web_url})"]
    if placeholders:
        lines.append("placeholders (offline): " + ", ".join(f"{k}={v}" for k, v in sorted(placeholders.items())))
    pools, _, shared = _split(recording)
    for pool in runners.pools:
        record = pools.get(pool.name)
        lines += ["", f"{POOL_TYPE}  {pool.name}  ({pool.provider}, runs-on: {', '.join(pool.all_labels)})"]
        for warning in pool_warnings(pool, runners):
            lines.append(f"  ! {warning}")
        for unchecked in NOT_CHECKED_OFFLINE:
            lines.append(f"  ? not checked offline: {unchecked}")
        if record is None:
            continue
        lines += _tree(recording, record.urn, "  ")
    if shared:
        lines += ["", "shared"]
        for warning in stack_warnings(runners):
            lines.append(f"  ! {warning}")
        urns = {r.urn for r in shared}
        for r in (r for r in shared if r.parent not in urns):  # components show their children as a tree
            lines.append(f"  {r.type}  {r.name}{_props_inline(resource_view(r, full=False))}")
            lines += _tree(recording, r.urn, "    ")
    return "\n".join(lines)


def _tree(recording: Recording, urn: str, indent: str) -> list[str]:
    lines = []
    for child in _by_type_and_name(recording.children_of(urn)):
        lines.append(f"{indent}{child.type}  {child.name}")
        for key, value in resource_view(child, full=False).items():
            lines.append(f"{indent}    {key}: {_compact(value)}")
        lines += _tree(recording, child.urn, indent + "  ")
    return lines


def _props_inline(props: dict[str, Any]) -> str:
    return ("  " + " ".join(f"{k}={_compact(v)}" for k, v in props.items())) if props else ""


def _compact(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Statement" in value:
        return "; ".join(
            f"{s.get('Effect')} {','.join(_as_list(s.get('Action')))}"
            + (f" on {','.join(_as_list(s.get('Resource')))}" if s.get("Resource") else "")
            + (f" by {_compact(s['Principal'])}" if s.get("Principal") else "")
            + (" if " + json.dumps(s["Condition"], sort_keys=True) if s.get("Condition") else "")
            for s in value["Statement"]
        )
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) if not isinstance(v, dict) else json.dumps(v) for v in value]
    return [str(value) if not isinstance(value, dict) else json.dumps(value, sort_keys=True)]
