"""The program `pulumi up` runs, as functions `__main__.py` calls in order."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pulumi

from providers import Backends
from providers.base import Field, PoolProblem, StackContext
from providers.pool import RunnerPool
from schema.loader import LoadError, Problem, load_file, locate
from schema.models import RunnersFile, format_loc
from stack.config import StackConfig


def load_runners(path: str) -> RunnersFile:
    """runners.yaml, or a RunError carrying the same FILE:LINE:COL lines as `python -m schema validate`."""
    try:
        return load_file(path)
    except LoadError as exc:
        raise pulumi.RunError(f"{path} is not valid:\n{exc}") from None


def build_pools(runners: RunnersFile, config: StackConfig) -> list[RunnerPool]:
    context = StackContext(
        project=pulumi.get_project(),
        stack=pulumi.get_stack(),
        github=runners.github,
        credential=config.credential.document,
        credential_kind=config.credential.kind,
        locate=_locator(config.runners_file, runners),
    )
    groups: dict[str, pulumi.Resource] = {}
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
            pools.append(RunnerPool(pool, backends[pool.provider], context, opts))
        except PoolProblem as problem:
            raise pulumi.RunError(_located(config.runners_file, index, problem)) from None
    return pools


def export_pools(pools: list[RunnerPool]) -> None:
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
