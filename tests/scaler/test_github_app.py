"""The reconcile's GitHub credential: a PAT as is, an App's JWT signed without a crypto library."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from receiver_doubles.github import App, _jwt_ok

from scaler.github import GitHub, GitHubError, app_jwt, parse_credential, parse_rsa_key, rs256


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A PKCS#1 key (what GitHub hands out for Apps) and a PKCS#8 one, made by openssl."""
    where = tmp_path_factory.mktemp("keys")
    pkcs1, pkcs8 = where / "app.pem", where / "app8.pem"
    subprocess.run(["openssl", "genrsa", "-traditional", "-out", str(pkcs1), "2048"], check=True,
                   capture_output=True)
    subprocess.run(["openssl", "pkcs8", "-topk8", "-nocrypt", "-in", str(pkcs1), "-out", str(pkcs8)], check=True)
    public = where / "app.pub"
    subprocess.run(["openssl", "rsa", "-in", str(pkcs1), "-pubout", "-out", str(public)], check=True,
                   capture_output=True)
    return {"pkcs1": pkcs1, "pkcs8": pkcs8, "public": public}


@pytest.mark.parametrize("form", ["pkcs1", "pkcs8"])
def test_rs256_is_byte_for_byte_what_openssl_signs(keys: dict[str, Path], form: str) -> None:
    # PKCS#1 v1.5 signatures are deterministic: equal bytes prove the same computation.
    for message in (b"", b"header.payload", bytes(range(256)) * 40):
        expected = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(keys[form])], input=message,
                                  capture_output=True, check=True).stdout
        assert rs256(keys[form].read_text(), message) == expected


def test_app_jwt_passes_githubs_checks(keys: dict[str, Path]) -> None:
    app = App("12345", "678", keys["public"].read_text())
    token = app_jwt("12345", keys["pkcs1"].read_text())
    assert _jwt_ok(token, app)
    assert not _jwt_ok(token, App("99999", "678", app.public_key_pem))  # wrong issuer
    assert not _jwt_ok(token[:-4] + "AAAA", app)  # signature tampered


@pytest.mark.parametrize("text", [
    "not a key",
    "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----",
    "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIA==\n-----END EC PRIVATE KEY-----",
])
def test_bad_keys_are_named_not_shown(text: str) -> None:
    with pytest.raises(GitHubError) as caught:
        parse_rsa_key(text)
    assert "AAAA" not in str(caught.value) and "MHcC" not in str(caught.value)


def test_credential_shapes() -> None:
    assert parse_credential('{"kind": "pat", "token": "ghp_x"}')["token"] == "ghp_x"
    for bad in ("ghp_plain", '{"kind": "pat"}', '{"kind": "app", "app_id": 1}', "[]"):
        with pytest.raises(GitHubError) as caught:
            parse_credential(bad)
        assert "ghp_plain" not in str(caught.value)


def test_installation_token_is_minted_once_and_used(keys: dict[str, Path], github_api: object) -> None:
    from receiver_doubles.github import ActionsDouble

    assert isinstance(github_api, ActionsDouble)
    github_api.app = App("12345", "678", keys["public"].read_text())
    doc = json.dumps({"kind": "app", "app_id": 12345, "installation_id": 678,
                      "private_key": keys["pkcs1"].read_text()})
    client = GitHub(github_api.url, lambda: doc, budget=10)
    assert client.get("/repos/octo-org/octo-repo/actions/runners", per_page=100)["total_count"] == 0
    client.get("/repos/octo-org/octo-repo/actions/runners", per_page=100)
    minted = github_api.requests(method="POST", path="access_tokens$")
    assert len(minted) == 1 and minted[0].status == 201
    assert client.spent == 3  # the token exchange counts against the budget too
