"""A stack's pools, the receivers' configuration documents, and the groups seeded in the doubles.

The documents follow scaler/config.py exactly (what the deploy side renders);
`check` loads each one through scaler.config.load, so a test can never feed
the receiver a document the real stack could not produce.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from doubles.aws import REGION

from scaler.config import load

GCP_PROJECT = "gh-runners-test"  # GcpState's project
GCP_REGION = "us-central1"
BASE_LABELS = ["self-hosted", "linux", "x64"]


@dataclass
class PoolSpec:
    name: str
    cloud: str
    labels: list[str]  # the pool's own; the automatic three are added
    max: int
    min: int = 0
    schedules: list[dict[str, Any]] = field(default_factory=list)
    scales_on_demand: bool = True
    idle_timeout_seconds: int = 600

    @property
    def all_labels(self) -> list[str]:
        return [*BASE_LABELS, *self.labels]

    @property
    def group(self) -> str:
        return f"ghr-test-{self.name}"


def document(cloud: str, pools: list[PoolSpec], *, github_url: str, webhook_secret: dict[str, Any],
             credential: dict[str, Any], endpoints: dict[str, str], scope: str = "repository",
             target: str = "octo-org/octo-repo", budget: int = 100) -> dict[str, Any]:
    entries = []
    for order, pool in enumerate(pools):
        entry: dict[str, Any] = {
            "name": pool.name, "cloud": pool.cloud, "order": order, "labels": pool.all_labels, "max": pool.max,
            "min": pool.min, "schedules": pool.schedules, "scales_on_demand": pool.scales_on_demand,
            "idle_timeout_seconds": pool.idle_timeout_seconds, "ephemeral": True, "aws": None, "gcp": None,
        }
        if pool.cloud == cloud == "aws":
            entry["aws"] = {"region": REGION, "group": pool.group, "scale_up_policy": "gh-runners-scale-up"}
        if pool.cloud == cloud == "gcp":
            entry["gcp"] = {"project": GCP_PROJECT, "region": GCP_REGION, "group": pool.group,
                            "instance_base": pool.group}
        entries.append(entry)
    doc = {
        "version": 1, "cloud": cloud, "stack": "gh-runners-test",
        "github": {"scope": scope, "target": target, "api_url": github_url},
        "webhook_secret": webhook_secret, "github_credential": credential,
        "reconcile": {"interval_seconds": 300, "request_budget": budget},
        "pools": entries, "endpoints": endpoints,
    }
    load(json.dumps(doc))  # the contract holds
    return doc


def seed_aws_group(front: Any, pool: PoolSpec, desired: int | None = None) -> None:
    """Launch template, Auto Scaling group (MinSize = the floor) and the +1 simple scaling policy, in moto."""
    ec2, autoscaling = front.seed("ec2"), front.seed("autoscaling")
    ec2.create_launch_template(LaunchTemplateName=f"{pool.group}-lt",
                               LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "t3.medium"})
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=pool.group, LaunchTemplate={"LaunchTemplateName": f"{pool.group}-lt",
                                                         "Version": "$Latest"},
        MinSize=pool.min, MaxSize=pool.max, DesiredCapacity=pool.min if desired is None else desired,
        AvailabilityZones=[f"{REGION}a"])
    front.put_policy(pool.group, "gh-runners-scale-up", 1)


def aws_desired(front: Any, pool: PoolSpec) -> int:
    group = front.seed("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[pool.group])
    return int(group["AutoScalingGroups"][0]["DesiredCapacity"])


def aws_instances(front: Any, pool: PoolSpec) -> list[str]:
    group = front.seed("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[pool.group])
    return [i["InstanceId"] for i in group["AutoScalingGroups"][0]["Instances"]
            if i["LifecycleState"] in ("InService", "Pending")]
