"""The GitHub side of demand scaling: the webhook secret and one webhook per receiver.

GitHub signs every delivery with HMAC-SHA256 over the body, keyed by the
webhook's secret (`X-Hub-Signature-256`); the receiver recomputes it before it
parses anything. The secret is random, made by the stack (pulumi-random keeps
it in state as a Pulumi secret: encrypted, never printed), written into each
receiver's cloud secret store, and set on the webhooks -- nobody ever has to
see it. Rotate it with `pulumi up --replace <URN of webhook-secret>`: the
webhooks and both stores follow in the same `up`.

Repository and organization targets get their webhooks from the stack.
Enterprise targets cannot: GitHub has no enterprise-wide webhook for
`workflow_job` that the provider can manage, so `enterprise_setup` says what to
create by hand.
"""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_github as github
import pulumi_random as random

from schema.models import GitHubTarget
from stack.config import GitHubCredential

EVENTS = ["workflow_job"]  # queued / in_progress / completed / waiting of every job
# 32 random bytes: the HMAC-SHA256 key length (RFC 2104 recommends at least the
# hash's output length), as 64 hex characters.
SECRET_BYTES = 32


def webhook_secret() -> pulumi.Output[str]:
    """The stack's webhook secret: random, created once, a Pulumi secret."""
    secret = random.RandomBytes("webhook-secret", length=SECRET_BYTES)
    # The provider marks `hex` secret already; saying it again keeps the value
    # secret even if a later provider version stopped doing so.
    return pulumi.Output.secret(secret.hex)


def webhook_provider(target: GitHubTarget, credential: GitHubCredential) -> github.Provider:
    """A GitHub provider whose owner is the webhook's owner (repository owner or organization)."""
    app_auth = None
    if credential.kind == "app":
        assert credential.app_id and credential.installation_id and credential.private_key
        app_auth = github.ProviderAppAuthArgs(
            id=credential.app_id, installation_id=credential.installation_id, pem_file=credential.private_key
        )
    owner = target.repository.split("/", 1)[0] if target.repository else target.organization
    return github.Provider(
        "github-webhooks",
        base_url=f"{target.api_url}/",
        owner=owner,
        token=credential.token,
        app_auth=app_auth,
    )


def build_webhooks(
    target: GitHubTarget,
    credential: GitHubCredential,
    receivers: Mapping[str, pulumi.Input[str]],
    secret: pulumi.Input[str],
) -> dict[str, pulumi.Resource]:
    """One webhook per receiver (cloud -> URL) on the repository or organization.

    Each receiver acts only for its own cloud's pools but applies the
    pool-choice rule over all pools, so two webhooks never scale twice for one
    job. Enterprise targets get none (see `enterprise_setup`).
    """
    if target.scope == "enterprise" or not receivers:
        return {}
    opts = pulumi.ResourceOptions(provider=webhook_provider(target, credential))
    hooks: dict[str, pulumi.Resource] = {}
    for cloud, url in sorted(receivers.items()):
        # JSON bodies (what the receiver parses); TLS verified; signed with the secret.
        if target.repository:
            hooks[cloud] = github.RepositoryWebhook(
                f"webhook-{cloud}",
                repository=target.repository.split("/", 1)[1],
                events=EVENTS,
                active=True,
                configuration=github.RepositoryWebhookConfigurationArgs(
                    url=url, content_type="json", insecure_ssl=False, secret=secret
                ),
                opts=opts,
            )
        else:
            hooks[cloud] = github.OrganizationWebhook(
                f"webhook-{cloud}",
                events=EVENTS,
                active=True,
                configuration=github.OrganizationWebhookConfigurationArgs(
                    url=url, content_type="json", insecure_ssl=False, secret=secret
                ),
                opts=opts,
            )
    return hooks


def enterprise_setup(target: GitHubTarget, secret_locations: Mapping[str, str]) -> str:
    """What an enterprise target must set up by hand, per receiver (cloud -> where its secret is)."""
    reads = {
        "aws": "aws ssm get-parameter --with-decryption --query Parameter.Value --output text --name {}",
        "gcp": "gcloud secrets versions access latest --secret {}",
    }
    lines = [
        f"{target.target} is an enterprise: the stack cannot create its webhook. In every organization whose jobs "
        "run on these pools, add an organization webhook (Settings -> Webhooks -> Add webhook) per cloud below, "
        "with content type application/json, SSL verification on, and only the 'Workflow jobs' event:",
    ]
    for cloud, location in sorted(secret_locations.items()):
        command = reads[cloud].format(location.rsplit("/versions/", 1)[0])
        lines.append(f"  {cloud}: payload URL `pulumi stack output receivers` -> {cloud}; secret: `{command}`")
    return "\n".join(lines)
