"""The machine and software the numbers were measured on."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from bench.report import table

PACKAGES = ("pulumi", "pulumi_aws", "pulumi_gcp", "pulumi_github", "pydantic", "PyYAML", "grpcio", "protobuf",
            "check-jsonschema", "jsonschema", "moto")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git_state() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parent, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=Path(__file__).resolve().parent, check=True).stdout.strip()
        return head + (" + uncommitted changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def describe() -> list[str]:
    cores = os.cpu_count()
    usable: int | None
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = cores
    rows = [
        ["CPU", f"{_cpu_model()} ({cores} logical cores, {usable} usable)"],
        ["RAM", _memory()],
        ["OS", f"{platform.system()} {platform.release()}"],
        ["Python", f"{sys.version.split()[0]} ({sys.executable})"],
        ["PYTHONDONTWRITEBYTECODE", os.environ.get("PYTHONDONTWRITEBYTECODE", "unset")
         + " (repository modules are compiled on every start when set; site-packages ship .pyc)"],
        ["commit", _git_state()],
        *[[package, _version(package)] for package in PACKAGES],
    ]
    return table(["", ""], rows)
