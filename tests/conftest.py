"""Shared test setup: the project root on sys.path (it is a Pulumi program, not a package),
and the skip policy (tests/skip_policy.py: Linux-and-root tests skip elsewhere, saying why;
under CI=true a skip is a failure)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests import skip_policy  # noqa: E402 - needs ROOT on sys.path


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin("tests.skip_policy"):
        config.pluginmanager.register(skip_policy, "tests.skip_policy")
