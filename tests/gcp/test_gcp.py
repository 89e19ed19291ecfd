"""The GCP backend under the recording engine: every resource and its key properties."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pulumi
import pulumi_gcp as gcp
import pytest

from plan.engine import Recording, RecordingMonitor, run
from providers.base import PoolProblem, StackContext
from providers.gcp import GcpNames, placement
from providers.gcp import backend as backend_module
from providers.gcp.backend import GcpBackend, checked_machine_type
from providers.gcp.group import GROUP_DELETE_TIMEOUT, UBUNTU_IMAGE
from providers.gcp.network import IAP_RANGE
from providers.pool import RUNNER_POOL_TYPE, RunnerPool
from schema.models import GcpPool, GitHubTarget
from tests.providers.harness import run_file

SENTINEL = "ghp_SENTINEL0gcp0credential0must0never0leak"
CONFIG = {"gcp:project": "ci-project", "gcp:region": "europe-west4"}
STACK = "test"
GROUP = "gcp:compute/regionInstanceGroupManager:RegionInstanceGroupManager"
AUTOSCALER = "gcp:compute/regionAutoscaler:RegionAutoscaler"
TEMPLATE = "gcp:compute/regionInstanceTemplate:RegionInstanceTemplate"
FIREWALL = "gcp:compute/firewall:Firewall"
PROVIDER = "pulumi:providers:gcp"
NETWORK_TYPES = (
    "gcp:compute/network:Network",
    "gcp:compute/subnetwork:Subnetwork",
    "gcp:compute/router:Router",
    "gcp:compute/routerNat:RouterNat",
)
IAM_TYPES = (
    "gcp:secretmanager/secretIamMember:SecretIamMember",
    "gcp:projects/iAMMember:IAMMember",
    "gcp:projects/iAMCustomRole:IAMCustomRole",
)


def pool_of(**fields: Any) -> GcpPool:
    return GcpPool.model_validate({"name": "codex", "provider": "gcp", **fields})


def context() -> StackContext:
    # Inside the program: a secret Output needs the running Pulumi runtime.
    return StackContext(
        project="gh-runners",
        stack=pulumi.get_stack(),
        github=GitHubTarget(repository="spigell/my-reforge-ai"),
        credential=pulumi.Output.secret(json.dumps({"kind": "pat", "token": SENTINEL})),
        credential_kind="pat",
    )


def plan(*pools: GcpPool, config: dict[str, str] | None = None) -> Recording:
    def program() -> None:
        ctx = context()
        backend = GcpBackend(ctx)  # one backend for the whole program, as __main__ does
        for pool in pools:
            RunnerPool(pool, backend, ctx)

    return run(program, config=config if config is not None else CONFIG, stack=STACK)


def in_program(body: Callable[[GcpBackend], None], config: dict[str, str] | None = None) -> None:
    """Run `body` with a backend inside a program (pulumi.Config needs the runtime)."""
    run(lambda: body(GcpBackend(context())), config=config if config is not None else CONFIG, stack=STACK)


def names(pool: str = "codex", region: str = "europe-west4", zones: tuple[str, ...] = ()) -> GcpNames:
    return GcpNames.of("gh-runners", STACK, pool, region, zones)


@pytest.fixture(scope="module")
def default() -> Recording:
    return plan(pool_of())


# --- default pool -----------------------------------------------------------------


def test_default_pool_resources(default: Recording) -> None:
    kinds = sorted(r.type for r in default.resources if r.custom)
    assert kinds == sorted(
        [
            PROVIDER,
            *NETWORK_TYPES,
            FIREWALL,
            "gcp:secretmanager/secret:Secret",
            "gcp:secretmanager/secretVersion:SecretVersion",
            "gcp:serviceaccount/account:Account",
            "gcp:secretmanager/secretIamMember:SecretIamMember",
            "gcp:projects/iAMMember:IAMMember",
            "gcp:projects/iAMMember:IAMMember",
            "gcp:projects/iAMMember:IAMMember",
            "gcp:projects/iAMCustomRole:IAMCustomRole",
            "random:index/randomId:RandomId",
            TEMPLATE,
            GROUP,
        ]
    )  # no autoscaler: a demand pool's size is the receiver's and its VMs'; no IAP rule unless asked


def test_a_fixed_pool_has_an_autoscaler_a_demand_pool_none() -> None:
    """An autoscaler owns its group's size and would delete the VMs the receiver
    creates above its recommendation: demand pools (the default) have none."""
    recording = plan(
        pool_of(name="fixed", scaling="fixed", size={"min": 1, "max": 3}), pool_of(name="demand", size={"max": 3})
    )
    (scaler,) = recording.of_type(AUTOSCALER)
    assert scaler.name == "fixed-autoscaler"
    assert scaler.inputs["target"] == recording.named("fixed-group").outputs.get("id", scaler.inputs["target"])
    assert recording.named("demand-group").inputs["targetSize"] == 0  # the floor, at creation


def test_the_site_names_the_instances_the_receiver_creates() -> None:
    """The receiver's configuration names each GCP group's base instance name
    (createInstances takes full names): the MIG's own, from the site."""
    found: dict[str, Any] = {}

    def body(backend: GcpBackend) -> None:
        found["site"] = backend.site(pool_of(zones=["europe-west4-a"]))

    in_program(body)
    assert found["site"].extra["instance_base"] == names(zones=("europe-west4-a",)).base_instance
    recording = plan(pool_of(zones=["europe-west4-a"]))
    assert recording.named("codex-group").inputs["baseInstanceName"] == found["site"].extra["instance_base"]


