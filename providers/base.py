"""The interface every cloud backend implements, and its cloud-neutral results.

A backend builds three things for a pool -- the network, the identity that may
read the pool's credential (with the credential secret itself), and the VM
group -- and says where the pool lives (`Site`) before any resource exists, so
the VM's user data can be rendered from plain, non-secret values.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

import pulumi

from bootstrap.cloud_config import AgentObject
from schema.models import GitHubTarget, PoolCommon

PoolT = TypeVar("PoolT", bound=PoolCommon)


Field = tuple[str | int, ...]  # a field of a pool, e.g. ("network", "zones")


def unlocated(pool: str, field: Field, message: str) -> str:
    return f"pool {pool}: {'.'.join(map(str, field))}: {message}"


@dataclass(frozen=True)
class StackContext:
    """What every pool of one stack shares."""

    project: str
    stack: str
    github: GitHubTarget
    credential: pulumi.Output[str]  # the secret JSON document the agent reads
    credential_kind: Literal["pat", "app"]
    # `FILE:LINE:COL: pools[i].field: message` for a pool's field, for problems
    # found only once the cloud answers (inside outputs, where PoolProblem can't
    # reach the program).
    locate: Callable[[str, Field, str], str] = unlocated


@dataclass(frozen=True)
class Site:
    """Where a pool lives, known before any resource is created (all non-secret)."""

    cloud: str
    region: str
    group_name: str  # the ASG / MIG name; deterministic so user data can carry it
    secret_name: str  # SSM parameter name / Secret Manager secret path
    project: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)

    def agent_location(self) -> dict[str, str]:
        """The facts the VM agent needs to find its secret and its group."""
        location = {"cloud": self.cloud, "region": self.region, "group": self.group_name, "secret": self.secret_name}
        if self.project:
            location["project"] = self.project
        return {**location, **self.extra}


@dataclass(frozen=True)
class Network:
    subnet_ids: Sequence[pulumi.Input[str]]
    firewall_ids: Sequence[pulumi.Input[str]]  # security groups / firewall rules
    public_ip: bool  # VMs get a public address (no inbound rules either way)
    nat: bool
    # What gives the VMs their way out (gateways, NAT, routes). The VM group
    # depends on it: a VM draining during `pulumi destroy` still reaches GitHub.
    egress: Sequence[pulumi.Resource] = ()


@dataclass(frozen=True)
class Identity:
    principal: pulumi.Output[str]  # IAM role ARN / service account email
    instance_identity: pulumi.Output[str]  # instance profile name / service account email
    secret_id: pulumi.Output[str]  # the stored credential's resource id (never its value)
    # The stored credential and every grant to read it. The VM group depends on
    # them, so they exist before the first VM boots and are deleted only after
    # the last VM has drained: a VM going down re-reads the credential to
    # deregister its runner, also during `pulumi destroy`.
    needed_by_vms: Sequence[pulumi.Resource] = ()


@dataclass(frozen=True)
class UserData:
    """The VM's user data, and the largest it can be.

    `text` is a plain string, or an Output when it carries a value known only
    once a resource exists (the id of a runner group the stack creates);
    `longest` is rendered with the widest such value, so a cloud's size limit
    is checked before anything is created.
    """

    text: pulumi.Input[str]
    longest: str


@dataclass(frozen=True)
class AgentDelivery:
    """Where a cloud's VMs fetch the agent when it does not ride in the user data (AWS: EC2's 16 KB).

    `agent` is known once the object exists (user data built from it waits for the upload);
    `widest` sizes the user data before anything is created.
    """

    agent: pulumi.Output[AgentObject]
    widest: AgentObject


@dataclass(frozen=True)
class VmGroup:
    name: pulumi.Output[str]
    id: pulumi.Output[str]


class PoolProblem(Exception):
    """A combination the schema could not see; `field` is relative to the pool."""

    def __init__(self, field: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class Backend(ABC, Generic[PoolT]):
    """One cloud. One instance per program run, so shared resources (a provider
    per region or project) are created once and reused by every pool."""

    name: str

    def __init__(self, context: StackContext) -> None:
        self.context = context

    def prepare(self, pools: Sequence[PoolT]) -> None:
        """Called once with every pool of this cloud, in file order, before any is built:
        what pools share (a region's network) is sized for all of them."""

    def agent_delivery(self, site: Site) -> AgentDelivery | None:
        """Where the pool's VMs fetch the agent; None (the default): it rides in the user data."""
        return None

    @abstractmethod
    def site(self, pool: PoolT) -> Site:
        """Where the pool lives; raises PoolProblem when that cannot be decided."""

    @abstractmethod
    def network(self, pool: PoolT, site: Site, parent: pulumi.Resource) -> Network:
        """The network the pool's VMs use: no inbound, a way out to GitHub."""

    @abstractmethod
    def identity(self, pool: PoolT, site: Site, parent: pulumi.Resource) -> Identity:
        """The credential secret and the one identity that may read it."""

    @abstractmethod
    def vm_group(
        self,
        pool: PoolT,
        site: Site,
        network: Network,
        identity: Identity,
        user_data: UserData,
        parent: pulumi.Resource,
    ) -> VmGroup:
        """The VM template and the group that keeps the pool's size."""
