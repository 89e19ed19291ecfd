"""Every fixture file: valid ones load, invalid ones give exactly the expected located messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from schema.loader import LoadError, load_file
from schema.models import RunnersFile

HERE = Path(__file__).parent
VALID = sorted((HERE / "valid").glob("*.yaml"))
INVALID = sorted((HERE / "invalid").glob("*.yaml"))


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_valid_fixture_loads(path: Path) -> None:
    assert isinstance(load_file(path), RunnersFile)


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_fixture_gives_exact_messages(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(path.parent)
    expected = path.with_suffix(".expected").read_text().splitlines()
    with pytest.raises(LoadError) as caught:
        load_file(path.name)
    assert [str(p) for p in caught.value.problems] == expected


def test_example_is_a_fixture() -> None:
    """The shipped runners.yaml is what valid/example.yaml checks."""
    assert (HERE / "valid" / "example.yaml").read_text() == (HERE.parent.parent / "runners.yaml").read_text()


def test_defaults_merge_and_pool_values_win() -> None:
    runners = load_file(HERE / "valid" / "organization-groups.yaml")
    by_name = {pool.name: pool for pool in runners.pools}
    assert by_name["build-x64"].group_name == "ci"
    assert by_name["gpu-free"].group_name == "other"
    assert by_name["build-x64"].runner_group is not None
    assert by_name["build-x64"].runner_group.repositories == ["api", "web"]


def test_tags_merge_key_by_key(tmp_path: Path) -> None:
    path = tmp_path / "runners.yaml"
    path.write_text(
        "version: 1\ngithub: {repository: a/b}\ndefaults: {tags: {team: ci, env: prod}}\n"
        "pools:\n  - {name: a, provider: aws, tags: {env: dev}}\n"
    )
    assert load_file(path).pools[0].tags == {"team": "ci", "env": "dev"}


def test_github_urls() -> None:
    from schema.models import GitHubTarget

    assert GitHubTarget(repository="a/b").api_url == "https://api.github.com"
    assert GitHubTarget(organization="acme", url="https://acme.ghe.com").api_url == "https://api.acme.ghe.com"
    assert GitHubTarget(enterprise="e", url="https://ghe.example.com/").api_url == "https://ghe.example.com/api/v3"
