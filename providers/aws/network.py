"""AWS network: a VPC across zones with a way out and no way in, or existing subnets."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import pulumi
import pulumi_aws as aws

from providers.base import Network
from providers.naming import part
from schema.models import AwsPool

ANYWHERE_V4 = "0.0.0.0/0"
ANYWHERE_V6 = "::/0"


def subnet_cidrs(vpc_cidr: str, count: int) -> list[str]:
    """`count` equal subnets carved from the VPC block, 4 bits smaller (a /16 gives /20s)."""
    network = ipaddress.IPv4Network(vpc_cidr)
    prefix = min(network.prefixlen + 4, 28)
    return [str(subnet) for subnet, _ in zip(network.subnets(new_prefix=prefix), range(count), strict=False)]


def build_network(pool: AwsPool, zones: Sequence[str], tags: dict[str, str], opts: pulumi.ResourceOptions) -> Network:
    """Public subnets (default, cheapest: a public IPv4 per VM, no inbound rules),
    private subnets behind one NAT gateway, or the pool's existing subnets."""
    settings = pool.network
    name = pool.name
    if settings.existing:
        assert settings.vpc_id is not None  # the schema requires it with subnet_ids
        group = _security_group(name, settings.vpc_id, tags, opts)
        return Network(subnet_ids=settings.subnet_ids, firewall_ids=[group.id], public_ip=False, nat=False)

    vpc = aws.ec2.Vpc(
        part(name, "vpc"),
        cidr_block=settings.cidr,
        enable_dns_support=True,
        enable_dns_hostnames=True,
        tags={**tags, "Name": part(name, "vpc")},
        opts=opts,
    )
    gateway = aws.ec2.InternetGateway(part(name, "igw"), vpc_id=vpc.id, tags=tags, opts=opts)
    public_routes = aws.ec2.RouteTable(
        part(name, "public-routes"),
        vpc_id=vpc.id,
        routes=[aws.ec2.RouteTableRouteArgs(cidr_block=ANYWHERE_V4, gateway_id=gateway.id)],
        tags=tags,
        opts=opts,
    )
    count = len(zones)
    cidrs = subnet_cidrs(settings.cidr, 2 * count if settings.private else count)
    egress: list[pulumi.Resource] = [gateway, public_routes]
    public = [
        _subnet(name, f"public-{i}", vpc.id, cidrs[i], zone, public_routes.id, tags, opts, egress)
        for i, zone in enumerate(zones)
    ]
    subnets = public
    if settings.private:
        # One NAT gateway, not one per zone: runners are disposable and a zone
        # outage only pauses new jobs, while each extra NAT gateway costs money
        # around the clock.
        # AWS fails a NAT gateway whose VPC has no internet gateway attached
        # yet, and `destroy` must remove the NAT (and free its address) before
        # the gateway: both wait for the gateway. Terraform's aws_nat_gateway
        # and aws_eip docs ("EIP may require IGW to exist prior to
        # association. Use depends_on to set an explicit dependency on the IGW").
        after_gateway = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[gateway]))
        address = aws.ec2.Eip(part(name, "nat-ip"), domain="vpc", tags=tags, opts=after_gateway)
        nat = aws.ec2.NatGateway(
            part(name, "nat"), allocation_id=address.id, subnet_id=public[0].id, tags=tags, opts=after_gateway
        )
        private_routes = aws.ec2.RouteTable(
            part(name, "private-routes"),
            vpc_id=vpc.id,
            routes=[aws.ec2.RouteTableRouteArgs(cidr_block=ANYWHERE_V4, nat_gateway_id=nat.id)],
            tags=tags,
            opts=opts,
        )
        egress += [nat, private_routes]
        subnets = [
            _subnet(name, f"private-{i}", vpc.id, cidrs[count + i], zone, private_routes.id, tags, opts, egress)
            for i, zone in enumerate(zones)
        ]
    group = _security_group(name, vpc.id, tags, opts)
    return Network(
        subnet_ids=[subnet.id for subnet in subnets],
        firewall_ids=[group.id],
        public_ip=not settings.private,
        nat=settings.private,
        egress=egress,
    )


def _subnet(
    pool: str,
    label: str,
    vpc_id: pulumi.Input[str],
    cidr: str,
    zone: str,
    route_table_id: pulumi.Input[str],
    tags: dict[str, str],
    opts: pulumi.ResourceOptions,
    egress: list[pulumi.Resource],
) -> aws.ec2.Subnet:
    subnet = aws.ec2.Subnet(
        part(pool, label),
        vpc_id=vpc_id,
        cidr_block=cidr,
        availability_zone=zone,
        map_public_ip_on_launch=False,  # the launch template decides, per pool
        tags={**tags, "Name": part(pool, label)},
        opts=opts,
    )
    egress.append(
        aws.ec2.RouteTableAssociation(
            part(pool, f"{label}-routes"), subnet_id=subnet.id, route_table_id=route_table_id, opts=opts
        )
    )
    return subnet


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
