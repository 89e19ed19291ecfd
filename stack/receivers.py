"""Demand scaling for the whole stack: the webhook secret, one receiver per cloud, and their webhooks.

The program calls `build_receivers` once, after the pools: it needs every
pool's `Site` (the receivers' configuration names each group) and, per cloud,
a way to reach it (`Clouds`: the backend's provider for a region or project,
so the receivers share the pools' providers). Each cloud's module is imported
only when the stack has pools there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pulumi

from providers.base import Site, StackContext
from providers.naming import fitted, slug
from providers.scaling import ReceiverPlace, receiver_clouds, receiver_document, receiver_place, render
from schema.models import RunnersFile
from stack.config import GitHubCredential
from stack.webhook import build_webhooks, enterprise_setup, webhook_secret

if TYPE_CHECKING:
    from providers.aws.identity import Account

RECEIVER_TAGS = {"managed-by": "gh-runners", "gh-runners-component": "receiver"}


@dataclass(frozen=True)
class Clouds:
    """How to reach each cloud: resource options (and, on AWS, the account) for a place."""

    aws: Callable[[str], tuple[pulumi.ResourceOptions, Account]] | None = None  # region -> (opts, account)
    gcp: Callable[[str, str], pulumi.ResourceOptions] | None = None  # (project, region) -> opts


@dataclass(frozen=True)
class Receivers:
    urls: Mapping[str, pulumi.Output[str]]  # cloud -> webhook URL (non-secret: export it)
    secret_locations: Mapping[str, str]  # cloud -> where its webhook secret lives
    webhooks: Mapping[str, pulumi.Resource] = field(default_factory=dict)


def build_receivers(
    runners: RunnersFile,
    sites: Mapping[str, Site],
    context: StackContext,
    credential: GitHubCredential,
    clouds: Clouds,
) -> Receivers:
    """The webhook secret, a receiver per cloud with pools, and a webhook per receiver."""
    secret = webhook_secret()
    urls: dict[str, pulumi.Output[str]] = {}
    locations: dict[str, str] = {}
    tags = {**RECEIVER_TAGS, "gh-runners-stack": fitted(slug(context.stack), 63)}
    for cloud in receiver_clouds(runners):
        place = receiver_place(runners, sites, cloud)
        build = _aws_receiver if cloud == "aws" else _gcp_receiver
        urls[cloud], locations[cloud] = build(runners, sites, context, place, secret, tags, clouds)
    if runners.github.scope == "enterprise":
        # Nothing the provider can manage: say exactly what to set up by hand.
        pulumi.log.warn(enterprise_setup(runners.github, locations))
        return Receivers(urls=urls, secret_locations=locations)
    webhooks = build_webhooks(runners.github, credential, urls, secret)
    return Receivers(urls=urls, secret_locations=locations, webhooks=webhooks)


def _aws_receiver(
    runners: RunnersFile,
    sites: Mapping[str, Site],
    context: StackContext,
    place: ReceiverPlace,
    secret: pulumi.Output[str],
    tags: dict[str, str],
    clouds: Clouds,
) -> tuple[pulumi.Output[str], str]:
    from providers.aws.scaler import AwsReceiver, AwsReceiverNames  # pulumi_aws only for AWS pools

    assert clouds.aws, "AWS pools need Clouds.aws"
    opts, account = clouds.aws(place.region)
    names = AwsReceiverNames.of(context.project, context.stack)
    webhook_ref, credential_ref = names.refs(place.region)
    document = receiver_document(
        runners, sites, "aws", webhook_secret=webhook_ref, github_credential=credential_ref, stack=context.stack
    )
    receiver = AwsReceiver(
        "aws-receiver",
        document_text=render(document),
        region=place.region,
        names=names,
        # Only pools that scale on demand have a +1 policy to execute; the
        # floor of every pool is AWS's own business (MinSize, moved by schedules).
        groups=[
            (sites[pool.name].region, sites[pool.name].group_name)
            for pool in runners.pools
            if pool.provider == "aws" and pool.on_demand
        ],
        account=account,
        webhook_secret=secret,
        credential=context.credential,
        tags=tags,
        opts=opts,
    )
    return receiver.url, webhook_ref.location


def _gcp_receiver(
    runners: RunnersFile,
    sites: Mapping[str, Site],
    context: StackContext,
    place: ReceiverPlace,
    secret: pulumi.Output[str],
    tags: dict[str, str],
    clouds: Clouds,
) -> tuple[pulumi.Output[str], str]:
    from providers.gcp.scaler import GcpReceiver, GcpReceiverNames  # pulumi_gcp only for GCP pools

    assert clouds.gcp and place.project, "GCP pools need Clouds.gcp and a project"
    names = GcpReceiverNames.of(context.project, context.stack, place.region)
    webhook_ref, credential_ref = names.refs(place.project)
    document = receiver_document(
        runners, sites, "gcp", webhook_secret=webhook_ref, github_credential=credential_ref, stack=context.stack
    )
    receiver = GcpReceiver(
        "gcp-receiver",
        document_text=render(document),
        project=place.project,
        region=place.region,
        names=names,
        group_projects=[site.project or "" for site in sites.values() if site.cloud == "gcp"],
        webhook_secret=secret,
        credential=context.credential,
        labels=tags,
        opts=clouds.gcp(place.project, place.region),
    )
    return receiver.url, webhook_ref.location
