"""Compute's regional managed instance groups, for the receiver: the agent tests' ComputeDouble
(tests/bootstrap/doubles/gcp.py) over the same MIG model, given the receiver's discovery subset too.

One MIG state, `GcpState.migs`, is what the receiver grows (createInstances, resize) and what the VM
agents list and leave (listManagedInstances, deleteInstances, recreateInstances): the end-to-end
simulation runs both against one group. The receiver's methods are validated against Google's
discovery document as scripts/extract_webhooks.py extracted it (tests/scaler/fixtures/gcp-groups.json),
the agent's against tests/bootstrap/openapi/gcp-subset.json; the semantics are described on
ComputeDouble.
"""

from __future__ import annotations

import json
from pathlib import Path

from doubles.gcp import ComputeDouble, GcpState, Mig, generated_name
from doubles.schema import DiscoveryApi, load_gcp

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "gcp-groups.json"


def load_compute() -> DiscoveryApi:
    data = json.loads(FIXTURE.read_text())
    return DiscoveryApi("compute.v1", data["apis"]["compute.v1"])


class GroupsDouble(ComputeDouble):
    """ComputeDouble with the receiver's methods, plus `add_group` and a `groups` view of the MIGs."""

    name = "compute-groups"

    def __init__(self, state: GcpState) -> None:
        super().__init__(state, load_compute(), load_gcp()["compute.v1"])

    @property
    def groups(self) -> dict[tuple[str, str, str], Mig]:
        return self.state.migs

    def add_group(self, name: str, *, region: str = "us-central1", base: str | None = None,
                  updaters: set[str] | None = None, readers: set[str] | None = None, size: int = 0) -> Mig:
        with self._cond:
            accounts = {self.state.service_account}
            group = Mig(self.state.project_id, region, name, readers or set(accounts), updaters=updaters or set(
                accounts), base=base or name)
            for _ in range(size):
                vm = group.add(generated_name(group))
                vm.action, vm.status = "NONE", "RUNNING"
            self.state.migs[(group.project, region, name)] = group
            group.record("seed")
            return group
