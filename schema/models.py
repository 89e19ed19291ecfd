"""The pydantic models of runners.yaml.

Models are strict about scalars (a quoted "2" is not a size), forbid unknown
keys everywhere (typos are errors) and are frozen. Cloud-only options live on
`AwsPool` / `GcpPool` only, so backends receive their own typed pool.
"""

from __future__ import annotations

import ipaddress
import re
from functools import cached_property
from typing import Annotated, Any, ClassVar, Literal, TypeAlias

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from schema.cron import validate_cron
from schema.timezones import validate_time_zone

# Every cloud name the program derives is `<pool>-<part>` plus Pulumi's 8
# character random suffix; the longest part is "autoscaler" (GCP), and GCP
# names stop at 63 characters: 32 + 1 + 10 + 8 = 51 leaves room to spare.
MAX_POOL_NAME = 32
# "latest": resolved by the VM at boot (a pinned runner behind GitHub's latest release updates itself
# before its first job: see bootstrap/agent/runner.py); or a pinned X.Y.Z.
DEFAULT_RUNNER_VERSION = "latest"
AUTOMATIC_LABELS = ("self-hosted", "linux")
MAX_LABELS = 100  # GitHub's limit per runner, automatic labels included.

Arch: TypeAlias = Literal["x64", "arm64"]
PoolName = Annotated[
    StrictStr,
    Field(
        pattern=rf"^[a-z]([-a-z0-9]{{0,{MAX_POOL_NAME - 2}}}[a-z0-9])?$",
        description="Lower-case letters, digits and hyphens; starts with a letter; "
        f"at most {MAX_POOL_NAME} characters (it prefixes every cloud name of the pool).",
    ),
]
Label = Annotated[
    StrictStr,
    Field(pattern=r"^[^,\s]+$", description="A runner label: no commas, no spaces."),
]
Count = Annotated[StrictInt, Field(ge=0, le=1000)]
Scaling: TypeAlias = Literal["demand", "fixed"]
Duration = Annotated[
    StrictStr,
    Field(
        pattern=r"^[1-9][0-9]{0,4}[smh]$",
        description="A duration: a whole number of seconds (s), minutes (m) or hours (h), e.g. 10m.",
    ),
]
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600}
# Ten minutes: long enough that a VM started for a job another runner took (or
# that was cancelled) is still there for the next push of a busy afternoon, short
# enough that such a VM costs at most ten minutes of one machine. Both clouds
# bill per second after the first minute, so a shorter bound saves little more.
DEFAULT_IDLE_TIMEOUT = "10m"
IDLE_TIMEOUT_BOUNDS = (60, 24 * 3600)
IDLE_TIMEOUT_DESCRIPTION = (
    "A duration from 1m to 24h in s, m or h (e.g. 10m): how long a VM above the floor waits for a job before it leaves."
)


def duration_seconds(text: str) -> int:
    """'10m' -> 600 (the text already matched `Duration`)."""
    return int(text[:-1]) * _DURATION_UNITS[text[-1]]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- GitHub ----------------------------------------------------------------


