"""SLA targets per priority (SPEC §5), the due times they give a ticket, and the
ticket's SLA state as the queue shows and filters it.

`resolution_due_at` is always the *effective* due time: time spent in
`pending_customer` (waiting for the customer) does not count against resolution,
so leaving that status pushes the due time back by the time spent there, and
while a ticket waits its resolution clock is stopped.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, false, func, not_, or_

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
STATES = ("breached", "due_soon", "on_track", "met")
FINISHED = ("resolved", "closed", "cancelled")
WAITING = "pending_customer"


def due_times(priority: str, created_at: datetime,
              paused: timedelta = timedelta(0)) -> tuple[datetime, datetime]:
    """First-response and resolution due times for a ticket created at `created_at`
    that has spent `paused` waiting for the customer."""
    return created_at + FIRST_RESPONSE[priority], created_at + RESOLUTION[priority] + paused


def state(ticket: Ticket, moment: datetime) -> str:
    """`breached`, `due_soon` (within an hour), `on_track`, or `met` (finished in time)."""
    if ticket.first_response_breached or ticket.resolution_breached:
        return "breached"
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


def state_clause(wanted: str, moment: datetime) -> Any:
    """The SQL condition for tickets in SLA state `wanted` (same rules as `state`)."""
    from helpdesk.models import Ticket

    def overdue_by(limit: datetime) -> Any:
        return or_(
            and_(Ticket.first_responded_at.is_(None), Ticket.first_response_due_at <= limit),
            and_(Ticket.status != WAITING, Ticket.resolution_due_at <= limit),
        )

    flagged = or_(func.coalesce(Ticket.first_response_breached, false()),
                  func.coalesce(Ticket.resolution_breached, false()))
    running = Ticket.status.not_in(FINISHED)
    breached = or_(flagged, and_(running, overdue_by(moment)))
    if wanted == "breached":
        return breached
    if wanted == "met":
        return and_(not_(flagged), not_(running))
    due_soon = and_(running, not_(breached), overdue_by(moment + DUE_SOON))
    if wanted == "due_soon":
        return due_soon
    if wanted == "on_track":
        return and_(running, not_(breached), not_(due_soon))
    raise ValueError(f"unknown SLA state {wanted!r}")
