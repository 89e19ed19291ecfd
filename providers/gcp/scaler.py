"""GCP receiver: Cloud Run functions that grow managed instance groups on `workflow_job` webhooks.

One per stack that has GCP pools, in the project and region of the first GCP pool:

- the receiver's package as source in a private bucket (an archive named
  after its content, so a change redeploys and an unchanged `up` does not),
  built by a build service account of its own;
- two functions from that one source: `webhook`, public (GitHub cannot
  authenticate to Google; the receiver checks the HMAC signature before it
  parses anything), and `reconcile`, which only the Cloud Scheduler job's own
  service account may invoke -- Cloud Run checks that job's OIDC token, so no
  one else can trigger the reconcile and spend the GitHub API budget;
- a runtime service account that may read exactly the receiver's two secrets
  and grow the stack's groups;
- the secrets in Secret Manager, replicated in the receiver's region.

Public access takes an IAM binding for `allUsers`. Organizations that enforce
domain-restricted sharing (`constraints/iam.allowedPolicyMemberDomains`) refuse
it; README says what to do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_gcp as gcp
import pulumi_random as random

from providers.naming import part
from providers.scaling import (
    RECONCILE_SECONDS,
    SecretRef,
    code_archive,
    code_files,
    content_digest,
    receiver_name,
)

RECEIVER_TYPE = "ghrunners:gcp:Receiver"  # part of every URN: never rename without aliases
# Cloud Run functions load `main.py` from the source root; it re-exports the
# receiver's GCP entry points (scaler/gcp.py). The Python runtime needs nothing
# the standard library lacks: the receiver talks to the metadata server and the
# REST APIs with urllib.
RUNTIME = "python313"
ENTRY_FILE = "scaler/gcp.py"
WEBHOOK_ENTRY = "webhook"
RECONCILE_ENTRY = "reconcile"
MAIN = f"from scaler.gcp import {RECONCILE_ENTRY}, {WEBHOOK_ENTRY}  # noqa: F401  (Cloud Run functions entry points)\n"
MEMORY = "256M"
TIMEOUT_SECONDS = {WEBHOOK_ENTRY: 60, RECONCILE_ENTRY: 120}
# A burst of deliveries fans out over instances; the cap bounds what a flood
# of unsigned requests can cost. A request over the cap gets 429 and GitHub
# does not redeliver: the reconcile closes that gap.
MAX_INSTANCES = {WEBHOOK_ENTRY: 20, RECONCILE_ENTRY: 1}
SECRET_ACCESSOR = "roles/secretmanager.secretAccessor"
INVOKER = "roles/run.invoker"
# regionInstanceGroupManagers.createInstances and .resize both need
# compute.instanceGroupManagers.update on the group; .get (and
# listManagedInstances) need .get (REST reference of each method). Compute
# Engine has no IAM policy on a single instance group manager, and IAM
# Conditions' resource names do not cover instance group managers
# (https://cloud.google.com/iam/docs/conditions-resource-attributes), so a
# project-level custom role with only these two permissions is the narrowest
# grant that exists. A dedicated project for runners makes it exact.
GROUP_SCALER_PERMISSIONS = ["compute.instanceGroupManagers.get", "compute.instanceGroupManagers.update"]
# What Cloud Build needs to build a function with a build service account of
# its own (https://cloud.google.com/run/docs/configuring/services/build-service-account):
# logs and the built image at project level, the source on the source bucket only.
BUILD_PROJECT_ROLES = {"logs": "roles/logging.logWriter", "images": "roles/artifactregistry.writer"}
BUILD_SOURCE_ROLE = "roles/storage.objectAdmin"


@dataclass(frozen=True)
class GcpReceiverNames:
    """The receiver's fixed cloud names (functions, bucket and job are auto-named by Pulumi)."""

    runtime_account: str  # service account ids: 6-30 characters
    build_account: str
    scheduler_account: str
    webhook_secret: str  # Secret Manager secret ids
    credential_secret: str
    role_prefix: str  # custom role id before its random suffix: letters, digits, `_`

    @classmethod
    def of(cls, project: str, stack: str, region: str) -> GcpReceiverNames:
        # A secret's replication is ForceNew (terraform-provider-google,
        # secret_manager_secret: `replication`), and it names the region: the
        # region is part of the id, so a receiver that moves region creates
        # its new secrets before deleting the old ones without a 409.
        return cls(
            runtime_account=receiver_name(project, stack, "receiver", 30),
            build_account=receiver_name(project, stack, "build", 30),
            scheduler_account=receiver_name(project, stack, "cron", 30),
            webhook_secret=receiver_name(project, stack, f"receiver-{region}-webhook-secret", 255),
            credential_secret=receiver_name(project, stack, f"receiver-{region}-credential", 255),
            role_prefix=receiver_name(project, stack, "receiver", 64 - 9).replace("-", "_"),
        )

    def refs(self, project: str) -> tuple[SecretRef, SecretRef]:
        """(webhook secret, GitHub credential) as the receiver's configuration names them."""
        return (
            SecretRef(f"projects/{project}/secrets/{self.webhook_secret}/versions/latest"),
            SecretRef(f"projects/{project}/secrets/{self.credential_secret}/versions/latest"),
        )


