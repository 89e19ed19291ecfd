"""GCP network: a private VPC with Cloud NAT (or the pool's own network), and firewall rules.

Runner VMs never get an external address: they reach GitHub through Cloud
NAT, and nothing reaches them except, when the pool asks for it, SSH from
Identity-Aware Proxy.
"""

from __future__ import annotations

import re

import pulumi
import pulumi_gcp as gcp

from providers.base import Network
from providers.naming import part
from schema.models import GcpPool

# Identity-Aware Proxy's TCP forwarding connects from this range only
# (https://cloud.google.com/iap/docs/using-tcp-forwarding).
IAP_RANGE = "35.235.240.0/20"
# The explicit deny sits just above GCP's implied deny (65535): any allow rule
# of ours (priority 1000) wins over it, and it makes the intent visible in audits.
DENY_PRIORITY = 65534
ALLOW_PRIORITY = 1000
NETWORK_MTU = 1500  # what Docker assumes inside the VM
_PROJECT_IN_LINK = re.compile(r"projects/([^/]+)/global/networks/")


def build_network(pool: GcpPool, project: str, region: str, tag: str, opts: pulumi.ResourceOptions) -> Network:
    name = pool.name
    nat = not pool.network.existing
    egress: list[pulumi.Resource] = []
    if nat:
        network, subnetwork, egress = _created_network(pool, project, region, opts)
        network_ref: pulumi.Input[str] = network.self_link
        subnet_ref: pulumi.Input[str] = subnetwork.self_link
        firewall_project = project
    else:
        network_ref = pool.network.network or ""
        subnet_ref = pool.network.subnetwork or ""
        # A Shared VPC network is named by its self link in the host project:
        # its firewall rules must live there too.
        host = _PROJECT_IN_LINK.search(network_ref)
        firewall_project = host.group(1) if host else project

    rules = [
        gcp.compute.Firewall(
            part(name, "deny-all"),
            description=f"gh-runners pool {name}: no inbound traffic to runner VMs",
            network=network_ref,
            project=firewall_project,
            direction="INGRESS",
            priority=DENY_PRIORITY,
            denies=[gcp.compute.FirewallDenyArgs(protocol="all")],
            source_ranges=["0.0.0.0/0"],
            target_tags=[tag],
            opts=opts,
        )
    ]
    if pool.iap_ssh:
        rules.append(
            gcp.compute.Firewall(
                part(name, "iap-ssh"),
                description=f"gh-runners pool {name}: SSH through Identity-Aware Proxy only",
                network=network_ref,
                project=firewall_project,
                direction="INGRESS",
                priority=ALLOW_PRIORITY,
                allows=[gcp.compute.FirewallAllowArgs(protocol="tcp", ports=["22"])],
                source_ranges=[IAP_RANGE],
                target_tags=[tag],
                opts=opts,
            )
        )
    return Network(
        subnet_ids=[subnet_ref],
        firewall_ids=[rule.id for rule in rules],
        public_ip=False,
        nat=nat,
        egress=egress,
    )


def _created_network(
    pool: GcpPool, project: str, region: str, opts: pulumi.ResourceOptions
) -> tuple[gcp.compute.Network, gcp.compute.Subnetwork, list[pulumi.Resource]]:
    name = pool.name
    network = gcp.compute.Network(
        part(name, "vpc"),
        project=project,
        description=f"gh-runners pool {name}",
        auto_create_subnetworks=False,
        routing_mode="REGIONAL",
        # GCP's default MTU is 1460, Docker's bridge and per-job networks use
        # 1500: container jobs then stall on large transfers when PMTU discovery
        # is blocked (actions/runner#2966). 1500 is a valid VPC MTU
        # (https://cloud.google.com/vpc/docs/mtu) and an in-place update for a
        # network an earlier version created (terraform-provider-google v6.37,
        # "Allow updates to the mtu property in the Network resource"): no
        # replacement. Running VMs keep 1460 until they are recreated, which
        # the template roll of the same upgrade does.
        mtu=NETWORK_MTU,
        opts=opts,
    )
    subnetwork = gcp.compute.Subnetwork(
        part(name, "subnet"),
        project=project,
        description=f"gh-runners pool {name}",
        network=network.id,
        region=region,
        ip_cidr_range=pool.network.cidr,
        stack_type="IPV4_ONLY",
        # Google APIs (Secret Manager, Logging) over Google's network, without NAT.
        private_ip_google_access=True,
        opts=opts,
    )
    router = gcp.compute.Router(
        part(name, "router"),
        project=project,
        description=f"gh-runners pool {name}: Cloud NAT for runner VMs without external IPs",
        network=network.id,
        region=region,
        opts=opts,
    )
    nat = gcp.compute.RouterNat(
        part(name, "nat"),
        project=project,
        router=router.name,
        region=region,
        nat_ip_allocate_option="AUTO_ONLY",
        source_subnetwork_ip_ranges_to_nat="LIST_OF_SUBNETWORKS",
        subnetworks=[
            gcp.compute.RouterNatSubnetworkArgs(name=subnetwork.self_link, source_ip_ranges_to_nats=["ALL_IP_RANGES"])
        ],
        # Busy runners open many connections (docker pulls, package mirrors):
        # let a VM grow its port allocation instead of failing to connect.
        enable_dynamic_port_allocation=True,
        enable_endpoint_independent_mapping=False,  # dynamic allocation requires it off
        min_ports_per_vm=64,
        max_ports_per_vm=4096,
        log_config=gcp.compute.RouterNatLogConfigArgs(enable=True, filter="ERRORS_ONLY"),
        opts=opts,
    )
    return network, subnetwork, [router, nat]
