"""GcpBackend: regional managed instance groups of runners, one explicit provider per project and region."""

from __future__ import annotations

from collections.abc import Callable

import pulumi
import pulumi_gcp as gcp
from pulumi.runtime.mocks import MockMonitor

from providers.base import (
    Backend,
    Field,
    Identity,
    Network,
    PoolProblem,
    Site,
    StackContext,
    UserData,
    VmGroup,
    unlocated,
)
from providers.gcp import GcpNames
from providers.gcp.group import build_vm_group, scaling_schedules
from providers.gcp.identity import build_identity
from providers.gcp.network import build_network
from providers.tags import pool_tags
from schema.models import GcpPool

Place = tuple[str, str]  # (project, region)
# How long the agent waits for a running job after the shutdown signal
# (Site.extra["drain_seconds"]). Inside each window of SHUTDOWN_WINDOW_SECONDS
# (group.py) the agent must also stop the runner and deregister it, with the
# retries of every GitHub and Google call on that path; the rest of the hour is
# that reserve. tests/gcp/test_drain_budget.py adds it up from the agent's own
# constants. Spot: 30 s hold the drain, the runner's stop and single attempts
# at deregistration, not their retries (see that test).
DRAIN_SECONDS = {"standard": 540, "spot": 10}
# What the agent keeps for deregistering (and leaving the group) once the
# runner has stopped: its whole stop path is bounded by it (bootstrap/agent/
# main.py, Retry.deadline). Standard VMs keep the agent's default; spot VMs
# fit drain + runner stop + this into the 30 s preemption notice.
LEAVE_SECONDS = {"standard": None, "spot": 12}


class GcpBackend(Backend[GcpPool]):
    name = "gcp"

    def __init__(self, context: StackContext) -> None:
        super().__init__(context)
        self._providers: dict[Place, gcp.Provider] = {}
        self._zones: dict[Place, pulumi.Output[list[str]]] = {}
        self._offers: dict[tuple[str, str, str], pulumi.Output[bool]] = {}  # (project, zone, machine type)

    # Shared per project and region: created once, used by every pool there.

    def _provider(self, place: Place) -> gcp.Provider:
        if place not in self._providers:
            project, region = place
            self._providers[place] = gcp.Provider(f"gcp-{project}-{region}", project=project, region=region)
        return self._providers[place]

    def _region_zones(self, place: Place) -> pulumi.Output[list[str]]:
        # One lookup per region, not per pool: per-pool data-source calls make
        # program evaluation grow with the square of the pool count.
        if place not in self._zones:
            project, region = place
            zones = gcp.compute.get_zones_output(
                project=project, region=region, opts=pulumi.InvokeOutputOptions(provider=self._provider(place))
            )
            self._zones[place] = zones.names.apply(list)
        return self._zones[place]

    def _offered(self, place: Place, zone: str, machine_type: str) -> pulumi.Output[bool]:
        """Whether `zone` offers `machine_type`: one lookup per project, zone and type."""
        key = (place[0], zone, machine_type)
        if key not in self._offers:
            found = gcp.compute.get_machine_types_output(
                filter=f"name = {machine_type}",
                project=place[0],
                zone=zone,
                opts=pulumi.InvokeOutputOptions(provider=self._provider(place)),
            )
            self._offers[key] = found.machine_types.apply(lambda types: any(t.name == machine_type for t in types))
        return self._offers[key]

    def _machine_type(self, pool: GcpPool, place: Place) -> pulumi.Input[str]:
        """The pool's machine type, once the cloud confirms its zones offer it.

        A type a zone lacks (the arm64 default t2a-standard-2 exists in few
        regions) leaves a group without VMs behind a green `pulumi up`; the
        lookup turns that into an error before anything is created.
        """
        machine_type = pool.effective_machine_type
        if offline():
            pulumi.log.warn(
                f"pool {pool.name}: machine type {machine_type} not checked against the zones of {place[1]} "
                "(offline plan: no cloud to ask); `pulumi preview` checks it"
            )
            return machine_type
        zones = pulumi.Output.from_input(list(pool.zones)) if pool.zones else self._region_zones(place)

        def offers(names: list[str]) -> pulumi.Output[dict[str, bool]]:
            flags: list[pulumi.Input[bool]] = [self._offered(place, zone, machine_type) for zone in names]
            found: pulumi.Output[list[bool]] = pulumi.Output.all(*flags)
            return found.apply(lambda has: dict(zip(names, has, strict=True)))

        offered: pulumi.Output[dict[str, bool]] = zones.apply(offers)
        return offered.apply(lambda found: checked_machine_type(pool, place[1], found, self.context.locate))

    def _opts(self, site: Site, parent: pulumi.Resource) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=parent, provider=self._provider(_place(site)))

    def _names(self, pool: GcpPool, site: Site) -> GcpNames:
        return GcpNames.of(self.context.project, self.context.stack, pool.name, site.region, pool.zones)

    # For the stack's own resources in a project and region (the demand-scaling
    # receiver): the same provider the pools there use.

    def options(self, project: str, region: str) -> pulumi.ResourceOptions:
        """Resource options with that place's provider (no parent: a stack-level resource)."""
        return pulumi.ResourceOptions(provider=self._provider((project, region)))

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
        # has created anything. Demand pools have no autoscaler: the receiver
        # reads their schedules as written (scaler/floor.py).
        if not pool.on_demand:
            scaling_schedules(pool)
        names = GcpNames.of(self.context.project, self.context.stack, pool.name, region, pool.zones)
        return Site(
            cloud="gcp",
            region=region,
            project=project,
            group_name=names.group,
            secret_name=f"projects/{project}/secrets/{names.secret_id}",
            extra={
                "drain_seconds": str(DRAIN_SECONDS["spot" if pool.spot else "standard"]),
                **({"leave_seconds": str(LEAVE_SECONDS["spot"])} if pool.spot else {}),
                # The receiver names the VMs it creates in the group after this
                # (createInstances takes full instance names) and tells its own
                # VMs from others by it.
                "instance_base": names.base_instance,
            },
        )

    def network(self, pool: GcpPool, site: Site, parent: pulumi.Resource) -> Network:
        return build_network(pool, _place(site)[0], site.region, self._names(pool, site).tag, self._opts(site, parent))

    def identity(self, pool: GcpPool, site: Site, parent: pulumi.Resource) -> Identity:
        return build_identity(
            pool,
            _place(site)[0],
            site.region,
            self._names(pool, site),
            self.context.credential,
            pool_tags(pool, self.context),
            self._opts(site, parent),
        )

    def vm_group(
        self,
        pool: GcpPool,
        site: Site,
        network: Network,
        identity: Identity,
        user_data: UserData,
        parent: pulumi.Resource,
    ) -> VmGroup:
        place = _place(site)
        return build_vm_group(
            pool,
            place[0],
            site.region,
            self._names(pool, site),
            network,
            identity,
            user_data.text,
            pool_tags(pool, self.context),
            # Only asked for when the pool names no zones of its own.
            len(pool.zones) if pool.zones else self._region_zones(place).apply(len),
            self._machine_type(pool, place),
            self._opts(site, parent),
        )


