"""One `pulumi up` for what mocks never do: resize a group, move a stack built by the last release.

Two engine rules are modelled here, from pulumi/pulumi's source:
- ignore_changes: before diffing, each ignored path of the new inputs is reset
  to the old input's value, or deleted when the old inputs lack it
  (pkg/resource/deploy/step_generator.go processIgnoreChanges,
  sdk/go/common/resource/property_path.go PropertyPath.Reset);
- deletes run after every create and update of the same `up`, so a resource
  the program drops still exists while the others change.
And one provider rule (terraform-provider-google,
compute/resource_compute_region_instance_group_manager.go): target_size is
Optional+Computed, so an absent target_size is no change, and a changed one is
a `resize` call -- which GCE refuses with 412 while an autoscaler targets the
group (terraform-google-modules/terraform-google-vm#64).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from plan.engine import Recording, RecordingMonitor
from tests.gcp.release_graph import STACK, UPGRADE_FILE
from tests.gcp.test_replacement_audit import audit, recorded
from tests.providers.harness import run_file

GROUP = "gcp:compute/regionInstanceGroupManager:RegionInstanceGroupManager"
AUTOSCALER = "gcp:compute/regionAutoscaler:RegionAutoscaler"
RELEASE = Path(__file__).parent / "release_graph_463b1aa.json"


@contextmanager
def ignore_changes_recorded(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, list[str]]]:
    """The ignore_changes option of every registered resource, by URN (the recording engine keeps inputs only)."""
    found: dict[str, list[str]] = {}
    register = RecordingMonitor.RegisterResource

    def recording(self: RecordingMonitor, request: Any) -> Any:
        response = register(self, request)
        found[response.urn] = list(request.ignoreChanges)
        return response

    with monkeypatch.context() as patch:
        patch.setattr(RecordingMonitor, "RegisterResource", recording)
        yield found


def engine_inputs(old: dict[str, Any], new: dict[str, Any], ignored: list[str]) -> dict[str, Any]:
    """The inputs the engine diffs: ignored top-level keys reset to the old value, or dropped."""
    inputs = dict(new)
    for key in ignored:
        if key in old:
            inputs[key] = old[key]
        else:
            inputs.pop(key, None)
    return inputs


def resizes_of_autoscaled_groups(old: list[dict[str, Any]], new: Recording, ignored: dict[str, list[str]]) -> list[str]:
    """Groups whose update would call resize while an autoscaler of the old state still targets them.

    An autoscaler targets its own pool's group (`<pool>-autoscaler` -> `<pool>-group`).
    """
    olds = {r["urn"]: r for r in old}
    autoscaled = {pool_of(r["urn"]) for r in old if r["type"] == AUTOSCALER}
    found = []
    for group in new.of_type(GROUP):
        before = olds.get(group.urn)
        if before is None:
            continue  # created: its size is set at creation, no resize
        inputs = engine_inputs(before["inputs"], group.inputs, ignored.get(group.urn, []))
        changed = "targetSize" in inputs and inputs["targetSize"] != before["inputs"].get("targetSize")
        replaced = any(inputs.get(key) != before["inputs"].get(key) for key in ("name", "region", "project"))
        if changed and not replaced and pool_of(group.urn) in autoscaled:
            found.append(f"{group.name}: resize to {inputs['targetSize']} while autoscaled: 412")
    return found


def pool_of(urn: str) -> str:
    return urn.rsplit("::", 1)[1].rsplit("-", 1)[0]


def as_graph(recording: Recording) -> list[dict[str, Any]]:
    return [{"urn": r.urn, "type": r.type, "inputs": r.inputs} for r in recording.resources if r.custom]


SCHEDULED = """\
version: 1
github: {repository: a/b}
pools:
  - name: codex
    provider: gcp
    scaling: fixed
    size: {min: 1, max: 6}
    schedules:
      - {cron: '0 8 * * *', desired: 4}
      - {cron: '0 20 * * *', desired: 0}
"""
UNSCHEDULED = """\
version: 1
github: {repository: a/b}
pools:
  - {name: codex, provider: gcp, scaling: fixed, size: {min: 1, max: 6}}
"""
# Demand pools have no autoscaler. Their floor differs from the fixed pools'
# above, so a group whose target_size Pulumi did not ignore would be resized.
DEMAND = """\
version: 1
github: {repository: a/b}
pools:
  - {name: codex, provider: gcp, size: {min: 2, max: 6}}
"""
DEMAND_SCHEDULED = """\
version: 1
github: {repository: a/b}
pools:
  - name: codex
    provider: gcp
    size: {min: 1, max: 6}
    schedules:
      - {cron: '0 8 * * 1-5', desired: 3}
