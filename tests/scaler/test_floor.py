"""A pool's floor over the day: `min`, moved by its schedules (read the way cron reads them)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scaler.config import Pool, load
from scaler.floor import Cron, CronError, floor

BERLIN = ZoneInfo("Europe/Berlin")


def gcp_pool(schedules: list[dict[str, object]], minimum: int = 1) -> Pool:
    doc = {
        "version": 1, "cloud": "gcp",
        "github": {"scope": "repository", "target": "o/r", "api_url": "https://api.github.com"},
        "webhook_secret": {"location": "projects/p/secrets/w"},
        "github_credential": {"location": "projects/p/secrets/c"},
        "pools": [{"name": "general", "cloud": "gcp", "order": 0, "labels": ["self-hosted"], "max": 6,
                   "min": minimum, "schedules": schedules,
                   "gcp": {"project": "p", "region": "r", "group": "g", "instance_base": "g"}}],
    }
    return load(json.dumps(doc)).pools[0]


# The example in runners.yaml: 2 warm runners from 07:00 on weekdays, none from 21:00.
WORKDAY = gcp_pool([
    {"cron": "0 21 * * *", "desired": 0, "time_zone": "Europe/Berlin"},
    {"cron": "0 7 * * 1-5", "desired": 2, "time_zone": "Europe/Berlin"},
], minimum=0)


@pytest.mark.parametrize(("local", "expected"), [
    ("2025-06-02 06:59", 0),  # Monday before 07:00: Sunday 21:00 still rules
    ("2025-06-02 07:00", 2),
    ("2025-06-02 20:59", 2),
    ("2025-06-02 21:00", 0),
    ("2025-06-07 10:00", 0),  # Saturday: no morning schedule
    ("2025-03-31 07:30", 2),  # the Monday after the spring DST change, local time still 07:00
    ("2025-10-26 02:30", 0),  # the autumn change repeats 02:00-03:00: Saturday 21:00 still rules
])
def test_workday_schedule(local: str, expected: int) -> None:
    now = datetime.strptime(local, "%Y-%m-%d %H:%M").replace(tzinfo=BERLIN)
    assert floor(WORKDAY, now) == expected


def test_daylight_saving_changes() -> None:
    cron, zone = Cron("30 2 * * *"), BERLIN
    # 30 March 2025: 02:00 jumps to 03:00, so 02:30 never happens; the last firing is the day before.
    after_gap = datetime(2025, 3, 30, 12, 0, tzinfo=timezone.utc)
    assert cron.last_fire(after_gap, zone) == datetime(2025, 3, 29, 1, 30, tzinfo=timezone.utc)
    # 26 October 2025: 02:30 happens twice; after both, the later (01:30 UTC, CET) counts.
    after_repeat = datetime(2025, 10, 26, 2, 0, tzinfo=timezone.utc)
    assert cron.last_fire(after_repeat, zone) == datetime(2025, 10, 26, 1, 30, tzinfo=timezone.utc)
    between = datetime(2025, 10, 26, 1, 0, tzinfo=timezone.utc)  # after the first 02:30 (00:30 UTC) only
    assert cron.last_fire(between, zone) == datetime(2025, 10, 26, 0, 30, tzinfo=timezone.utc)


def test_no_schedules_is_min() -> None:
    assert floor(gcp_pool([], minimum=3)) == 3


def test_schedules_are_read_in_their_own_time_zone() -> None:
    pool = gcp_pool([{"cron": "0 9 * * *", "desired": 4, "time_zone": "America/New_York"},
                     {"cron": "0 9 * * *", "desired": 1, "time_zone": "Asia/Tokyo"}])
    # 12:00 UTC: Tokyo's 09:00 (00:00 UTC) and New York's 09:00 (13:00 UTC, still ahead): Tokyo's rules.
    assert floor(pool, datetime(2025, 1, 15, 12, 0, tzinfo=timezone.utc)) == 1
    assert floor(pool, datetime(2025, 1, 15, 14, 0, tzinfo=timezone.utc)) == 4


def test_same_instant_later_listed_wins() -> None:
    pool = gcp_pool([{"cron": "0 8 * * *", "desired": 1}, {"cron": "0 8 * * *", "desired": 5}])
    assert floor(pool, datetime(2025, 1, 1, 9, tzinfo=timezone.utc)) == 5


def test_day_fields_or_when_both_restricted() -> None:
    # crontab(5): "30 4 1,15 * 5" runs on the 1st, the 15th, and every Friday.
    cron = Cron("30 4 1,15 * 5")
    friday, first, other = datetime(2025, 5, 9).date(), datetime(2025, 5, 1).date(), datetime(2025, 5, 6).date()
    assert cron.day_matches(friday) and cron.day_matches(first) and not cron.day_matches(other)


@pytest.mark.parametrize("bad", ["* * * *", "61 * * * *", "0 0 * * 8", "5-1 * * * *", "*/0 * * * *", "0 0 * xyz *"])
def test_bad_cron_is_refused(bad: str) -> None:
    with pytest.raises(CronError):
        Cron(bad)


def brute_last_fire(cron: Cron, now: datetime, zone: ZoneInfo, days: int = 9) -> datetime | None:
    """Walk back minute by minute in UTC: the judge for Cron.last_fire."""
    t = now.astimezone(timezone.utc).replace(second=0, microsecond=0)
    for _ in range(days * 24 * 60):
        local = t.astimezone(zone)
        if (local.minute in cron.minutes and local.hour in cron.hours and cron.day_matches(local.date())):
            return t
        t -= timedelta(minutes=1)
    return None


FIELD = st.sampled_from(["*", "0", "5", "*/15", "0-30/10", "1,31,59"])
HOUR = st.sampled_from(["*", "0", "2", "3", "7", "21", "1-5", "*/6", "22,23"])
DOW = st.sampled_from(["*", "1-5", "0", "sat,sun", "5", "7"])
DOM = st.sampled_from(["*", "*", "1", "15", "1-7"])


@settings(max_examples=80, deadline=None)
@given(minute=FIELD, hour=HOUR, dom=DOM, dow=DOW,
       offset=st.integers(min_value=0, max_value=400 * 24 * 60),
       zone=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]))
def test_last_fire_agrees_with_a_minute_by_minute_walk(minute: str, hour: str, dom: str, dow: str, offset: int,
                                                       zone: str) -> None:
    cron = Cron(f"{minute} {hour} {dom} * {dow}")
    now = datetime(2024, 1, 1, tzinfo=timezone.utc) + timedelta(minutes=offset, seconds=17)
    tz = ZoneInfo(zone)
    expected = brute_last_fire(cron, now, tz)
    got = cron.last_fire(now, tz)
    if expected is not None:  # (the walk looks back 9 days only)
        assert got == expected
