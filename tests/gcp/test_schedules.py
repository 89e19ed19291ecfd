"""Pool schedules (cron -> desired) as GCP autoscaler scaling schedules: pure functions, no engine."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from providers.base import PoolProblem
from providers.gcp.group import Window, autoscaler_floor, gcp_cron, scaling_schedules
from schema.models import GcpPool

HOUR = 3600
DAY = 24 * HOUR


def pool_of(*schedules: dict[str, Any], size: dict[str, int] | None = None) -> GcpPool:
    return GcpPool.model_validate(
        {"name": "codex", "provider": "gcp", "size": size or {"max": 10}, "schedules": list(schedules)}
    )


def windows(*schedules: dict[str, Any], size: dict[str, int] | None = None) -> list[Window]:
    return scaling_schedules(pool_of(*schedules, size=size))


def problem(*schedules: dict[str, Any], size: dict[str, int] | None = None) -> PoolProblem:
    with pytest.raises(PoolProblem) as caught:
        windows(*schedules, size=size)
    return caught.value


def test_no_schedules_no_windows() -> None:
    assert windows() == []


def test_working_hours_become_one_window() -> None:
    (window,) = windows({"cron": "0 8 * * 1-5", "desired": 5}, {"cron": "0 20 * * 1-5", "desired": 0})
    assert window == Window(
        name="schedule-0",
        cron="0 8 * * 1-5",
        time_zone="UTC",
        duration_sec=12 * HOUR,
        replicas=5,
        description="gh-runners: 5 VMs from `0 8 * * 1-5` (UTC)",
    )


def test_window_lasts_until_the_size_changes_not_until_any_schedule() -> None:
    # 08:00 -> 4, 12:00 -> 4 again (no change), 18:00 -> 1, 22:00 -> 0.
    found = windows(
        {"cron": "0 8 * * *", "desired": 4},
        {"cron": "0 12 * * *", "desired": 4},
        {"cron": "0 18 * * *", "desired": 1},
        {"cron": "0 22 * * *", "desired": 0},
    )
    assert [(w.name, w.duration_sec, w.replicas) for w in found] == [
        ("schedule-0", 10 * HOUR, 4),
        ("schedule-1", 6 * HOUR, 4),
        ("schedule-2", 4 * HOUR, 1),
    ]


def test_floor_is_the_smallest_size_asked_for() -> None:
    pool = pool_of({"cron": "0 8 * * *", "desired": 3}, {"cron": "0 20 * * *", "desired": 1}, size={"min": 2, "max": 5})
    assert autoscaler_floor(pool) == 1
    # Only schedules above the floor make windows: 3, until the evening's 1.
    assert [(w.replicas, w.duration_sec) for w in scaling_schedules(pool)] == [(3, 12 * HOUR)]


def test_schedule_at_the_floor_needs_no_window() -> None:
    found = windows(
        {"cron": "0 8 * * *", "desired": 2}, {"cron": "0 20 * * *", "desired": 2}, size={"min": 2, "max": 4}
    )
    assert found == []


def test_single_daily_schedule_chains_onto_itself() -> None:
    (window,) = windows({"cron": "30 6 * * *", "desired": 2})
    assert window.duration_sec == DAY


def test_durations_that_vary_by_day_are_refused() -> None:
    caught = problem({"cron": "0 8 * * 1-5", "desired": 2})
    assert caught.field == ("schedules", 0)
    assert "1 day or 3 days" in caught.message


def test_weekday_mornings_need_evenings_on_at_least_the_same_days() -> None:
    # Mon-Fri 08:00 up, but the evening schedule also fires on weekends: still 12 h.
    found = windows({"cron": "0 8 * * 1-5", "desired": 3}, {"cron": "0 20 * * *", "desired": 0})
    assert [w.duration_sec for w in found] == [12 * HOUR]
    # The other way round, daily mornings but weekday-only evenings: from Saturday
    # 08:00 the size only changes on Monday evening.
    caught = problem({"cron": "0 8 * * *", "desired": 3}, {"cron": "0 20 * * 1-5", "desired": 0})
    assert caught.field == ("schedules", 0)
    assert "12 h or 36 h" in caught.message


def test_night_window_across_dst_lasts_the_longest_real_night() -> None:
    # Europe/Berlin changes clocks at night: 20:00 to 06:00 is 10 h of wall
    # clock, but 9 h of real time on the last Sunday of March and 11 h on the
    # last Sunday of October. GCP's duration_sec counts real seconds from the
    # cron's wall-clock start, so 10 h would end the window at 05:00 on the
    # October night -- an hour without the runners the schedule asked for.
    (window,) = windows(
        {"cron": "0 20 * * *", "desired": 2, "time_zone": "Europe/Berlin"},
        {"cron": "0 6 * * *", "desired": 0, "time_zone": "Europe/Berlin"},
    )
    assert window.duration_sec == 11 * HOUR
    assert window.time_zone == "Europe/Berlin"
    assert ends_no_earlier_than_the_next_change(window, "0 6 * * *")


def test_windows_that_never_cross_a_clock_change_keep_their_length() -> None:
    # Clocks change at 02:00-03:00: a working-day window never spans it.
    (window,) = windows(
        {"cron": "0 8 * * 1-5", "desired": 3, "time_zone": "Europe/Berlin"},
        {"cron": "0 18 * * 1-5", "desired": 0, "time_zone": "Europe/Berlin"},
    )
    assert window.duration_sec == 10 * HOUR
    # Southern hemisphere, DST in the other half of the year: the same rule.
    (night,) = windows(
        {"cron": "0 22 * * *", "desired": 1, "time_zone": "Australia/Sydney"},
        {"cron": "0 6 * * *", "desired": 0, "time_zone": "Australia/Sydney"},
    )
    assert night.duration_sec == 9 * HOUR  # 8 h, and 9 h on the April night clocks go back


def test_monthly_window_across_dst_is_measured_in_real_time() -> None:
    # New York, 1st to 3rd of the month: 48 h, except 1-3 November (49 h) and,
    # when March's change falls inside it, 47 h.
    (window,) = windows(
        {"cron": "0 0 1 * *", "desired": 3, "time_zone": "America/New_York"},
        {"cron": "0 0 3 * *", "desired": 0, "time_zone": "America/New_York"},
    )
    assert window.duration_sec == 49 * HOUR


def ends_no_earlier_than_the_next_change(window: Window, next_cron: str) -> bool:
    """Replays GCP's rule over every day of 2025: start at the cron's wall-clock
    time, last duration_sec real seconds; the end must not precede the next
    change (`next_cron`'s following firing, in the same zone)."""
    zone = ZoneInfo(window.time_zone)
    start_hour = int(window.cron.split()[1])
    end_hour = int(next_cron.split()[1])
    day = date(2025, 1, 1)
    while day.year == 2025:
        start = datetime(day.year, day.month, day.day, start_hour, tzinfo=zone)
        end_day = day + timedelta(days=1) if end_hour <= start_hour else day
        change = datetime(end_day.year, end_day.month, end_day.day, end_hour, tzinfo=zone)
        gcp_end = start.astimezone(timezone.utc) + timedelta(seconds=window.duration_sec)
        if gcp_end < change.astimezone(timezone.utc):
            return False
        day += timedelta(days=1)
    return True


def test_monthly_schedules_are_walked_over_a_year() -> None:
    # First of every month, up for two days.
    (window,) = windows({"cron": "0 0 1 * *", "desired": 3}, {"cron": "0 0 3 * *", "desired": 0})
    assert window.duration_sec == 2 * DAY


def test_zones_whose_offsets_drift_apart_are_refused() -> None:
    # New York and Berlin switch DST on different weekends: the window is 11 h or 10 h or 12 h.
    caught = problem(
        {"cron": "0 9 * * *", "desired": 2, "time_zone": "America/New_York"},
        {"cron": "0 20 * * *", "desired": 0, "time_zone": "Europe/Berlin"},
    )
    assert caught.field == ("schedules", 0)


def test_same_instant_with_different_sizes_is_refused() -> None:
    caught = problem({"cron": "0 8 * * *", "desired": 2}, {"cron": "0 8 * * 1", "desired": 4})
    assert caught.field == ("schedules", 1)
    assert "same time as schedules[0]" in caught.message


def test_windows_shorter_than_five_minutes_are_refused() -> None:
    caught = problem({"cron": "0 8 * * *", "desired": 2}, {"cron": "2 8 * * *", "desired": 0})
    assert "at least 5 min" in caught.message


def test_schedule_that_never_fires_is_refused() -> None:
    caught = problem({"cron": "0 0 31 2 *", "desired": 2}, {"cron": "0 8 * * *", "desired": 0})
    assert caught.field == ("schedules", 0, "cron")


def test_names_become_numbers_for_gcp() -> None:
    assert gcp_cron("0 8 * JAN-mar MON-FRI") == "0 8 * 1-3 1-5"
    assert gcp_cron("*/15 8-18 1,15 * sun") == "*/15 8-18 1,15 * 0"


def test_sunday_as_seven_and_either_day_field() -> None:
    # Sunday written as 7; and "1st of the month OR Monday" (both day fields restricted).
    (window,) = windows({"cron": "0 10 * * 7", "desired": 1}, {"cron": "0 12 * * 0", "desired": 0})
    assert window.duration_sec == 2 * HOUR
    found = windows({"cron": "0 9 1 * 1", "desired": 2}, {"cron": "0 17 * * *", "desired": 0})
    assert [w.duration_sec for w in found] == [8 * HOUR]
