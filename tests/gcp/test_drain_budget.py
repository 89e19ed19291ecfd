"""Every GCP drain fits its shutdown window, added up from the agent's own constants.

When GCE deletes a VM of the group (template roll, scale-in, destroy) the
guest gets an ACPI shutdown, systemd sends the agent SIGTERM, and the agent
(bootstrap/agent/main.py, Agent.finish) drains, stops the runner and
deregisters it. All of that must end inside the window GCE gives before the
power-off (providers/gcp/group.py, SHUTDOWN_WINDOW_SECONDS), or the runner is
left registered (the next boot's ghost sweep removes it, but a job dies).
"""

from __future__ import annotations

import inspect

import pytest

from bootstrap.agent import http
from bootstrap.agent.config import Config
from bootstrap.cloud_config import agent_config
from providers.gcp.backend import DRAIN_SECONDS, LEAVE_SECONDS
from providers.gcp.group import GRACEFUL_SHUTDOWN_SECONDS, SHUTDOWN_WINDOW_SECONDS
from schema.models import GcpPool, GitHubTarget

# Calls on the stop path, each through one Retry (bootstrap/agent/main.py):
# Agent.drain: github() = metadata token + Secret Manager access + the App's
# installation token (3), then busy checks, of which the last can start just
# before the drain deadline (1); Agent.leave: github() again (3), find_runner
# when the runner id is not known (1), delete_runner (1).
STOP_PATH_CALLS = 4 + 5
# A call that retries until its budget is spent can still start one attempt
# just before the deadline (http.Retry), which then runs to its timeout.
ATTEMPT_TIMEOUT = inspect.signature(http.fetch).parameters["timeout"].default


def agent(pool: GcpPool, monkeypatch: pytest.MonkeyPatch) -> Config:
    """The agent's settings exactly as a VM of `pool` reads them (no test overrides)."""
    for name in ("DRAIN_SECONDS", "STOP_SECONDS", "RETRY_SECONDS"):
        monkeypatch.delenv(f"GH_RUNNERS_{name}", raising=False)
    location = {"cloud": "gcp", "secret": "s", "region": "r", "group": "g", "project": "p"}
    if pool.spot:
        location["leave_seconds"] = str(LEAVE_SECONDS["spot"])
    drain = DRAIN_SECONDS["spot" if pool.spot else "standard"]
    return Config(agent_config(pool, GitHubTarget(repository="a/b"), location, drain))


def worst_stop_path(cfg: Config) -> float:
    """Drain, runner stop and deregistration, every call retrying to the end of its budget."""
    return cfg.drain_seconds + cfg.stop_seconds + STOP_PATH_CALLS * (cfg.retry_seconds + ATTEMPT_TIMEOUT)


def test_standard_drain_with_every_retry_fits_the_graceful_shutdown(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = agent(GcpPool.model_validate({"name": "p", "provider": "gcp"}), monkeypatch)
    assert cfg.drain_seconds == DRAIN_SECONDS["standard"]
    assert SHUTDOWN_WINDOW_SECONDS["standard"] == GRACEFUL_SHUTDOWN_SECONDS <= 3600  # GCP's maximum
    budget = worst_stop_path(cfg)
    assert budget <= SHUTDOWN_WINDOW_SECONDS["standard"], budget
    # ...and the window is used: a busy job gets most of what the retries leave.
    assert SHUTDOWN_WINDOW_SECONDS["standard"] - budget < 60


def test_spot_drain_and_runner_stop_leave_half_the_preemption_notice(monkeypatch: pytest.MonkeyPatch) -> None:
    """A preemption gives 30 s, whatever the template says. Drain and the runner's stop
    take at most half of it; the rest is for deregistration's calls, single attempts
    (each well under a second when GitHub answers). Their retries cannot fit 30 s: that
    needs the agent to bound its stop path by the window, which it does not do yet."""
    cfg = agent(GcpPool.model_validate({"name": "p", "provider": "gcp", "spot": True}), monkeypatch)
    assert SHUTDOWN_WINDOW_SECONDS["spot"] == 30
    assert cfg.drain_seconds + cfg.stop_seconds <= SHUTDOWN_WINDOW_SECONDS["spot"] / 2


def test_spot_stop_path_with_its_leave_budget_fits_the_preemption_notice(monkeypatch: pytest.MonkeyPatch) -> None:
    """The agent bounds deregistering and leaving by `leave_seconds` (its default, 20 s, would not fit):
    drain + runner stop + leave must end inside the 30 s a preemption gives."""
    cfg = agent(GcpPool.model_validate({"name": "p", "provider": "gcp", "spot": True}), monkeypatch)
    assert cfg.leave_seconds == LEAVE_SECONDS["spot"]
    assert cfg.drain_seconds + cfg.stop_seconds + cfg.leave_seconds < SHUTDOWN_WINDOW_SECONDS["spot"]
