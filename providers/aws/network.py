"""AWS network: a VPC with a way out and no way in -- shared by a stack's pools in
one region, or a pool's own -- or the pool's existing subnets.

One VPC, internet gateway and (for private pools) NAT gateway with its Elastic
IP per pool hit AWS's default quotas (5 VPCs, 5 Elastic IPs per region) at the
fifth pool, so pools of one stack in one region share one created network
unless a pool asks for `dedicated: true`. Each pool keeps its own security
group and uses the first `zones` subnets of its kind.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from providers.base import Network
from providers.naming import part
from schema.models import AwsPool

ANYWHERE_V4 = "0.0.0.0/0"
ANYWHERE_V6 = "::/0"
NETWORK_TYPE = "ghrunners:aws:Network"  # part of every shared network URN: never rename without aliases
# A VPC block is cut into 16 equal subnets; public subnets take slots 0-5 and
# private ones 8-13 (the upper half), one per zone. A subnet's CIDR depends only
# on its kind and zone index, never on how many zones or kinds exist: changing
# `zones` or `private` adds or removes subnets but never re-addresses one,
# which a create-before-delete replacement could not do (the new subnet would
# overlap its predecessor: InvalidSubnet.Conflict).
SUBNET_BITS = 4  # 16 slots: a /16 gives /20s, a /24 (the smallest VPC we allow) /28s
PRIVATE_SLOT = 8


def subnet_cidr(vpc_cidr: str, private: bool, index: int) -> str:
    """The CIDR of a VPC's public or private subnet in its `index`-th zone."""
    network = ipaddress.IPv4Network(vpc_cidr)
    slot = (PRIVATE_SLOT if private else 0) + index
    size = network.num_addresses >> SUBNET_BITS
    return str(ipaddress.IPv4Network((int(network.network_address) + slot * size, network.prefixlen + SUBNET_BITS)))


@dataclass(frozen=True)
class Shape:
    """What a created VPC must offer the pools that use it."""

    cidr: str
    zones: tuple[str, ...]  # standard availability zones, in subnet order
    private: bool  # private subnets and a NAT gateway


@dataclass(frozen=True)
class Vpc:
    """A created VPC's subnets by kind (one per zone, in zone order) and its way out."""

    vpc_id: pulumi.Output[str]
    public: list[aws.ec2.Subnet]
    private: list[aws.ec2.Subnet]
    egress: list[pulumi.Resource]


Aliases = Callable[[str], list[pulumi.Alias]]  # a part ("vpc", "public-0", ...) -> the URNs it may adopt


def build_vpc(
    prefix: str, shape: Shape, tags: dict[str, str], opts: pulumi.ResourceOptions, aliases: Aliases | None = None
) -> Vpc:
    """Public subnets routed to an internet gateway and, when asked, private
    subnets behind one NAT gateway; resources named `<prefix>-<part>`."""

    def options(what: str, *, depends_on: Sequence[pulumi.Resource] = (), **more: Any) -> pulumi.ResourceOptions:
        extra = pulumi.ResourceOptions(aliases=aliases(what) if aliases else None, depends_on=list(depends_on), **more)
        return pulumi.ResourceOptions.merge(opts, extra)

    vpc = aws.ec2.Vpc(
        part(prefix, "vpc"),
        cidr_block=shape.cidr,
        enable_dns_support=True,
        enable_dns_hostnames=True,
        tags={**tags, "Name": part(prefix, "vpc")},
        opts=options("vpc"),
    )
    # vpc_id is not ForceNew for aws_internet_gateway (vpc_internet_gateway.go):
    # a new VPC would move the gateway, detaching it from the old VPC while its
    # VMs still drain (and failing while they hold public addresses). A new VPC
    # gets a new gateway instead; the old one goes with the old VPC.
    gateway = aws.ec2.InternetGateway(
        part(prefix, "igw"), vpc_id=vpc.id, tags=tags, opts=options("igw", replace_on_changes=["vpcId"])
    )
    public_routes = aws.ec2.RouteTable(
        part(prefix, "public-routes"),
        vpc_id=vpc.id,
        routes=[aws.ec2.RouteTableRouteArgs(cidr_block=ANYWHERE_V4, gateway_id=gateway.id)],
        tags=tags,
        opts=options("public-routes"),
    )
    egress: list[pulumi.Resource] = [gateway, public_routes]

    def subnets(private: bool, route_table: aws.ec2.RouteTable) -> list[aws.ec2.Subnet]:
        made = []
        for i, zone in enumerate(shape.zones):
            label = f"{'private' if private else 'public'}-{i}"
            subnet = aws.ec2.Subnet(
                part(prefix, label),
                vpc_id=vpc.id,
                cidr_block=subnet_cidr(shape.cidr, private, i),
                availability_zone=zone,
                map_public_ip_on_launch=False,  # the launch template decides, per pool
                tags={**tags, "Name": part(prefix, label)},
                opts=options(label),
            )
            egress.append(
                aws.ec2.RouteTableAssociation(
                    part(prefix, f"{label}-routes"),
                    subnet_id=subnet.id,
                    route_table_id=route_table.id,
                    opts=options(f"{label}-routes"),
                )
            )
            made.append(subnet)
        return made

    public = subnets(False, public_routes)
    private: list[aws.ec2.Subnet] = []
    if shape.private:
        # One NAT gateway, not one per zone: runners are disposable and a zone
        # outage only pauses new jobs, while each extra NAT gateway costs money
        # around the clock. AWS fails a NAT gateway whose VPC has no internet
        # gateway attached yet, and `destroy` must remove the NAT (and free its
        # address) before the gateway: both wait for the gateway. Terraform's
        # aws_nat_gateway and aws_eip docs ("EIP may require IGW to exist prior
        # to association. Use depends_on to set an explicit dependency on the IGW").
        # A NAT gateway holds its Elastic IP, and is replaced with the subnet it
        # sits in (the VPC block or the first zone changed): the new gateway is
        # created first and needs an address of its own. So the address is
        # named after what places that subnet, and a new subnet brings a new
        # address; earlier releases' `nat-ip` is adopted (alias), not replaced.
        placed = hashlib.sha256(f"{shape.cidr} {shape.zones[0]}".encode()).hexdigest()[:7]
        address = aws.ec2.Eip(
            part(prefix, f"nat-ip-{placed}"),
            domain="vpc",
            tags=tags,
            opts=pulumi.ResourceOptions.merge(
                options("nat-ip", depends_on=[gateway]),
                pulumi.ResourceOptions(aliases=[pulumi.Alias(name=part(prefix, "nat-ip"))]),
            ),
        )
        nat = aws.ec2.NatGateway(
            part(prefix, "nat"),
            allocation_id=address.id,
            subnet_id=public[0].id,
            tags=tags,
            opts=options("nat", depends_on=[gateway]),
        )
        private_routes = aws.ec2.RouteTable(
            part(prefix, "private-routes"),
            vpc_id=vpc.id,
            routes=[aws.ec2.RouteTableRouteArgs(cidr_block=ANYWHERE_V4, nat_gateway_id=nat.id)],
            tags=tags,
            opts=options("private-routes"),
        )
        egress += [nat, private_routes]
        private = subnets(True, private_routes)
    return Vpc(vpc_id=vpc.id, public=public, private=private, egress=egress)