def test_a_demand_pool_takes_schedules_the_autoscaler_could_not_express() -> None:
    """Only fixed pools turn schedules into autoscaler windows (one fixed duration
    each); a demand pool's floor is read from its schedules by the receiver."""
    schedules = [{"cron": "0 8 * * 1-5", "desired": 2}]
    recording = plan(pool_of(size={"max": 3}, schedules=schedules))
    assert recording.named("codex-group") and not recording.of_type(AUTOSCALER)


def test_every_resource_uses_the_pool_parent_and_the_explicit_provider(default: Recording) -> None:
    (pool,) = default.of_type(RUNNER_POOL_TYPE)
    (provider,) = default.of_type(PROVIDER)
    assert provider.name == "gcp-ci-project-europe-west4"
    assert provider.inputs["project"] == "ci-project" and provider.inputs["region"] == "europe-west4"
    assert provider.parent != pool.urn  # shared by every pool of that place
    for record in default.resources:
        if record.custom and record.type != PROVIDER:
            assert record.parent == pool.urn, record.name
            assert record.name.startswith("codex-"), record.name
            if record.type.startswith("gcp:"):  # the role's random suffix uses the random provider
                assert record.provider.startswith(provider.urn + "::"), record.name


def test_created_network_is_private_with_cloud_nat(default: Recording) -> None:
    vpc = default.named("codex-vpc").inputs
    assert vpc["autoCreateSubnetworks"] is False
    subnet = default.named("codex-subnet").inputs
    assert subnet["ipCidrRange"] == "10.128.0.0/20"
    assert subnet["region"] == "europe-west4"
    assert subnet["privateIpGoogleAccess"] is True
    assert subnet["network"] == default.named("codex-vpc").outputs.get("id", subnet["network"])
    router = default.named("codex-router").inputs
    assert router["region"] == "europe-west4"
    nat = default.named("codex-nat").inputs
    assert nat["router"] == default.named("codex-router").outputs["name"]
    assert nat["natIpAllocateOption"] == "AUTO_ONLY"
    assert nat["sourceSubnetworkIpRangesToNat"] == "LIST_OF_SUBNETWORKS"
    assert nat["subnetworks"] == [
        {"name": default.named("codex-subnet").outputs["selfLink"], "sourceIpRangesToNats": ["ALL_IP_RANGES"]}
    ]


