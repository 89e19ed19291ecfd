"""The shared backend contract, for AWS."""

from __future__ import annotations

from typing import ClassVar

from plan.engine import Recorded, Recording
from providers.aws.agent_store import STORE_TYPE
from providers.aws.network import NETWORK_TYPE
from tests.providers.contract import BackendContract

LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"


class TestAwsContract(BackendContract):
    vm_group_type = "aws:autoscaling/group:Group"
    receiver_type = "ghrunners:aws:Receiver"
    grant_types = ("aws:iam/rolePolicy:RolePolicy", "aws:iam/instanceProfile:InstanceProfile")
    egress_types = (
        "aws:ec2/internetGateway:InternetGateway",
        "aws:ec2/natGateway:NatGateway",
        "aws:ec2/routeTable:RouteTable",
        "aws:ec2/routeTableAssociation:RouteTableAssociation",
    )

    shared_component_types = (NETWORK_TYPE, STORE_TYPE)

    def shared_by(self, recording: Recording, pool: Recorded) -> list[Recorded]:
        """The shared network whose VPC holds the pool's security group (none for
        a dedicated VPC or the pool's own subnets)."""
        members = recording.descendants_of(pool.urn)
        (group,) = [r for r in members if r.type == "aws:ec2/securityGroup:SecurityGroup"]
        vpcs = [r for r in recording.of_type("aws:ec2/vpc:Vpc") if r.id == group.inputs["vpcId"]]
        if not vpcs or vpcs[0] in members:
            return []
        return recording.descendants_of(vpcs[0].parent)

    files: ClassVar[dict[str, str]] = {
        "public": (
            "version: 1\ngithub: {repository: spigell/my-reforge-ai}\npools:\n"
            "  - {name: codex, provider: aws, spot: true}\n"
        ),
        "private-org": (
            "version: 1\ngithub: {organization: acme}\npools:\n"
            "  - {name: build, provider: aws, runner_group: ci, network: {private: true}, size: {min: 1, max: 3}}\n"
            "  - {name: arm, provider: aws, region: us-west-2, arch: arm64, ephemeral: false,\n"
            "     network: {vpc_id: vpc-0123456789abcdef0, subnet_ids: [subnet-0123456789abcdef0]}}\n"
        ),
    }

    def ingress_sources(self, recording: Recording) -> list[str]:
        sources: list[str] = []
        for group in recording.of_type("aws:ec2/securityGroup:SecurityGroup"):
            for rule in group.inputs.get("ingress", []):
                sources += rule.get("cidrBlocks", []) + rule.get("ipv6CidrBlocks", [])
        for rule in recording.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"):
            sources += [rule.inputs.get("cidrIpv4", ""), rule.inputs.get("cidrIpv6", "")]
        return sources

    def disk_encryption(self, recording: Recording) -> list[bool]:
        return [
            mapping.get("ebs", {}).get("encrypted") == "true"
            for template in recording.of_type(LAUNCH_TEMPLATE)
            for mapping in template.inputs.get("blockDeviceMappings", [])
        ]

    def metadata_protected(self, recording: Recording) -> list[bool]:
        return [
            template.inputs.get("metadataOptions", {}).get("httpTokens") == "required"
            and template.inputs["metadataOptions"].get("httpPutResponseHopLimit") == 1
            for template in recording.of_type(LAUNCH_TEMPLATE)
        ]

    def min_healthy_percent(self, recording: Recording) -> list[float]:
        found = []
        for group in recording.of_type("aws:autoscaling/group:Group"):
            refresh = group.inputs["instanceRefresh"]
            assert refresh["strategy"] == "Rolling"
            found.append(refresh["preferences"]["minHealthyPercentage"])
            found.append(group.inputs["instanceMaintenancePolicy"]["minHealthyPercentage"])
        return found
