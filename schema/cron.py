"""Five-field cron validation, as AWS scheduled actions and GCP scaling schedules accept it."""

from __future__ import annotations

import re

_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
# (name, lowest, highest, names mapped to numbers)
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, {name: i + 1 for i, name in enumerate(_MONTHS)}),
    ("day of week", 0, 7, {name: i for i, name in enumerate(_DAYS)}),
)
_ITEM = re.compile(r"^(?P<range>\*|[a-z0-9]+(?:-[a-z0-9]+)?)(?:/(?P<step>\d+))?$")


def validate_cron(expression: str) -> str:
    """Return the expression unchanged, or raise ValueError naming the bad field."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"cron needs 5 fields (minute hour day-of-month month day-of-week), got {len(fields)}")
    for text, (name, low, high, names) in zip(fields, _FIELDS, strict=True):
        for item in text.lower().split(","):
            _check_item(item, name, low, high, names)
    return expression


def _check_item(item: str, name: str, low: int, high: int, names: dict[str, int]) -> None:
    match = _ITEM.match(item)
    if not match:
        raise ValueError(f"cron {name} field: {item!r} is not a value, range, list or step")
    if match["step"] is not None and int(match["step"]) == 0:
        raise ValueError(f"cron {name} field: step 0 in {item!r}")
    if match["range"] == "*":
        return
    bounds = [_number(part, name, low, high, names) for part in match["range"].split("-")]
    if len(bounds) == 2 and bounds[0] > bounds[1]:
        raise ValueError(f"cron {name} field: range {item!r} runs backwards")


def _number(text: str, name: str, low: int, high: int, names: dict[str, int]) -> int:
    value = names.get(text)
    if value is None:
        if not text.isdigit():
            raise ValueError(f"cron {name} field: {text!r} is not a number")
        value = int(text)
    if not low <= value <= high:
        raise ValueError(f"cron {name} field: {value} is outside {low}-{high}")
    return value