def test_firewall_denies_all_ingress_to_the_pool_tag(default: Recording) -> None:
    (rule,) = default.of_type(FIREWALL)
    assert rule.name == "codex-deny-all"
    assert rule.inputs["direction"] == "INGRESS"
    assert rule.inputs["denies"] == [{"protocol": "all"}]
    assert "allows" not in rule.inputs
    assert rule.inputs["priority"] == 65534
    assert rule.inputs["targetTags"] == [names().tag]
    assert rule.inputs["network"] == default.named("codex-vpc").outputs["selfLink"]


def test_instance_template(default: Recording) -> None:
    template = default.named("codex-template").inputs
    assert template["namePrefix"] == "ghr-gh-runners-test-codex-" and len(template["namePrefix"]) <= 37
    assert "name" not in template
    assert template["region"] == "europe-west4" and template["project"] == "ci-project"
    assert template["machineType"] == "e2-standard-2"
    (disk,) = template["disks"]
    assert disk == {
        "boot": True,
        "autoDelete": True,
        "sourceImage": UBUNTU_IMAGE.format(arch="amd64"),
        "diskSizeGb": 40,
        "diskType": "pd-balanced",
        "labels": template["labels"],
    }
    (nic,) = template["networkInterfaces"]
    assert "accessConfigs" not in nic  # no external IP
    assert nic["subnetwork"] == default.named("codex-subnet").outputs["selfLink"]
    assert template["shieldedInstanceConfig"] == {
        "enableSecureBoot": True,
        "enableVtpm": True,
        "enableIntegrityMonitoring": True,
    }
    assert template["scheduling"] == {
        "provisioningModel": "STANDARD",
        "automaticRestart": True,
        # A VM the group deletes gets up to an hour to finish its job (GCP's maximum).
        "gracefulShutdown": {"enabled": True, "maxDuration": {"seconds": 3600}},
    }
    assert "maxRunDuration" not in template["scheduling"]
    assert template["labels"] == {"gh-runners-pool": "codex", "gh-runners-stack": "test", "managed-by": "gh-runners"}
    assert template["tags"] == [names().tag]


def test_template_metadata_carries_user_data_and_locks_ssh(default: Recording) -> None:
    metadata = default.named("codex-template").inputs["metadata"]
    assert set(metadata) == {"user-data", "enable-oslogin", "block-project-ssh-keys", "disable-legacy-endpoints"}
    assert metadata["enable-oslogin"] == metadata["block-project-ssh-keys"] == "TRUE"
    assert metadata["disable-legacy-endpoints"] == "TRUE"
    user_data = metadata["user-data"]
    assert user_data.startswith("#cloud-config")
    # The agent finds its secret and group from user data: exactly the site's names.
    assert f"projects/ci-project/secrets/{names().secret_id}" in user_data
    assert names().group in user_data


def test_template_runs_as_the_pool_service_account_with_cloud_platform_scope(default: Recording) -> None:
    account = default.named("codex-sa")
    service_account = default.named("codex-template").inputs["serviceAccount"]
    assert service_account == {
        "email": account.outputs["email"],
        "scopes": ["https://www.googleapis.com/auth/cloud-platform"],
    }
    assert not service_account["email"].endswith("-compute@developer.gserviceaccount.com")


def test_regional_group_updates_without_dropping_capacity(default: Recording) -> None:
    group = default.named("codex-group").inputs
    assert group["name"] == names().group == f"ghr-gh-runners-test-codex-{placement('europe-west4', ())}"
    assert group["baseInstanceName"] == names().base_instance
    assert group["region"] == "europe-west4"
    assert group["targetSize"] == 0  # created at the floor, size.min
    assert group["versions"] == [
        {"name": "runners", "instanceTemplate": default.named("codex-template").outputs["selfLink"]}
    ]
    assert "distributionPolicyZones" not in group  # GCP picks the zones
    assert group["distributionPolicyTargetShape"] == "BALANCED"
    assert group["updatePolicy"] == {
        "type": "PROACTIVE",
        "minimalAction": "REPLACE",
        "mostDisruptiveAllowedAction": "REPLACE",
        "replacementMethod": "SUBSTITUTE",
        "maxSurgeFixed": 3,  # the mocked region's zone count
        "maxUnavailableFixed": 0,
        "instanceRedistributionType": "NONE",
    }
    # Recycling: a VM that powered itself off is recreated from the current template.
    assert group["instanceLifecyclePolicy"] == {"defaultActionOnFailure": "REPAIR", "forceUpdateOnRepair": "YES"}


