"""AwsBackend: EC2 Auto Scaling groups of runners, one explicit provider per region."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from providers.aws.group import DRAIN_SECONDS, LIFECYCLE_HOOK, USER_DATA_LIMIT, build_vm_group, packed_user_data
from providers.aws.identity import Account, build_identity
from providers.aws.network import build_network
from providers.base import Backend, Identity, Network, PoolProblem, Site, StackContext, VmGroup
from providers.naming import stack_scoped
from providers.tags import pool_tags
from schema.models import AwsPool


class AwsBackend(Backend[AwsPool]):
    name = "aws"

    def __init__(self, context: StackContext) -> None:
        super().__init__(context)
        self._providers: dict[str, aws.Provider] = {}
        self._zones: dict[str, list[str]] = {}
        self._accounts: dict[str, Account] = {}

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
            result = aws.get_availability_zones(state="available", opts=self._invoke(region))
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

    # The interface.

    def site(self, pool: AwsPool) -> Site:
        region = pool.region or pulumi.Config("aws").get("region")
        if not region:
            raise PoolProblem(
                ("region",), "no AWS region: set region on the pool or run `pulumi config set aws:region eu-central-1`"
            )
        return Site(
            cloud="aws",
            region=region,
            group_name=stack_scoped(self.context.stack, pool.name, 255),
            secret_name=f"/gh-runners/{stack_scoped(self.context.stack, pool.name, 200)}/github-credential",
            extra={"lifecycle_hook": LIFECYCLE_HOOK, "drain_seconds": str(DRAIN_SECONDS)},
        )

    def network(self, pool: AwsPool, site: Site, parent: pulumi.Resource) -> Network:
        zones: list[str] = []
        if not pool.network.existing:
            available = self._zones_of(site.region)
            if pool.network.zones > len(available):
                raise PoolProblem(
                    ("network", "zones"),
                    f"{site.region} has {len(available)} available zones, the pool asks for {pool.network.zones}",
                )
            zones = available[: pool.network.zones]
        return build_network(pool, zones, pool_tags(pool, self.context), self._opts(site.region, parent))

    def identity(self, pool: AwsPool, site: Site, parent: pulumi.Resource) -> Identity:
        return build_identity(
            pool,
            site,
            self.context.credential,
            self._account(site.region),
            pool_tags(pool, self.context),
            self._opts(site.region, parent),
        )

    def vm_group(
        self, pool: AwsPool, site: Site, network: Network, identity: Identity, user_data: str, parent: pulumi.Resource
    ) -> VmGroup:
        size = len(packed_user_data(user_data))
        if size > USER_DATA_LIMIT:
            raise PoolProblem(
                ("setup_script",),
                f"user data is {size} bytes gzipped, EC2 allows {USER_DATA_LIMIT}: shorten the setup script "
                "or bake the tools into the pool's image",
            )
        return build_vm_group(
            pool, site, network, identity, user_data, pool_tags(pool, self.context), self._opts(site.region, parent)
        )
