"""RunnerPool: the component that owns every resource of one pool."""

from __future__ import annotations

from typing import Any

import pulumi

from bootstrap.cloud_config import render_user_data
from providers.base import Backend, StackContext
from schema.models import Pool

RUNNER_POOL_TYPE = "ghrunners:index:RunnerPool"  # part of every URN: never rename without aliases


class RunnerPool(pulumi.ComponentResource):
    """One pool of runners on one cloud, named after the pool.

    The data flows one way: the pool model and the backend's `Site` render the
    user data; the backend builds network, identity and VM group as children.
    """

    def __init__(
        self,
        pool: Pool,
        backend: Backend[Any],
        context: StackContext,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(RUNNER_POOL_TYPE, pool.name, None, opts)
        site = backend.site(pool)
        network = backend.network(pool, site, self)
        identity = backend.identity(pool, site, self)
        user_data = render_user_data(pool, context.github, site.agent_location())
        group = backend.vm_group(pool, site, network, identity, user_data, self)

        self.site = site  # where it lives: the receivers' configuration names its group
        self.pool_name = pool.name
        self.provider = pool.provider
        self.region = site.region
        self.project = site.project
        self.labels = pool.all_labels
        self.runs_on = runs_on(pool.all_labels)
        self.group_name = group.name
        self.runner_group = pool.group_name
        self.secret_location = site.secret_name
        self.register_outputs(
            {
                "provider": self.provider,
                "region": site.region,
                "project": site.project,
                "labels": self.labels,
                "runsOn": self.runs_on,
                "groupName": group.name,
                "runnerGroup": self.runner_group,
                "secretLocation": self.secret_location,
            }
        )


def runs_on(labels: list[str]) -> str:
    """A ready `runs-on:` value: every label, so jobs land on this pool only."""
    return "[" + ", ".join(labels) + "]"
