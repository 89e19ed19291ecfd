"""The GitHub side of demand scaling: a random webhook secret that stays a secret, and one
`workflow_job` webhook per receiver on repository and organization targets."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pytest

from plan.engine import Recording
from schema.models import GitHubTarget
from stack.config import GitHubCredential
from stack.webhook import EVENTS, SECRET_BYTES, build_webhooks, enterprise_setup, webhook_secret
from tests.providers.harness import SENTINEL_KEY, SENTINEL_TOKEN, everything_shown
from tests.providers.receivers import record

RECEIVERS = {
    "aws": "https://abc.lambda-url.eu-central-1.on.aws/",
    "gcp": "https://europe-west4-ci-project.cloudfunctions.net/gcp-receiver-webhook-1234567",
}


def pat() -> GitHubCredential:
    return GitHubCredential(
        kind="pat",
        document=pulumi.Output.secret(json.dumps({"kind": "pat", "token": SENTINEL_TOKEN})),
        token=pulumi.Output.secret(SENTINEL_TOKEN),
    )


def app() -> GitHubCredential:
    return GitHubCredential(
        kind="app",
        document=pulumi.Output.secret("{}"),
        app_id="12345",
        installation_id="678",
        private_key=pulumi.Output.secret(SENTINEL_KEY),
    )


def plan(target: GitHubTarget, credential: Any = pat, receivers: dict[str, str] = RECEIVERS) -> Recording:
    return record(lambda: build_webhooks(target, credential(), receivers, webhook_secret()))


def test_repository_target_gets_one_repository_webhook_per_receiver() -> None:
    recording = plan(GitHubTarget(repository="spigell/my-reforge-ai"))
    hooks = {hook.name: hook for hook in recording.of_type("github:index/repositoryWebhook:RepositoryWebhook")}
    assert sorted(hooks) == ["webhook-aws", "webhook-gcp"]
    secret = recording.named("webhook-secret").outputs["hex"]
    for cloud, hook in ((c, hooks[f"webhook-{c}"]) for c in RECEIVERS):
        assert hook.inputs["repository"] == "my-reforge-ai"  # the owner comes from the provider
        assert hook.inputs["events"] == EVENTS == ["workflow_job"]
        assert hook.inputs["active"] is True
        assert hook.inputs["configuration"] == {
            "url": RECEIVERS[cloud],
            "contentType": "json",
            "insecureSsl": False,
            "secret": secret,
        }
        assert hook.secret_paths == ["configuration.secret"]
    (provider,) = recording.of_type("pulumi:providers:github")
    assert provider.inputs["owner"] == "spigell"
    assert provider.inputs["baseUrl"] == "https://api.github.com/"
    assert provider.shown["token"] == "[secret]"
    assert all(hook.provider.split("::")[-2] == "github-webhooks" for hook in hooks.values())


def test_organization_target_gets_organization_webhooks() -> None:
    recording = plan(GitHubTarget(organization="acme", url="https://ghe.example.com"))
    hooks = recording.of_type("github:index/organizationWebhook:OrganizationWebhook")
    assert sorted(hook.name for hook in hooks) == ["webhook-aws", "webhook-gcp"]
    assert all(hook.inputs["events"] == ["workflow_job"] for hook in hooks)
    assert not recording.of_type("github:index/repositoryWebhook:RepositoryWebhook")
    (provider,) = recording.of_type("pulumi:providers:github")
    assert provider.inputs["owner"] == "acme"
    assert provider.inputs["baseUrl"] == "https://ghe.example.com/api/v3/"


def test_a_single_cloud_gets_a_single_webhook() -> None:
    recording = plan(GitHubTarget(organization="acme"), receivers={"gcp": RECEIVERS["gcp"]})
    assert [hook.name for hook in recording.of_type("github:index/organizationWebhook:OrganizationWebhook")] == [
        "webhook-gcp"
    ]


def test_enterprise_gets_no_webhook_and_exact_instructions() -> None:
    target = GitHubTarget(enterprise="acme-corp")
    recording = plan(target)
    assert not [r for r in recording.resources if r.type.startswith("github:")]
    text = enterprise_setup(
        target,
        {
            "aws": "/gh-runners/ghs-p-dev-receiver/webhook-secret",
            "gcp": "projects/ci/secrets/ghs-p-dev-receiver-europe-west4-webhook-secret/versions/latest",
        },
    )
    assert "acme-corp is an enterprise" in text and "'Workflow jobs' event" in text
    assert "application/json" in text
    assert (
        "aws ssm get-parameter --with-decryption" in text
        and "--name /gh-runners/ghs-p-dev-receiver/webhook-secret" in text
    )
    gcp_secret = "projects/ci/secrets/ghs-p-dev-receiver-europe-west4-webhook-secret"
    assert f"gcloud secrets versions access latest --secret {gcp_secret}`" in text


def test_webhook_secret_is_random_long_and_secret() -> None:
    recording = plan(GitHubTarget(repository="a/b"))
    secret = recording.named("webhook-secret")
    assert secret.inputs == {"length": SECRET_BYTES}
    # pulumi-random declares the value secret itself; the engine records the declaration.
    assert {"hex", "base64"} <= set(secret.secret_outputs)
    value = secret.outputs["hex"]
    assert len(value) == 2 * SECRET_BYTES
    shown = "\n".join(everything_shown(recording))
    assert value not in shown and SENTINEL_TOKEN not in shown


def test_the_secret_output_is_secret() -> None:
    recording = record(lambda: pulumi.export("secret", webhook_secret()))
    assert recording.stack_outputs_shown["secret"] == "[secret]"


@pytest.mark.parametrize("target", [GitHubTarget(repository="a/b"), GitHubTarget(organization="acme")])
def test_app_credentials_reach_the_provider_as_secrets(target: GitHubTarget) -> None:
    recording = plan(target, credential=app)
    (provider,) = recording.of_type("pulumi:providers:github")
    # Provider config travels as JSON text; it holds the key, so all of it is secret.
    assert json.loads(provider.inputs["appAuth"]) == {"id": "12345", "installationId": "678", "pemFile": SENTINEL_KEY}
    assert provider.shown["appAuth"] == "[secret]"
    assert "token" not in provider.inputs
    assert SENTINEL_KEY not in "\n".join(everything_shown(recording))
