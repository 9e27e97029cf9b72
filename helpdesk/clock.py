"""The one source of "now" for stored times.

Times are stored as naive UTC on both SQLite (which has no time zones) and
PostgreSQL, so comparisons behave the same on both; tests move this clock with
time-machine instead of sleeping.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone


def now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def describe(duration: timedelta) -> str:
    """`timedelta(hours=4)` → "4 hours": durations as mail and history rows show them."""
    seconds = int(duration.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    minutes = max(1, round(seconds / 60))
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def iso(moment: datetime | None) -> str | None:
    """A stored (naive UTC) time as the API and the integrations write it: ISO 8601
    to the second, with `Z`."""
    return None if moment is None else moment.isoformat(timespec="seconds") + "Z"
