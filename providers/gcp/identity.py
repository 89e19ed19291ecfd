"""GCP credential and identity: the Secret Manager secret and the one service account that may read it."""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp
import pulumi_random as random

from providers.base import Identity
from providers.gcp import ROLE_SUFFIX_BYTES, GcpNames
from providers.naming import part
from schema.models import GcpPool

SECRET_ACCESSOR = "roles/secretmanager.secretAccessor"
# The agent's own logs and metrics: write-only roles, no read access to anything.
PROJECT_ROLES = {"logs": "roles/logging.logWriter", "metrics": "roles/monitoring.metricWriter"}
# What the agent does with its own group:
# - regionInstanceGroupManagers.listManagedInstances (the ghost sweep) and .get
#   (the target size, before leaving) need compute.instanceGroupManagers.get;
# - leaving through the group -- deleteInstances (lowers the target size) or,
#   at the floor, recreateInstances -- needs compute.instanceGroupManagers.update
#   (REST reference, regionInstanceGroupManagers/deleteInstances and
#   /recreateInstances, "Authorization").
# Compute Engine has no IAM policy on a single instance group manager, so a
# project-level custom role holding only these is the narrowest grant: a VM's
# root could change other groups of the project too (the runner user cannot
# reach the metadata server). README says to give runners a project of their own.
GROUP_PERMISSIONS = ["compute.instanceGroupManagers.get", "compute.instanceGroupManagers.update"]


def build_identity(
    pool: GcpPool,
    project: str,
    region: str,
    names: GcpNames,
    credential: pulumi.Output[str],
    labels: dict[str, str],
    opts: pulumi.ResourceOptions,
) -> Identity:
    name = pool.name
    secret = gcp.secretmanager.Secret(
        part(name, "secret"),
        secret_id=names.secret_id,
        project=project,
        # User-managed replication in the pool's region: the credential stays
        # where its VMs run, and projects under a resource-location org policy
        # (which rejects automatic, global replication) can still create it.
        replication=gcp.secretmanager.SecretReplicationArgs(
            user_managed=gcp.secretmanager.SecretReplicationUserManagedArgs(
                replicas=[gcp.secretmanager.SecretReplicationUserManagedReplicaArgs(location=region)]
            )
        ),
        labels=labels,
        opts=opts,
    )
    version = gcp.secretmanager.SecretVersion(
        part(name, "credential"),
        secret=secret.id,
        secret_data=credential,  # a Pulumi secret: encrypted in state, never shown
        opts=opts,
    )
    account = gcp.serviceaccount.Account(
        part(name, "sa"),
        account_id=names.account_id,
        project=project,
        display_name=f"gh-runners pool {name}",
        description="Runner VMs of one gh-runners pool: reads its own GitHub credential, lists its own group.",
        opts=opts,
    )
    member = account.email.apply(lambda email: f"serviceAccount:{email}")
    grants: list[pulumi.CustomResource] = [
        gcp.secretmanager.SecretIamMember(
            part(name, "sa-secret"),
            secret_id=secret.id,
            project=project,
            role=SECRET_ACCESSOR,
            member=member,
            opts=opts,
        )
    ]
    for key, role in PROJECT_ROLES.items():
        grants.append(
            gcp.projects.IAMMember(part(name, f"sa-{key}"), project=project, role=role, member=member, opts=opts)
        )
    # A deleted custom role keeps its id: undeletable for 7 days (the provider
    # then revives it on create), and reserved until it is purged about 37 days
    # after deletion, when a create under that id fails
    # (terraform-provider-google, resourcemanager/resource_google_project_iam_custom_role.go,
    # Create: "soft-deleted"). A random suffix, kept in state, gives every
    # deployment its own id, so destroy and re-create work on any day. It
    # renews with the project because the role moves (role_id and project are
    # ForceNew); the prefix keeps the id recognisable.
    suffix = random.RandomId(
        part(name, "role-suffix"),
        byte_length=ROLE_SUFFIX_BYTES,
        keepers={"project": project},
        opts=pulumi.ResourceOptions(parent=opts.parent),  # the random provider, not the pool's GCP one
    )
    reader = gcp.projects.IAMCustomRole(
        part(name, "group-role"),
        role_id=suffix.hex.apply(lambda hex_: f"{names.role_prefix}_{hex_}"),
        project=project,
        title=f"gh-runners {name} group reader",
        description="Read managed instance groups (listManagedInstances) for the gh-runners ghost sweep.",
        permissions=GROUP_PERMISSIONS,
        opts=opts,
    )
    grants.append(
        gcp.projects.IAMMember(
            part(name, "sa-group"),
            project=project,
            role=pulumi.Output.concat("projects/", project, "/roles/", reader.role_id),
            member=member,
            opts=opts,
        )
    )
    # The VMs take the account through this output: it resolves only once every
    # grant exists, so no VM boots before it may read its credential.
    ready = pulumi.Output.all(account.email, *[grant.id for grant in grants]).apply(lambda values: str(values[0]))
    return Identity(
        principal=account.email,
        instance_identity=ready,
        secret_id=secret.id,
        needed_by_vms=[version, *grants],
    )
