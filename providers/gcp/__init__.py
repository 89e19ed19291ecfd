"""GCP backend: a regional managed instance group of runners per pool.

The package's shared vocabulary lives here: the cloud names of one pool,
derived once (from providers/naming.py) and handed to network.py,
identity.py and group.py, so no module invents a name of its own.

Every fixed name carries the Pulumi project, the stack and the pool, so two
deployments in one GCP project never meet, and changes with every input that
forces its resource's replacement (terraform-provider-google marks them
ForceNew): Pulumi replaces create-before-delete, and a replacement under the
same name would collide with the resource it replaces (409 already exists).
tests/gcp/test_replacement_audit.py holds the table and proves it per field.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from providers.naming import deployment_scoped


@dataclass(frozen=True)
class GcpNames:
    """The deterministic GCP names of one pool (all lower-case RFC 1035 unless noted)."""

    tag: str  # the VMs' network tag, so firewall rules find them; outlives group replacements
    group: str  # the regional MIG; changes with region and zones (distribution_policy_zones is ForceNew)
    base_instance: str  # the MIG appends `-xxxx` to it: at most 58
    template_prefix: str  # instance template name_prefix: at most 37 keeps the full unique suffix
    secret_id: str  # Secret Manager secret id; changes with region (replication is ForceNew)
    account_id: str  # service account id: 6-30 characters
    role_prefix: str  # custom role id before its random suffix: letters, digits and `_` (no hyphens)

    @classmethod
    def of(cls, project: str, stack: str, pool: str, region: str, zones: Sequence[str] = ()) -> GcpNames:
        placed = f"{pool}-{placement(region, zones)}"
        return cls(
            tag=deployment_scoped(project, stack, pool, 63),
            group=deployment_scoped(project, stack, placed, 63),
            base_instance=deployment_scoped(project, stack, placed, 58),
            template_prefix=deployment_scoped(project, stack, pool, 36) + "-",
            secret_id=deployment_scoped(project, stack, f"{pool}-credential-{region}", 255),
            account_id=deployment_scoped(project, stack, pool, 30),
            role_prefix=deployment_scoped(project, stack, f"{pool}-group-reader", ROLE_PREFIX_LIMIT).replace("-", "_"),
        )


ROLE_SUFFIX_BYTES = 4  # 8 hex characters after the prefix and `_`
ROLE_PREFIX_LIMIT = 64 - 1 - 2 * ROLE_SUFFIX_BYTES  # custom role ids are at most 64 characters


def placement(region: str, zones: Sequence[str]) -> str:
    """6 hex characters naming where a group runs.

    A set: the provider stores distribution_policy_zones as a TypeSet, so an
    order change is no change and must not rename (replace) the group.
    """
    where = f"{region}/{','.join(sorted(zones)) or 'auto'}"
    return hashlib.sha256(where.encode()).hexdigest()[:6]
