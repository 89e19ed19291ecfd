"""Shared pieces for the receiver tests: a runners.yaml, its sites, a stand-in scaler package."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi

from plan.engine import Recording, run
from providers.base import Site
from schema.loader import load_text
from schema.models import RunnersFile
from tests.providers.harness import SENTINEL_TOKEN

PROJECT, STACK = "gh-runners", "test"
RUNNERS = """\
version: 1
github: {repository: spigell/my-reforge-ai}
pools:
  - name: codex
    provider: aws
    region: eu-central-1
    labels: [codex]
    size: {min: 0, max: 6}
    schedules:
      - {cron: "0 7 * * 1-5", desired: 2, time_zone: Europe/Berlin}
      - {cron: "0 21 * * *", desired: 0, time_zone: Europe/Berlin}
  - name: general
    provider: gcp
    labels: [general]
    size: {min: 1, max: 3}
    idle_timeout: 15m
  - name: arm
    provider: aws
    region: us-west-2
    arch: arm64
    scaling: fixed
    size: {min: 1, max: 2}
    ephemeral: false
  - name: gpu
    provider: gcp
    project: other-project-1
    region: us-central1
    labels: [general, gpu]
    size: {max: 2}
"""


def runners(text: str = RUNNERS) -> RunnersFile:
    return load_text(text)


def sites_of(runners_file: RunnersFile) -> dict[str, Site]:
    """Sites as the backends build them (names only need to be distinct and plain here)."""
    sites = {}
    for pool in runners_file.pools:
        if pool.provider == "aws":
            region = pool.region or "eu-central-1"
            sites[pool.name] = Site(
                cloud="aws",
                region=region,
                group_name=f"ghr-{PROJECT}-{STACK}-{pool.name}",
                secret_name=f"/gh-runners/ghr-{PROJECT}-{STACK}-{pool.name}/github-credential",
            )
        else:
            project = getattr(pool, "project", None) or "ci-project"
            region = getattr(pool, "region", None) or "europe-west4"
            sites[pool.name] = Site(
                cloud="gcp",
                region=region,
                project=project,
                group_name=f"ghr-{PROJECT}-{STACK}-{pool.name}",
                secret_name=f"projects/{project}/secrets/ghr-{STACK}-{pool.name}-credential",
                extra={"instance_base": f"ghr-{STACK}-{pool.name}"},
            )
    return sites


def fake_package(root: Path, *entries: str) -> Path:
    """A stand-in for the receiver's package: the files the archive must carry, plus a cache to skip."""
    package = root / "scaler"
    (package / "__pycache__").mkdir(parents=True, exist_ok=True)
    for name in ("__init__.py", "config.py", "decision.py", *entries):
        (package / name).write_text(f"# {name}\n")
    (package / "__pycache__" / "config.cpython-312.pyc").write_bytes(b"\0compiled")
    return package


def credential_document() -> pulumi.Output[str]:
    return pulumi.Output.secret(json.dumps({"kind": "pat", "token": SENTINEL_TOKEN}))


def record(program: Callable[[], Any], **config: Any) -> Recording:
    """Run `program` under the recording engine with the stack's usual config."""
    settings = {"aws:region": "eu-central-1", "gcp:project": "ci-project", "gcp:region": "europe-west4", **config}
    return run(program, config=settings, project=PROJECT, stack=STACK)


def archive_files(value: Any) -> dict[str, str]:
    """The files of a recorded AssetArchive input: name -> text."""
    assets = value["assets"]
    return {name: asset["text"] for name, asset in assets.items()}
