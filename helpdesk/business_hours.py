"""Business hours: the calendar SLA targets are counted in (docs/lifecycle.md).

`BUSINESS_HOURS` (`Mon-Fri 09:00-17:00`) in `BUSINESS_TIMEZONE`, minus
`BUSINESS_HOLIDAYS`; durations are counted only inside the working intervals, and
daylight-saving changes are the zone's business (zoneinfo). Stored times stay
naive UTC.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HOURS_GROUP = re.compile(r"^(?P<days>[a-z,\-\s]+?)\s+(?P<times>[\d:,\-\s]+)$")
_MINUTES_PER_DAY = 24 * 60
_SEARCH_DAYS = 3660  # a calendar with no working time in ten years is a mistake
_SECOND = timedelta(seconds=1)


class CalendarError(ValueError):
    """BUSINESS_HOURS, BUSINESS_TIMEZONE or BUSINESS_HOLIDAYS cannot be read."""


def read_holidays(holidays: tuple[str, ...]) -> frozenset[date]:
    """BUSINESS_HOLIDAYS as dates (ISO, `2026-12-25`), blanks skipped; CalendarError
    for one that is not a date. Read whether or not BUSINESS_HOURS is set, so a typo
    stops the start instead of waiting for the day hours are set (docs/lifecycle.md)."""
    try:
        return frozenset(date.fromisoformat(text.strip()) for text in holidays if text.strip())
    except ValueError as exc:
        raise CalendarError(f"BUSINESS_HOLIDAYS: {exc} (expected YYYY-MM-DD)") from exc


@dataclass(frozen=True)
class BusinessCalendar:
    """Working hours per weekday in a time zone, minus holidays.

    `hours[weekday]` holds (opens, closes) in minutes after local midnight
    (closes may be 1440, "24:00"). Durations are counted only inside those
    intervals; daylight-saving changes are the zone's business (zoneinfo).
    """

    hours: Mapping[int, tuple[tuple[int, int], ...]]
    zone: ZoneInfo
    holidays: frozenset[date] = frozenset()

    @classmethod
    def parse(cls, hours: str, zone: str = "UTC", holidays: tuple[str, ...] = ()) -> BusinessCalendar:
        """`Mon-Fri 09:00-17:00; Sat 10:00-14:00` (days: `Mon,Wed` or ranges; several
        intervals: `09:00-12:00,13:00-17:00`), an IANA zone, ISO dates."""
        table: dict[int, list[tuple[int, int]]] = {}
        for group in filter(None, (part.strip().lower() for part in hours.split(";"))):
            match = _HOURS_GROUP.match(group)
            if not match:
                raise CalendarError(
                    f"BUSINESS_HOURS: cannot read {group!r} (expected e.g. 'Mon-Fri 09:00-17:00')"
                )
            for day in _weekdays(match["days"]):
                for interval in match["times"].split(","):
                    table.setdefault(day, []).append(_interval(interval))
        if not table:
            raise CalendarError("BUSINESS_HOURS names no working time")
        for day, intervals in table.items():
            intervals.sort()
            if any(a[1] > b[0] for a, b in zip(intervals, intervals[1:], strict=False)):
                raise CalendarError(f"BUSINESS_HOURS: overlapping hours on {_DAYS[day]}")
        try:
            tz = ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise CalendarError(f"BUSINESS_TIMEZONE: unknown time zone {zone!r}") from exc
        return cls({day: tuple(spans) for day, spans in table.items()}, tz, read_holidays(holidays))

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """The moment `duration` of working time after `start` (naive UTC)."""
        remaining = duration
        for opens, closes in self._working(start):
            if remaining <= closes - opens:
                return opens + remaining
            remaining -= closes - opens
        raise AssertionError("unreachable: _working raises when it runs out")

    def between(self, start: datetime, end: datetime) -> timedelta:
        """Working time from `start` to `end` (naive UTC); zero when end <= start."""
        total = timedelta(0)
        if end <= start:
            return total
        for opens, closes in self._working(start):
            if opens >= end:
                break
            total += min(closes, end) - opens
        return total

    def _working(self, start: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Working intervals as naive-UTC pairs, in order, clipped to begin at `start`.

        Each begins no earlier than the one before ended, and an empty one is
        skipped: across a daylight-saving change two local times may meet at one
        instant (`_utc`), and no instant is worked twice (docs/lifecycle.md)."""
        first_day = start.replace(tzinfo=timezone.utc).astimezone(self.zone).date()
        previous_end = start
        for offset in range(_SEARCH_DAYS):
            day = first_day + timedelta(days=offset)
            if day in self.holidays:
                continue
            for opens, closes in self.hours.get(day.weekday(), ()):
                begin, end = max(self._utc(day, opens), previous_end), self._utc(day, closes)
                if end > begin:
                    previous_end = end
                    yield begin, end
        raise CalendarError(f"no working time within {_SEARCH_DAYS} days of {start:%Y-%m-%d}")

    def _utc(self, day: date, minutes: int) -> datetime:
        """The instant local time `minutes` after `day`'s midnight is, naive UTC.

        A time the clocks skip (02:30 where they go from 02:00 to 03:00) is the
        instant the gap ends (03:00 new time): read with the offset from before the
        change, as zoneinfo does, it was that much after the gap's end, past the
        next interval's start. A time that comes twice (falling back) is its first
        occurrence (docs/lifecycle.md, "Business hours")."""
        local = datetime.combine(day, time()) + timedelta(minutes=minutes)
        instant = local.replace(tzinfo=self.zone).astimezone(timezone.utc)
        if instant.astimezone(self.zone).replace(tzinfo=None) != local:
            instant = self._gap_end(local)
        return instant.replace(tzinfo=None)

    def _gap_end(self, local: datetime) -> datetime:
        """The instant the clocks skip past `local`, a time in a gap: the first one
        whose local time is after it. The gap lies between `local` read with the
        offsets after and before the change (zoneinfo's fold 1 and 0); halved down
        to the second (a gap is at most a day: 17 steps)."""
        low = local.replace(tzinfo=self.zone, fold=1).astimezone(timezone.utc)  # before the gap
        high = local.replace(tzinfo=self.zone, fold=0).astimezone(timezone.utc)  # after it
        while high - low > _SECOND:
            middle = low + (high - low) / 2
            middle = middle.replace(microsecond=0)
            if middle.astimezone(self.zone).replace(tzinfo=None) > local:
                high = middle
            else:
                low = middle
        return high


