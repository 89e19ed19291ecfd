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


def env(name: str, default: str) -> str:
    return os.environ.get(f"GH_RUNNERS_{name}") or default


def endpoint(name: str, default: str) -> str:
    """A service base URL without trailing slash: GH_RUNNERS_<name>_URL or the real one."""
    return env(f"{name}_URL", default).rstrip("/")


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
        self.ephemeral = bool(doc["ephemeral"])
        self.version: str = runner["version"]
        self.arch: str = runner["arch"]
        self.docker = bool(doc["docker"])
        self.secret: str = where["secret"]  # SSM parameter name | projects/P/secrets/S
        self.region = str(where.get("region", ""))
        self.group = str(where.get("group", ""))  # ASG name | MIG name
        self.lifecycle_hook = str(where.get("lifecycle_hook", ""))
        self.project = str(where.get("project", ""))
        self.drain_seconds = float(env("DRAIN_SECONDS", str(doc.get("drain_seconds", 3000))))
        self.setup_script = env("SETUP_SCRIPT", doc.get("setup_script", ""))
        # Machine facts: the tests point these at temporary directories and network namespaces.
        self.runner_dir = env("RUNNER_DIR", "/opt/actions-runner")
        self.runner_user = env("RUNNER_USER", "runner")
        self.state_dir = env("STATE_DIR", "/run/gh-runners")
        # Runner releases live on github.com even for GHES targets.
        self.releases_url = endpoint("RELEASES", "https://api.github.com")
        self.iptables = shlex.split(env("IPTABLES", "iptables -w"))
        self.poweroff = shlex.split(env("POWEROFF", "systemctl poweroff --no-block"))
        self.retry_seconds = float(env("RETRY_SECONDS", "300"))
        self.retry_base = float(env("RETRY_BASE", "1"))
        self.poll_seconds = float(env("POLL_SECONDS", "5"))  # IMDS termination notices: local and cheap
        # GitHub `busy` checks while draining: a fleet shares one credential's rate limit.
        self.busy_poll_seconds = float(env("BUSY_POLL_SECONDS", "30"))
        # How long a stopping runner gets before SIGKILL: part of the drain
        # budget, so a short platform window (GCE: 120 s, spot 30 s) still
        # leaves time to deregister.
        self.stop_seconds = float(env("STOP_SECONDS", str(min(60.0, max(5.0, self.drain_seconds / 6)))))

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
