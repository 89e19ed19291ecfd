"""The GCP receiver under the recording engine: two Cloud Run functions from one source, a
public webhook and a reconcile only the scheduler may call, and identities that may do
exactly what the receiver does."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from plan.engine import Recording
from providers.gcp.scaler import (
    BUILD_PROJECT_ROLES,
    BUILD_SOURCE_ROLE,
    GROUP_SCALER_PERMISSIONS,
    MAIN,
    RECONCILE_ENTRY,
    RUNTIME,
    WEBHOOK_ENTRY,
    GcpReceiver,
    GcpReceiverNames,
)
from providers.scaling import CONFIG_FILE, RECONCILE_SECONDS, receiver_document, render
from scaler.config import load
from stack.webhook import webhook_secret
from tests.providers.harness import SENTINEL_TOKEN, everything_shown
from tests.providers.receivers import (
    PROJECT,
    RUNNERS,
    STACK,
    archive_files,
    credential_document,
    fake_package,
    record,
    sites_of,
)
from tests.providers.receivers import runners as load_runners

GCP_PROJECT, REGION = "ci-project", "europe-west4"
FUNCTION = "gcp:cloudfunctionsv2/function:Function"
INVOKER = "gcp:cloudrunv2/serviceIamMember:ServiceIamMember"
PROJECT_MEMBER = "gcp:projects/iAMMember:IAMMember"


def build(package: Path, region: str = REGION, runners_text: str | None = None) -> None:
    file = load_runners(runners_text) if runners_text else load_runners()
    sites = sites_of(file)
    names = GcpReceiverNames.of(PROJECT, STACK, region)
    webhook, credential = names.refs(GCP_PROJECT)
    document = receiver_document(file, sites, "gcp", webhook_secret=webhook, github_credential=credential, stack=STACK)
    GcpReceiver(
        "gcp-receiver",
        document_text=render(document),
        project=GCP_PROJECT,
        region=region,
        names=names,
        group_projects=[site.project or "" for site in sites.values() if site.cloud == "gcp"],
        webhook_secret=webhook_secret(),
        credential=credential_document(),
        labels={"managed-by": "gh-runners"},
        package=package,
    )


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fake_package(tmp_path_factory.mktemp("code"), "gcp.py")


@pytest.fixture(scope="module")
def recording(package: Path) -> Recording:
    return record(lambda: build(package))


def email(recording: Recording, name: str) -> str:
    return str(recording.named(name).outputs["email"])


def test_two_functions_from_one_source(recording: Recording) -> None:
    functions = {f.name: f.inputs for f in recording.of_type(FUNCTION)}
    assert sorted(functions) == ["gcp-receiver-reconcile", "gcp-receiver-webhook"]
    source = recording.named("gcp-receiver-source-archive")
    bucket = recording.named("gcp-receiver-source").outputs["name"]
    for entry in (WEBHOOK_ENTRY, RECONCILE_ENTRY):
        build_config = functions[f"gcp-receiver-{entry}"]["buildConfig"]
        assert (build_config["runtime"], build_config["entryPoint"]) == (RUNTIME, entry)
        assert build_config["source"] == {"storageSource": {"bucket": bucket, "object": source.outputs["name"]}}
        assert build_config["serviceAccount"] == recording.named("gcp-receiver-build-sa").outputs["name"]
        service = functions[f"gcp-receiver-{entry}"]["serviceConfig"]
        assert service["serviceAccountEmail"] == email(recording, "gcp-receiver-sa")
    files = archive_files(source.inputs["source"])
    assert files["main.py"] == MAIN
    assert sorted(files) == [
        "main.py",
        CONFIG_FILE,
        "scaler/__init__.py",
        "scaler/config.py",
        "scaler/decision.py",
        "scaler/gcp.py",
    ]
    config = load(files[CONFIG_FILE])
    assert config.cloud == "gcp" and {p.name for p in config.own_pools} == {"general", "gpu"}
    assert config.webhook_secret.location == (
        f"projects/{GCP_PROJECT}/secrets/ghs-gh-runners-test-receiver-{REGION}-webhook-secret/versions/latest"
    )


def test_source_object_is_named_after_its_content(package: Path) -> None:
    def object_name(text: str | None) -> str:
        return str(
            record(lambda: build(package, runners_text=text)).named("gcp-receiver-source-archive").inputs["name"]
        )

    same = object_name(None)
    assert re.fullmatch(r"receiver-[0-9a-f]{20}\.zip", same)
    assert object_name(None) == same  # an unchanged `up` keeps the object and the function
    # Any change of the configuration (here one pool's max) is a new object, so a new build.
    assert object_name(RUNNERS.replace("size: {min: 1, max: 3}", "size: {min: 1, max: 4}")) != same


def test_only_the_webhook_is_public(recording: Recording) -> None:
    members = {m.name: m.inputs for m in recording.of_type(INVOKER)}
    assert members["gcp-receiver-webhook-public"]["member"] == "allUsers"
    assert members["gcp-receiver-webhook-public"]["name"] == recording.named("gcp-receiver-webhook").outputs["name"]
    reconcile = members["gcp-receiver-reconcile-invoker"]
    assert reconcile["member"] == f"serviceAccount:{email(recording, 'gcp-receiver-cron-sa')}"
    assert reconcile["name"] == recording.named("gcp-receiver-reconcile").outputs["name"]
    assert {m["role"] for m in members.values()} == {"roles/run.invoker"}
    assert len(members) == 2


def test_scheduler_calls_the_reconcile_with_its_own_oidc_token(recording: Recording) -> None:
    job = recording.named("gcp-receiver-reconcile-schedule").inputs
    url = recording.named("gcp-receiver-reconcile").outputs["url"]
    assert job["schedule"] == f"*/{RECONCILE_SECONDS // 60} * * * *"
    assert job["httpTarget"]["uri"] == url
    assert job["httpTarget"]["oidcToken"] == {
        "serviceAccountEmail": email(recording, "gcp-receiver-cron-sa"),
        "audience": url,
    }
    assert job["region"] == REGION


def test_runtime_account_reads_exactly_its_two_secrets(recording: Recording) -> None:
    runtime = f"serviceAccount:{email(recording, 'gcp-receiver-sa')}"
    readers = [r.inputs for r in recording.of_type("gcp:secretmanager/secretIamMember:SecretIamMember")]
    assert sorted(r["secretId"] for r in readers) == sorted(
        recording.named(f"gcp-receiver-{what}").outputs["name"] for what in ("webhook-secret", "credential")
    )
    assert all(r["member"] == runtime and r["role"] == "roles/secretmanager.secretAccessor" for r in readers)


def test_runtime_account_may_only_grow_groups_in_the_pools_projects(recording: Recording) -> None:
    runtime = f"serviceAccount:{email(recording, 'gcp-receiver-sa')}"
    roles = {r.inputs["project"]: r for r in recording.of_type("gcp:projects/iAMCustomRole:IAMCustomRole")}
    assert sorted(roles) == ["ci-project", "other-project-1"]  # both projects that have GCP pools
    for project, role in roles.items():
        assert role.inputs["permissions"] == GROUP_SCALER_PERMISSIONS
        role_id = role.inputs["roleId"]
        assert re.fullmatch(r"ghs_gh_runners_test_receiver_[0-9a-f]{8}", role_id)
        assert len(role_id) <= 64
        grant = recording.named(f"gcp-receiver-group-scaler-grant-{project}").inputs
        assert (grant["project"], grant["member"]) == (project, runtime)
        assert grant["role"] == f"projects/{project}/roles/{role_id}"
    runtime_grants = [m.inputs["role"] for m in recording.of_type(PROJECT_MEMBER) if m.inputs["member"] == runtime]
    assert all(role.startswith("projects/") for role in runtime_grants)  # no predefined role at all


def test_role_ids_are_new_after_a_destroy(recording: Recording) -> None:
    """A deleted custom role keeps its id ~37 days: the id carries a random suffix kept in state."""
    suffixes = {s.name: s.inputs for s in recording.of_type("random:index/randomId:RandomId")}
    assert suffixes == {
        "gcp-receiver-role-suffix-ci-project": {"byteLength": 4, "keepers": {"project": "ci-project"}},
        "gcp-receiver-role-suffix-other-project-1": {"byteLength": 4, "keepers": {"project": "other-project-1"}},
    }


def test_build_account_roles(recording: Recording) -> None:
    build = f"serviceAccount:{email(recording, 'gcp-receiver-build-sa')}"
    project_roles = sorted(m.inputs["role"] for m in recording.of_type(PROJECT_MEMBER) if m.inputs["member"] == build)
    assert project_roles == sorted(BUILD_PROJECT_ROLES.values())
    (source,) = recording.of_type("gcp:storage/bucketIAMMember:BucketIAMMember")
    assert source.inputs == {
        "bucket": recording.named("gcp-receiver-source").outputs["name"],
        "role": BUILD_SOURCE_ROLE,
        "member": build,
    }


def test_source_bucket_is_private(recording: Recording) -> None:
    bucket = recording.named("gcp-receiver-source").inputs
    assert bucket["publicAccessPrevention"] == "enforced"
    assert bucket["uniformBucketLevelAccess"] is True
    assert bucket["location"] == REGION


def test_functions_wait_for_every_grant(recording: Recording) -> None:
    grants = [
        r.urn
        for r in recording.resources
        if r.type
        in (
            "gcp:secretmanager/secretIamMember:SecretIamMember",
            "gcp:secretmanager/secretVersion:SecretVersion",
            PROJECT_MEMBER,
            "gcp:storage/bucketIAMMember:BucketIAMMember",
        )
    ]
    for function in recording.of_type(FUNCTION):
        assert set(grants) <= set(function.dependencies)


def test_secrets_are_secret(recording: Recording) -> None:
    for what in ("webhook-secret", "credential"):
        assert recording.named(f"gcp-receiver-{what}-version").secret_paths == ["secretData"]
    shown = "\n".join(everything_shown(recording))
    assert SENTINEL_TOKEN not in shown
    assert recording.named("gcp-receiver-webhook-secret-version").inputs["secretData"] not in shown


def test_names_fit_and_follow_their_forcenew_inputs() -> None:
    """Secret Manager's replication is ForceNew and names the region: the secret ids carry it."""
    here, there = GcpReceiverNames.of(PROJECT, STACK, REGION), GcpReceiverNames.of(PROJECT, STACK, "us-east1")
    assert here.webhook_secret != there.webhook_secret and here.credential_secret != there.credential_secret
    assert here.runtime_account == there.runtime_account  # account ids are per project: no input forces them
    long = GcpReceiverNames.of("a-very-long-project-name-" * 3, "production-stack-" * 3, "northamerica-northeast2")
    for account in (long.runtime_account, long.build_account, long.scheduler_account):
        assert re.fullmatch(r"[a-z][-a-z0-9]{4,28}[a-z0-9]", account)
    for secret in (long.webhook_secret, long.credential_secret):
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,255}", secret)
    assert re.fullmatch(r"[A-Za-z0-9_.]{3,55}", long.role_prefix)
    assert len({long.runtime_account, long.build_account, long.scheduler_account}) == 3


def test_moving_region_moves_the_secrets_but_keeps_the_accounts(package: Path) -> None:
    first = record(lambda: build(package))
    moved = record(lambda: build(package, region="us-east1"))
    for what in ("webhook-secret", "credential"):
        assert (
            first.named(f"gcp-receiver-{what}").inputs["secretId"]
            != moved.named(f"gcp-receiver-{what}").inputs["secretId"]
        )
    assert first.named("gcp-receiver-sa").inputs["accountId"] == moved.named("gcp-receiver-sa").inputs["accountId"]


def test_the_package_must_have_the_gcp_entry_points(tmp_path: Path) -> None:
    with pytest.raises(Exception, match=r"lacks scaler/gcp\.py"):
        record(lambda: build(fake_package(tmp_path)))


def test_outputs_the_webhook_url(recording: Recording) -> None:
    receiver = recording.named("gcp-receiver")
    assert receiver.component_outputs["url"] == recording.named("gcp-receiver-webhook").outputs["url"]
