"""Demand scaling, the cloud-neutral half of the deploy side: where each cloud's
receiver lives, what it is called, and the configuration document it gets.

The document is the contract in `scaler/config.py` (the receiver's package):
every pool of the stack, both clouds, in file order -- so every receiver
applies the same pool-choice rule and exactly one of them acts for a job --
plus, for the receiver's own pools, where to act. It is rendered from plain,
non-secret values only (runners.yaml and each pool's `Site`), so the function
code that carries it is the same bytes on every `pulumi up` until something
real changes. Nothing here imports a cloud SDK.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi

from providers.base import Site
from providers.naming import deployment_scoped
from schema.models import Pool, RunnersFile

# The receiver's package, shipped as source: the runtimes already have what it
# imports (boto3 on Lambda, the standard library on GCP), so no packaging step
# pulls anything from a registry at deploy time.
SCALER_PACKAGE = Path(__file__).resolve().parent.parent / "scaler"
CONFIG_VERSION = 1
CONFIG_FILE = "scaler.json"  # at the root of the function's code (scaler/config.py: CONFIG_FILE)
# How often the scheduled reconcile runs: the longest a queued job waits after
# a lost webhook is about this plus one VM boot. GitHub's REST budget (5,000
# requests an hour for a PAT or an App installation) pays for a 100-request
# reconcile twelve times an hour with most of it left for the VMs.
RECONCILE_SECONDS = 300
RECONCILE_REQUEST_BUDGET = 100
# The +1 simple scaling policy every AWS group carries. A policy name is unique
# only within its group, and terraform-provider-aws forces a new policy only
# when `name` or `autoscaling_group_name` changes
# (internal/service/autoscaling/policy.go): with a fixed name, a replaced policy
# always belongs to a new group, so create-before-delete never meets itself.
SCALE_UP_POLICY = "gh-runners-scale-up"
# Receiver names start with "ghs", pool names with "ghr": no pool, whatever its
# name, can derive a cloud name a receiver uses.
RECEIVER_PREFIX = "ghs"


@dataclass(frozen=True)
class SecretRef:
    """Where a receiver reads a secret: SSM parameter name (+ region), or a Secret Manager version."""

    location: str
    region: str | None = None

    def as_json(self) -> dict[str, str | None]:
        return {"location": self.location, "region": self.region}


@dataclass(frozen=True)
class ReceiverPlace:
    """Where one cloud's receiver lives: the site of that cloud's first pool in runners.yaml."""

    cloud: str
    region: str
    project: str | None  # GCP only


def receiver_clouds(runners: RunnersFile) -> list[str]:
    """The clouds that get a receiver: those with a pool that scales on demand, in file order.

    A cloud whose pools are all fixed needs none: its pools still win the jobs
    that fit them under the rule (every receiver knows every pool), and nobody
    grows them.
    """
    return list(dict.fromkeys(pool.provider for pool in runners.pools if pool.on_demand))


def receiver_place(runners: RunnersFile, sites: Mapping[str, Site], cloud: str) -> ReceiverPlace:
    """The first pool of `cloud` decides the receiver's region (and GCP project).

    A receiver may scale groups in other regions and projects too; the first
    pool is a predictable choice a reader finds in the file. Reordering pools
    so that another region comes first moves the receiver: a new function and
    URL, which `pulumi up` also points the GitHub webhook at.
    """
    first = next(pool for pool in runners.pools if pool.provider == cloud)
    site = sites[first.name]
    return ReceiverPlace(cloud=cloud, region=site.region, project=site.project)


def receiver_name(project: str, stack: str, what: str, limit: int) -> str:
    """A cloud name for one part of a stack's receiver, e.g. `ghs-gh-runners-dev-receiver`."""
    return deployment_scoped(project, stack, what, limit, prefix=RECEIVER_PREFIX)


