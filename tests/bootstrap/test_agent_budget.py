"""Every AWS drain fits the window it runs in, computed from the code's own constants.

A drain ends with the runner's stop and the deregistration (a fresh credential and the DELETE with its
retries, under one deadline, which the CompleteLifecycleAction shares). The notice of what ends the VM is
seen up to one poll late. The GCP windows are checked with the GCP provider's constants elsewhere."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from bootstrap.agent import main as agent
from bootstrap.agent.config import Config
from bootstrap.cloud_config import CONFIG_PATH, UNIT_NAME, render_user_data
from providers.aws.group import DRAIN_SECONDS, HOOK_TIMEOUT_SECONDS, LIFECYCLE_HOOK
from schema.models import AwsPool, GitHubTarget

SPOT_NOTICE = 120  # "two minutes before" (EC2 User Guide, Spot Instance interruption notices)


@pytest.fixture(autouse=True)
def no_test_overrides(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The agent's defaults, as on a VM: none of the GH_RUNNERS_* knobs the process tests use."""
    import os

    for name in [n for n in os.environ if n.startswith("GH_RUNNERS_")]:
        monkeypatch.delenv(name)
    yield


def rendered(spot: bool) -> tuple[Config, dict[str, str]]:
    """The agent's configuration and systemd unit for an AWS pool, as AwsBackend.site describes it."""
    pool = AwsPool.model_validate({"name": "web", "provider": "aws", "spot": spot})
    location = {"cloud": "aws", "secret": "/gh-runners/web/github-credential", "region": "eu-central-1",
                "group": "ghr-p-dev-web", "lifecycle_hook": LIFECYCLE_HOOK, "drain_seconds": str(DRAIN_SECONDS)}
    doc: dict[str, Any] = yaml.safe_load(render_user_data(pool, GitHubTarget(organization="acme"), location))
    files = {f["path"]: f["content"] for f in doc["write_files"]}
    unit = dict(line.split("=", 1) for line in files[f"/etc/systemd/system/{UNIT_NAME}"].splitlines()
                if "=" in line and not line.startswith("#"))
    return Config(json.loads(files[CONFIG_PATH])), unit


@pytest.mark.parametrize("spot", [False, True])
def test_a_termination_hook_drain_fits_the_hook_and_the_unit_stop_timeout(spot: bool) -> None:
    cfg, unit = rendered(spot)
    budget = cfg.poll_seconds + cfg.drain_seconds + cfg.stop_seconds + cfg.leave_seconds
    assert cfg.drain_seconds == DRAIN_SECONDS
    assert budget <= HOOK_TIMEOUT_SECONDS, budget
    # systemd's SIGTERM path (the same drain) must not be cut off by the unit's stop timeout.
    assert cfg.drain_seconds + cfg.stop_seconds + cfg.leave_seconds <= int(unit["TimeoutStopSec"])


@pytest.mark.parametrize("spot", [False, True])
def test_a_spot_notice_leaves_time_to_deregister_within_two_minutes(spot: bool) -> None:
    """Also when the notice comes during a hook's drain: the drain is cut to what is left."""
    cfg, _ = rendered(spot)
    assert cfg.spot_notice == SPOT_NOTICE
    drain = agent.spot_drain_seconds(cfg)
    budget = cfg.poll_seconds + drain + agent.SPOT_STOP_SECONDS + cfg.leave_seconds
    assert budget + agent.SPOT_MARGIN_SECONDS <= SPOT_NOTICE, budget
    assert drain >= 60  # a job still gets a real chance to finish
    assert cfg.retry_seconds > cfg.leave_seconds  # so the leave deadline, not a call's own budget, is what binds
