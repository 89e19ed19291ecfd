"""What the agent knows: /etc/gh-runners/config.json, plus overrides from the environment.

config.json is written by cloud-init and holds only non-secret facts. The
GH_RUNNERS_* environment variables exist so the tests can point the agent at
loopback doubles and temporary directories; on a VM none of them is set and
the defaults below are the real endpoints and paths.
"""

from __future__ import annotations

import json
import os
import shlex
from typing import Any

CONFIG_PATH = "/etc/gh-runners/config.json"
# The apt and dpkg locks, in the order apt takes them (lists: `apt-get update`).
APT_LOCKS = "/var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock"


def env(name: str, default: str) -> str:
    return os.environ.get(f"GH_RUNNERS_{name}") or default


def endpoint(name: str, default: str) -> str:
    """A service base URL without trailing slash: GH_RUNNERS_<name>_URL or the real one."""
    return env(f"{name}_URL", default).rstrip("/")


def number(name: str, default: Any) -> float:
    return float(env(name, str(default)))


class Config:
    """The agent's settings; each attribute is read from config.json or a GH_RUNNERS_* override."""

    def __init__(self, doc: dict[str, Any]) -> None:
        github, runner, where = doc["github"], doc["runner"], doc["location"]
        self.pool: str = doc["pool"]
        self.cloud: str = doc["cloud"]  # aws | gcp
        self.labels: list[str] = doc["labels"]
        self.scope: str = github["scope"]  # repository | organization | enterprise
        self.target: str = github["target"]
        self.api_url: str = github["api_url"].rstrip("/")
        self.web_url: str = github["web_url"].rstrip("/")
        self.runner_group: str = doc["runner_group"]
        # Known in advance (repositories: the default group 1; stack-managed groups): no lookup at boot.
        self.runner_group_id: int | None = doc.get("runner_group_id")
        # `<pool>-<hash of the deployment's group>`: runner names unique per project and stack.
        self.prefix: str = doc.get("runner_prefix") or self.pool
        self.ephemeral = bool(doc["ephemeral"])
        self.version: str = runner["version"]  # "latest" or X.Y.Z
        self.arch: str = runner["arch"]
        self.sha256: str = runner.get("sha256", "")  # known before boot for a pinned version
        self.url: str = runner.get("url", "")
        self.docker = bool(doc["docker"])
        self.secret: str = where["secret"]  # SSM parameter name | projects/P/secrets/S
        self.region = str(where.get("region", ""))
        self.group = str(where.get("group", ""))  # ASG name | MIG name
        self.lifecycle_hook = str(where.get("lifecycle_hook", ""))
        self.project = str(where.get("project", ""))
        self.floor: dict[str, Any] = doc.get("floor") or {}  # GCP: {"min": n, "schedules": [...]}
        # Demand pools: a VM idle this long leaves if its pool is above the floor. Fixed pools have none:
        # never (not even with the test override).
        self.idle_timeout = number("IDLE_TIMEOUT", doc["idle_timeout"]) if "idle_timeout" in doc else 0.0
        self.drain_seconds = number("DRAIN_SECONDS", doc.get("drain_seconds", 3000))
        # Deregistering (fresh credential + DELETE, with retries) must fit in what is left of a window.
        self.leave_seconds = number("LEAVE_SECONDS", doc.get("leave_seconds", 20))
        self.setup_script = env("SETUP_SCRIPT", doc.get("setup_script", ""))
        # Machine facts: the tests point these at temporary directories and network namespaces.
        self.runner_dir = env("RUNNER_DIR", "/opt/actions-runner")
        self.runner_user = env("RUNNER_USER", "runner")
        self.state_dir = env("STATE_DIR", "/run/gh-runners")  # per boot
        self.lib_dir = env("LIB_DIR", "/var/lib/gh-runners")  # across boots: the installed version, failures
        # Runner releases live on github.com even for GHES targets.
        self.releases_url = endpoint("RELEASES", "https://api.github.com")
        self.iptables = shlex.split(env("IPTABLES", "iptables -w"))
        self.ip6tables = shlex.split(env("IP6TABLES", "ip6tables -w"))
        self.poweroff = shlex.split(env("POWEROFF", "systemctl poweroff --no-block"))
        self.apt_locks = env("APT_LOCKS", APT_LOCKS).split()
        self.apt_wait = number("APT_WAIT", 900)
        self.retry_seconds = number("RETRY_SECONDS", 300)
        self.retry_base = number("RETRY_BASE", 1)
        self.rate_limit_wait = number("RATE_LIMIT_WAIT", 60)
        self.poll_seconds = number("POLL_SECONDS", 5)  # IMDS termination notices: local and cheap
        self.spot_notice = number("SPOT_NOTICE_SECONDS", 120)  # EC2: two minutes from notice to interruption
        # GitHub `busy` checks while draining: a fleet shares one credential's rate limit.
        self.busy_poll_seconds = number("BUSY_POLL_SECONDS", 30)
        # How long a stopping runner gets before SIGKILL: part of the drain
        # budget, so a short platform window (GCE: 120 s, spot 30 s) still
        # leaves time to deregister.
        self.stop_seconds = number("STOP_SECONDS", min(60.0, max(5.0, self.drain_seconds / 6)))
        # Boot failures in a row before the VM leaves its group to be replaced.
        self.failure_limit = int(number("FAILURE_LIMIT", 5))
        # The ghost sweep runs on this share of boots (GitHub drops offline ephemeral runners after a day).
        self.sweep_chance = number("SWEEP_CHANCE", 0.1 if self.ephemeral else 1)
        self.sweep_delay = number("SWEEP_DELAY", 60)  # spread over this many seconds after run.sh started

    @property
    def runner_url(self) -> str:
        """The URL config.sh registers against."""
        if self.scope == "enterprise":
            return f"{self.web_url}/enterprises/{self.target}"
        return f"{self.web_url}/{self.target}"

    @property
    def scope_path(self) -> str:
        """The REST path prefix of the runner endpoints."""
        prefix = {"repository": "repos", "organization": "orgs", "enterprise": "enterprises"}[self.scope]
        return f"/{prefix}/{self.target}"


def load(path: str | None = None) -> Config:
    with open(path or env("CONFIG", CONFIG_PATH), encoding="utf-8") as f:
        return Config(json.load(f))