# --- identity and the credential ------------------------------------------------


def test_secret_lives_in_the_pool_region_with_labels(default: Recording) -> None:
    secret = default.named("codex-secret").inputs
    assert secret["secretId"] == names().secret_id == "ghr-gh-runners-test-codex-credential-europe-west4"
    assert secret["replication"] == {"userManaged": {"replicas": [{"location": "europe-west4"}]}}
    assert secret["labels"]["gh-runners-pool"] == "codex"
    version = default.named("codex-credential")
    assert version.inputs["secret"] == default.named("codex-secret").outputs["name"]
    assert version.secret_paths == ["secretData"]
    assert json.loads(version.inputs["secretData"]) == {"kind": "pat", "token": SENTINEL}


def test_sentinel_credential_appears_only_as_a_secret(default: Recording) -> None:
    holders = [r for r in default.resources if SENTINEL in repr(r.inputs)]
    assert [r.name for r in holders] == ["codex-credential"]
    for record in default.resources:
        assert SENTINEL not in json.dumps(record.shown), record.name
        assert SENTINEL not in json.dumps(record.component_outputs), record.name
        if record.name != "codex-credential":
            assert SENTINEL not in json.dumps(record.outputs), record.name
    assert SENTINEL not in json.dumps(default.stack_outputs_shown)


def test_service_account_is_dedicated(default: Recording) -> None:
    account = default.named("codex-sa").inputs
    assert account["accountId"] == names().account_id
    assert 6 <= len(account["accountId"]) <= 30


def test_iam_is_scoped_to_the_one_secret_and_the_one_account(default: Recording) -> None:
    email = default.named("codex-sa").outputs["email"]
    member = f"serviceAccount:{email}"
    secret_grant = default.named("codex-sa-secret").inputs
    assert secret_grant == {
        "secretId": default.named("codex-secret").outputs["name"],
        "project": "ci-project",
        "role": "roles/secretmanager.secretAccessor",
        "member": member,
    }
    project_roles = {r.inputs["role"] for r in default.of_type("gcp:projects/iAMMember:IAMMember")}
    role_id = default.named("codex-group-role").inputs["roleId"]
    suffix = default.named("codex-role-suffix").outputs["hex"]
    assert role_id == f"{names().role_prefix}_{suffix}" and len(suffix) == 8
    assert project_roles == {
        "roles/logging.logWriter",
        "roles/monitoring.metricWriter",
        f"projects/ci-project/roles/{role_id}",
    }
    for grant in default.of_type("gcp:projects/iAMMember:IAMMember"):
        assert grant.inputs["member"] == member and grant.inputs["project"] == "ci-project"
        assert "condition" not in grant.inputs
    custom = default.named("codex-group-role").inputs
    assert custom["roleId"] == role_id and "-" not in role_id
    # get: listManagedInstances and the target size; update: leaving through the group (deleteInstances /
    # recreateInstances), which the agent calls on its own MIG (bootstrap/agent/gcp.py leave_group).
    assert custom["permissions"] == ["compute.instanceGroupManagers.get", "compute.instanceGroupManagers.update"]
    # The secret accessor role is granted on the secret only, never on the project.
    assert all("secretmanager" not in role for role in project_roles)


# --- pool variants ----------------------------------------------------------------


def test_existing_network_creates_no_network_but_still_the_firewall() -> None:
    recording = plan(pool_of(network={"network": "shared-vpc", "subnetwork": "runners-eu"}, iap_ssh=True))
    assert not [r for r in recording.resources if r.type in NETWORK_TYPES]
    rules = recording.of_type(FIREWALL)
    assert sorted(r.name for r in rules) == ["codex-deny-all", "codex-iap-ssh"]
    assert {r.inputs["network"] for r in rules} == {"shared-vpc"}
    assert {r.inputs["project"] for r in rules} == {"ci-project"}
    (nic,) = recording.named("codex-template").inputs["networkInterfaces"]
    assert nic["subnetwork"] == "runners-eu"
    assert "accessConfigs" not in nic


