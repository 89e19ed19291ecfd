"""The program `pulumi up` runs, as functions `__main__.py` calls in order."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pulumi

from providers import Backends
from providers.base import Field, PoolProblem, StackContext
from providers.pool import RunnerPool
from providers.scaling import receiver_clouds
from schema.loader import LoadError, Problem, load_file, locate
from schema.models import RunnersFile, format_loc
from stack.config import StackConfig

if TYPE_CHECKING:
    from stack.receivers import Clouds, Receivers


@dataclass(frozen=True)
class BuiltPools:
    """What the pools were built with: the receivers reuse the same backends (one
    provider per region or project) and every pool's site."""

    runners: RunnersFile
    context: StackContext
    backends: Backends
    pools: list[RunnerPool]


def load_runners(path: str) -> RunnersFile:
    """runners.yaml, or a RunError carrying the same FILE:LINE:COL lines as `python -m schema validate`."""
    try:
        return load_file(path)
    except LoadError as exc:
        raise pulumi.RunError(f"{path} is not valid:\n{exc}") from None


def build_pools(runners: RunnersFile, config: StackConfig) -> BuiltPools:
    context = StackContext(
        project=pulumi.get_project(),
        stack=pulumi.get_stack(),
        github=runners.github,
        credential=config.credential.document,
        credential_kind=config.credential.kind,
        locate=_locator(config.runners_file, runners),
    )
    groups: dict[str, pulumi.CustomResource] = {}
    if runners.managed_groups:
        # pulumi_github loads only when the stack owns runner groups.
        from stack.runner_groups import build_runner_groups

        groups = build_runner_groups(runners.github, runners.managed_groups, config.credential)
    backends = Backends(context)
    for provider in dict.fromkeys(pool.provider for pool in runners.pools):
        backends[provider].prepare([pool for pool in runners.pools if pool.provider == provider])
    pools = []
    for index, pool in enumerate(runners.pools):
        group = groups.get(pool.group_name)
        opts = pulumi.ResourceOptions(depends_on=[group]) if group else None
        try:
            group_id = group.id if group else None  # the VMs register into it without a lookup
            pools.append(RunnerPool(pool, backends[pool.provider], context, opts, runner_group_id=group_id))
        except PoolProblem as problem:
            raise pulumi.RunError(_located(config.runners_file, index, problem)) from None
    return BuiltPools(runners=runners, context=context, backends=backends, pools=pools)


def build_scaling(built: BuiltPools, config: StackConfig) -> Receivers | None:
    """Demand scaling: a receiver per cloud with pools that scale on demand, and
    their webhooks (stack/receivers.py). None when every pool is fixed."""
    if not receiver_clouds(built.runners):
        return None
    # pulumi_github and pulumi_random load only for stacks that have receivers.
    from stack.receivers import build_receivers

    sites = {pool.pool_name: pool.site for pool in built.pools}
    return build_receivers(built.runners, sites, built.context, config.credential, _clouds(built))


def _clouds(built: BuiltPools) -> Clouds:
    """How the receivers reach each cloud the stack has pools in: the pools' own backends."""
    from stack.receivers import Clouds

    used = {pool.provider for pool in built.runners.pools}
    clouds = Clouds()
    if "aws" in used:
        from providers.aws.backend import AwsBackend

        aws_backend = built.backends["aws"]
        assert isinstance(aws_backend, AwsBackend)
        clouds = Clouds(aws=lambda region: (aws_backend.options(region), aws_backend.account(region)), gcp=clouds.gcp)
    if "gcp" in used:
        from providers.gcp.backend import GcpBackend

        gcp_backend = built.backends["gcp"]
        assert isinstance(gcp_backend, GcpBackend)
        clouds = Clouds(aws=clouds.aws, gcp=gcp_backend.options)
    return clouds


def export_receivers(receivers: Receivers | None) -> None:
    """Each receiver's webhook URL (not secret: GitHub only accepts signed deliveries
    there) and where its webhook secret lives -- never the secret itself."""
    if receivers is None:
        return
    pulumi.export("receivers", dict(receivers.urls))
    pulumi.export("webhookSecrets", dict(receivers.secret_locations))


def export_pools(built: BuiltPools) -> None:
    pools = built.pools
    outputs: dict[str, Any] = {
        pool.pool_name: {
            "provider": pool.provider,
            "region": pool.region,
            "project": pool.project,
            "labels": pool.labels,
            "runsOn": pool.runs_on,
            "groupName": pool.group_name,
            "runnerGroup": pool.runner_group,
            "secretLocation": pool.secret_location,
        }
        for pool in pools
    }
    pulumi.export("pools", outputs)


def _located(file: str, index: int, problem: PoolProblem) -> str:
    line, column = locate(file, ("pools", index, *problem.field))
    return str(Problem(file, line, column, format_loc(("pools", index, *problem.field)), problem.message))


def _locator(file: str, runners: RunnersFile) -> Callable[[str, Field, str], str]:
    indexes = {pool.name: i for i, pool in enumerate(runners.pools)}

    def located(pool: str, field: Field, message: str) -> str:
        return _located(file, indexes[pool], PoolProblem(field, message))

    return located
