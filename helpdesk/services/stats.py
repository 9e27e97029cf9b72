"""Ticket statistics for `GET /api/v1/stats` and the portal dashboard.

Everything is computed in SQL (GROUP BY, aggregates, window functions), never by
loading tickets into Python, so it stays fast at 100,000 tickets; the same
statements run on SQLite and PostgreSQL. Durations are wall-clock seconds from
creation (to the first response, to the resolution); days are UTC days.

- Counts by status, priority, category and channel come from one GROUP BY over
  all four (a few hundred groups at most), summed per field.
- Medians: SQLite has no `percentile_cont`, so both databases sort the known
  durations and average the middle one or two (`ORDER BY … OFFSET … LIMIT`; the
  count comes from the aggregate query). Sorting beats numbering every row with
  `ROW_NUMBER() OVER` / `COUNT(*) OVER ()`, which took twice as long at 100,000.
- SLA met/breached count the decided targets: a first response is decided when
  answered (or when the check found it overdue), a resolution when resolved (or
  overdue); `met_percent` is met / decided, null while nothing is decided.
- Reopens count the `→ reopened` history rows (events) and the tickets they hit.
- Per agent: every active staff member and anyone who still holds tickets, with
  the tickets assigned to them that are open (not resolved, closed or cancelled)
  and resolved (resolved or closed), and the customers' ratings credited to them.
- Satisfaction: the count and average of the customers' ratings (1-5), overall
  and per agent (`helpdesk.services.satisfaction`).

The same figures day by day, for the dashboard's charts, are `helpdesk.services.trends`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict
from datetime import date, datetime, time, timedelta
from typing import Any, TypeVar

from sqlalchemy import case, distinct, func, or_, select, true
from sqlalchemy.orm import Session

from helpdesk import sla, sla_queries
from helpdesk import vocabulary as v
from helpdesk.clock import now
from helpdesk.models import StaffUser, Ticket, TicketHistory
from helpdesk.services import satisfaction

CREATED_DAYS = 30
Value = TypeVar("Value")
_DONE = ("resolved", "closed")


def seconds_between(session: Session, start: Any, end: Any) -> Any:
    """`end - start` in seconds, in the database's own dialect."""
    if session.get_bind().dialect.name == "postgresql":
        return func.extract("epoch", end - start)
    return (func.julianday(end) - func.julianday(start)) * 86400.0


def ticket_stats(session: Session, moment: datetime | None = None, scope: Any = None) -> dict[str, Any]:
    """`scope`: a condition on tickets (`visibility.clause`) every figure keeps to,
    so an agent who sees only their team's tickets counts only those."""
    moment = moment or now()
    seen = scope if scope is not None else true()
    counts = _counts(session, seen)

    first_response = seconds_between(session, Ticket.created_at, Ticket.first_responded_at)
    resolution = seconds_between(session, Ticket.created_at, Ticket.resolved_at)
    states = list(sla.STATES)
    row = session.execute(
        select(
            func.count(Ticket.id),
            func.avg(first_response),
            func.count(Ticket.first_responded_at),
            func.avg(resolution),
            func.count(Ticket.resolved_at),
            count_where(Ticket.first_response_breached.is_(True)),
            count_where(Ticket.first_response_breached.is_(False)),
            count_where(Ticket.resolution_breached.is_(True)),
            count_where(Ticket.resolution_breached.is_(False)),
            *(count_where(sla_queries.state_clause(name, moment)) for name in states),
        ).where(seen)
    ).one()
    avg_first, avg_resolution = row[1], row[3]
    total, n_first, n_resolution = int(row[0] or 0), int(row[2] or 0), int(row[4] or 0)
    fr_breached, fr_met, res_breached, res_met, *state_counts = (int(x or 0) for x in row[5:])
    by_sla = dict(zip(states, state_counts, strict=True))
    return {
        "total": total,
        "by_status": counts["status"],
        "by_priority": counts["priority"],
        "by_category": counts["category"],
        "by_channel": counts["channel"],
        "by_source": counts["source"],
        "first_response": {
            "average_seconds": _seconds(avg_first),
            "count": n_first,
            "median_seconds": _seconds(_median(session, first_response, n_first, seen)),
        },
        "resolution": {
            "average_seconds": _seconds(avg_resolution),
            "count": n_resolution,
            "median_seconds": _seconds(_median(session, resolution, n_resolution, seen)),
        },
        "sla": {
            "first_response_breached": fr_breached,
            "resolution_breached": res_breached,
            "by_state": by_sla,
            "first_response_met": fr_met,
            "resolution_met": res_met,
            "first_response_met_percent": percent(fr_met, fr_met + fr_breached),
            "resolution_met_percent": percent(res_met, res_met + res_breached),
        },
        "created_per_day": _created_per_day(session, moment.date(), seen),
        "reopens": _reopens(session, seen),
        "satisfaction": asdict(satisfaction.summary(session, seen)),
        "by_agent": _by_agent(session, seen),
    }


