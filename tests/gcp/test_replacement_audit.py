"""The GCP replacement audit: every fixed cloud name changes with what forces its replacement.

A real `pulumi up` replaces a resource whose ForceNew input changed, creating
the new one before deleting the old. A resource with a fixed physical name
then collides with itself (409 already exists) unless its name -- or the scope
the name lives in (project, region) -- changes too. Mocks never replace
anything, so this audit does what the engine would: for every runners.yaml
field of a GCP pool it plans the file before and after a change of that field,
and for every named resource compares the ForceNew inputs, which come from
terraform-provider-google's schemas (cited per entry, paths under
hashicorp/terraform-provider-google/google/services/). A named resource type
without an entry fails the audit: add its row, with its source.

All mutations are planned in two runs: pool `m<i>` carries mutation i, so the
pools never share a resource.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from plan.engine import Recorded, Recording
from providers.pool import RUNNER_POOL_TYPE
from schema.models import GcpDisk, GcpNetwork, GcpPool, Schedule, Size
from tests.providers.harness import run_file


@dataclass(frozen=True)
class Named:
    """A resource type the program names itself, and what the provider replaces it for."""

    names: tuple[str, ...]  # the inputs that are its physical name
    force_new: tuple[str, ...]  # inputs whose change replaces it (names included)
    scope: tuple[str, ...]  # inputs the name is unique within: another scope cannot collide
    source: str  # the schema that says so
    unique_suffix: bool = False  # the provider appends a unique suffix: a replacement never collides
    sets: tuple[str, ...] = ()  # inputs the provider stores as a set: order is no change


GROUP = "gcp:compute/regionInstanceGroupManager:RegionInstanceGroupManager"
NAMED: dict[str, Named] = {
    GROUP: Named(
        names=("name", "baseInstanceName"),
        force_new=("name", "baseInstanceName", "region", "project", "description", "distributionPolicyZones"),
        scope=("project", "region"),
        source="compute/resource_compute_region_instance_group_manager.go",
        sets=("distributionPolicyZones",),  # TypeSet, hashZoneFromSelfLinkOrResourceName
    ),
    "gcp:secretmanager/secret:Secret": Named(
        names=("secretId",),
        force_new=("secretId", "project", "replication", "tags"),
        scope=("project",),
        source="secretmanager/resource_secret_manager_secret.go",
    ),
    "gcp:serviceaccount/account:Account": Named(
        names=("accountId",),
        force_new=("accountId", "project"),
        scope=("project",),
        source="resourcemanager/resource_google_service_account.go",
    ),
    "gcp:projects/iAMCustomRole:IAMCustomRole": Named(
        names=("roleId",),
        force_new=("roleId", "project"),
        scope=("project",),
        source="resourcemanager/resource_google_project_iam_custom_role.go",
    ),
    # The receiver's source archive, named after its content: bucket, name,
    # source, content, detect_md5hash and metadata are ForceNew, and a changed
    # source is a new name (providers/gcp/scaler.py).
    "gcp:storage/bucketObject:BucketObject": Named(
        names=("name",),
        force_new=("bucket", "name", "source", "content", "detectMd5hash", "metadata"),
        scope=("bucket",),
        source="storage/resource_storage_bucket_object.go",
    ),
    # Every template input is ForceNew; name_prefix makes the provider pick a
    # fresh unique name for each replacement (resource_compute_region_instance_template.go, name_prefix).
    "gcp:compute/regionInstanceTemplate:RegionInstanceTemplate": Named(
        names=("namePrefix",),
        force_new=("*",),
        scope=("project", "region"),
        source="compute/resource_compute_region_instance_template.go",
        unique_suffix=True,
    ),
}
# Top-level inputs that set a physical name (Pulumi autonames a resource only
# when its `name` is not given; these are the ones we give).
NAME_INPUTS = {"name", "namePrefix", "secretId", "accountId", "roleId", "baseInstanceName", "instanceName"}
# Inputs spelled like names that name *another* resource (a reference, not a name of its own).
REFERENCES = {
    "gcp:secretmanager/secretIamMember:SecretIamMember": {"secretId"},
    "gcp:cloudrunv2/serviceIamMember:ServiceIamMember": {"name"},  # the function's Cloud Run service
}


def name_inputs(record: Recorded) -> set[str]:
    return (NAME_INPUTS & set(record.inputs)) - REFERENCES.get(record.type, set())


def audit(old: Recorded, new: Recorded) -> list[str]:
    """What a real engine would trip over when `old` becomes `new` (same URN)."""
    named = sorted(name_inputs(old) | name_inputs(new))
    if not named:
        return []
    entry = NAMED.get(new.type)
    if entry is None:
        return [f"{new.type} {new.name} sets {named}: add it to NAMED with its ForceNew inputs"]
    forced = forced_inputs(entry, old.inputs, new.inputs)
    renamed = [key for key in entry.names if old.inputs.get(key) != new.inputs.get(key)]
    moved = [key for key in entry.scope if old.inputs.get(key) != new.inputs.get(key)]
    if forced and not renamed and not moved and not entry.unique_suffix:
        return [f"{new.name}: {forced} force a replacement under the same name {entry.names}: 409"]
    if renamed and not set(forced) - set(entry.names):
        return [f"{new.name}: renamed ({renamed}) though nothing forces it: a needless replacement"]
    return []


def forced_inputs(entry: Named, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    keys = set(old) | set(new) if entry.force_new == ("*",) else set(entry.force_new)
    return sorted(key for key in keys if _value(entry, key, old) != _value(entry, key, new))


def _value(entry: Named, key: str, inputs: Mapping[str, Any]) -> Any:
    value = inputs.get(key)
    return sorted(value) if key in entry.sets and value is not None else value


def audit_plans(before: Recording, after: Recording) -> list[str]:
    """Every problem of the move from `before` to `after`, matching resources by URN."""
    olds = {r.urn: r for r in before.resources if r.custom}
    problems = []
    for record in after.resources:
        if record.custom and record.urn in olds:
            problems += audit(olds[record.urn], record)
    return problems


# --- the mutations: every runners.yaml field of a GCP pool --------------------

BASE: dict[str, Any] = {"provider": "gcp", "size": {"min": 1, "max": 4}}
SCHEDULES = [
    {"cron": "0 8 * * *", "desired": 3, "time_zone": "Europe/Berlin"},
    {"cron": "0 20 * * *", "desired": 1, "time_zone": "Europe/Berlin"},
]
# field path (as runners.yaml spells it) -> (base overrides, mutated overrides)
MUTATIONS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "labels": ({}, {"labels": ["big"]}),
    "runner_group": ({}, {"runner_group": "ci"}),
    "ephemeral": ({}, {"ephemeral": False}),
    "size.min": ({}, {"size": {"min": 2, "max": 4}}),
    "size.max": ({}, {"size": {"min": 1, "max": 6}}),
    "scaling": ({}, {"scaling": "fixed"}),
    "idle_timeout": ({}, {"idle_timeout": "30m"}),
    "arch": ({}, {"arch": "arm64"}),
    "spot": ({}, {"spot": True}),
    "image": ({}, {"image": "projects/acme/global/images/family/runner"}),
    "setup_script": ({}, {"setup_script": "echo hi"}),
    "docker": ({}, {"docker": True}),
    "sudo": ({}, {"sudo": True}),
    "runner_version": ({}, {"runner_version": "2.330.0"}),
    "schedules (added)": ({}, {"schedules": SCHEDULES}),
    "schedules (removed)": ({"schedules": SCHEDULES}, {}),
    "schedules.cron": ({"schedules": SCHEDULES}, {"schedules": [{**SCHEDULES[0], "cron": "0 7 * * *"}, SCHEDULES[1]]}),
    "schedules.desired": ({"schedules": SCHEDULES}, {"schedules": [{**SCHEDULES[0], "desired": 4}, SCHEDULES[1]]}),
    "schedules.time_zone": (
        {"schedules": SCHEDULES},
        {"schedules": [{**s, "time_zone": "Europe/Paris"} for s in SCHEDULES]},
    ),
    "tags": ({}, {"tags": {"team": "infra"}}),
    "project": ({}, {"project": "other-project"}),
    "region": ({}, {"region": "us-east1"}),
    "zones (pinned)": ({}, {"zones": ["europe-west4-a", "europe-west4-b"]}),
    "zones (changed)": (
        {"zones": ["europe-west4-a", "europe-west4-b"]},
        {"zones": ["europe-west4-a", "europe-west4-c"]},
    ),
    "zones (reordered)": (
        {"zones": ["europe-west4-a", "europe-west4-b"]},
        {"zones": ["europe-west4-b", "europe-west4-a"]},
    ),
    "machine_type": ({}, {"machine_type": "n2-standard-4"}),
    "disk.size_gb": ({}, {"disk": {"size_gb": 80}}),
    "disk.type": ({}, {"disk": {"type": "pd-ssd"}}),
    "network.cidr": ({}, {"network": {"cidr": "10.64.0.0/20"}}),
    "network.network": ({}, {"network": {"network": "shared", "subnetwork": "runners"}}),
    "network.subnetwork": (
        {"network": {"network": "shared", "subnetwork": "runners"}},
        {"network": {"network": "shared", "subnetwork": "builds"}},
    ),
    "iap_ssh": ({}, {"iap_ssh": True}),
}
# Fields covered elsewhere: `name` is the pool's identity (its URNs), audited in
# test_renamed_pool_never_collides_with_itself; `provider` moves the pool to
# another cloud (every resource is new).
NOT_MUTATED_HERE = {"name", "provider"}


def runners_file(pools: list[dict[str, Any]]) -> str:
    return yaml.safe_dump({"version": 1, "github": {"organization": "acme"}, "pools": pools})


@pytest.fixture(scope="module")
def plans(tmp_path_factory: pytest.TempPathFactory) -> tuple[Recording, Recording]:
    labels = list(MUTATIONS)
    before = [{"name": f"m{i}", **BASE, **MUTATIONS[label][0]} for i, label in enumerate(labels)]
    after = [{"name": f"m{i}", **BASE, **MUTATIONS[label][1]} for i, label in enumerate(labels)]
    return (
        run_file(tmp_path_factory.mktemp("before"), runners_file(before)),
        run_file(tmp_path_factory.mktemp("after"), runners_file(after)),
    )


def pool_resources(recording: Recording, pool: str) -> list[Recorded]:
    (component,) = [r for r in recording.of_type(RUNNER_POOL_TYPE) if r.name == pool]
    return recording.descendants_of(component.urn)


def test_every_field_of_a_gcp_pool_is_mutated() -> None:
    fields = {name for name in GcpPool.model_fields if name not in NOT_MUTATED_HERE}
    for parent, model in (("size", Size), ("disk", GcpDisk), ("network", GcpNetwork), ("schedules", Schedule)):
        fields.discard(parent)
        fields |= {f"{parent}.{name}" for name in model.model_fields}
    covered = {label.split(" ")[0] for label in MUTATIONS}
    assert fields <= covered | {"schedules"}, sorted(fields - covered)


@pytest.mark.parametrize("label", list(MUTATIONS))
def test_a_changed_field_never_replaces_a_named_resource_under_its_old_name(
    plans: tuple[Recording, Recording], label: str
) -> None:
    before, after = plans
    pool = f"m{list(MUTATIONS).index(label)}"
    olds = {r.urn: r for r in pool_resources(before, pool) if r.custom}
    problems = [p for new in pool_resources(after, pool) if new.urn in olds for p in audit(olds[new.urn], new)]
    assert not problems, f"{label}: {problems}"


def test_zones_and_region_rename_the_group_and_region_renames_the_secret(plans: tuple[Recording, Recording]) -> None:
    """The two 409s of issue 10 §2, shown directly."""
    before, after = plans

    def named(recording: Recording, label: str, part: str) -> Recorded:
        return recording.named(f"m{list(MUTATIONS).index(label)}-{part}")

    for label in ("zones (pinned)", "zones (changed)", "region"):
        assert named(before, label, "group").inputs["name"] != named(after, label, "group").inputs["name"], label
    assert named(before, "region", "secret").inputs["secretId"] != named(after, "region", "secret").inputs["secretId"]
    # A reordered zone list is the same set: no new name, no replacement.
    reordered = "zones (reordered)"
    assert named(before, reordered, "group").inputs["name"] == named(after, reordered, "group").inputs["name"]


def test_renamed_pool_never_collides_with_itself(tmp_path: Path) -> None:
    """A renamed pool is new URNs: Pulumi creates the new pool, then deletes the old one."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    before = run_file(tmp_path / "a", runners_file([{"name": "old", **BASE}]))
    after = run_file(tmp_path / "b", runners_file([{"name": "new", **BASE}]))

    def physical(recording: Recording, pool: str) -> set[str]:
        return {str(r.inputs[key]) for r in pool_resources(recording, pool) for key in name_inputs(r)}

    assert physical(before, "old") and physical(before, "old").isdisjoint(physical(after, "new"))


