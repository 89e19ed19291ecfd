"""GCP backend: a regional managed instance group of runners per pool.

The package's shared vocabulary lives here: the cloud names of one pool,
derived once (from providers/naming.py) and handed to network.py,
identity.py and group.py, so no module invents a name of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from providers.naming import part, stack_scoped


@dataclass(frozen=True)
class GcpNames:
    """The deterministic GCP names of one pool (all lower-case RFC 1035 unless noted)."""

    group: str  # the regional MIG; also the VMs' network tag, so firewall rules find them
    base_instance: str  # the MIG appends `-xxxx` to it: at most 58
    template_prefix: str  # instance template name_prefix: at most 37 keeps the full unique suffix
    secret_id: str  # Secret Manager secret id
    account_id: str  # service account id: 6-30 characters
    role_id: str  # custom role id: letters, digits, `_` and `.` only (no hyphens)

    @classmethod
    def of(cls, stack: str, pool: str) -> GcpNames:
        group = stack_scoped(stack, pool, 63)
        return cls(
            group=group,
            base_instance=stack_scoped(stack, pool, 58),
            template_prefix=stack_scoped(stack, pool, 36) + "-",
            secret_id=stack_scoped(stack, part(pool, "credential"), 255),
            account_id=stack_scoped(stack, pool, 30),
            role_id=stack_scoped(stack, part(pool, "group-reader"), 64).replace("-", "_"),
        )