def test_shared_vpc_firewall_goes_to_the_host_project() -> None:
    network = "https://www.googleapis.com/compute/v1/projects/net-host/global/networks/shared"
    subnetwork = "https://www.googleapis.com/compute/v1/projects/net-host/regions/europe-west4/subnetworks/ci"
    recording = plan(pool_of(network={"network": network, "subnetwork": subnetwork}))
    (rule,) = recording.of_type(FIREWALL)
    assert rule.inputs["project"] == "net-host" and rule.inputs["network"] == network
    assert recording.named("codex-template").inputs["networkInterfaces"][0]["subnetwork"] == subnetwork


def test_spot_pool_is_deleted_on_preemption() -> None:
    recording = plan(pool_of(spot=True))
    assert recording.named("codex-template").inputs["scheduling"] == {
        "provisioningModel": "SPOT",
        "preemptible": True,
        "automaticRestart": False,
        "onHostMaintenance": "TERMINATE",
        "instanceTerminationAction": "DELETE",
    }
    assert '"drain_seconds": 10' in recording.named("codex-template").inputs["metadata"]["user-data"]


def test_arm64_pool_uses_arm_machine_and_image() -> None:
    recording = plan(pool_of(arch="arm64", disk={"size_gb": 100, "type": "pd-ssd"}))
    template = recording.named("codex-template").inputs
    assert template["machineType"] == "t2a-standard-2"
    (disk,) = template["disks"]
    assert disk["sourceImage"] == UBUNTU_IMAGE.format(arch="arm64")
    assert (disk["diskSizeGb"], disk["diskType"]) == (100, "pd-ssd")


def test_own_image_and_machine_type() -> None:
    image = "projects/acme-images/global/images/family/runner-2404"
    recording = plan(pool_of(image=image, machine_type="c3-standard-8"))
    template = recording.named("codex-template").inputs
    assert template["disks"][0]["sourceImage"] == image
    assert template["machineType"] == "c3-standard-8"


def test_iap_ssh_allows_port_22_from_iap_only() -> None:
    recording = plan(pool_of(iap_ssh=True))
    rule = recording.named("codex-iap-ssh").inputs
    assert rule["allows"] == [{"protocol": "tcp", "ports": ["22"]}]
    assert rule["sourceRanges"] == [IAP_RANGE] == ["35.235.240.0/20"]
    assert rule["direction"] == "INGRESS" and rule["priority"] == 1000
    assert rule["targetTags"] == [names().tag]
    for firewall in recording.of_type(FIREWALL):
        if "allows" in firewall.inputs:
            assert not {"0.0.0.0/0", "::/0"} & set(firewall.inputs["sourceRanges"])


def test_pool_zones_pin_the_distribution_and_the_surge() -> None:
    recording = plan(pool_of(zones=["europe-west4-a", "europe-west4-b"], size={"min": 2, "max": 4}))
    group = recording.named("codex-group").inputs
    assert group["distributionPolicyZones"] == ["europe-west4-a", "europe-west4-b"]
    assert group["updatePolicy"]["maxSurgeFixed"] == 2
    assert group["targetSize"] == 2


def test_schedules_make_an_autoscaler_that_owns_the_size() -> None:
    recording = plan(
        pool_of(
            scaling="fixed",
            size={"min": 0, "max": 6},
            schedules=[
                {"cron": "0 8 * * mon-fri", "desired": 4, "time_zone": "Europe/Berlin"},
                {"cron": "0 20 * * mon-fri", "desired": 0, "time_zone": "Europe/Berlin"},
            ],
        )
    )
    group = recording.named("codex-group")
    assert group.inputs["targetSize"] == 0  # the floor, at creation; the autoscaler moves it
    scaler = recording.named("codex-autoscaler").inputs
    assert scaler["target"] == group.outputs.get("id", scaler["target"])
    policy = scaler["autoscalingPolicy"]
    assert (policy["minReplicas"], policy["maxReplicas"], policy["mode"]) == (0, 6, "ON")
    assert policy["cpuUtilization"] == {"target": 1}  # CPU never adds nor removes runners
    assert policy["scalingSchedules"] == [
        {
            "name": "schedule-0",
            "schedule": "0 8 * * 1-5",
            "timeZone": "Europe/Berlin",
            "durationSec": 12 * 3600,
            "minRequiredReplicas": 4,
            "description": "gh-runners: 4 VMs from `0 8 * * mon-fri` (Europe/Berlin)",
        }
    ]