"""


def plan(
    tmp_path: Path, name: str, text: str, monkeypatch: pytest.MonkeyPatch, **kwargs: Any
) -> tuple[Recording, dict[str, list[str]]]:
    (tmp_path / name).mkdir()
    with ignore_changes_recorded(monkeypatch) as ignored:
        recording = run_file(tmp_path / name, text, **kwargs)
    return recording, dict(ignored)


@pytest.mark.parametrize(("before", "after"), [(SCHEDULED, UNSCHEDULED), (UNSCHEDULED, SCHEDULED)])
def test_adding_or_removing_schedules_never_resizes_an_autoscaled_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, before: str, after: str
) -> None:
    old, _ = plan(tmp_path, "old", before, monkeypatch)
    new, ignored = plan(tmp_path, "new", after, monkeypatch)
    assert not resizes_of_autoscaled_groups(as_graph(old), new, ignored)
    # The group's size is Pulumi's only at creation; the autoscaler, kept in
    # both versions, is the one resource a size change updates.
    (group,) = new.of_type(GROUP)
    assert "targetSize" in ignored[group.urn]
    assert new.of_type(AUTOSCALER) and old.of_type(AUTOSCALER)


@pytest.mark.parametrize(
    ("before", "after"),
    [(SCHEDULED, DEMAND_SCHEDULED), (UNSCHEDULED, DEMAND), (SCHEDULED, DEMAND)],
    ids=["scheduled", "unscheduled", "schedules-dropped"],
)
def test_a_pool_that_turns_to_demand_loses_its_autoscaler_without_a_resize(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, before: str, after: str
) -> None:
    """The autoscaler is deleted last, so it still targets the group while the
    group is updated: the group's size must not change in that `up` (412)."""
    old, _ = plan(tmp_path, "old", before, monkeypatch)
    new, ignored = plan(tmp_path, "new", after, monkeypatch)
    assert old.of_type(AUTOSCALER) and not new.of_type(AUTOSCALER)
    (group,) = new.of_type(GROUP)
    (old_group,) = old.of_type(GROUP)
    assert group.urn == old_group.urn  # updated in place, not replaced
    assert group.inputs["targetSize"] != old_group.inputs["targetSize"]  # the floor moved: only ignore_changes holds it
    assert not resizes_of_autoscaled_groups(as_graph(old), new, ignored)


def test_a_pool_that_turns_fixed_gets_an_autoscaler_without_a_resize(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, _ = plan(tmp_path, "old", DEMAND, monkeypatch)
    new, ignored = plan(tmp_path, "new", SCHEDULED, monkeypatch)
    assert not old.of_type(AUTOSCALER) and new.of_type(AUTOSCALER)
    (group,) = new.of_type(GROUP)
    assert "targetSize" in ignored[group.urn]


def test_the_resize_model_catches_the_412_of_the_previous_version() -> None:
    """The model itself: the last release set target_size on an unscheduled group, no ignore_changes."""
    old = [
        {"urn": "s::codex-group", "type": GROUP, "inputs": {"name": "ghr-dev-codex", "region": "r", "project": "p"}},
        {"urn": "s::codex-autoscaler", "type": AUTOSCALER, "inputs": {"target": "group-id"}},
    ]
    group = recorded(GROUP, "codex-group", {"name": "ghr-dev-codex", "region": "r", "project": "p", "targetSize": 1},
                     outputs={"id": "group-id"})
    new = Recording([group], {}, {})
    assert resizes_of_autoscaled_groups(old, new, {}) == ["codex-group: resize to 1 while autoscaled: 412"]
    assert resizes_of_autoscaled_groups(old, new, {"s::codex-group": ["targetSize"]}) == []


# --- upgrade from the last release's graph ------------------------------------


@pytest.fixture(scope="module")
def release() -> dict[str, Any]:
    return json.loads(RELEASE.read_text())


@pytest.fixture(scope="module")
def upgraded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Recording, dict[str, list[str]]]:
    patch = pytest.MonkeyPatch()
    try:
        with ignore_changes_recorded(patch) as ignored:
            recording = run_file(tmp_path_factory.mktemp("upgrade"), UPGRADE_FILE, stack=STACK)
        return recording, dict(ignored)
    finally:
        patch.undo()


def test_the_release_graph_is_the_upgrade_file(release: dict[str, Any]) -> None:
    assert release["file"] == UPGRADE_FILE and release["stack"] == STACK


def test_upgrade_keeps_every_urn(release: dict[str, Any], upgraded: tuple[Recording, dict[str, list[str]]]) -> None:
    """No resource of the last release is renamed in code (no aliases needed); the
    only ones deleted are autoscalers of pools that now scale on demand (the
    default), which the next test proves is no resize."""
    new = {r.urn for r in upgraded[0].resources}
    missing = [r for r in release["resources"] if r["urn"] not in new]
    assert {r["type"] for r in missing} <= {AUTOSCALER}


def test_upgrade_replaces_nothing_under_its_old_name(
    release: dict[str, Any], upgraded: tuple[Recording, dict[str, list[str]]]
) -> None:
    """Names now carry the project (and the group its placement): the upgrade replaces the named
    resources once, create-before-delete, each under a new name."""
    news = {r.urn: r for r in upgraded[0].resources}
    problems = []
    for old in release["resources"]:
        if old["urn"] not in news:
            continue  # deleted (an autoscaler of a pool now on demand: test_upgrade_keeps_every_urn)
        new = news[old["urn"]]
        before = replace(new, inputs=old["inputs"])
        after = replace(new, inputs={k: v for k, v in new.inputs.items() if k != "metadata"})
        problems += [p for p in audit(before, after) if "needless" not in p]
    assert not problems


def test_upgrade_never_resizes_a_still_autoscaled_group(
    release: dict[str, Any], upgraded: tuple[Recording, dict[str, list[str]]]
) -> None:
    recording, ignored = upgraded
    # The release's scheduled pool has an autoscaler on its group.
    assert any(r["type"] == AUTOSCALER for r in release["resources"])
    assert not resizes_of_autoscaled_groups(release["resources"], recording, ignored)
    # Groups keep their stored size (ignore_changes); the file's pools all scale
    # on demand, so none keeps or gets an autoscaler.
    for group in recording.of_type(GROUP):
        assert "targetSize" in ignored[group.urn]
    assert not recording.of_type(AUTOSCALER)
