"""The contract every backend's suite runs (libcloud's shared-test-mixin idea).

A cloud's suite subclasses `BackendContract`, gives it runners.yaml files and
the few extractors that differ per cloud; the assertions are the same.
"""

from __future__ import annotations

from typing import ClassVar

import pytest

from plan.engine import Recorded, Recording
from schema.loader import load_text
from tests.providers.harness import SENTINEL_KEY, SENTINEL_TOKEN, everything_shown, run_file

POOL_TYPE = "ghrunners:index:RunnerPool"
WORLD = {"0.0.0.0/0", "::/0"}
# Stack-level, shared by pools: providers and the GitHub side.
SHARED_PREFIXES = ("pulumi:providers:", "github:")
# Demand scaling, stack-level: a receiver component per cloud (its resources
# are its children) and the webhook secret the receivers and webhooks share.
RECEIVER_TYPES = ("ghrunners:aws:Receiver", "ghrunners:gcp:Receiver")
WEBHOOK_SECRET = ("random:index/randomBytes:RandomBytes", "webhook-secret")
_RUNS: dict[tuple[type, str], dict[str, Recording]] = {}


class BackendContract:
    files: ClassVar[dict[str, str]]  # name -> runners.yaml text; each pool in them is checked

    # Cloud-specific extractors -------------------------------------------------
    def ingress_sources(self, recording: Recording) -> list[str]:
        raise NotImplementedError

    def disk_encryption(self, recording: Recording) -> list[bool]:
        raise NotImplementedError

    def metadata_protected(self, recording: Recording) -> list[bool]:
        raise NotImplementedError

    def min_healthy_percent(self, recording: Recording) -> list[float]:
        raise NotImplementedError

    # Components whose resources the pools of a stack share (a region's network).
    shared_component_types: ClassVar[tuple[str, ...]] = ()

    def shared_by(self, recording: Recording, pool: Recorded) -> list[Recorded]:
        """The shared resources a pool's VMs use (its way out, for one)."""
        return []

    vm_group_type: ClassVar[str]  # the ASG / MIG resource type
    grant_types: ClassVar[tuple[str, ...]]  # resources granting the VM identity read access to the secret
    egress_types: ClassVar[tuple[str, ...]]  # gateways, NAT and routes that give VMs their way out

    # The contract ----------------------------------------------------------------
    @pytest.fixture(params=["pat", "app"])
    def credential(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)

    @pytest.fixture
    def recordings(self, tmp_path_factory: pytest.TempPathFactory, credential: str) -> dict[str, Recording]:
        # Each file runs once per credential kind, not once per test: the
        # recordings are only read, and the suites stay fast.
        key = (type(self), credential)
        if key not in _RUNS:
            _RUNS[key] = {
                name: run_file(tmp_path_factory.mktemp(f"{name}-{credential}"), text, app=credential == "app")
                for name, text in self.files.items()
            }
        return _RUNS[key]

    def test_every_resource_is_parented_under_its_pool(self, recordings: dict[str, Recording]) -> None:
        for recording in recordings.values():
            pools = {r.urn: r for r in recording.resources if r.type == POOL_TYPE}
            assert pools
            under = {r.urn for urn in pools for r in recording.descendants_of(urn)}
            shared = [r for r in recording.resources if r.type in (*self.shared_component_types, *RECEIVER_TYPES)]
            under |= {r.urn for component in shared for r in recording.descendants_of(component.urn)}
            for record in recording.resources:
                stack_level = (*self.shared_component_types, *RECEIVER_TYPES)
                if record.type in (POOL_TYPE, *stack_level) or record.type.startswith(SHARED_PREFIXES):
                    continue
                if (record.type, record.name) == WEBHOOK_SECRET:
                    continue
                assert record.urn in under, f"{record.type} {record.name} is not under a RunnerPool"

    def test_names_carry_the_pool_prefix(self, recordings: dict[str, Recording]) -> None:
        for recording in recordings.values():
            for pool in (r for r in recording.resources if r.type == POOL_TYPE):
                for child in recording.descendants_of(pool.urn):
                    assert child.name.startswith(f"{pool.name}-"), child.name

    def test_no_ingress_from_anywhere(self, recordings: dict[str, Recording]) -> None:
        for recording in recordings.values():
            assert not WORLD & set(self.ingress_sources(recording))

    def test_disks_are_encrypted(self, recordings: dict[str, Recording]) -> None:
        for recording in recordings.values():
            found = self.disk_encryption(recording)
            assert found and all(found)

    def test_instance_metadata_is_protected(self, recordings: dict[str, Recording]) -> None:
        for recording in recordings.values():
            found = self.metadata_protected(recording)
            assert found and all(found)

    def test_update_policy_never_drops_capacity(self, recordings: dict[str, Recording]) -> None:
        for recording in recordings.values():
            found = self.min_healthy_percent(recording)
            assert found and min(found) >= 100

    def test_vms_come_after_and_go_before_the_credential_grants_and_egress(
        self, recordings: dict[str, Recording], credential: str
    ) -> None:
        """The group depends on the stored credential, every grant and the way out:
        created first, deleted last, so draining VMs can still deregister during
        `pulumi destroy`."""
        sentinel = SENTINEL_TOKEN if credential == "pat" else SENTINEL_KEY.splitlines()[1]
        for recording in recordings.values():
            for pool in (r for r in recording.resources if r.type == POOL_TYPE):
                members = recording.descendants_of(pool.urn)
                (group,) = [r for r in members if r.type == self.vm_group_type]
                needed = [
                    r
                    for r in [*members, *self.shared_by(recording, pool)]
                    if _holds_secret(r, sentinel) or r.type in self.grant_types or r.type in self.egress_types
                ]
                assert any(_holds_secret(r, sentinel) for r in needed)
                for record in needed:
                    assert record.urn in group.dependencies, f"{group.name} does not wait for {record.name}"

    def test_credential_appears_only_as_a_secret(self, recordings: dict[str, Recording], credential: str) -> None:
        sentinel = SENTINEL_TOKEN if credential == "pat" else SENTINEL_KEY.splitlines()[1]
        for recording in recordings.values():
            for text in everything_shown(recording):
                assert sentinel not in text
            stored = [r for r in recording.resources if _holds_secret(r, sentinel)]
            assert stored, "the credential must reach the cloud secret store (as a Pulumi secret)"
            for record in stored:
                assert record.secret_paths, f"{record.type} {record.name} holds the credential without secrecy"


    receiver_type: ClassVar[str]  # this cloud's receiver component

    def test_demand_pools_get_their_clouds_receiver_and_a_webhook(self, recordings: dict[str, Recording]) -> None:
        """Every file with a pool of this cloud that scales on demand gets exactly one
        receiver of this cloud, and (repository or organization targets) a webhook to it."""
        for name, recording in recordings.items():
            runners = load_text(self.files[name])
            demand = [p for p in runners.pools if p.on_demand and self.receiver_type.split(":")[1] == p.provider]
            receivers = [r for r in recording.resources if r.type == self.receiver_type]
            assert len(receivers) == (1 if demand else 0), name
            hooks = [r for r in recording.resources if r.type.startswith("github:") and "Webhook" in r.type]
            if demand and runners.github.scope != "enterprise":
                assert any(h.name == f"webhook-{demand[0].provider}" for h in hooks), name

    def test_webhook_secret_appears_only_as_a_secret(self, recordings: dict[str, Recording]) -> None:
        """The random webhook secret reaches the receiver's secret store and the webhook,
        always as a Pulumi secret, and nothing shown (state, previews, outputs) holds it."""
        for recording in recordings.values():
            found = [r for r in recording.resources if (r.type, r.name) == WEBHOOK_SECRET]
            if not found:
                continue
            secret = found[0].outputs["hex"]
            for text in everything_shown(recording):
                assert secret not in text
            holders = [r for r in recording.resources if r is not found[0] and secret in repr(r.inputs)]
            assert holders, "the webhook secret must reach the receiver's secret store"
            for record in holders:
                assert record.secret_paths, f"{record.type} {record.name} holds the webhook secret without secrecy"


def _holds_secret(record: Recorded, sentinel: str) -> bool:
    return sentinel in repr(record.inputs)