def recorded(type_: str, name: str, inputs: dict[str, Any], urn: str = "", **fields: Any) -> Recorded:
    """A custom resource as the recording engine would have recorded it."""
    return Recorded(urn=urn or f"s::{name}", type=type_, name=name, parent="", custom=True, provider="",
                    dependencies=[], inputs=inputs, shown={}, **fields)


def test_every_named_resource_type_has_an_entry(plans: tuple[Recording, Recording]) -> None:
    for record in plans[1].resources:
        if record.custom and record.type.startswith("gcp:") and name_inputs(record):
            assert record.type in NAMED, f"{record.type} sets a name: add it to NAMED"


def test_an_unknown_named_resource_fails_the_audit() -> None:
    bucket = recorded("gcp:storage/bucket:Bucket", "x", {"name": "logs", "location": "EU"},
                      urn="urn:pulumi:s::p::gcp:storage/bucket:Bucket::x")
    moved = replace(bucket, inputs={"name": "logs", "location": "US"})
    assert audit(bucket, moved) == [
        "gcp:storage/bucket:Bucket x sets ['name']: add it to NAMED with its ForceNew inputs"
    ]


def test_the_audit_catches_a_fixed_name_under_a_forced_replacement() -> None:
    """The guard itself: today's secret and group names (before this audit) would fail it."""
    old = recorded(GROUP, "codex-group",
                   {"name": "ghr-dev-codex", "baseInstanceName": "ghr-dev-codex", "region": "europe-west4"}, urn="u")
    pinned = replace(old, inputs={**old.inputs, "distributionPolicyZones": ["europe-west4-a"]})
    (problem,) = audit(old, pinned)
    assert "distributionPolicyZones" in problem and "409" in problem