class SharedNetwork(pulumi.ComponentResource):
    """The created VPC the pools of one stack share in one region."""

    def __init__(
        self,
        region: str,
        shape: Shape,
        tags: dict[str, str],
        provider: aws.Provider,
        adopt: pulumi.Resource | None = None,
        adopt_name: str = "",
    ) -> None:
        name = f"network-{region}"
        super().__init__(NETWORK_TYPE, name, None, None)
        # Before shared networks, every pool had its own VPC under its
        # RunnerPool, named `<pool>-<part>`. The first pool of the region keeps
        # its network: the shared one adopts those URNs (aliases), so a stack
        # with one pool per region upgrades without touching its network.
        aliases: Aliases | None = None
        if adopt is not None:
            aliases = lambda what: [pulumi.Alias(name=part(adopt_name, what), parent=adopt)]  # noqa: E731
        self.vpc = build_vpc(
            name, shape, tags, pulumi.ResourceOptions(parent=self, provider=provider), aliases=aliases
        )
        self.register_outputs({"vpcId": self.vpc.vpc_id})


def pool_network(pool: AwsPool, vpc: Vpc, tags: dict[str, str], opts: pulumi.ResourceOptions) -> Network:
    """The pool's security group and its first `zones` subnets of its kind in a created VPC."""
    settings = pool.network
    kind = vpc.private if settings.private else vpc.public
    if len(kind) < settings.zones:
        raise RuntimeError(f"the network built for pool {pool.name} has {len(kind)} subnets of its kind")
    group = _security_group(pool.name, vpc.vpc_id, tags, opts)
    return Network(
        subnet_ids=[subnet.id for subnet in kind[: settings.zones]],
        firewall_ids=[group.id],
        public_ip=not settings.private,
        nat=settings.private,
        egress=vpc.egress,
    )


def existing_network(pool: AwsPool, tags: dict[str, str], opts: pulumi.ResourceOptions) -> Network:
    """The pool's own subnets, with a security group of ours in their VPC."""
    settings = pool.network
    assert settings.vpc_id is not None  # the schema requires it with subnet_ids
    group = _security_group(pool.name, settings.vpc_id, tags, opts)
    return Network(subnet_ids=settings.subnet_ids, firewall_ids=[group.id], public_ip=False, nat=False)


def _security_group(
    pool: str, vpc_id: pulumi.Input[str], tags: dict[str, str], opts: pulumi.ResourceOptions
) -> aws.ec2.SecurityGroup:
    # No ingress at all: runners poll GitHub; nothing ever connects to them.
    return aws.ec2.SecurityGroup(
        part(pool, "sg"),
        description=f"gh-runners pool {pool}: no inbound, all outbound",
        vpc_id=vpc_id,
        ingress=[],
        egress=[
            aws.ec2.SecurityGroupEgressArgs(
                protocol="-1", from_port=0, to_port=0, cidr_blocks=[ANYWHERE_V4], ipv6_cidr_blocks=[ANYWHERE_V6]
            )
        ],
        tags=tags,
        opts=opts,
    )
