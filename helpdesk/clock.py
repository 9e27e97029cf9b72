"""The one source of "now" for stored times.

Times are stored as naive UTC on both SQLite (which has no time zones) and
PostgreSQL, so comparisons behave the same on both; tests move this clock with
time-machine instead of sleeping.
"""
from __future__ import annotations

from datetime import datetime, timezone


def now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)
