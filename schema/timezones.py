"""IANA time zone validation (zoneinfo; the tzdata package backs it where the OS has none)."""

from __future__ import annotations

import zoneinfo
from functools import cache


@cache
def _known() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def validate_time_zone(name: str) -> str:
    if name not in _known():
        raise ValueError(f"unknown time zone {name!r} (use an IANA name such as Europe/Berlin or UTC)")
    return name
