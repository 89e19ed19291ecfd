"""Stack config: the GitHub credential (a secret) and where runners.yaml is.

Every problem is a `pulumi.RunError` whose text says exactly what to run:
the Pulumi CLI prints it without a traceback.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import pulumi
from pulumi.runtime.config import get_config, is_config_secret

TOKEN = "githubToken"
APP = "githubApp"
SET_TOKEN = "pulumi config set --secret githubToken <token>"
SET_APP = (
    "pulumi config set --path githubApp.appId <id> && "
    "pulumi config set --path githubApp.installationId <id> && "
    "pulumi config set --path --secret githubApp.privateKey < app.pem"
)


@dataclass(frozen=True)
class GitHubCredential:
    kind: Literal["pat", "app"]
    document: pulumi.Output[str]  # secret JSON the VM agent reads from the cloud store
    token: pulumi.Output[str] | None = None
    app_id: str | None = None
    installation_id: str | None = None
    private_key: pulumi.Output[str] | None = None


@dataclass(frozen=True)
class StackConfig:
    runners_file: str
    credential: GitHubCredential


def read_stack_config() -> StackConfig:
    runners_file = pulumi.Config().get("runnersFile") or "runners.yaml"
    return StackConfig(runners_file=runners_file, credential=read_credential())


def config_key(name: str) -> str:
    """`<project>:<name>`: the CLI stores `pulumi config set name` under the namespace of the
    project named in Pulumi.yaml, so a renamed project (a second deployment of this code)
    keeps finding its own keys."""
    return pulumi.Config().full_key(name)


def read_credential() -> GitHubCredential:
    token_key, app_key = config_key(TOKEN), config_key(APP)
    token, app = get_config(token_key), get_config(app_key)
    if token is not None and app is not None:
        raise pulumi.RunError(
            "both githubToken and githubApp are set; keep one: "
            "`pulumi config rm githubToken` or `pulumi config rm githubApp`"
        )
    if token is None and app is None:
        raise pulumi.RunError(
            f"no GitHub credential in stack config. Set a PAT: `{SET_TOKEN}`, or a GitHub App: `{SET_APP}`"
        )
    if token is not None:
        if not is_config_secret(token_key):
            raise pulumi.RunError(f"githubToken is stored in plain text; store it as a secret: `{SET_TOKEN}`")
        if not str(token).strip():
            raise pulumi.RunError(f"githubToken is empty: `{SET_TOKEN}`")
        value = str(token).strip()
        return GitHubCredential(
            kind="pat",
            document=pulumi.Output.secret(json.dumps({"kind": "pat", "token": value})),
            token=pulumi.Output.secret(value),
        )
    return _app_credential(app, app_key)


def _app_credential(raw: Any, key: str) -> GitHubCredential:
    if not is_config_secret(key):
        raise pulumi.RunError(
            "githubApp.privateKey is stored in plain text; store it as a secret: "
            "`pulumi config set --path --secret githubApp.privateKey < app.pem`"
        )
    try:
        app = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError:
        app = None
    if not isinstance(app, dict):
        raise pulumi.RunError(f"githubApp must be an object with appId, installationId, privateKey: `{SET_APP}`")
    unknown = sorted(set(app) - {"appId", "installationId", "privateKey"})
    if unknown:
        raise pulumi.RunError(
            f"githubApp has unknown keys {', '.join(unknown)}; it takes appId, installationId, privateKey"
        )
    missing = [key for key in ("appId", "installationId", "privateKey") if not str(app.get(key, "")).strip()]
    if missing:
        raise pulumi.RunError(f"githubApp is missing {', '.join(missing)}: `{SET_APP}`")
    app_id, installation_id = str(app["appId"]).strip(), str(app["installationId"]).strip()
    for key, value in (("appId", app_id), ("installationId", installation_id)):
        if not value.isdigit():
            raise pulumi.RunError(f"githubApp.{key} must be a number, got {value!r}")
    key_pem = str(app["privateKey"])
    if "-----BEGIN" not in key_pem or "PRIVATE KEY-----" not in key_pem:
        raise pulumi.RunError(
            "githubApp.privateKey is not a PEM private key; set the file GitHub gave you: "
            "`pulumi config set --path --secret githubApp.privateKey < app.pem`"
        )
    document = {"kind": "app", "app_id": app_id, "installation_id": installation_id, "private_key": key_pem}
    return GitHubCredential(
        kind="app",
        document=pulumi.Output.secret(json.dumps(document)),
        app_id=app_id,
        installation_id=installation_id,
        private_key=pulumi.Output.secret(key_pem),
    )
