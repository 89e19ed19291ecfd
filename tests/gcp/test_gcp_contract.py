"""The shared backend contract, for GCP."""

from __future__ import annotations

from typing import ClassVar

from plan.engine import Recording
from tests.providers.contract import BackendContract

TEMPLATE = "gcp:compute/regionInstanceTemplate:RegionInstanceTemplate"


class TestGcpContract(BackendContract):
    vm_group_type = "gcp:compute/regionInstanceGroupManager:RegionInstanceGroupManager"
    receiver_type = "ghrunners:gcp:Receiver"
    grant_types = ("gcp:secretmanager/secretIamMember:SecretIamMember", "gcp:projects/iAMMember:IAMMember")
    egress_types = ("gcp:compute/router:Router", "gcp:compute/routerNat:RouterNat")

    files: ClassVar[dict[str, str]] = {
        "default": (
            "version: 1\ngithub: {repository: spigell/my-reforge-ai}\npools:\n  - {name: codex, provider: gcp}\n"
        ),
        "org": (
            "version: 1\ngithub: {organization: acme}\npools:\n"
            "  - {name: build, provider: gcp, runner_group: ci, spot: true, iap_ssh: true, size: {min: 1, max: 4},\n"
            "     schedules: [{cron: '0 7 * * 1-5', desired: 4}, {cron: '0 19 * * 1-5', desired: 1}]}\n"
            "  - {name: arm, provider: gcp, project: other-project, region: us-central1, arch: arm64,\n"
            "     ephemeral: false, zones: [us-central1-a, us-central1-b],\n"
            "     network: {network: shared, subnetwork: runners}}\n"
        ),
    }

    def ingress_sources(self, recording: Recording) -> list[str]:
        # Only rules that let traffic in count; the explicit deny-all names
        # 0.0.0.0/0 precisely to refuse it.
        return [
            source
            for rule in recording.of_type("gcp:compute/firewall:Firewall")
            if rule.inputs.get("direction", "INGRESS") == "INGRESS" and rule.inputs.get("allows")
            for source in rule.inputs.get("sourceRanges", [])
        ]

    def disk_encryption(self, recording: Recording) -> list[bool]:
        # Compute Engine encrypts every persistent disk at rest (Google-managed
        # keys unless a customer key is given); there is no unencrypted kind to
        # opt out to. What is checked: every disk is a persistent disk.
        return [
            disk.get("type", "PERSISTENT") == "PERSISTENT"
            for template in recording.of_type(TEMPLATE)
            for disk in template.inputs.get("disks", [])
        ]

    def metadata_protected(self, recording: Recording) -> list[bool]:
        # No SSH keys through metadata (OS Login only), and only the v1 metadata
        # endpoint, which insists on the Metadata-Flavor header.
        expected = {"enable-oslogin": "TRUE", "block-project-ssh-keys": "TRUE", "disable-legacy-endpoints": "TRUE"}
        return [
            all(template.inputs.get("metadata", {}).get(key) == value for key, value in expected.items())
            for template in recording.of_type(TEMPLATE)
        ]

    def min_healthy_percent(self, recording: Recording) -> list[float]:
        found = []
        for group in recording.of_type("gcp:compute/regionInstanceGroupManager:RegionInstanceGroupManager"):
            policy = group.inputs["updatePolicy"]
            assert policy["type"] == "PROACTIVE" and policy["replacementMethod"] == "SUBSTITUTE"
            assert policy["maxSurgeFixed"] >= 1
            found.append(100.0 if policy["maxUnavailableFixed"] == 0 else 0.0)
        return found
