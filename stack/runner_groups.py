"""The GitHub side: organization / enterprise runner groups the stack owns.

The VM agent resolves its group by name at boot, so a group and the pools
using it come up in one `pulumi up` with no ordering between them.
"""

from __future__ import annotations

import pulumi
import pulumi_github as github

from schema.models import GitHubTarget, RunnerGroup
from stack.config import GitHubCredential


def github_provider(target: GitHubTarget, credential: GitHubCredential) -> github.Provider:
    app_auth = None
    if credential.kind == "app":
        assert credential.app_id and credential.installation_id and credential.private_key
        app_auth = github.ProviderAppAuthArgs(
            id=credential.app_id, installation_id=credential.installation_id, pem_file=credential.private_key
        )
    return github.Provider(
        "github",
        base_url=f"{target.api_url}/",
        owner=target.organization,
        token=credential.token,
        app_auth=app_auth,
    )


def build_runner_groups(
    target: GitHubTarget, groups: list[RunnerGroup], credential: GitHubCredential
) -> dict[str, pulumi.CustomResource]:
    """One resource per managed group; none for repository targets."""
    if target.scope == "repository" or not groups:
        return {}
    provider = github_provider(target, credential)
    created: dict[str, pulumi.CustomResource] = {}
    for group in groups:
        # GitHub group names are case-insensitive and `name` is updated in place,
        # so the URN uses the lower-cased name: changing a group's case renames
        # it instead of creating a duplicate beside it. Stacks from earlier
        # releases have the name as written: aliases keep those URNs.
        name = f"runner-group-{group.name.lower()}"
        aliases = [pulumi.Alias(name=f"runner-group-{group.name}")] if group.name != group.name.lower() else None
        opts = pulumi.ResourceOptions(provider=provider, aliases=aliases)
        workflows = group.workflows or None
        if target.scope == "organization":
            created[group.name] = github.ActionsRunnerGroup(
                name,
                name=group.name,
                visibility=group.effective_visibility,
                selected_repository_ids=_repository_ids(target, group, provider),
                restricted_to_workflows=bool(workflows),
                selected_workflows=workflows,
                allows_public_repositories=group.allow_public_repositories,
                opts=opts,
            )
        else:
            assert target.enterprise
            created[group.name] = github.EnterpriseActionsRunnerGroup(
                name,
                enterprise_slug=target.enterprise,
                name=group.name,
                visibility=group.effective_visibility,
                selected_organization_ids=_organization_ids(group, provider),
                restricted_to_workflows=bool(workflows),
                selected_workflows=workflows,
                allows_public_repositories=group.allow_public_repositories,
                opts=opts,
            )
    return created


def _repository_ids(
    target: GitHubTarget, group: RunnerGroup, provider: github.Provider
) -> list[pulumi.Output[int]] | None:
    if group.effective_visibility != "selected":
        return None
    invoke = pulumi.InvokeOutputOptions(provider=provider)
    return [
        github.get_repository_output(full_name=f"{target.organization}/{repo}", opts=invoke).repo_id
        for repo in group.repositories
    ]


def _organization_ids(group: RunnerGroup, provider: github.Provider) -> list[pulumi.Output[int]] | None:
    if group.effective_visibility != "selected":
        return None
    invoke = pulumi.InvokeOutputOptions(provider=provider)
    # The organization data source's id is the organization's numeric id.
    return [github.get_organization_output(name=org, opts=invoke).id.apply(int) for org in group.organizations]