class GitHubTarget(Strict):
    """Where runners register: exactly one of repository, organization, enterprise."""

    repository: Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9-]+/[A-Za-z0-9._-]+$")] | None = Field(
        default=None, description="`owner/name` for repository-level runners."
    )
    organization: Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$")] | None = Field(
        default=None, description="Organization login for organization-level runners."
    )
    enterprise: Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,99})$")] | None = Field(
        default=None, description="Enterprise slug for enterprise-level runners."
    )
    url: Annotated[StrictStr, Field(pattern=r"^https://[A-Za-z0-9.-]+(:\d+)?/?$")] = Field(
        default="https://github.com",
        description="GitHub web URL: https://github.com, a GitHub Enterprise Server host, "
        "or a ghe.com tenant (https://NAME.ghe.com).",
    )

    @model_validator(mode="after")
    def _exactly_one_target(self) -> GitHubTarget:
        given = [k for k in ("repository", "organization", "enterprise") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(
                "set exactly one of repository, organization or enterprise"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self

    @property
    def scope(self) -> Literal["repository", "organization", "enterprise"]:
        if self.repository:
            return "repository"
        return "organization" if self.organization else "enterprise"

    @property
    def target(self) -> str:
        return self.repository or self.organization or self.enterprise or ""

    @property
    def web_url(self) -> str:
        return self.url.rstrip("/")

    @property
    def api_url(self) -> str:
        """REST base URL: api.github.com, `api.<tenant>.ghe.com`, or GHES `/api/v3`."""
        host = self.web_url.removeprefix("https://")
        if host == "github.com":
            return "https://api.github.com"
        if host.endswith(".ghe.com"):
            return f"https://api.{host}"
        return f"{self.web_url}/api/v3"


class RunnerGroup(Strict):
    """A GitHub runner group (organization or enterprise targets only)."""

    name: Annotated[StrictStr, Field(min_length=1, max_length=100)]
    managed: StrictBool = Field(
        default=True,
        description="Create and own the group in this stack; false to use an existing group.",
    )
    visibility: Literal["all", "selected"] | None = Field(
        default=None,
        description="Who may use the group: `selected` (default when repositories or "
        "organizations are listed) or `all`.",
    )
    repositories: list[Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9._-]+$")]] = Field(
        default_factory=list, description="Organization groups: repository names allowed to use it."
    )
    organizations: list[Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9-]+$")]] = Field(
        default_factory=list, description="Enterprise groups: organization logins allowed to use it."
    )
    workflows: list[StrictStr] = Field(
        default_factory=list,
        description="Restrict the group to these workflows (`owner/repo/.github/workflows/file.yml@ref`).",
    )
    allow_public_repositories: StrictBool = False

    @property
    def effective_visibility(self) -> Literal["all", "selected"]:
        if self.visibility:
            return self.visibility
        return "selected" if self.repositories or self.organizations else "all"

    @property
    def is_default(self) -> bool:
        return self.name.lower() == "default"


# `runner_group: ci` is shorthand for `runner_group: {name: ci}` (the JSON
# Schema says so too: see schema/jsonschema.py); the model stores the object.
GroupField = RunnerGroup | None

# --- pool pieces -------------------------------------------------------------


class Size(Strict):
    """Between the floor (`min`, moved by `schedules`) and `max`; demand moves the pool in between."""

    min: Count = Field(default=0, description="The floor: VMs that run even with no job queued (schedules move it).")
    max: Annotated[StrictInt, Field(ge=1, le=1000)] = Field(
        default=1, description="The most VMs the pool runs, however many jobs queue."
    )

    # Keys that existed once, with what to write instead: the loader reports them
    # where they stand, with this hint, instead of a bare "unknown key".
    removed_keys: ClassVar[dict[str, str]] = {
        "desired": "removed: a pool now runs between its floor (`min`, moved by `schedules`) and `max`, "
        "growing as jobs queue and shrinking as they finish. To keep that many VMs running at all times, set "
        "`min: {value}`; to run exactly the floor without demand scaling, also set `scaling: fixed` on the pool",
    }

    @model_validator(mode="after")
    def _ordered(self) -> Size:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self

    @property
    def desired_count(self) -> int:
        """The size a VM group is created with: the floor. At runtime the schedules
        move the floor and the scaler owns the size above it."""
        return self.min


class Schedule(Strict):
    """From each time `cron` fires (in `time_zone`), the pool's floor is `desired` VMs."""

    cron: StrictStr = Field(description="Five-field cron expression, e.g. `0 20 * * 1-5`.")
    desired: Count = Field(description="The floor from then on: VMs that run even with no job queued.")
    time_zone: StrictStr = Field(default="UTC", description="IANA time zone, e.g. Europe/Berlin.")

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        return validate_cron(value)

    @field_validator("time_zone")
    @classmethod
    def _time_zone(cls, value: str) -> str:
        return validate_time_zone(value)


