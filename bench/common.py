"""Shared helpers: paths, subprocess runs that report JSON, statistics."""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
RESULT_MARK = "BENCH-RESULT "  # a child prints its JSON result on one line after this mark

# What `python -m plan` passes: placeholders and a secret token (plan/__main__.py).
PLAN_CONFIG: dict[str, str] = {
    "aws:region": "us-east-1",
    "gcp:project": "bench-project",
    "gcp:region": "us-central1",
    "gh-runners:githubToken": "bench-placeholder-token",
}
SECRET_KEYS = ["gh-runners:githubToken"]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    env.pop("PYTHONWARNINGS", None)
    return env


@dataclass
class ChildRun:
    wall: float  # seconds, measured by the parent around the whole subprocess
    result: dict[str, Any]
    stderr: str


def run_child(args: Sequence[str], *, timeout: float = 900, extra_python: Sequence[str] = ()) -> ChildRun:
    """`python [extra_python] -m bench.child ARGS` in a fresh process; its JSON result and wall time."""
    command = [PYTHON, *extra_python, "-m", "bench.child", *args]
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return ChildRun(wall, json.loads(line[len(RESULT_MARK):]), proc.stderr)
    raise RuntimeError(f"{' '.join(command)} printed no result:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")


def timed_command(command: Sequence[str], *, timeout: float = 600) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=timeout)
    return time.perf_counter() - start, proc


@dataclass(frozen=True)
class Stat:
    """Median and range of repeated measurements."""

    values: tuple[float, ...]

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        return cls(tuple(values))

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)

    def show(self, unit: str = "s", digits: int = 2) -> str:
        if len(self.values) == 1:
            return f"{self.median:.{digits}f} {unit} (n=1)"
        return f"{self.median:.{digits}f} {unit} ({self.low:.{digits}f}–{self.high:.{digits}f}, n={len(self.values)})"


def linear_fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float, float]:
    """Least squares y = a + b·x; returns (a, b, r²)."""
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    if sxx == 0:
        return mean_y, 0.0, 1.0
    b = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sxx
    a = mean_y - b * mean_x
    ss_res = sum((y - (a + b * x)) ** 2 for x, y in zip(xs, ys, strict=True))
    ss_tot = sum((y - mean_y) ** 2 for y in ys)
    return a, b, 1.0 - ss_res / ss_tot if ss_tot else 1.0


def growth_exponent(x1: float, y1: float, x2: float, y2: float) -> float:
    """k in y ∝ x^k between two points (1 = linear, 2 = quadratic)."""
    return math.log(y2 / y1) / math.log(x2 / x1)


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"