def test_schedule_problems_surface_before_any_resource() -> None:
    pool = pool_of(scaling="fixed", size={"max": 3}, schedules=[{"cron": "0 8 * * 1-5", "desired": 2}])

    def body(backend: GcpBackend) -> None:
        with pytest.raises(PoolProblem) as caught:
            RunnerPool(pool, backend, backend.context)
        assert caught.value.field == ("schedules", 0)
        assert "1 day or 3 days" in caught.value.message

    in_program(body)


def test_two_projects_and_regions_in_one_file(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str | None, str | None]] = []
    real = gcp.compute.get_zones_output

    def counting(**kwargs: Any) -> Any:
        calls.append((kwargs.get("project"), kwargs.get("region")))
        return real(**kwargs)

    monkeypatch.setattr(gcp.compute, "get_zones_output", counting)
    recording = plan(
        pool_of(name="eu-a"),
        pool_of(name="eu-b", size={"max": 2}),
        pool_of(name="us", project="other-project", region="us-east1"),
    )
    providers = {r.name: r for r in recording.of_type(PROVIDER)}
    assert sorted(providers) == ["gcp-ci-project-europe-west4", "gcp-other-project-us-east1"]
    assert sorted(calls) == [("ci-project", "europe-west4"), ("other-project", "us-east1")]  # once per place
    for pool, place in (
        ("eu-a", "gcp-ci-project-europe-west4"),
        ("eu-b", "gcp-ci-project-europe-west4"),
        ("us", "gcp-other-project-us-east1"),
    ):
        (pool_record,) = [r for r in recording.of_type(RUNNER_POOL_TYPE) if r.name == pool]
        children = recording.descendants_of(pool_record.urn)
        assert children
        assert all(c.provider.startswith(providers[place].urn + "::") for c in children if c.type.startswith("gcp:"))
    us_group = recording.named("us-group").inputs
    assert (us_group["project"], us_group["region"]) == ("other-project", "us-east1")
    assert recording.named("us-secret").inputs["replication"]["userManaged"]["replicas"] == [{"location": "us-east1"}]
    assert recording.named("us-sa-group").inputs["role"].startswith("projects/other-project/roles/")
    # Names stay distinct per pool.
    groups = [r.inputs["name"] for r in recording.of_type(GROUP)]
    assert sorted(groups) == sorted([names("eu-a").group, names("eu-b").group, names("us", region="us-east1").group])
    assert len(set(groups)) == 3


# --- site --------------------------------------------------------------------------


def test_site_uses_stack_config_and_pool_values_win() -> None:
    def body(backend: GcpBackend) -> None:
        site = backend.site(pool_of())
        assert (site.cloud, site.project, site.region) == ("gcp", "ci-project", "europe-west4")
        assert site.group_name == names().group
        assert site.secret_name == f"projects/ci-project/secrets/{names().secret_id}"
        assert site.agent_location()["drain_seconds"] == "540"
        own = backend.site(pool_of(project="own-project", region="us-west1"))
        assert (own.project, own.region) == ("own-project", "us-west1")
        assert own.secret_name.startswith("projects/own-project/secrets/")

    in_program(body)


@pytest.mark.parametrize(
    ("config", "field", "words"),
    [
        ({"gcp:region": "europe-west4"}, ("project",), "pulumi config set gcp:project"),
        ({"gcp:project": "ci-project"}, ("region",), "pulumi config set gcp:region"),
    ],
)
def test_site_without_project_or_region_names_the_fix(config: dict[str, str], field: tuple[str], words: str) -> None:
    def body(backend: GcpBackend) -> None:
        with pytest.raises(PoolProblem) as caught:
            backend.site(pool_of())
        assert caught.value.field == field
        assert words in caught.value.message

    in_program(body, config=config)