Tags = dict[
    Annotated[StrictStr, Field(min_length=1, max_length=63, pattern=r"^[a-z][a-z0-9_-]*$")],
    Annotated[
        StrictStr,
        Field(
            max_length=63,
            pattern=r"^[a-z0-9_-]*$",
            description="lower-case letters, digits, _ and -, at most 63 (GCP label rules)",
        ),
    ],
]
RESERVED_TAG_PREFIXES = ("gh-runners", "aws", "goog")


class PoolCommon(Strict):
    """Fields every pool has, whatever its cloud."""

    name: PoolName
    labels: list[Label] = Field(default_factory=list, description="Labels jobs select with `runs-on`.")
    runner_group: GroupField = Field(
        default=None,
        description="Runner group name (or object) for organization/enterprise targets; omit for the Default group.",
    )
    ephemeral: StrictBool = Field(default=True, description="One job per VM, then a fresh VM.")
    size: Size = Field(default_factory=Size)
    arch: Arch = "x64"
    spot: StrictBool = Field(default=False, description="Spot / preemptible capacity.")
    image: StrictStr | None = Field(default=None, description="VM image; default Ubuntu 24.04 LTS for the arch.")
    setup_script: StrictStr | None = Field(
        default=None, description="Shell script run as root before the runner starts."
    )
    docker: StrictBool = Field(default=False, description="Install Docker; makes the runner root-equivalent.")
    sudo: StrictBool = Field(default=False, description="Passwordless sudo for the runner user.")
    runner_version: Annotated[
        StrictStr,
        Field(
            pattern=r"^(latest|\d+\.\d+\.\d+)$",
            description="actions/runner release: `latest` (resolved at boot) or a pinned X.Y.Z; "
            "its sha256 is verified on the VM.",
        ),
    ] = DEFAULT_RUNNER_VERSION
    schedules: list[Schedule] = Field(default_factory=list)
    scaling: Scaling = Field(
        default="demand",
        description="`demand`: grow from the floor towards `max` as jobs queue, shrink as they finish; "
        "`fixed`: run exactly the floor (`size.min`, moved by `schedules`).",
    )
    idle_timeout: Duration = Field(default=DEFAULT_IDLE_TIMEOUT, description=IDLE_TIMEOUT_DESCRIPTION)
    tags: Tags = Field(
        default_factory=dict,
        description="Tags (AWS) / labels (GCP) on every cloud resource of the pool; "
        "GCP label rules apply to both so one file works on either cloud.",
    )

    @field_validator("runner_group", mode="before")
    @classmethod
    def _group_shorthand(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @field_validator("labels")
    @classmethod
    def _labels(cls, labels: list[str]) -> list[str]:
        seen: set[str] = set()
        for label in labels:
            key = label.lower()
            if key in (*AUTOMATIC_LABELS, "x64", "arm64"):
                raise ValueError(f"label {label!r} is added automatically; remove it")
            if key in seen:
                raise ValueError(f"label {label!r} is listed twice (labels are case-insensitive)")
            seen.add(key)
        if len(labels) + len(AUTOMATIC_LABELS) + 1 > MAX_LABELS:
            raise ValueError(
                f"at most {MAX_LABELS - 3} labels (GitHub allows {MAX_LABELS} including the 3 automatic ones)"
            )
        return labels

    @field_validator("idle_timeout")
    @classmethod
    def _idle_timeout(cls, value: str) -> str:
        low, high = IDLE_TIMEOUT_BOUNDS
        if not low <= duration_seconds(value) <= high:
            raise ValueError(f"{value} is outside 1m to 24h")
        return value

    @field_validator("tags")
    @classmethod
    def _tags(cls, tags: dict[str, str]) -> dict[str, str]:
        for key in tags:
            if key.startswith(RESERVED_TAG_PREFIXES):
                raise ValueError(f"tag {key!r}: keys starting with {', '.join(RESERVED_TAG_PREFIXES)} are reserved")
        return tags

    @model_validator(mode="after")
    def _schedules_fit(self) -> PoolCommon:
        for i, schedule in enumerate(self.schedules):
            if schedule.desired > self.size.max:
                raise ValueError(
                    f"schedules[{i}].desired ({schedule.desired}) is greater than size.max ({self.size.max})"
                )
        if self.scaling == "fixed" and max([self.size.min, *(s.desired for s in self.schedules)]) == 0:
            raise ValueError(
                "scaling is fixed and the floor is always 0 (size.min 0, no schedule above 0): the pool would "
                "never run a VM; raise size.min, add a schedule, or drop `scaling: fixed` to scale on demand"
            )
        return self

    @property
    def all_labels(self) -> list[str]:
        """What GitHub shows: the automatic labels, the arch, then the pool's own."""
        return [*AUTOMATIC_LABELS, self.arch, *self.labels]

    @property
    def group_name(self) -> str:
        return self.runner_group.name if self.runner_group else "Default"

    @property
    def on_demand(self) -> bool:
        return self.scaling == "demand"

    @property
    def idle_timeout_seconds(self) -> int:
        return duration_seconds(self.idle_timeout)


# --- AWS -----------------------------------------------------------------------

# Graviton families carry a `g` right after the generation digit (t4g, m7gd,
# c6gn, im4gn, is4gen...) and a1 is the first Graviton; GPU families like g4dn
# or g5 do not match because their `g` comes first.
_AWS_ARM_FAMILY = re.compile(r"^(a1|[a-z]+\d+g[a-z]*)$")
AWS_DEFAULT_INSTANCE_TYPES = {"x64": ["m7i.large"], "arm64": ["m7g.large"]}


def aws_instance_arch(instance_type: str) -> Arch:
    return "arm64" if _AWS_ARM_FAMILY.match(instance_type.split(".", 1)[0]) else "x64"


class AwsDisk(Strict):
    size_gb: Annotated[StrictInt, Field(ge=10, le=16384)] = 40
    # io1/io2 need provisioned IOPS, which a runner's root disk has no use for.
    type: Literal["gp3", "gp2"] = "gp3"


class AwsNetwork(Strict):
    """Create a VPC (default), or name existing `vpc_id` + `subnet_ids`."""

    cidr: StrictStr = Field(default="10.0.0.0/16", description="CIDR of the created VPC (/16 to /24).")
    zones: Annotated[StrictInt, Field(ge=2, le=6)] = Field(
        default=2, description="How many availability zones the created VPC spans."
    )
    private: StrictBool = Field(
        default=False,
        description="Private subnets behind a NAT gateway (costs a NAT gateway per zone's "
        "traffic); default is public subnets with no inbound rules.",
    )
    dedicated: StrictBool = Field(
        default=False,
        description="A VPC of the pool's own. By default the pools of a stack in one region share one "
        "created VPC (internet gateway, NAT gateway and address included), which keeps within AWS's "
        "default quotas of 5 VPCs and 5 Elastic IPs per region.",
    )
    vpc_id: Annotated[StrictStr, Field(pattern=r"^vpc-[0-9a-f]{8,17}$")] | None = None
    subnet_ids: list[Annotated[StrictStr, Field(pattern=r"^subnet-[0-9a-f]{8,17}$")]] = Field(default_factory=list)

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        return validate_cidr(value, 16, 24)

    @model_validator(mode="after")
    def _mode(self) -> AwsNetwork:
        existing = bool(self.vpc_id or self.subnet_ids)
        if existing:
            if not (self.vpc_id and self.subnet_ids):
                raise ValueError("an existing network needs both vpc_id and subnet_ids")
            created_only = {"cidr", "zones", "private", "dedicated"} & self.model_fields_set
            if created_only:
                raise ValueError(
                    f"{', '.join(sorted(created_only))} only apply to a created VPC, not to existing subnets"
                )
            if len(set(self.subnet_ids)) != len(self.subnet_ids):
                raise ValueError("subnet_ids lists a subnet twice")
        return self

    @property
    def existing(self) -> bool:
        return bool(self.subnet_ids)


class AwsPool(PoolCommon):
    provider: Literal["aws"]
    region: Annotated[StrictStr, Field(pattern=r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d$")] | None = Field(
        default=None, description="AWS region; default the stack's `aws:region`."
    )
    instance_types: list[Annotated[StrictStr, Field(pattern=r"^[a-z][a-z0-9-]*\.[a-z0-9-]+$")]] = Field(
        default_factory=list,
        min_length=0,
        description="One or more types of the pool's arch; several spread spot capacity. "
        "Default m7i.large (x64) / m7g.large (arm64).",
    )
    on_demand_base: Count = Field(default=0, description="With spot: this many VMs are always on-demand.")
    disk: AwsDisk = Field(default_factory=AwsDisk)
    network: AwsNetwork = Field(default_factory=AwsNetwork)
    ssm_session_manager: StrictBool = Field(
        default=False, description="Allow SSM Session Manager shell access (off by default)."
    )

    @field_validator("image")
    @classmethod
    def _image(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^(ami-[0-9a-f]{8,17}|resolve:ssm:/\S+)$", value):
            raise ValueError("an AWS image is an AMI id (ami-...) or resolve:ssm:/parameter/path")
        return value

    @model_validator(mode="after")
    def _aws_rules(self) -> AwsPool:
        if len(set(self.instance_types)) != len(self.instance_types):
            raise ValueError("instance_types lists a type twice")
        for instance_type in self.instance_types:
            if aws_instance_arch(instance_type) != self.arch:
                raise ValueError(
                    f"instance type {instance_type} is {aws_instance_arch(instance_type)}, "
                    f"but the pool's arch is {self.arch}"
                )
        if self.on_demand_base > self.size.max:
            raise ValueError(f"on_demand_base ({self.on_demand_base}) is greater than size.max ({self.size.max})")
        if self.on_demand_base and not self.spot:
            raise ValueError("on_demand_base only applies to spot pools (spot: true)")
        return self

    @cached_property
    def effective_instance_types(self) -> list[str]:
        return self.instance_types or AWS_DEFAULT_INSTANCE_TYPES[self.arch]


# --- GCP -----------------------------------------------------------------------

_GCP_ARM_SERIES = ("t2a", "c4a", "n4a")
GCP_DEFAULT_MACHINE_TYPES = {"x64": "e2-standard-2", "arm64": "t2a-standard-2"}


def gcp_machine_arch(machine_type: str) -> Arch:
    return "arm64" if machine_type.split("-", 1)[0] in _GCP_ARM_SERIES else "x64"


# Machine series that take only Hyperdisk, and series that cannot take
# Hyperdisk Balanced: GCE accepts such a template but then creates no VM.
GCP_HYPERDISK_ONLY = ("c4", "c4a", "c4d", "n4", "n4a", "n4d", "x4")
GCP_NO_HYPERDISK_BALANCED = ("e2", "n1", "n2", "n2d", "t2a", "t2d")


def gcp_machine_series(machine_type: str) -> str:
    return machine_type.split("-", 1)[0]


class GcpDisk(Strict):
    size_gb: Annotated[StrictInt, Field(ge=10, le=65536)] = 40
    type: Literal["pd-balanced", "pd-ssd", "pd-standard", "hyperdisk-balanced"] | None = Field(
        default=None,
        description="Default pd-balanced, or hyperdisk-balanced on series that take only Hyperdisk (C4, C4A, N4...).",
    )


class GcpNetwork(Strict):
    """Create a VPC network (default), or name an existing `network` + `subnetwork`."""

    cidr: StrictStr = Field(default="10.128.0.0/20", description="CIDR of the created subnetwork.")
    network: StrictStr | None = Field(default=None, description="Existing VPC network name or self link.")
    subnetwork: StrictStr | None = Field(default=None, description="Existing subnetwork name or self link.")

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        return validate_cidr(value, 8, 29)

    @model_validator(mode="after")
    def _mode(self) -> GcpNetwork:
        if bool(self.network) != bool(self.subnetwork):
            raise ValueError("an existing network needs both network and subnetwork")
        if self.network and "cidr" in self.model_fields_set:
            raise ValueError("cidr only applies to a created network")
        return self

    @property
    def existing(self) -> bool:
        return bool(self.network)


class GcpPool(PoolCommon):
    provider: Literal["gcp"]
    project: Annotated[StrictStr, Field(pattern=r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")] | None = Field(
        default=None, description="GCP project id; default the stack's `gcp:project`."
    )
    region: Annotated[StrictStr, Field(pattern=r"^[a-z]+-[a-z]+\d+$")] | None = Field(
        default=None, description="GCP region; default the stack's `gcp:region`."
    )
    zones: list[Annotated[StrictStr, Field(pattern=r"^[a-z]+-[a-z]+\d+-[a-z]$")]] = Field(
        default_factory=list, description="Zones of the regional group; default: the region's zones."
    )
    machine_type: Annotated[StrictStr, Field(pattern=r"^[a-z][a-z0-9]*-[a-z0-9-]+$")] | None = Field(
        default=None, description="Default e2-standard-2 (x64) / t2a-standard-2 (arm64)."
    )
    disk: GcpDisk = Field(default_factory=GcpDisk)
    network: GcpNetwork = Field(default_factory=GcpNetwork)
    iap_ssh: StrictBool = Field(
        default=False, description="Allow SSH from Identity-Aware Proxy's range only (off by default)."
    )

    @field_validator("image")
    @classmethod
    def _image(cls, value: str | None) -> str | None:
        pattern = r"^(https://www\.googleapis\.com/compute/v1/)?projects/[a-z0-9-]+/global/images/(family/)?[a-z0-9-]+$"
        if value is not None and not re.match(pattern, value):
            raise ValueError("a GCP image is projects/PROJECT/global/images/NAME or .../images/family/FAMILY")
        return value

    @model_validator(mode="after")
    def _gcp_rules(self) -> GcpPool:
        if self.machine_type and gcp_machine_arch(self.machine_type) != self.arch:
            raise ValueError(
                f"machine type {self.machine_type} is {gcp_machine_arch(self.machine_type)}, "
                f"but the pool's arch is {self.arch}"
            )
        series = gcp_machine_series(self.effective_machine_type)
        disk = self.disk.type
        if disk and disk.startswith("pd-") and series in GCP_HYPERDISK_ONLY:
            raise ValueError(f"machine series {series} takes only Hyperdisk disks, not {disk}")
        if disk == "hyperdisk-balanced" and series in GCP_NO_HYPERDISK_BALANCED:
            raise ValueError(f"machine series {series} cannot use hyperdisk-balanced disks")
        if len(set(self.zones)) != len(self.zones):
            raise ValueError("zones lists a zone twice")
        if self.region:
            for zone in self.zones:
                if zone.rsplit("-", 1)[0] != self.region:
                    raise ValueError(f"zone {zone} is not in region {self.region}")
        return self

    @property
    def effective_machine_type(self) -> str:
        return self.machine_type or GCP_DEFAULT_MACHINE_TYPES[self.arch]

    @property
    def effective_disk_type(self) -> str:
        if self.disk.type:
            return self.disk.type
        hyperdisk = gcp_machine_series(self.effective_machine_type) in GCP_HYPERDISK_ONLY
        return "hyperdisk-balanced" if hyperdisk else "pd-balanced"


Pool = Annotated[AwsPool | GcpPool, Discriminator("provider")]


class PoolDefaults(Strict):
    """Fields merged into every pool that does not set them (tags are merged key by key)."""

    labels: list[Label] | None = None
    runner_group: GroupField = None

    _group_shorthand = field_validator("runner_group", mode="before")(
        lambda cls, v: {"name": v} if isinstance(v, str) else v
    )
    ephemeral: StrictBool | None = None
    size: dict[str, Any] | None = None
    arch: Arch | None = None
    spot: StrictBool | None = None
    image: StrictStr | None = None
    setup_script: StrictStr | None = None
    docker: StrictBool | None = None
    sudo: StrictBool | None = None
    runner_version: StrictStr | None = None
    schedules: list[dict[str, Any]] | None = None
    scaling: Scaling | None = None
    idle_timeout: Duration | None = Field(default=None, description=IDLE_TIMEOUT_DESCRIPTION)
    tags: dict[str, StrictStr] | None = None
    disk: dict[str, Any] | None = None


class RunnersFile(Strict):
    """The whole runners.yaml."""

    version: Literal[1] = Field(description="Format version of this file.")
    github: GitHubTarget
    defaults: PoolDefaults | None = Field(default=None, description="Merged into every pool (a pool's own value wins).")
    pools: list[Pool] = Field(min_length=1)

    @model_validator(mode="after")
    def _cross_pool_rules(self, info: ValidationInfo) -> RunnersFile:
        # The loader asks to skip this and calls cross_pool_problems itself, so
        # that every problem is reported with its own location, not only the first.
        if not (info.context or {}).get("defer_cross_pool"):
            for loc, message in cross_pool_problems(self):
                raise ValueError(f"{format_loc(loc)}: {message}")
        return self

    @property
    def managed_groups(self) -> list[RunnerGroup]:
        """Groups this stack creates: named, managed, not GitHub's built-in Default."""
        seen: dict[str, RunnerGroup] = {}
        for pool in self.pools:
            group = pool.runner_group
            if group and group.managed and not group.is_default:
                seen.setdefault(group.name.lower(), group)
        return list(seen.values())


Loc: TypeAlias = tuple[str | int, ...]


def cross_pool_problems(runners: RunnersFile) -> list[tuple[Loc, str]]:
    """Rules that span pools or need the GitHub target: unique names, group rules."""
    problems: list[tuple[Loc, str]] = []
    names: dict[str, int] = {}
    groups: dict[str, RunnerGroup] = {}
    scope = runners.github.scope
    for i, pool in enumerate(runners.pools):
        if pool.name in names:
            problems.append(
                (("pools", i, "name"), f"pool name {pool.name!r} is already used by pools[{names[pool.name]}]")
            )
        names.setdefault(pool.name, i)
        group = pool.runner_group
        if group is None:
            continue
        where: Loc = ("pools", i, "runner_group")
        if scope == "repository":
            problems.append((where, "runner groups exist only for organization and enterprise targets"))
            continue
        if scope == "organization" and group.organizations:
            problems.append(((*where, "organizations"), "organizations apply to enterprise groups only"))
        if scope == "enterprise" and group.repositories:
            problems.append(((*where, "repositories"), "repositories apply to organization groups only"))
        if group.visibility == "selected" and not (group.repositories or group.organizations):
            problems.append(
                ((*where, "visibility"), "visibility selected needs the repositories (or organizations) it allows")
            )
        if group.is_default and group.model_fields_set - {"name"}:
            problems.append((where, "the Default group is GitHub's own; it takes no settings here"))
        earlier = groups.setdefault(group.name.lower(), group)
        if earlier != group:
            problems.append((where, f"runner group {group.name!r} is defined differently by another pool"))
    return problems


def format_loc(loc: Loc) -> str:
    """('pools', 1, 'instance_types', 0) -> 'pools[1].instance_types[0]'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validate_cidr(value: str, shortest: int, longest: int) -> str:
    try:
        network = ipaddress.IPv4Network(value)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an IPv4 CIDR block ({exc})") from None
    if not shortest <= network.prefixlen <= longest:
        raise ValueError(f"prefix length must be between /{shortest} and /{longest}")
    return value
