"""SLA rules (docs/lifecycle.md): targets per priority, the due times they give a
ticket, when a target is met or breached, and the ticket's SLA state. The same
rules as SQL are `helpdesk.sla_queries`; the calendar is `helpdesk.business_hours`.

- **Targets** default to the table in docs/lifecycle.md and are overridden per priority by
  `SLA_FIRST_RESPONSE` / `SLA_RESOLUTION` (`urgent=15m,high=1h,…`).
- **Calendar** (`helpdesk.business_hours`): with `BUSINESS_HOURS` set targets
  count working time only; unset, the clock runs around the clock.
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
  queue filter uses (`helpdesk.sla_queries`). A recorded breach stays recorded,
  even if the priority is lowered later; a reopened ticket's resolution is open
  again, unless breached.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from flask import Flask

from config import ConfigurationError
from helpdesk import vocabulary as v
from helpdesk.business_hours import BusinessCalendar, read_holidays

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
# (models.Ticket). The overdue clauses of `sla_queries` spell the same terms with
# literal statuses, so SQLite and PostgreSQL both see that those indexes apply.
FIRST_RESPONSE_WATCH = (
    f"first_response_breached IS NULL AND first_responded_at IS NULL "
    f"AND status NOT IN ({_sql_list(FINISHED)})"
)
RESOLUTION_WATCH = f"resolution_breached IS NULL AND status NOT IN ({_sql_list((*FINISHED, WAITING))})"
# What a breach history row (field "sla") names as its new value.
FIRST_RESPONSE_BREACHED = "first_response_breached"
RESOLUTION_BREACHED = "resolution_breached"


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

    def due_times(
        self, priority: str, created_at: datetime, paused: timedelta = timedelta(0)
    ) -> tuple[datetime, datetime]:
        """First-response and resolution due times for a ticket created at
        `created_at` whose resolution clock stood still for `paused`."""
        return (
            self.add(created_at, self.first_response[priority]),
            self.add(created_at, self.resolution[priority] + paused),
        )


DEFAULT_POLICY = Policy()


def policy_from_config(config: Mapping[str, Any]) -> Policy:
    """The policy the configuration describes (parsed once per distinct setting)."""
    return _policy(
        tuple(sorted(config["SLA_FIRST_RESPONSE"].items())),
        tuple(sorted(config["SLA_RESOLUTION"].items())),
        config["BUSINESS_HOURS"],
        config["BUSINESS_TIMEZONE"],
        tuple(config["BUSINESS_HOLIDAYS"]),
    )


@lru_cache(maxsize=16)
def _policy(
    first_response: tuple[tuple[str, timedelta], ...],
    resolution: tuple[tuple[str, timedelta], ...],
    hours: str,
    zone: str,
    holidays: tuple[str, ...],
) -> Policy:
    for name, overrides in (("SLA_FIRST_RESPONSE", first_response), ("SLA_RESOLUTION", resolution)):
        for priority, duration in overrides:
            if priority not in v.PRIORITIES:
                raise ValueError(f"{name}: unknown priority {priority!r} (one of {', '.join(v.PRIORITIES)})")
            if duration <= timedelta(0):
                raise ValueError(f"{name}: the {priority} target must be positive")
    read_holidays(holidays)  # refused even unused: without BUSINESS_HOURS they count for nothing
    calendar = BusinessCalendar.parse(hours, zone, holidays) if hours.strip() else None
    return Policy({**FIRST_RESPONSE, **dict(first_response)}, {**RESOLUTION, **dict(resolution)}, calendar)


def init_app(app: Flask) -> None:
    """Read the SLA settings at startup, so a typo stops the process, not a request,
    in one line (docs/operations.md): a ConfigurationError, which every entry point
    prints as such, not the traceback a ValueError was."""
    try:
        policy_from_config(app.config)
    except ValueError as exc:  # an unknown priority; CalendarError: BUSINESS_HOURS, _HOLIDAYS
        raise ConfigurationError(str(exc)) from exc


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
    `void` (cancelled or merged in time: spam and duplicates neither met nor missed a
    target)."""
    if ticket.first_response_breached or ticket.resolution_breached:
        return "breached"
    if ticket.status == "cancelled" or ticket.merged_into_id is not None:
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