def source_files(document_text: str, package: Path | None = None) -> dict[str, str]:
    """The function's source: the package, its configuration, and `main.py`."""
    return code_files(
        document_text, required=[ENTRY_FILE, "scaler/config.py"], package=package, extra={"main.py": MAIN}
    )


class GcpReceiver(pulumi.ComponentResource):
    """The stack's GCP receiver; `url` is what the GitHub webhook points at."""

    url: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        document_text: str,
        project: str,
        region: str,
        names: GcpReceiverNames,
        group_projects: Sequence[str],
        webhook_secret: pulumi.Input[str],
        credential: pulumi.Input[str],
        labels: Mapping[str, str],
        opts: pulumi.ResourceOptions | None = None,
        package: Path | None = None,  # the receiver's package; tests pass a stand-in
    ) -> None:
        super().__init__(RECEIVER_TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        files = source_files(document_text, package)

        runtime = self._account(name, "sa", names.runtime_account, project, "runs the receiver's functions")
        build = self._account(name, "build-sa", names.build_account, project, "builds the receiver's functions")
        scheduler = self._account(name, "cron-sa", names.scheduler_account, project, "invokes the reconcile")
        runtime_member = runtime.email.apply(lambda email: f"serviceAccount:{email}")
        build_member = build.email.apply(lambda email: f"serviceAccount:{email}")

        grants: list[pulumi.Resource] = []
        for what, secret_id, value in (
            ("webhook-secret", names.webhook_secret, webhook_secret),
            ("credential", names.credential_secret, credential),
        ):
            secret = gcp.secretmanager.Secret(
                part(name, what),
                secret_id=secret_id,
                project=project,
                # In the receiver's region: resource-location org policies
                # refuse automatic (global) replication.
                replication=gcp.secretmanager.SecretReplicationArgs(
                    user_managed=gcp.secretmanager.SecretReplicationUserManagedArgs(
                        replicas=[gcp.secretmanager.SecretReplicationUserManagedReplicaArgs(location=region)]
                    )
                ),
                labels=dict(labels),
                opts=child,
            )
            grants.append(
                gcp.secretmanager.SecretVersion(
                    part(name, f"{what}-version"), secret=secret.id, secret_data=value, opts=child
                )
            )
            grants.append(
                gcp.secretmanager.SecretIamMember(
                    part(name, f"{what}-reader"),
                    secret_id=secret.id,
                    project=project,
                    role=SECRET_ACCESSOR,
                    member=runtime_member,
                    opts=child,
                )
            )
        for group_project in sorted(set(group_projects)):
            grants += self._group_scaler(name, group_project, names.role_prefix, runtime_member)

        bucket = gcp.storage.Bucket(
            part(name, "source"),
            project=project,
            location=region,
            uniform_bucket_level_access=True,
            public_access_prevention="enforced",
            force_destroy=True,  # old source archives go with the bucket on destroy
            labels=dict(labels),
            opts=child,
        )
        source = gcp.storage.BucketObject(
            part(name, "source-archive"),
            bucket=bucket.name,
            # Named after the content: a change is a new object and a new
            # build; the same code keeps its object and its function.
            name=f"receiver-{content_digest(files)[:20]}.zip",
            source=code_archive(files),
            opts=child,
        )
        build_grants: list[pulumi.Resource] = [
            gcp.projects.IAMMember(
                part(name, f"build-{key}"), project=project, role=role, member=build_member, opts=child
            )
            for key, role in BUILD_PROJECT_ROLES.items()
        ]
        build_grants.append(
            gcp.storage.BucketIAMMember(
                part(name, "build-source"), bucket=bucket.name, role=BUILD_SOURCE_ROLE, member=build_member, opts=child
            )
        )
        functions = {
            entry: gcp.cloudfunctionsv2.Function(
                part(name, entry),
                project=project,
                location=region,
                description=f"gh-runners receiver: {what}",
                build_config=gcp.cloudfunctionsv2.FunctionBuildConfigArgs(
                    runtime=RUNTIME,
                    entry_point=entry,
                    service_account=build.name,  # projects/P/serviceAccounts/EMAIL
                    source=gcp.cloudfunctionsv2.FunctionBuildConfigSourceArgs(
                        storage_source=gcp.cloudfunctionsv2.FunctionBuildConfigSourceStorageSourceArgs(
                            bucket=bucket.name, object=source.name
                        )
                    ),
                ),
                service_config=gcp.cloudfunctionsv2.FunctionServiceConfigArgs(
                    service_account_email=runtime.email,
                    available_memory=MEMORY,
                    timeout_seconds=TIMEOUT_SECONDS[entry],
                    max_instance_count=MAX_INSTANCES[entry],
                    ingress_settings="ALLOW_ALL",
                    all_traffic_on_latest_revision=True,
                ),
                labels=dict(labels),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[*grants, *build_grants]),
            )
            for entry, what in (
                (WEBHOOK_ENTRY, "workflow_job webhooks"),
                (RECONCILE_ENTRY, "the scheduled reconcile"),
            )
        }
        # A Cloud Run function's HTTP endpoint is its Cloud Run service, named
        # after the function; invoking it takes run.invoker on that service.
        gcp.cloudrunv2.ServiceIamMember(
            part(name, "webhook-public"),
            project=project,
            location=region,
            name=functions[WEBHOOK_ENTRY].name,
            role=INVOKER,
            member="allUsers",
            opts=child,
        )
        invoker = gcp.cloudrunv2.ServiceIamMember(
            part(name, "reconcile-invoker"),
            project=project,
            location=region,
            name=functions[RECONCILE_ENTRY].name,
            role=INVOKER,
            member=scheduler.email.apply(lambda email: f"serviceAccount:{email}"),
            opts=child,
        )
        reconcile_url = functions[RECONCILE_ENTRY].url
        gcp.cloudscheduler.Job(
            part(name, "reconcile-schedule"),
            project=project,
            region=region,
            description="gh-runners receiver: reconcile queued jobs with capacity",
            schedule=f"*/{RECONCILE_SECONDS // 60} * * * *",
            time_zone="Etc/UTC",
            attempt_deadline=f"{TIMEOUT_SECONDS[RECONCILE_ENTRY]}s",
            http_target=gcp.cloudscheduler.JobHttpTargetArgs(
                uri=reconcile_url,
                http_method="POST",
                # Cloud Run verifies this token: only this account may invoke.
                oidc_token=gcp.cloudscheduler.JobHttpTargetOidcTokenArgs(
                    service_account_email=scheduler.email, audience=reconcile_url
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[invoker]),
        )

        self.url = functions[WEBHOOK_ENTRY].url
        self.register_outputs({"url": self.url, "runtimeAccount": runtime.email})

    def _account(self, name: str, what: str, account_id: str, project: str, purpose: str) -> gcp.serviceaccount.Account:
        return gcp.serviceaccount.Account(
            part(name, what),
            account_id=account_id,
            project=project,
            display_name=f"gh-runners receiver: {purpose}",
            description=f"gh-runners receiver: {purpose}",
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _group_scaler(
        self, name: str, project: str, role_prefix: str, member: pulumi.Input[str]
    ) -> list[pulumi.Resource]:
        """A custom role that may grow instance groups, in one project of the stack's pools.

        A deleted custom role keeps its id for up to ~37 days
        (terraform-provider-google, resource_google_project_iam_custom_role.go),
        so the id carries a random suffix kept in state: a stack destroyed and
        deployed again on any day gets a new, free id.
        """
        suffix = random.RandomId(
            part(name, f"role-suffix-{project}"),
            byte_length=4,
            keepers={"project": project},
            opts=pulumi.ResourceOptions(parent=self),
        )
        role = gcp.projects.IAMCustomRole(
            part(name, f"group-scaler-{project}"),
            role_id=suffix.hex.apply(lambda hex_: f"{role_prefix}_{hex_}"),
            project=project,
            title="gh-runners receiver: grow instance groups",
            description="createInstances and resize on managed instance groups, for the gh-runners receiver.",
            permissions=GROUP_SCALER_PERMISSIONS,
            opts=pulumi.ResourceOptions(parent=self),
        )
        grant = gcp.projects.IAMMember(
            part(name, f"group-scaler-grant-{project}"),
            project=project,
            role=pulumi.Output.concat("projects/", project, "/roles/", role.role_id),
            member=member,
            opts=pulumi.ResourceOptions(parent=self),
        )
        return [role, grant]