def test_zone_outside_the_configured_region_is_a_pool_problem() -> None:
    def body(backend: GcpBackend) -> None:
        with pytest.raises(PoolProblem) as caught:
            backend.site(pool_of(zones=["us-east1-b"]))
        assert caught.value.field == ("zones", 0)

    in_program(body)


def test_long_names_fit_gcp_limits() -> None:
    args = ("a-rather-long-pulumi-project", "Production.Europe_West-Stack-With-A-Long-Name", "a" * 31 + "z")
    long = GcpNames.of(*args, "northamerica-northeast2", ["northamerica-northeast2-a"])
    for name in (long.tag, long.group):
        assert len(name) <= 63 and re.match(r"^[a-z]([-a-z0-9]*[a-z0-9])?$", name)
    assert len(long.base_instance) <= 58
    assert len(long.template_prefix) <= 37 and long.template_prefix.endswith("-")
    assert 6 <= len(long.account_id) <= 30
    assert len(long.role_prefix) + 1 + 8 <= 64 and re.match(r"^[a-zA-Z0-9_.]+$", long.role_prefix)
    assert GcpNames.of("p", "dev", "x", "us-east1").account_id == "ghr-p-dev-x"
    # Deterministic: the same project, stack, pool and placement always give the same names.
    assert GcpNames.of(*args, "northamerica-northeast2", ["northamerica-northeast2-a"]) == long
    # The project is part of every name: a second deployment in the same GCP project never collides.
    other = GcpNames.of("b-" + args[0], *args[1:], "northamerica-northeast2", ["northamerica-northeast2-a"])
    assert {other.tag, other.group, other.secret_id, other.account_id, other.role_prefix}.isdisjoint(
        {long.tag, long.group, long.secret_id, long.account_id, long.role_prefix}
    )


def test_disk_type_defaults_by_machine_series(tmp_path: Path) -> None:
    """C4A / N4 take only Hyperdisk; E2 and T2A take only persistent disks."""
    recording = run_file(
        tmp_path,
        "version: 1\ngithub: {repository: a/b}\npools:\n"
        "  - {name: axion, provider: gcp, arch: arm64, machine_type: c4a-standard-4}\n"
        "  - {name: small, provider: gcp}\n",
    )
    disks = {
        t.name: t.inputs["disks"][0]["diskType"]
        for t in recording.of_type("gcp:compute/regionInstanceTemplate:RegionInstanceTemplate")
    }
    assert disks == {"axion-template": "hyperdisk-balanced", "small-template": "pd-balanced"}


# --- issue 10: real-cloud faults mocks cannot see ------------------------------


def test_created_network_has_dockers_mtu(default: Recording) -> None:
    """GCP's 1460 default under Docker's 1500 stalls container jobs on large transfers (actions/runner#2966)."""
    assert default.named("codex-vpc").inputs["mtu"] == 1500


def test_group_delete_waits_out_the_graceful_shutdown(monkeypatch: pytest.MonkeyPatch) -> None:
    """Deleting the group waits for its VMs' graceful shutdown (up to an hour); the provider's
    default 15-minute delete timeout would fail `pulumi destroy` with busy runners."""
    timeouts: dict[str, str] = {}
    register = RecordingMonitor.RegisterResource

    def recording(self: RecordingMonitor, request: Any) -> Any:
        response = register(self, request)
        timeouts[request.name] = request.customTimeouts.delete
        return response

    monkeypatch.setattr(RecordingMonitor, "RegisterResource", recording)
    plan(pool_of())
    assert timeouts["codex-group"] == GROUP_DELETE_TIMEOUT == "75m"


