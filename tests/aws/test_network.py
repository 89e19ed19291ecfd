"""AWS networks: one per stack and region shared by its pools, a pool's own on request,
subnets that never move, and zones that offer the pool's instance types."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import pulumi
import pytest

from plan.engine import CloudMocks, Recording
from providers.aws.network import NETWORK_TYPE, subnet_cidr
from tests.providers.harness import run_file

HEADER = "version: 1\ngithub: {repository: spigell/my-reforge-ai}\npools:\n"
VPC = "aws:ec2/vpc:Vpc"
SUBNET = "aws:ec2/subnet:Subnet"


def plan(tmp_path: Path, pools: str, **kwargs: Any) -> Recording:
    return run_file(tmp_path, HEADER + pools, **kwargs)


def subnets_of(recording: Recording, pool: str) -> list[str]:
    return list(recording.named(f"{pool}-asg").inputs["vpcZoneIdentifiers"])


def test_pools_of_a_region_share_one_network(tmp_path: Path) -> None:
    """Five pools used to need five VPCs, gateways and (private) addresses: AWS's
    default quota is 5 of each per region."""
    pools = "".join(
        f"  - {{name: p{i}, provider: aws, network: {{private: {str(i % 2 == 0).lower()}}}}}\n" for i in range(6)
    )
    recording = plan(tmp_path, pools + "  - {name: west, provider: aws, region: us-west-2}\n")
    assert len(recording.of_type(VPC)) == 2  # one per region
    assert len(recording.of_type("aws:ec2/internetGateway:InternetGateway")) == 2
    assert len(recording.of_type("aws:ec2/eip:Eip")) == 1 == len(recording.of_type("aws:ec2/natGateway:NatGateway"))
    (network,) = [r for r in recording.of_type(NETWORK_TYPE) if r.name == "network-eu-central-1"]
    members = {r.id: r for r in recording.descendants_of(network.urn) if r.type == SUBNET}
    for i in range(6):
        used = [members[subnet] for subnet in subnets_of(recording, f"p{i}")]
        assert [s.name.split("-")[-2] for s in used] == ["private" if i % 2 == 0 else "public"] * 2
        # Each pool keeps its own security group, in the shared VPC.
        assert recording.named(f"p{i}-sg").inputs["vpcId"] == recording.named("network-eu-central-1-vpc").id


def test_the_shared_network_spans_the_widest_pool(tmp_path: Path) -> None:
    recording = plan(tmp_path, "  - {name: a, provider: aws}\n  - {name: b, provider: aws, network: {zones: 3}}\n")
    assert len([s for s in recording.of_type(SUBNET) if "public" in s.name]) == 3
    assert len(subnets_of(recording, "a")) == 2 and len(subnets_of(recording, "b")) == 3
    assert subnets_of(recording, "a") == subnets_of(recording, "b")[:2]


def test_a_dedicated_pool_keeps_its_own_vpc_under_its_name(tmp_path: Path) -> None:
    recording = plan(
        tmp_path,
        "  - {name: a, provider: aws}\n"
        "  - {name: lone, provider: aws, network: {dedicated: true, private: true, cidr: 10.9.0.0/16}}\n",
    )
    lone = recording.named("lone-vpc")
    assert lone.parent == recording.named("lone").urn  # the same URN as before shared networks
    assert lone.inputs["cidrBlock"] == "10.9.0.0/16"
    assert recording.named("lone-nat").inputs["subnetId"] == recording.named("lone-public-0").id
    assert recording.named("network-eu-central-1-vpc").inputs["cidrBlock"] == "10.0.0.0/16"
    assert not [r for r in recording.of_type("aws:ec2/natGateway:NatGateway") if r.name.startswith("network-")]


def test_the_shared_network_adopts_the_first_pools_network(tmp_path: Path) -> None:
    """Upgrading from per-pool networks: the first pool of a region keeps its
    VPC (aliases to its old URNs); only the other pools move."""
    recording = plan(tmp_path, "  - {name: codex, provider: aws}\n  - {name: other, provider: aws}\n")
    prefix, pool_type, _ = recording.named("codex").urn.rsplit("::", 2)
    children = recording.descendants_of(recording.named("network-eu-central-1").urn)
    assert len(children) == 7  # vpc, igw, public routes, 2 subnets, 2 route table associations
    for record in children:
        part = record.name.removeprefix("network-eu-central-1-")
        assert record.aliases == [f"{prefix}::{pool_type}${record.type}::codex-{part}"], record.name


def test_explicit_cidrs_of_sharing_pools_must_agree(tmp_path: Path) -> None:
    with pytest.raises(pulumi.RunError) as caught:
        plan(
            tmp_path,
            "  - {name: a, provider: aws, network: {cidr: 10.1.0.0/16}}\n"
            "  - {name: b, provider: aws}\n"
            "  - {name: c, provider: aws, network: {cidr: 10.2.0.0/16}}\n",
        )
    assert str(caught.value).endswith(
        "runners.yaml:6:46: pools[2].network.cidr: the pools in eu-central-1 share one network, 10.1.0.0/16 "
        "(set by pool a); use the same cidr, or give this pool its own VPC with `dedicated: true`"
    )


@pytest.mark.parametrize("vpc", ["10.0.0.0/16", "172.16.0.0/20", "192.168.7.0/24"])
def test_a_subnet_never_moves_when_zones_or_kinds_change(vpc: str) -> None:
    """A subnet's CIDR depends on its kind and zone index only; the old layout
    re-addressed private subnets when `zones` changed, and a create-before-delete
    replacement then overlapped its predecessor (InvalidSubnet.Conflict)."""
    block = ipaddress.IPv4Network(vpc)
    seen: dict[tuple[bool, int], str] = {}
    for private in (False, True):
        for index in range(6):
            cidr = ipaddress.IPv4Network(subnet_cidr(vpc, private, index))
            assert cidr.subnet_of(block) and cidr.prefixlen == block.prefixlen + 4
            seen[(private, index)] = str(cidr)
    cidrs = [ipaddress.IPv4Network(c) for c in seen.values()]
    assert not any(a.overlaps(b) for i, a in enumerate(cidrs) for b in cidrs[i + 1 :])


def test_changing_zones_keeps_every_existing_subnet(tmp_path: Path) -> None:
    layouts = []
    for zones in (2, 3):
        (tmp_path / str(zones)).mkdir()
        recording = plan(
            tmp_path / str(zones), f"  - {{name: p, provider: aws, network: {{private: true, zones: {zones}}}}}\n"
        )
        layouts.append(
            {s.name: (s.inputs["cidrBlock"], s.inputs["availabilityZone"]) for s in recording.of_type(SUBNET)}
        )
    before, after = layouts
    assert {name: after[name] for name in before} == before
    assert len(after) == len(before) + 2


def test_a_zone_without_the_pools_instance_types_is_a_located_error(tmp_path: Path) -> None:
    mocks = CloudMocks(unoffered={("m7g.large", "eu-central-1b")})
    with pytest.raises(pulumi.RunError) as caught:
        plan(tmp_path, "  - {name: arm, provider: aws, arch: arm64, instance_types: [m7g.large]}\n", mocks=mocks)
    assert str(caught.value).endswith(
        "runners.yaml:4:45: pools[0].instance_types: eu-central-1b, one of the pool's zones, offers none of "
        "m7g.large; choose other instance types or fewer network.zones"
    )


def test_a_type_missing_in_one_zone_is_fine_when_another_type_covers_it(tmp_path: Path) -> None:
    mocks = CloudMocks(unoffered={("m7i.large", "eu-central-1b")})
    recording = plan(tmp_path, "  - {name: c, provider: aws, instance_types: [m7i.large, m6i.large]}\n", mocks=mocks)
    assert len(subnets_of(recording, "c")) == 2


def test_the_offerings_lookup_is_one_per_region(tmp_path: Path) -> None:
    calls: list[dict[str, Any]] = []

    class Counting(CloudMocks):
        def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:  # type: ignore[override]
            if args.token == "aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings":
                calls.append(json.loads(json.dumps(args.args)))
            return super().call(args)

    pools = "".join(f"  - {{name: p{i}, provider: aws, instance_types: [m{5 + i % 3}i.large]}}\n" for i in range(6))
    plan(tmp_path, pools, mocks=Counting())
    (call,) = calls
    wanted = {spec["name"]: spec["values"] for spec in call["filters"]}
    assert wanted["instance-type"] == ["m5i.large", "m6i.large", "m7i.large"]
    assert wanted["location"] == ["eu-central-1a", "eu-central-1b", "eu-central-1c"]