def receiver_document(
    runners: RunnersFile,
    sites: Mapping[str, Site],
    cloud: str,
    *,
    webhook_secret: SecretRef,
    github_credential: SecretRef,
    stack: str,
) -> dict[str, Any]:
    """The configuration one cloud's receiver gets (scaler/config.py describes every key)."""
    return {
        "version": CONFIG_VERSION,
        "cloud": cloud,
        "stack": stack,
        "github": {
            "scope": runners.github.scope,
            "target": runners.github.target,
            "api_url": runners.github.api_url,
        },
        "webhook_secret": webhook_secret.as_json(),
        "github_credential": github_credential.as_json(),
        "reconcile": {"interval_seconds": RECONCILE_SECONDS, "request_budget": RECONCILE_REQUEST_BUDGET},
        "pools": [_pool_entry(pool, order, sites[pool.name], cloud) for order, pool in enumerate(runners.pools)],
    }


def render(document: Mapping[str, Any]) -> str:
    """The document as the function reads it: stable bytes for the same content."""
    return json.dumps(document, indent=1, sort_keys=True) + "\n"


def _pool_entry(pool: Pool, order: int, site: Site, receiver_cloud: str) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": pool.name,
        "cloud": pool.provider,
        # File order is the rule's last tie-break: the same in every receiver.
        "order": order,
        "labels": pool.all_labels,
        "max": pool.size.max,
        "min": pool.size.min,
        "schedules": [
            {"cron": schedule.cron, "desired": schedule.desired, "time_zone": schedule.time_zone}
            for schedule in pool.schedules
        ],
        "scales_on_demand": pool.on_demand,
        "idle_timeout_seconds": pool.idle_timeout_seconds,
        "ephemeral": pool.ephemeral,
        "aws": None,
        "gcp": None,
    }
    if pool.provider == receiver_cloud:
        entry[receiver_cloud] = _TARGETS[receiver_cloud](pool, site)
    return entry


def _aws_target(pool: Pool, site: Site) -> dict[str, str]:
    return {"region": site.region, "group": site.group_name, "scale_up_policy": SCALE_UP_POLICY}


def _gcp_target(pool: Pool, site: Site) -> dict[str, str]:
    base = site.extra.get("instance_base")
    if not site.project or not base:
        raise ValueError(f"the GCP site of pool {pool.name} needs a project and extra['instance_base'] (the MIG's)")
    return {"project": site.project, "region": site.region, "group": site.group_name, "instance_base": base}


_TARGETS = {"aws": _aws_target, "gcp": _gcp_target}


def code_files(
    document_text: str, required: Iterable[str], package: Path | None = None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The function's code: every module of the receiver's package, its configuration
    at the root (where scaler/config.py looks for it), and any cloud-specific shim.

    `required` names files the cloud's entry point needs (e.g. `scaler/aws.py`):
    a missing one stops the program here instead of deploying a function that
    fails on its first request.
    """
    package = package or SCALER_PACKAGE
    files = {
        f"scaler/{path.relative_to(package).as_posix()}": path.read_text(encoding="utf-8")
        for path in sorted(package.rglob("*.py"))
        if "__pycache__" not in path.parts
    }
    files[CONFIG_FILE] = document_text
    files.update(extra or {})
    missing = sorted(set(required) - set(files))
    if missing:
        raise ValueError(f"the receiver's code lacks {', '.join(missing)} (looked in {package})")
    return files


def code_archive(files: Mapping[str, str]) -> pulumi.AssetArchive:
    """The files as a Pulumi archive (the engine zips it; Lambda and GCS both take it)."""
    return pulumi.AssetArchive({name: pulumi.StringAsset(text) for name, text in sorted(files.items())})


def content_digest(files: Mapping[str, str]) -> str:
    """sha256 over the files in name order: names a code object after its content."""
    digest = hashlib.sha256()
    for name, text in sorted(files.items()):
        data = text.encode()
        digest.update(name.encode() + b"\0" + len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()