def test_role_id_is_new_for_every_deployment(default: Recording) -> None:
    """A destroyed custom role's id stays reserved for ~37 days: the id carries a random
    suffix kept in state, so a stack destroyed and created again gets a fresh id."""
    suffix = default.named("codex-role-suffix")
    assert suffix.type == "random:index/randomId:RandomId"
    assert suffix.inputs == {"byteLength": 4, "keepers": {"project": "ci-project"}}
    assert not suffix.provider.startswith("urn:pulumi:test::gh-runners::pulumi:providers:gcp")
    role_id = default.named("codex-group-role").inputs["roleId"]
    assert role_id.endswith("_" + suffix.outputs["hex"])
    assert default.named("codex-sa-group").inputs["role"] == f"projects/ci-project/roles/{role_id}"


def test_machine_type_is_not_checked_offline_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    plan(pool_of(arch="arm64"))
    assert "machine type t2a-standard-2 not checked against the zones of europe-west4 (offline plan" in caplog.text


def offering(zones_with: dict[str, set[str]], calls: list[tuple[str, str]]) -> Callable[..., Any]:
    """A stand-in for gcp.compute.get_machine_types_output: zone -> machine types it offers."""

    def lookup(*, filter: str, project: str, zone: str, opts: Any = None) -> pulumi.Output[Any]:
        wanted = filter.removeprefix("name = ")
        calls.append((zone, wanted))
        found = [SimpleNamespace(name=wanted)] if wanted in zones_with.get(zone, set()) else []
        return pulumi.Output.from_input(SimpleNamespace(machine_types=found))

    return lookup


def test_machine_type_is_checked_against_the_region_zones(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[tuple[str, str]] = []
    offers = {"europe-west4-a": {"t2a-standard-2"}, "europe-west4-b": {"t2a-standard-2"}}
    monkeypatch.setattr(backend_module, "offline", lambda: False)
    monkeypatch.setattr(gcp.compute, "get_machine_types_output", offering(offers, calls))
    recording = plan(pool_of(arch="arm64"), pool_of(name="second", arch="arm64"))
    assert recording.named("codex-template").inputs["machineType"] == "t2a-standard-2"
    # One lookup per zone and type, shared by the pools of a place.
    assert sorted(calls) == [(f"europe-west4-{z}", "t2a-standard-2") for z in "abc"]
    assert "t2a-standard-2 is not offered in europe-west4-c" in caplog.text
    assert "zones: [europe-west4-a, europe-west4-b]" in caplog.text


@pytest.mark.parametrize(
    ("fields", "offered", "message"),
    [
        (
            {"zones": ["europe-west4-a", "europe-west4-c"]},
            {"europe-west4-a": True, "europe-west4-c": False},
            "pool codex: zones: t2a-standard-2 is not offered in europe-west4-c (it is in europe-west4-a): "
            "list only those in `zones`",
        ),
        (
            {},
            {"europe-west4-a": False, "europe-west4-b": False},
            "pool codex: arch: no zone of europe-west4 offers t2a-standard-2: pick another type or region",
        ),
    ],
)
def test_machine_type_missing_where_the_group_runs_fails_the_plan(
    fields: dict[str, Any], offered: dict[str, bool], message: str
) -> None:
    # The verdict the lookup feeds (backend.checked_machine_type). Raised inside the
    # lookup's apply, a RunError fails `pulumi preview` / `up` with this one line.
    with pytest.raises(pulumi.RunError) as caught:
        checked_machine_type(pool_of(arch="arm64", **fields), "europe-west4", offered)
    assert str(caught.value) == message


def test_a_machine_type_no_zone_offers_fails_at_its_line_in_runners_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the whole program: the verdict names the file, line and field, like every other bad input."""
    monkeypatch.setattr(backend_module, "offline", lambda: False)
    monkeypatch.setattr(gcp.compute, "get_machine_types_output", offering({}, []))
    text = ("version: 1\ngithub: {repository: spigell/my-reforge-ai}\npools:\n"
            "  - {name: big, provider: gcp, machine_type: c4-standard-288}\n")
    with pytest.raises(pulumi.RunError) as caught:
        run_file(tmp_path, text)
    assert str(caught.value).endswith(
        "runners.yaml:4:46: pools[0].machine_type: no zone of europe-west4 offers c4-standard-288: "
        "pick another type or region"
    )
