"""Stack config and program errors: clean messages that say what to run, never a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
import pytest

from plan.engine import run_project
from tests.providers.harness import ROOT, SENTINEL_KEY

VALID = "version: 1\ngithub: {repository: spigell/my-reforge-ai}\npools:\n  - {name: codex, provider: aws}\n"


def run(tmp_path: Path, config: dict[str, Any], secret: list[str], text: str = VALID) -> None:
    path = tmp_path / "runners.yaml"
    path.write_text(text)
    run_project(
        ROOT, config={"aws:region": "eu-central-1", "gh-runners:runnersFile": str(path), **config}, secret_keys=secret
    )


def error_of(tmp_path: Path, config: dict[str, Any], secret: list[str], text: str = VALID) -> str:
    with pytest.raises(pulumi.RunError) as caught:
        run(tmp_path, config, secret, text)
    return str(caught.value)


def test_no_credential_says_what_to_run(tmp_path: Path) -> None:
    message = error_of(tmp_path, {}, [])
    assert "no GitHub credential" in message
    assert "pulumi config set --secret githubToken" in message
    assert "githubApp.privateKey" in message


def test_plain_text_token_is_refused(tmp_path: Path) -> None:
    message = error_of(tmp_path, {"gh-runners:githubToken": "ghp_plain"}, [])
    assert "plain text" in message and "pulumi config set --secret githubToken" in message
    assert "ghp_plain" not in message


def test_both_credentials_are_refused(tmp_path: Path) -> None:
    app = {"appId": "1", "installationId": "2", "privateKey": SENTINEL_KEY}
    message = error_of(
        tmp_path,
        {"gh-runners:githubToken": "t", "gh-runners:githubApp": app},
        ["gh-runners:githubToken", "gh-runners:githubApp"],
    )
    assert "both githubToken and githubApp" in message


@pytest.mark.parametrize(
    ("app", "expected"),
    [
        ({"appId": "1", "installationId": "2"}, "missing privateKey"),
        ({"appId": "x1", "installationId": "2", "privateKey": SENTINEL_KEY}, "appId must be a number"),
        ({"appId": "1", "installationId": "2", "privateKey": "not a key"}, "not a PEM private key"),
        ({"appId": "1", "installationId": "2", "privateKey": SENTINEL_KEY, "extra": 1}, "unknown keys extra"),
    ],
)
def test_bad_app_config(tmp_path: Path, app: dict[str, Any], expected: str) -> None:
    message = error_of(tmp_path, {"gh-runners:githubApp": app}, ["gh-runners:githubApp"])
    assert expected in message
    assert "SENTINELKEYMATERIAL" not in message


def test_app_key_not_secret_is_refused(tmp_path: Path) -> None:
    app = {"appId": "1", "installationId": "2", "privateKey": SENTINEL_KEY}
    assert "plain text" in error_of(tmp_path, {"gh-runners:githubApp": app}, [])


def test_invalid_runners_file_gives_validator_messages(tmp_path: Path) -> None:
    text = VALID.replace("provider: aws", "provider: aws, regoin: x")
    message = error_of(tmp_path, {"gh-runners:githubToken": "t"}, ["gh-runners:githubToken"], text)
    assert f"{tmp_path / 'runners.yaml'}:4:42: pools[0].regoin: unknown key 'regoin'; did you mean 'region'?" in message


def test_backend_problems_are_located(tmp_path: Path) -> None:
    text = VALID.replace("provider: aws}", "provider: aws, network: {zones: 6}}")
    message = error_of(tmp_path, {"gh-runners:githubToken": "t"}, ["gh-runners:githubToken"], text)
    where = f"{tmp_path / 'runners.yaml'}:4:51"
    assert message == f"{where}: pools[0].network.zones: eu-central-1 has 3 available zones, the pool asks for 6"


def test_missing_region_is_located(tmp_path: Path) -> None:
    path = tmp_path / "runners.yaml"
    path.write_text(VALID)
    with pytest.raises(pulumi.RunError) as caught:
        run_project(
            ROOT,
            config={"gh-runners:runnersFile": str(path), "gh-runners:githubToken": "t"},
            secret_keys=["gh-runners:githubToken"],
        )
    assert "pools[0].region: no AWS region" in str(caught.value)
    assert "pulumi config set aws:region" in str(caught.value)