def _place(site: Site) -> Place:
    assert site.project, "a GCP site always has a project"
    return (site.project, site.region)


def offline() -> bool:
    """True under Pulumi's mocks -- the offline plan and the tests -- where no cloud answers lookups."""
    return isinstance(pulumi.runtime.settings.get_monitor(), MockMonitor)


def checked_machine_type(pool: GcpPool, region: str, offered: dict[str, bool],
                         locate: Callable[[str, Field, str], str] = unlocated) -> str:
    """The machine type if the zones the group uses offer it; a RunError naming the zones if not, located at
    the pool's field in runners.yaml (`zones` when pinned zones lack it, else `machine_type`, or `arch` when
    the type is the arch's default).

    Pinned zones must all offer it (the group places VMs in each). GCP-picked
    zones need one; zones without it are a warning (pin `zones` to avoid them).
    """
    machine_type = pool.effective_machine_type
    missing = sorted(zone for zone, has in offered.items() if not has)
    having = sorted(zone for zone, has in offered.items() if has)
    field: Field = ("machine_type",) if pool.machine_type else ("arch",)
    if pool.zones and missing:
        raise pulumi.RunError(locate(
            pool.name, ("zones",),
            f"{machine_type} is not offered in {', '.join(missing)}"
            + (f" (it is in {', '.join(having)}): list only those in `zones`" if having else ""),
        ))
    if not having:
        raise pulumi.RunError(
            locate(pool.name, field, f"no zone of {region} offers {machine_type}: pick another type or region"))
    if missing:
        pulumi.log.warn(locate(
            pool.name, field,
            f"{machine_type} is not offered in {', '.join(missing)}; "
            f"set `zones: [{', '.join(having)}]` so the group never tries there",
        ))
    return machine_type
