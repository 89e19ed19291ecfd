"""When a test may be skipped (a pytest plugin; tests/conftest.py registers it).

- A test that needs Linux and root carries the ``linux_root`` marker; elsewhere it is
  skipped with one line saying why. Tests that run the VM agent as a process (the
  ``vm_factory`` fixture: the agent chowns the runner to the runner user and starts it
  as that user) and tests marked ``netns`` (a network namespace and iptables) get the
  marker automatically.
- Under CI=true nothing may be skipped: CI proves everything, so a skip there, for any
  reason, is reported as a failure.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Generator
from typing import Any

import pytest

AGENT_NEEDS_ROOT = "the VM agent chowns the runner to the runner user and starts it as that user"
NETNS_NEEDS_ROOT = "a network namespace and iptables for the metadata block"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def linux_root() -> bool:
    return sys.platform == "linux" and os.geteuid() == 0


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "linux_root(why): needs Linux and root; skipped elsewhere, saying why")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = f"{sys.platform}, uid {os.geteuid()}" if hasattr(os, "geteuid") else sys.platform
    for item in items:
        if "vm_factory" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.linux_root(AGENT_NEEDS_ROOT))
        if item.get_closest_marker("netns"):
            item.add_marker(pytest.mark.linux_root(NETNS_NEEDS_ROOT))
        marker = item.get_closest_marker("linux_root")
        if marker is not None and not linux_root():
            why = marker.args[0] if marker.args else "see the test"
            item.add_marker(pytest.mark.skip(reason=f"needs Linux and root ({why}); here: {here}"))


def _as_ci_failure(report: pytest.TestReport | pytest.CollectReport) -> None:
    longrepr: Any = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    reason = reason.removeprefix("Skipped: ")
    report.outcome = "failed"
    report.longrepr = f"skipped under CI=true, where nothing may be skipped: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if report.skipped and in_ci() and not hasattr(report, "wasxfail"):
        _as_ci_failure(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, None]:
    # A whole module skipped at import (pytest.importorskip, allow_module_level=True).
    outcome = yield
    report = outcome.get_result()
    if report.skipped and in_ci():
        _as_ci_failure(report)
