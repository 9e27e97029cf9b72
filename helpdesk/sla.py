"""SLA rules (docs/lifecycle.md), in one place: targets per priority, the business-hours
calendar they are counted in, the due times they give a ticket, when a target is
met or breached, and the ticket's SLA state as the queue shows and filters it.

- **Targets** default to the table in docs/lifecycle.md and are overridden per priority by
  `SLA_FIRST_RESPONSE` / `SLA_RESOLUTION` (`urgent=15m,high=1h,…`).
- **Calendar**: with `BUSINESS_HOURS` set (`Mon-Fri 09:00-17:00`, in
  `BUSINESS_TIMEZONE`, minus `BUSINESS_HOLIDAYS`) targets count working time
  only; unset, the clock runs around the clock. Stored times stay naive UTC.
- **Due times** are set at creation and recomputed from the creation time when
  the priority changes. `resolution_due_at` is always the *effective* due time:
  the resolution clock stands still while the ticket waits for the customer
  (`pending_customer`) and while it is resolved or closed (a reopened ticket gets
  the time it had left, not a breach for the weeks it lay closed). That paused
  time, measured on the calendar, accumulates in `pending_seconds` and is added
  to the resolution target.
- **Met or breached** is decided when it happens: the first public staff reply
  decides the first response; resolving decides the resolution (and the first
  response too, if nobody answered before: the resolution notice is the first
  answer the customer gets). Targets that run out before that are marked by the
  periodic check (`services.lifecycle_jobs`) with the same SQL conditions the
  queue filter uses. A recorded breach stays recorded, even if the priority is
  lowered later; a reopened ticket's resolution is open again, unless breached.
"""
from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import Flask
from sqlalchemy import and_, false, func, literal_column, not_, or_

from helpdesk import vocabulary as v

if TYPE_CHECKING:
    from helpdesk.models import Ticket

FIRST_RESPONSE = {
    "urgent": timedelta(minutes=15),
    "high": timedelta(hours=1),
    "medium": timedelta(hours=4),
    "low": timedelta(hours=24),
}
RESOLUTION = {
    "urgent": timedelta(hours=4),
    "high": timedelta(hours=24),
    "medium": timedelta(days=3),
    "low": timedelta(days=7),
}
DUE_SOON = timedelta(hours=1)
# `void`: cancelled without a breach; spam and duplicates neither met nor missed a target.
STATES = ("breached", "due_soon", "on_track", "met", "void")
FINISHED = ("resolved", "closed", "cancelled")
WAITING = "pending_customer"