def count_where(condition: Any) -> Any:
    """SQL: how many rows of the group meet `condition`."""
    return func.sum(case((condition, 1), else_=0))


def _counts(session: Session, seen: Any) -> dict[str, dict[str, int]]:
    """Tickets by status, priority, category, channel and source: one pass, grouped
    by all five (at most a few thousand groups), each then summed up by one of them."""
    fields = {
        "status": v.STATUSES,
        "priority": v.PRIORITIES,
        "category": v.CATEGORIES,
        "channel": v.CHANNELS,
        "source": v.SOURCES,
    }
    columns = [getattr(Ticket, name) for name in fields]
    counts = {name: dict.fromkeys(values, 0) for name, values in fields.items()}
    grouped = select(*columns, func.count(Ticket.id)).where(seen).group_by(*columns)
    for *values, count in session.execute(grouped).all():
        for name, value in zip(fields, values, strict=True):
            counts[name][value] += int(count)
    return counts


def _median(session: Session, duration: Any, known: int, seen: Any) -> Any:
    """The median of `duration` over the `known` tickets where it is known: the
    middle one or two of the sorted durations (SQLite has no percentile_cont)."""
    if known == 0:
        return None
    middle = (
        select(duration.label("value"))
        .where(duration.is_not(None), seen)
        .order_by(duration)
        .offset((known - 1) // 2)
        .limit(2 - known % 2)
        .subquery()
    )
    return session.execute(select(func.avg(middle.c.value))).scalar()


def _created_per_day(session: Session, today: date, seen: Any) -> list[dict[str, Any]]:
    """Tickets created on each of the last 30 UTC days, today included, oldest first."""
    days = utc_days(today, CREATED_DAYS)
    day = func.date(Ticket.created_at)
    rows = session.execute(
        select(day, func.count(Ticket.id))
        .where(Ticket.created_at >= datetime.combine(days[0], time()), seen)
        .group_by(day)
    ).all()
    counts = per_day(days, ((when, int(count)) for when, count in rows), 0)
    return [{"date": d.isoformat(), "count": count} for d, count in zip(days, counts, strict=True)]


def utc_days(today: date, count: int) -> list[date]:
    """The `count` UTC days up to `today`, oldest first."""
    return [today - timedelta(days=back) for back in range(count - 1, -1, -1)]


def per_day(days: list[date], rows: Iterable[tuple[Any, Value]], missing: Value) -> list[Value]:
    """(day, value) rows of a GROUP BY `date()` as one value per day of `days`,
    `missing` for the days without a row. SQL's `date()` gives a day back as a date
    (PostgreSQL) or as text (SQLite); `str()` of either is ISO text."""
    found = {str(day): value for day, value in rows}
    return [found.get(day.isoformat(), missing) for day in days]


def _reopens(session: Session, seen: Any) -> dict[str, int]:
    count, tickets = session.execute(
        select(func.count(TicketHistory.id), func.count(distinct(TicketHistory.ticket_id)))
        .join(Ticket, Ticket.id == TicketHistory.ticket_id)
        .where(TicketHistory.field == "status", TicketHistory.new_value == "reopened", seen)
    ).one()
    return {"count": int(count or 0), "tickets": int(tickets or 0)}


def _by_agent(session: Session, seen: Any) -> list[dict[str, Any]]:
    assigned = (
        select(
            Ticket.assignee_id.label("staff_id"),
            count_where(Ticket.status.not_in((*_DONE, "cancelled"))).label("open"),
            count_where(Ticket.status.in_(_DONE)).label("resolved"),
        )
        .where(Ticket.assignee_id.is_not(None), seen)
        .group_by(Ticket.assignee_id)
        .subquery()
    )
    rows = session.execute(
        select(StaffUser.id, StaffUser.name, StaffUser.email, assigned.c.open, assigned.c.resolved)
        .outerjoin(assigned, assigned.c.staff_id == StaffUser.id)
        .where(or_(StaffUser.is_active, assigned.c.staff_id.is_not(None)))
        .order_by(StaffUser.name, StaffUser.id)
    ).all()
    ratings = satisfaction.per_agent(session, seen)
    no_ratings = satisfaction.Summary(0, None)
    return [
        {
            "id": staff_id,
            "name": name,
            "email": email,
            "open": int(open_ or 0),
            "resolved": int(resolved or 0),
            "satisfaction": asdict(ratings.get(staff_id, no_ratings)),
        }
        for staff_id, name, email, open_, resolved in rows
    ]


def _seconds(value: Any) -> float | None:
    return None if value is None else round(float(value), 1)


def percent(part: int, whole: int) -> float | None:
    """`part` of `whole` in percent to one decimal; None when there is no whole."""
    return None if whole == 0 else round(100.0 * part / whole, 1)