def _weekdays(text: str) -> list[int]:
    days: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        first, _, last = (s.strip()[:3] for s in part.partition("-"))
        if first not in _DAYS or (last and last not in _DAYS):
            raise CalendarError(f"BUSINESS_HOURS: unknown day in {part!r} (Mon … Sun)")
        start = _DAYS.index(first)
        span = (_DAYS.index(last) - start) % 7 if last else 0
        days.extend((start + offset) % 7 for offset in range(span + 1))
    return days


def _interval(text: str) -> tuple[int, int]:
    opens, separator, closes = text.strip().partition("-")
    if not separator:
        raise CalendarError(f"BUSINESS_HOURS: {text.strip()!r} is not HH:MM-HH:MM")
    begin, end = _minutes(opens), _minutes(closes)
    if begin >= end:
        raise CalendarError(f"BUSINESS_HOURS: {text.strip()!r} closes before it opens")
    return begin, end


def _minutes(text: str) -> int:
    hours, _, minutes = text.strip().partition(":")
    if not (hours.isdigit() and (minutes or "0").isdigit()):
        raise CalendarError(f"BUSINESS_HOURS: {text.strip()!r} is not a time (HH:MM)")
    value = int(hours) * 60 + int(minutes or 0)
    if value > _MINUTES_PER_DAY or int(minutes or 0) >= 60:
        raise CalendarError(f"BUSINESS_HOURS: {text.strip()!r} is not a time of day")
    return value
