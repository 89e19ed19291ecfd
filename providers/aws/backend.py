"""AwsBackend: EC2 Auto Scaling groups of runners, one explicit provider per region."""

from __future__ import annotations

import re
from collections.abc import Sequence

import pulumi
import pulumi_aws as aws

from providers.aws.agent_store import AgentStore, objects_arn
from providers.aws.group import DRAIN_SECONDS, LIFECYCLE_HOOK, USER_DATA_LIMIT, build_vm_group, packed_user_data
from providers.aws.identity import Account, build_identity
from providers.aws.network import Shape, SharedNetwork, Vpc, build_vpc, existing_network, pool_network
from providers.base import AgentDelivery, Backend, Identity, Network, PoolProblem, Site, StackContext, UserData, VmGroup
from providers.naming import deployment_scoped
from providers.tags import pool_tags, stack_tags
from schema.models import AwsPool

# Partitions by region name, as botocore's data/partitions.json resolves them
# (`regionRegex`, `outputs.dnsSuffix`). The VM agent and the IAM conditions
# speak to `<service>.<region>.amazonaws.com`; regions under another DNS
# suffix are refused with a located error rather than half supported.
PARTITIONS: list[tuple[str, str, str]] = [
    (r"^(us|eu|ap|sa|ca|me|af|il|mx)-\w+-\d+$", "aws", "amazonaws.com"),
    (r"^us-gov-\w+-\d+$", "aws-us-gov", "amazonaws.com"),
    (r"^cn-\w+-\d+$", "aws-cn", "amazonaws.com.cn"),
    (r"^eusc-(de)-\w+-\d+$", "aws-eusc", "amazonaws.eu"),
    (r"^us-iso-\w+-\d+$", "aws-iso", "c2s.ic.gov"),
    (r"^us-isob-\w+-\d+$", "aws-iso-b", "sc2s.sgov.gov"),
    (r"^eu-isoe-\w+-\d+$", "aws-iso-e", "cloud.adc-e.uk"),
    (r"^us-isof-\w+-\d+$", "aws-iso-f", "csp.hci.ic.gov"),
]
SUPPORTED_DNS_SUFFIX = "amazonaws.com"


def partition_of(region: str) -> tuple[str, str] | None:
    """(partition, DNS suffix) of a region name, or None when no partition claims it."""
    for pattern, partition, suffix in PARTITIONS:
        if re.match(pattern, region):
            return partition, suffix
    return None