def _sql_list(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{value}'" for value in values)


# The tickets the SLA check must still watch, as the partial indexes' predicates
# (models.Ticket). The overdue clauses below spell the same terms with literal
# statuses, so SQLite and PostgreSQL both see that those indexes apply.
FIRST_RESPONSE_WATCH = (f"first_response_breached IS NULL AND first_responded_at IS NULL "
                        f"AND status NOT IN ({_sql_list(FINISHED)})")
RESOLUTION_WATCH = f"resolution_breached IS NULL AND status NOT IN ({_sql_list((*FINISHED, WAITING))})"
# What a breach history row (field "sla") names as its new value.
FIRST_RESPONSE_BREACHED = "first_response_breached"
RESOLUTION_BREACHED = "resolution_breached"

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HOURS_GROUP = re.compile(r"^(?P<days>[a-z,\-\s]+?)\s+(?P<times>[\d:,\-\s]+)$")
_MINUTES_PER_DAY = 24 * 60
_SEARCH_DAYS = 3660  # a calendar with no working time in ten years is a mistake


class CalendarError(ValueError):
    """BUSINESS_HOURS, BUSINESS_TIMEZONE or BUSINESS_HOLIDAYS cannot be read."""


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
                raise CalendarError(f"BUSINESS_HOURS: cannot read {group!r} "
                                    "(expected e.g. 'Mon-Fri 09:00-17:00')")
            for day in _weekdays(match["days"]):
                for interval in match["times"].split(","):
                    table.setdefault(day, []).append(_interval(interval))
        if not table:
            raise CalendarError("BUSINESS_HOURS names no working time")
        for day, intervals in table.items():
            intervals.sort()
            if any(a[1] > b[0] for a, b in zip(intervals, intervals[1:])):
                raise CalendarError(f"BUSINESS_HOURS: overlapping hours on {_DAYS[day]}")
        try:
            tz = ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise CalendarError(f"BUSINESS_TIMEZONE: unknown time zone {zone!r}") from exc
        try:
            days_off = frozenset(date.fromisoformat(text.strip()) for text in holidays if text.strip())
        except ValueError as exc:
            raise CalendarError(f"BUSINESS_HOLIDAYS: {exc} (expected YYYY-MM-DD)") from exc
        return cls({day: tuple(spans) for day, spans in table.items()}, tz, days_off)

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
        """Working intervals as naive-UTC pairs, in order, clipped to begin at `start`."""
        first_day = start.replace(tzinfo=timezone.utc).astimezone(self.zone).date()
        for offset in range(_SEARCH_DAYS):
            day = first_day + timedelta(days=offset)
            if day in self.holidays:
                continue
            for opens, closes in self.hours.get(day.weekday(), ()):
                begin, end = self._utc(day, opens), self._utc(day, closes)
                if end > start:
                    yield max(begin, start), end
        raise CalendarError(f"no working time within {_SEARCH_DAYS} days of {start:%Y-%m-%d}")

    def _utc(self, day: date, minutes: int) -> datetime:
        local = datetime.combine(day, time()) + timedelta(minutes=minutes)
        return local.replace(tzinfo=self.zone).astimezone(timezone.utc).replace(tzinfo=None)


@dataclass(frozen=True)
class Policy:
    """Targets per priority and the calendar (None: around the clock)."""

    first_response: Mapping[str, timedelta] = field(default_factory=lambda: dict(FIRST_RESPONSE))
    resolution: Mapping[str, timedelta] = field(default_factory=lambda: dict(RESOLUTION))
    calendar: BusinessCalendar | None = None

    def add(self, start: datetime, duration: timedelta) -> datetime:
        return start + duration if self.calendar is None else self.calendar.add(start, duration)

    def clock_time(self, start: datetime, end: datetime) -> timedelta:
        """How much SLA time passed from `start` to `end` (working time with a calendar)."""
        if self.calendar is None:
            return max(end - start, timedelta(0))
        return self.calendar.between(start, end)

    def due_times(self, priority: str, created_at: datetime,
                  paused: timedelta = timedelta(0)) -> tuple[datetime, datetime]:
        """First-response and resolution due times for a ticket created at
        `created_at` whose resolution clock stood still for `paused`."""
        return (self.add(created_at, self.first_response[priority]),
                self.add(created_at, self.resolution[priority] + paused))


DEFAULT_POLICY = Policy()


def policy_from_config(config: Mapping[str, Any]) -> Policy:
    """The policy the configuration describes (parsed once per distinct setting)."""
    return _policy(
        tuple(sorted(config["SLA_FIRST_RESPONSE"].items())),
        tuple(sorted(config["SLA_RESOLUTION"].items())),
        config["BUSINESS_HOURS"], config["BUSINESS_TIMEZONE"],
        tuple(config["BUSINESS_HOLIDAYS"]),
    )


@lru_cache(maxsize=16)
def _policy(first_response: tuple[tuple[str, timedelta], ...],
            resolution: tuple[tuple[str, timedelta], ...], hours: str, zone: str,
            holidays: tuple[str, ...]) -> Policy:
    for name, overrides in (("SLA_FIRST_RESPONSE", first_response),
                            ("SLA_RESOLUTION", resolution)):
        for priority, duration in overrides:
            if priority not in v.PRIORITIES:
                raise ValueError(f"{name}: unknown priority {priority!r} "
                                 f"(one of {', '.join(v.PRIORITIES)})")
            if duration <= timedelta(0):
                raise ValueError(f"{name}: the {priority} target must be positive")
    calendar = BusinessCalendar.parse(hours, zone, holidays) if hours.strip() else None
    return Policy({**FIRST_RESPONSE, **dict(first_response)},
                  {**RESOLUTION, **dict(resolution)}, calendar)


def init_app(app: Flask) -> None:
    """Read the SLA settings at startup, so a typo stops the process, not a request."""
    policy_from_config(app.config)


@dataclass(frozen=True)
class Breach:
    """A target that ran out before it was met, as the SLA check found it."""

    ticket_id: int
    assignee_id: int | None
    target: str  # FIRST_RESPONSE_BREACHED or RESOLUTION_BREACHED
    due_at: datetime

    def describe(self) -> str:
        what = "First response" if self.target == FIRST_RESPONSE_BREACHED else "Resolution"
        return f"{what} was due {self.due_at:%Y-%m-%d %H:%M} UTC."


# -- met or breached, decided when it happens --------------------------------------


def record_first_response(ticket: Ticket, moment: datetime) -> None:
    """The customer got a first answer at `moment`: met unless past due."""
    ticket.first_responded_at = moment
    if ticket.first_response_breached is not True:
        due = ticket.first_response_due_at
        ticket.first_response_breached = due is not None and moment > due


def record_resolution(ticket: Ticket, moment: datetime) -> None:
    """The ticket was resolved at `moment` (after any paused time was added)."""
    if ticket.first_responded_at is None:
        record_first_response(ticket, moment)
    if ticket.resolution_breached is not True:
        due = ticket.resolution_due_at
        ticket.resolution_breached = due is not None and moment > due


def record_reopening(ticket: Ticket) -> None:
    """A reopened ticket is unresolved again; a breach stays a breach."""
    if ticket.resolution_breached is False:
        ticket.resolution_breached = None


# -- state ------------------------------------------------------------------------


def state(ticket: Ticket, moment: datetime) -> str:
    """`breached`, `due_soon` (within an hour), `on_track`, `met` (finished in time) or
    `void` (cancelled in time)."""
    if ticket.first_response_breached or ticket.resolution_breached:
        return "breached"
    if ticket.status == "cancelled":
        return "void"
    if ticket.status in FINISHED:
        return "met"
    dues = []
    if ticket.first_responded_at is None and ticket.first_response_due_at is not None:
        dues.append(ticket.first_response_due_at)
    if ticket.status != WAITING and ticket.resolution_due_at is not None:
        dues.append(ticket.resolution_due_at)
    if not dues:
        return "on_track"
    nearest = min(dues)
    if nearest <= moment:
        return "breached"
    return "due_soon" if nearest - moment <= DUE_SOON else "on_track"


def first_response_overdue(limit: datetime) -> Any:
    """SQL: a running ticket nobody answered whose first-response target ran out by `limit`."""
    from helpdesk.models import Ticket

    return and_(Ticket.status.not_in(_literals(FINISHED)), Ticket.first_responded_at.is_(None),
                Ticket.first_response_due_at <= limit)


def resolution_overdue(limit: datetime) -> Any:
    """SQL: a running ticket, not waiting for the customer, past its resolution target."""
    from helpdesk.models import Ticket

    return and_(Ticket.status.not_in(_literals((*FINISHED, WAITING))),
                Ticket.resolution_due_at <= limit)


def first_response_unmarked(moment: datetime) -> Any:
    """SQL: overdue and not yet marked — what the SLA check marks as breached."""
    from helpdesk.models import Ticket

    return and_(Ticket.first_response_breached.is_(None), first_response_overdue(moment))


def resolution_unmarked(moment: datetime) -> Any:
    from helpdesk.models import Ticket

    return and_(Ticket.resolution_breached.is_(None), resolution_overdue(moment))


def state_clause(wanted: str, moment: datetime) -> Any:
    """The SQL condition for tickets in SLA state `wanted` (same rules as `state`)."""
    from helpdesk.models import Ticket

    def overdue_by(limit: datetime) -> Any:
        return or_(first_response_overdue(limit), resolution_overdue(limit))

    flagged = or_(func.coalesce(Ticket.first_response_breached, false()),
                  func.coalesce(Ticket.resolution_breached, false()))
    running = Ticket.status.not_in(FINISHED)
    breached = or_(flagged, overdue_by(moment))
    if wanted == "breached":
        return breached
    if wanted == "met":
        return and_(not_(flagged), not_(running), Ticket.status != "cancelled")
    if wanted == "void":
        return and_(not_(flagged), Ticket.status == "cancelled")
    due_soon = and_(running, not_(breached), overdue_by(moment + DUE_SOON))
    if wanted == "due_soon":
        return due_soon
    if wanted == "on_track":
        return and_(running, not_(breached), not_(due_soon))
    raise ValueError(f"unknown SLA state {wanted!r}")


# -- helpers --------------------------------------------------------------------------


def _literals(values: tuple[str, ...]) -> list[Any]:
    """Constant statuses written into the SQL (not bound), to match the index predicates."""
    return [literal_column(f"'{value}'") for value in values]


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
