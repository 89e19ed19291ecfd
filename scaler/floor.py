"""A pool's floor at a given time: `min`, moved over the day by its schedules.

The floor is the `desired` of the schedule that fired most recently at or
before `now` (each cron read in its own time zone, like AWS scheduled actions
and GCP scaling schedules read theirs); a pool without schedules has `min`.
A wall-clock time that a daylight-saving change skips does not fire that day;
one that the change repeats fires at its second occurrence.
Cron is the five-field Unix form schema/cron.py accepts: numbers, names
(jan..dec, sun..sat), `*`, ranges, lists and steps; day 7 is Sunday too; when
both day fields are restricted a day matches either, as in Vixie cron
(crontab(5): "If both fields are restricted ..., the command will be run when
either field matches the current time").

The receiver uses this on GCP only, where nothing else holds a floor: AWS keeps
the floor itself as the group's MinSize, moved by scheduled actions.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

from scaler.config import Pool, Schedule

_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
_FIELDS: tuple[tuple[int, int, dict[str, int]], ...] = (
    (0, 59, {}),
    (0, 23, {}),
    (1, 31, {}),
    (1, 12, {name: i + 1 for i, name in enumerate(_MONTHS)}),
    (0, 7, {name: i for i, name in enumerate(_DAYS)}),
)
# A cron that fires at all fires within 8 years (29 February on a given weekday
# recurs within 28); looking back further would only burn time.
LOOKBACK_DAYS = 8 * 366


class CronError(ValueError):
    pass


class Cron:
    """A parsed five-field cron expression."""

    def __init__(self, expression: str) -> None:
        fields = expression.split()
        if len(fields) != 5:
            raise CronError(f"cron {expression!r} needs 5 fields")
        sets = [_field(text, low, high, names) for text, (low, high, names) in zip(fields, _FIELDS, strict=True)]
        self.minutes, self.hours, self.days, self.months, weekdays = sets
        self.weekdays = {0 if d == 7 else d for d in weekdays}
        self.days_restricted = fields[2] != "*"
        self.weekdays_restricted = fields[4] != "*"
        # (hour, minute) of one day, latest first.
        self.times = sorted(((h, m) for h in self.hours for m in self.minutes), reverse=True)

    def day_matches(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        in_days = day.day in self.days
        in_weekdays = (day.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return in_days or in_weekdays
        return in_days and in_weekdays

    def last_fire(self, now: datetime, zone: ZoneInfo) -> datetime | None:
        """The latest time at or before `now` this cron fires in `zone` (as an aware datetime)."""
        local = now.astimezone(zone)
        for back in range(LOOKBACK_DAYS):
            day = local.date() - timedelta(days=back)
            if not self.day_matches(day):
                continue
            for hour, minute in self.times:
                # fold=1 first: a wall time the autumn change repeats fired last at its second occurrence.
                for fold in (1, 0):
                    fire = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone, fold=fold)
                    utc = fire.astimezone(timezone.utc)
                    if (utc.astimezone(zone).hour, utc.astimezone(zone).minute) != (hour, minute):
                        break  # a wall time the spring change skips never happens: no firing
                    if utc <= now:
                        return utc
        return None


def _field(text: str, low: int, high: int, names: dict[str, int]) -> set[int]:
    values: set[int] = set()
    for item in text.lower().split(","):
        span, _, step_text = item.partition("/")
        step = int(step_text) if step_text else 1
        if step <= 0:
            raise CronError(f"cron step {item!r}")
        if span == "*":
            first, last = low, high
        else:
            first_text, _, last_text = span.partition("-")
            first = _number(first_text, low, high, names)
            last = _number(last_text, low, high, names) if last_text else (high if step_text else first)
        if first > last:
            raise CronError(f"cron range {item!r} runs backwards")
        values.update(range(first, last + 1, step))
    return values


def _number(text: str, low: int, high: int, names: dict[str, int]) -> int:
    value = names[text] if text in names else int(text) if text.isdigit() else None
    if value is None or not low <= value <= high:
        raise CronError(f"cron value {text!r} outside {low}-{high}")
    return value


@lru_cache(maxsize=256)
def _cron(expression: str) -> Cron:
    return Cron(expression)


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def floor(pool: Pool, now: datetime | None = None) -> int:
    """The pool's floor at `now` (default: the current time)."""
    if not pool.schedules:
        return pool.min
    now = now or datetime.now(timezone.utc)
    latest: tuple[datetime, int] | None = None
    for index, schedule in enumerate(pool.schedules):
        fired = last_fire(schedule, now)
        # Two schedules firing at the same instant: the later-listed one wins (a stable, documented choice).
        if fired is not None and (latest is None or fired >= latest[0]):
            latest = (fired, index)
    return pool.schedules[latest[1]].desired if latest else pool.min


def last_fire(schedule: Schedule, now: datetime) -> datetime | None:
    return _cron(schedule.cron).last_fire(now, _zone(schedule.time_zone))