class AwsBackend(Backend[AwsPool]):
    name = "aws"

    def __init__(self, context: StackContext) -> None:
        super().__init__(context)
        self._providers: dict[str, aws.Provider] = {}
        self._zones: dict[str, list[str]] = {}
        self._accounts: dict[str, Account] = {}
        self._sharers: dict[str, list[AwsPool]] = {}  # region -> pools on its shared network, in file order
        self._types: dict[str, set[str]] = {}  # region -> every instance type its pools use
        self._shared: dict[str, SharedNetwork] = {}
        self._offered: dict[str, pulumi.Output[set[tuple[str, str]]]] = {}
        self._stores: dict[str, AgentStore] = {}

    def prepare(self, pools: Sequence[AwsPool]) -> None:
        for pool in pools:
            region = _region_of(pool)
            if region is None:
                continue  # site() reports it, located
            self._types.setdefault(region, set()).update(pool.effective_instance_types)
            if not (pool.network.existing or pool.network.dedicated):
                self._sharers.setdefault(region, []).append(pool)

    # Shared per region: created once, used by every pool in that region.

    def _provider(self, region: str) -> aws.Provider:
        if region not in self._providers:
            self._providers[region] = aws.Provider(f"aws-{region}", region=region)
        return self._providers[region]

    def _invoke(self, region: str) -> pulumi.InvokeOptions:
        return pulumi.InvokeOptions(provider=self._provider(region))

    def _zones_of(self, region: str) -> list[str]:
        # One lookup per region, not per pool: per-pool data-source calls make
        # program evaluation grow with the square of the pool count.
        if region not in self._zones:
            # Standard zones only: an account that opted in to a Local Zone
            # (us-west-2-lax-1a) gets it listed too, sorted first, and most
            # instance types and NAT gateways do not exist there. The filter
            # is the one the provider documents for "only Availability Zones".
            result = aws.get_availability_zones(
                state="available",
                filters=[aws.GetAvailabilityZonesFilterArgs(name="opt-in-status", values=["opt-in-not-required"])],
                opts=self._invoke(region),
            )
            self._zones[region] = sorted(result.names)
        return self._zones[region]

    def _account(self, region: str) -> Account:
        if region not in self._accounts:
            opts = pulumi.InvokeOutputOptions(provider=self._provider(region))
            self._accounts[region] = Account(
                partition=aws.get_partition_output(opts=opts).partition,
                account_id=aws.get_caller_identity_output(opts=opts).account_id,
            )
        return self._accounts[region]

    def _opts(self, region: str, parent: pulumi.Resource) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=parent, provider=self._provider(region))

    def _zones_for(self, region: str, pool: AwsPool) -> tuple[str, ...]:
        available = self._zones_of(region)
        if pool.network.zones > len(available):
            raise PoolProblem(
                ("network", "zones"),
                f"{region} has {len(available)} available zones, the pool asks for {pool.network.zones}",
            )
        return tuple(available[: pool.network.zones])

    def _shared_network(self, region: str, pool: AwsPool, parent: pulumi.Resource) -> Vpc:
        sharers = self._sharers.get(region) or [pool]  # prepare() not called: the pools as they come
        explicit = [p for p in sharers if "cidr" in p.network.model_fields_set]
        cidr = explicit[0].network.cidr if explicit else pool.network.cidr
        if "cidr" in pool.network.model_fields_set and pool.network.cidr != cidr:
            raise PoolProblem(
                ("network", "cidr"),
                f"the pools in {region} share one network, {cidr} (set by pool {explicit[0].name}); "
                "use the same cidr, or give this pool its own VPC with `dedicated: true`",
            )
        self._zones_for(region, pool)  # this pool's zones exist
        if region not in self._shared:
            available = len(self._zones_of(region))
            zones = max(p.network.zones for p in sharers if p.network.zones <= available)
            shape = Shape(
                cidr=cidr,
                zones=tuple(self._zones_of(region)[:zones]),
                private=any(p.network.private for p in sharers),
            )
            # The first pool of the region builds it and lends it its old URNs.
            self._shared[region] = SharedNetwork(
                region, shape, stack_tags(self.context), self._provider(region), adopt=parent, adopt_name=pool.name
            )
        return self._shared[region].vpc

    def _store(self, region: str) -> AgentStore:
        """The region's agent bucket: created once, used by every pool there."""
        if region not in self._stores:
            self._stores[region] = AgentStore(region, stack_tags(self.context), self._provider(region))
        return self._stores[region]

    def _offerings(self, region: str) -> pulumi.Output[set[tuple[str, str]]]:
        """(instance type, zone) pairs EC2 offers, for every type the region's pools use:
        one lookup per region (get_instance_type_offerings), not per pool."""
        if region not in self._offered:
            result = aws.ec2.get_instance_type_offerings_output(
                location_type="availability-zone",
                filters=[
                    aws.ec2.GetInstanceTypeOfferingsFilterArgs(name="location", values=self._zones_of(region)),
                    aws.ec2.GetInstanceTypeOfferingsFilterArgs(
                        name="instance-type", values=sorted(self._types.get(region, set()))
                    ),
                ],
                opts=pulumi.InvokeOutputOptions(provider=self._provider(region)),
            )
            self._offered[region] = pulumi.Output.all(result.instance_types, result.locations).apply(
                lambda found: set(zip(found[0], found[1], strict=True))
            )
        return self._offered[region]

    def _offered_in_every_zone(self, pool: AwsPool, region: str, network: Network) -> Network:
        """The network, its subnets held back until EC2 confirms that every zone
        of the pool offers one of its instance types; otherwise a located error.
        A zone without any leaves the group short of VMs with a green `pulumi up`."""
        self._types.setdefault(region, set()).update(pool.effective_instance_types)
        zones = self._zones_for(region, pool)
        types = pool.effective_instance_types

        def check(offered: set[tuple[str, str]]) -> bool:
            for zone in zones:
                if not any((kind, zone) in offered for kind in types):
                    field = ("instance_types",) if pool.instance_types else ("arch",)
                    raise pulumi.RunError(
                        self.context.locate(
                            pool.name,
                            field,
                            f"{zone}, one of the pool's zones, offers none of {', '.join(types)}; "
                            "choose other instance types or fewer network.zones",
                        )
                    )
            return True

        checked = self._offerings(region).apply(check)
        subnets = [pulumi.Output.all(checked, subnet).apply(lambda v: str(v[1])) for subnet in network.subnet_ids]
        return Network(
            subnet_ids=subnets,
            firewall_ids=network.firewall_ids,
            public_ip=network.public_ip,
            nat=network.nat,
            egress=network.egress,
        )

    # For the stack's own resources in a region (the demand-scaling receiver):
    # the same provider and account lookups the region's pools use.

    def options(self, region: str) -> pulumi.ResourceOptions:
        """Resource options with the region's provider (no parent: a stack-level resource)."""
        return pulumi.ResourceOptions(provider=self._provider(region))

    def account(self, region: str) -> Account:
        """The partition and account id the region's provider deploys to (looked up once)."""
        return self._account(region)

    # The interface.

    def site(self, pool: AwsPool) -> Site:
        region = _region_of(pool)
        if not region:
            raise PoolProblem(
                ("region",), "no AWS region: set region on the pool or run `pulumi config set aws:region eu-central-1`"
            )
        _check_partition(region, "region" if pool.region else "stack config aws:region")
        project, stack = self.context.project, self.context.stack
        return Site(
            cloud="aws",
            region=region,
            # Unique per account and region across projects and stacks: two
            # deployments of this code never claim the same group or parameter.
            group_name=deployment_scoped(project, stack, pool.name, 255),
            secret_name=f"/gh-runners/{deployment_scoped(project, stack, pool.name, 200)}/github-credential",
            extra={"lifecycle_hook": LIFECYCLE_HOOK, "drain_seconds": str(DRAIN_SECONDS)},
        )

    def network(self, pool: AwsPool, site: Site, parent: pulumi.Resource) -> Network:
        tags, opts = pool_tags(pool, self.context), self._opts(site.region, parent)
        if pool.network.existing:
            # The pool chose its subnets, and with them its zones.
            return existing_network(pool, tags, opts)
        if pool.network.dedicated:
            shape = Shape(
                cidr=pool.network.cidr,
                zones=self._zones_for(site.region, pool),
                private=pool.network.private,
            )
            vpc = build_vpc(pool.name, shape, tags, opts)
        else:
            vpc = self._shared_network(site.region, pool, parent)
        return self._offered_in_every_zone(pool, site.region, pool_network(pool, vpc, tags, opts))

    def identity(self, pool: AwsPool, site: Site, parent: pulumi.Resource) -> Identity:
        account = self._account(site.region)
        return build_identity(
            pool,
            site,
            self.context.credential,
            account,
            pool_tags(pool, self.context),
            self._opts(site.region, parent),
            agent_objects=pulumi.Output.all(account.partition, self._store(site.region).bucket.bucket).apply(
                lambda values: objects_arn(values[0], values[1])
            ),
        )

    def agent_delivery(self, site: Site) -> AgentDelivery:
        store = self._store(site.region)
        return AgentDelivery(agent=store.agent(), widest=store.widest_agent())

    def vm_group(
        self,
        pool: AwsPool,
        site: Site,
        network: Network,
        identity: Identity,
        user_data: UserData,
        parent: pulumi.Resource,
    ) -> VmGroup:
        size = len(packed_user_data(user_data.longest))
        if size > USER_DATA_LIMIT:
            raise PoolProblem(
                ("setup_script",),
                f"user data is {size} bytes gzipped, EC2 allows {USER_DATA_LIMIT}: shorten the setup script "
                "or bake the tools into the pool's image",
            )
        return build_vm_group(
            pool,
            site,
            network,
            identity,
            user_data.text,
            pool_tags(pool, self.context),
            self._opts(site.region, parent),
        )


def _region_of(pool: AwsPool) -> str | None:
    return pool.region or pulumi.Config("aws").get("region")


def _check_partition(region: str, source: str) -> None:
    found = partition_of(region)
    if found is None:
        raise PoolProblem(("region",), f"{source} {region!r} is not an AWS region name")
    partition, suffix = found
    if suffix != SUPPORTED_DNS_SUFFIX:
        raise PoolProblem(
            ("region",),
            f"{region} is in the {partition} partition ({suffix}); gh-runners supports regions under "
            f"{SUPPORTED_DNS_SUFFIX} only (the aws and aws-us-gov partitions)",
        )
