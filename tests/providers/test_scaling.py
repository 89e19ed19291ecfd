"""The receiver's configuration document, rendered from runners.yaml and the sites, checked
against the receiver's own contract (scaler/config.py) -- the judge is its loader, not ours."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from providers.naming import deployment_scoped
from providers.scaling import (
    CONFIG_FILE,
    RECONCILE_SECONDS,
    SCALE_UP_POLICY,
    SecretRef,
    code_files,
    content_digest,
    receiver_clouds,
    receiver_document,
    receiver_name,
    receiver_place,
    render,
)
from scaler.config import load
from tests.providers.receivers import STACK, fake_package, runners, sites_of

AWS_REFS = (SecretRef("/gh-runners/x/webhook-secret", "eu-central-1"), SecretRef("/gh-runners/x/cred", "eu-central-1"))
GCP_REFS = (
    SecretRef("projects/ci-project/secrets/w/versions/latest"),
    SecretRef("projects/ci-project/secrets/c/versions/latest"),
)


def document(cloud: str) -> dict:
    file = runners()
    webhook, credential = AWS_REFS if cloud == "aws" else GCP_REFS
    return receiver_document(
        file, sites_of(file), cloud, webhook_secret=webhook, github_credential=credential, stack=STACK
    )


@pytest.mark.parametrize("cloud", ["aws", "gcp"])
def test_the_receivers_own_loader_accepts_the_document(cloud: str) -> None:
    config = load(render(document(cloud)))
    assert config.cloud == cloud
    # Every pool of both clouds, in file order: the same rule in every receiver.
    assert [pool.name for pool in config.pools] == ["codex", "general", "arm", "gpu"]
    assert [pool.order for pool in config.pools] == [0, 1, 2, 3]
    assert {pool.name for pool in config.own_pools} == ({"codex", "arm"} if cloud == "aws" else {"general", "gpu"})
    assert config.github.scope == "repository" and config.github.target == "spigell/my-reforge-ai"
    assert config.github.api_url == "https://api.github.com"
    assert config.reconcile.interval_seconds == RECONCILE_SECONDS


def test_pools_carry_the_rule_inputs_and_the_floor() -> None:
    config = load(render(document("aws")))
    codex, general, arm, gpu = config.pools
    assert codex.labels == ("self-hosted", "linux", "x64", "codex")
    assert gpu.labels == ("self-hosted", "linux", "x64", "general", "gpu")
    assert (codex.min, codex.max, codex.scales_on_demand, codex.idle_timeout_seconds) == (0, 6, True, 600)
    assert [(s.cron, s.desired, s.time_zone) for s in codex.schedules] == [
        ("0 7 * * 1-5", 2, "Europe/Berlin"),
        ("0 21 * * *", 0, "Europe/Berlin"),
    ]
    assert general.idle_timeout_seconds == 900
    assert (arm.scales_on_demand, arm.ephemeral, arm.min) == (False, False, 1)


def test_only_own_pools_say_where_to_act() -> None:
    aws = load(render(document("aws")))
    codex, general, arm, _ = aws.pools
    assert codex.aws is not None and codex.aws.group == "ghr-gh-runners-test-codex"
    assert (codex.aws.region, codex.aws.scale_up_policy) == ("eu-central-1", SCALE_UP_POLICY)
    assert arm.aws is not None and arm.aws.region == "us-west-2"
    assert general.aws is None and general.gcp is None  # a GCP pool in the AWS receiver: rule input only
    gcp = load(render(document("gcp")))
    gpu = gcp.pool("gpu")
    assert gpu.gcp is not None
    assert (gpu.gcp.project, gpu.gcp.region, gpu.gcp.instance_base) == (
        "other-project-1",
        "us-central1",
        "ghr-test-gpu",
    )
    assert gcp.pool("codex").aws is None


def test_secret_locations_not_values() -> None:
    text = render(document("aws"))
    config = load(text)
    assert config.webhook_secret.location == AWS_REFS[0].location
    assert config.github_credential.region == "eu-central-1"
    assert "ghp_" not in text and "token" not in text


def test_rendering_is_stable_and_sorted() -> None:
    first, second = render(document("gcp")), render(document("gcp"))
    assert first == second
    assert first == json.dumps(json.loads(first), indent=1, sort_keys=True) + "\n"


def test_a_gcp_site_without_its_instance_base_is_an_error() -> None:
    file = runners()
    sites = sites_of(file)
    sites["general"] = sites["general"].__class__(**{**sites["general"].__dict__, "extra": {}})
    with pytest.raises(ValueError, match="pool general needs a project and extra\\['instance_base'\\]"):
        receiver_document(file, sites, "gcp", webhook_secret=GCP_REFS[0], github_credential=GCP_REFS[1], stack=STACK)


def test_the_receiver_lives_where_its_clouds_first_pool_is() -> None:
    file = runners()
    sites = sites_of(file)
    assert receiver_clouds(file) == ["aws", "gcp"]
    aws, gcp = (receiver_place(file, sites, cloud) for cloud in ("aws", "gcp"))
    assert (aws.region, aws.project) == ("eu-central-1", None)
    assert (gcp.region, gcp.project) == ("europe-west4", "ci-project")


def test_code_carries_the_package_and_its_configuration(tmp_path: Path) -> None:
    package = fake_package(tmp_path, "aws.py")
    files = code_files('{"x": 1}\n', required=["scaler/aws.py"], package=package, extra={"main.py": "pass\n"})
    assert sorted(files) == [
        "main.py",
        CONFIG_FILE,
        "scaler/__init__.py",
        "scaler/aws.py",
        "scaler/config.py",
        "scaler/decision.py",
    ]
    assert files[CONFIG_FILE] == '{"x": 1}\n'
    with pytest.raises(ValueError, match=r"lacks scaler/gcp\.py"):
        code_files("{}", required=["scaler/gcp.py"], package=package)


def test_content_digest_names_content() -> None:
    base = {"a.py": "1", "b.py": "2"}
    assert content_digest(base) == content_digest(dict(reversed(list(base.items()))))
    assert content_digest(base) != content_digest({**base, "b.py": "3"})
    # Names and contents cannot be traded for each other.
    assert content_digest({"ab": "c"}) != content_digest({"a": "bc"})


names = st.from_regex(r"[a-z][-a-z0-9]{0,31}", fullmatch=True).filter(lambda s: not s.endswith("-"))


@settings(max_examples=60, deadline=None)
@given(project=st.from_regex(r"[A-Za-z][-_.A-Za-z0-9]{0,60}", fullmatch=True), stack=names, pool=names)
def test_no_pool_derives_a_receiver_name(project: str, stack: str, pool: str) -> None:
    """Pools' cloud names start with `ghr`, receivers' with `ghs`: they never meet, whatever the pool's name."""
    for what, limit in (("receiver", 30), ("build", 30), ("cron", 30), ("receiver", 200)):
        receiver = receiver_name(project, stack, what, limit)
        assert receiver != deployment_scoped(project, stack, pool, limit)
        assert re.fullmatch(r"ghs-[a-z0-9-]*[a-z0-9]", receiver) and len(receiver) <= limit
