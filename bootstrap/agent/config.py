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
from dataclasses import dataclass
from typing import Any

CONFIG_PATH = "/etc/gh-runners/config.json"


def env(name: str, default: str) -> str:
    return os.environ.get(f"GH_RUNNERS_{name}") or default


def endpoint(name: str, default: str) -> str:
    """A service base URL without trailing slash: GH_RUNNERS_<name>_URL or the real one."""
    return env(f"{name}_URL", default).rstrip("/")


@dataclass(frozen=True)
class Config:
    pool: str
    cloud: str  # "aws" | "gcp"
    labels: tuple[str, ...]
    scope: str  # "repository" | "organization" | "enterprise"
    target: str
    api_url: str
    web_url: str
    runner_group: str
    ephemeral: bool
    version: str
    arch: str
    docker: bool
    secret: str  # SSM parameter name | projects/P/secrets/S
    region: str
    group: str  # ASG name | MIG name
    lifecycle_hook: str
    project: str
    drain_seconds: float
    # Machine facts, overridable for tests.
    runner_dir: str
    runner_user: str
    setup_script: str
    state_dir: str
    releases_url: str
    iptables: tuple[str, ...]
    poweroff: tuple[str, ...]
    retry_seconds: float
    retry_base: float
    poll_seconds: float
    stop_seconds: float

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
        doc: dict[str, Any] = json.load(f)
    github, runner, location = doc["github"], doc["runner"], doc["location"]
    return Config(
        pool=doc["pool"],
        cloud=doc["cloud"],
        labels=tuple(doc["labels"]),
        scope=github["scope"],
        target=github["target"],
        api_url=github["api_url"].rstrip("/"),
        web_url=github["web_url"].rstrip("/"),
        runner_group=doc["runner_group"],
        ephemeral=bool(doc["ephemeral"]),
        version=runner["version"],
        arch=runner["arch"],
        docker=bool(doc["docker"]),
        secret=location["secret"],
        region=str(location.get("region", "")),
        group=str(location.get("group", "")),
        lifecycle_hook=str(location.get("lifecycle_hook", "")),
        project=str(location.get("project", "")),
        drain_seconds=float(env("DRAIN_SECONDS", str(doc.get("drain_seconds", 3000)))),
        runner_dir=env("RUNNER_DIR", "/opt/actions-runner"),
        runner_user=env("RUNNER_USER", "runner"),
        setup_script=env("SETUP_SCRIPT", doc.get("setup_script", "")),
        state_dir=env("STATE_DIR", "/run/gh-runners"),
        # Runner releases live on github.com even for GHES targets.
        releases_url=endpoint("RELEASES", "https://api.github.com"),
        iptables=tuple(shlex.split(env("IPTABLES", "iptables -w"))),
        poweroff=tuple(shlex.split(env("POWEROFF", "systemctl poweroff --no-block"))),
        retry_seconds=float(env("RETRY_SECONDS", "300")),
        retry_base=float(env("RETRY_BASE", "1")),
        poll_seconds=float(env("POLL_SECONDS", "5")),
        stop_seconds=float(env("STOP_SECONDS", "60")),
    )
