"""Ticket statistics for `GET /api/v1/stats` and the portal dashboard.

Everything is computed in SQL (GROUP BY and aggregates), never by loading tickets
into Python, so it stays fast at 100,000 tickets. Durations are seconds.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from helpdesk import sla
from helpdesk import vocabulary as v
from helpdesk.clock import now
from helpdesk.models import Ticket


def seconds_between(session: Session, start: Any, end: Any) -> Any:
    """`end - start` in seconds, in the database's own dialect."""
    if session.get_bind().dialect.name == "postgresql":
        return func.extract("epoch", end - start)
    return (func.julianday(end) - func.julianday(start)) * 86400.0


def ticket_stats(session: Session, moment: datetime | None = None) -> dict[str, Any]:
    moment = moment or now()
    counts: dict[str, dict[str, int]] = {}
    for name, values in (("status", v.STATUSES), ("priority", v.PRIORITIES),
                         ("category", v.CATEGORIES), ("channel", v.CHANNELS)):
        column = getattr(Ticket, name)
        found = dict(session.execute(
            select(column, func.count(Ticket.id)).group_by(column)).all())
        counts[name] = {value: int(found.get(value, 0)) for value in values}

    first_response = seconds_between(session, Ticket.created_at, Ticket.first_responded_at)
    resolution = seconds_between(session, Ticket.created_at, Ticket.resolved_at)
    row = session.execute(select(
        func.count(Ticket.id),
        func.avg(first_response), func.count(Ticket.first_responded_at),
        func.avg(resolution), func.count(Ticket.resolved_at),
        func.sum(case((Ticket.first_response_breached.is_(True), 1), else_=0)),
        func.sum(case((Ticket.resolution_breached.is_(True), 1), else_=0)),
    )).one()
    total, avg_first, n_first, avg_resolution, n_resolution, fr_breached, res_breached = row
    by_sla = {name: int(session.execute(
        select(func.count(Ticket.id)).where(sla.state_clause(name, moment))).scalar_one())
        for name in sla.STATES}
    return {
        "total": int(total or 0),
        "by_status": counts["status"],
        "by_priority": counts["priority"],
        "by_category": counts["category"],
        "by_channel": counts["channel"],
        "first_response": {"average_seconds": _seconds(avg_first), "count": int(n_first or 0)},
        "resolution": {"average_seconds": _seconds(avg_resolution),
                       "count": int(n_resolution or 0)},
        "sla": {
            "first_response_breached": int(fr_breached or 0),
            "resolution_breached": int(res_breached or 0),
            "by_state": by_sla,
        },
    }


def _seconds(value: Any) -> float | None:
    return None if value is None else round(float(value), 1)
