"""RunnerPool: the component that owns every resource of one pool."""

from __future__ import annotations

from typing import Any

import pulumi

from bootstrap.cloud_config import render_user_data
from providers.base import AgentDelivery, Backend, StackContext, UserData
from schema.models import Pool

RUNNER_POOL_TYPE = "ghrunners:index:RunnerPool"  # part of every URN: never rename without aliases
# GitHub runner group ids are int64: the widest one sizes the user data.
WIDEST_RUNNER_GROUP_ID = 2**63 - 1


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
        runner_group_id: pulumi.Output[str] | None = None,
    ) -> None:
        super().__init__(RUNNER_POOL_TYPE, pool.name, None, opts)
        site = backend.site(pool)
        network = backend.network(pool, site, self)
        identity = backend.identity(pool, site, self)
        user_data = pool_user_data(pool, context, site.agent_location(), runner_group_id,
                                   backend.agent_delivery(site))
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


def pool_user_data(
    pool: Pool,
    context: StackContext,
    location: dict[str, str],
    runner_group_id: pulumi.Output[str] | None,
    delivery: AgentDelivery | None = None,
) -> UserData:
    """The VM's user data. With a runner group the stack creates, its id rides along (the resource's id is
    the numeric group id: terraform-provider-github, resource_github_actions_runner_group.go and
    resource_github_enterprise_actions_runner_group.go, `d.SetId(strconv.FormatInt(runnerGroup.GetID(), 10))`),
    so the agent registers without looking the group up: one GitHub round trip fewer at every boot.
    With a `delivery`, the user data carries the loader of the agent object instead of the agent."""
    if runner_group_id is None and delivery is None:
        text = render_user_data(pool, context.github, location)
        return UserData(text=text, longest=text)
    group_id = runner_group_id if runner_group_id is not None else pulumi.Output.from_input("")
    agent = delivery.agent if delivery is not None else pulumi.Output.from_input(None)
    return UserData(
        text=pulumi.Output.all(group_id, agent).apply(
            lambda values: render_user_data(
                pool, context.github, location, runner_group_id=int(values[0]) if values[0] else None, agent=values[1]
            )
        ),
        longest=render_user_data(
            pool,
            context.github,
            location,
            runner_group_id=None if runner_group_id is None else WIDEST_RUNNER_GROUP_ID,
            agent=delivery.widest if delivery is not None else None,
        ),
    )
