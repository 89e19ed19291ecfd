"""GcpBackend: regional managed instance groups of runners, one explicit provider per project and region."""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from providers.base import Backend, Identity, Network, PoolProblem, Site, StackContext, VmGroup
from providers.gcp import GcpNames
from providers.gcp.group import build_vm_group, scaling_schedules
from providers.gcp.identity import build_identity
from providers.gcp.network import build_network
from providers.tags import pool_tags
from schema.models import GcpPool

Place = tuple[str, str]  # (project, region)
# GCE gives the guest 120 s (Spot: 30 s) between the ACPI soft-off and the hard
# power-off (pulumi_gcp: scheduling.skip_guest_os_shutdown). Graceful shutdown,
# which could extend that, is not available to managed instance groups. The
# agent's drain must end inside that time so it can still deregister the runner.
DRAIN_SECONDS = {"standard": 80, "spot": 20}


class GcpBackend(Backend[GcpPool]):
    name = "gcp"

    def __init__(self, context: StackContext) -> None:
        super().__init__(context)
        self._providers: dict[Place, gcp.Provider] = {}
        self._zone_counts: dict[Place, pulumi.Output[int]] = {}

    # Shared per project and region: created once, used by every pool there.

    def _provider(self, place: Place) -> gcp.Provider:
        if place not in self._providers:
            project, region = place
            self._providers[place] = gcp.Provider(f"gcp-{project}-{region}", project=project, region=region)
        return self._providers[place]

    def _zone_count(self, place: Place) -> pulumi.Output[int]:
        # One lookup per region, not per pool: per-pool data-source calls make
        # program evaluation grow with the square of the pool count.
        if place not in self._zone_counts:
            project, region = place
            zones = gcp.compute.get_zones_output(
                project=project, region=region, opts=pulumi.InvokeOutputOptions(provider=self._provider(place))
            )
            self._zone_counts[place] = zones.names.apply(len)
        return self._zone_counts[place]

    def _opts(self, site: Site, parent: pulumi.Resource) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=parent, provider=self._provider(_place(site)))

    def _names(self, pool: GcpPool) -> GcpNames:
        return GcpNames.of(self.context.stack, pool.name)

    # The interface.

    def site(self, pool: GcpPool) -> Site:
        config = pulumi.Config("gcp")
        project = pool.project or config.get("project")
        if not project:
            raise PoolProblem(
                ("project",), "no project: set project in runners.yaml or run `pulumi config set gcp:project ...`"
            )
        region = pool.region or config.get("region")
        if not region:
            raise PoolProblem(
                ("region",), "no region: set region in runners.yaml or run `pulumi config set gcp:region ...`"
            )
        for i, zone in enumerate(pool.zones):
            # The schema checks zones against the pool's own region; a region
            # from stack config is only known here.
            if zone.rsplit("-", 1)[0] != region:
                raise PoolProblem(("zones", i), f"zone {zone} is not in region {region}")
        # Schedules GCP's autoscaler cannot express fail here, before the pool
        # has created anything.
        scaling_schedules(pool)
        names = self._names(pool)
        return Site(
            cloud="gcp",
            region=region,
            project=project,
            group_name=names.group,
            secret_name=f"projects/{project}/secrets/{names.secret_id}",
            extra={"drain_seconds": str(DRAIN_SECONDS["spot" if pool.spot else "standard"])},
        )

    def network(self, pool: GcpPool, site: Site, parent: pulumi.Resource) -> Network:
        return build_network(pool, _place(site)[0], site.region, self._names(pool).group, self._opts(site, parent))

    def identity(self, pool: GcpPool, site: Site, parent: pulumi.Resource) -> Identity:
        return build_identity(
            pool,
            _place(site)[0],
            site.region,
            self._names(pool),
            self.context.credential,
            pool_tags(pool, self.context),
            self._opts(site, parent),
        )

    def vm_group(
        self, pool: GcpPool, site: Site, network: Network, identity: Identity, user_data: str, parent: pulumi.Resource
    ) -> VmGroup:
        place = _place(site)
        return build_vm_group(
            pool,
            place[0],
            site.region,
            self._names(pool),
            network,
            identity,
            user_data,
            pool_tags(pool, self.context),
            # Only asked for when the pool names no zones of its own.
            len(pool.zones) if pool.zones else self._zone_count(place),
            self._opts(site, parent),
        )


def _place(site: Site) -> Place:
    assert site.project, "a GCP site always has a project"
    return (site.project, site.region)
