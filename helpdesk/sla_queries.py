"""The SLA rules as SQL: which tickets are overdue, unmarked, or in a given SLA
state (docs/lifecycle.md). The same rules as `helpdesk.sla.state`, for the queue
filter, the statistics and the periodic SLA check.

Statuses are written into the SQL as literals (not bound), so SQLite and
PostgreSQL both see that the partial indexes on `tickets` (whose predicates are
`sla.FIRST_RESPONSE_WATCH` and `sla.RESOLUTION_WATCH`) apply.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, false, func, literal_column, not_, or_

from helpdesk.models import Ticket
from helpdesk.sla import DUE_SOON, FINISHED, WAITING


def first_response_overdue(limit: datetime) -> Any:
    """SQL: a running ticket nobody answered whose first-response target ran out by `limit`."""
    return and_(
        Ticket.status.not_in(_literals(FINISHED)),
        Ticket.first_responded_at.is_(None),
        Ticket.first_response_due_at <= limit,
    )


def resolution_overdue(limit: datetime) -> Any:
    """SQL: a running ticket, not waiting for the customer, past its resolution target."""
    return and_(Ticket.status.not_in(_literals((*FINISHED, WAITING))), Ticket.resolution_due_at <= limit)


def first_response_unmarked(moment: datetime) -> Any:
    """SQL: overdue and not yet marked — what the SLA check marks as breached."""
    return and_(Ticket.first_response_breached.is_(None), first_response_overdue(moment))


def resolution_unmarked(moment: datetime) -> Any:
    return and_(Ticket.resolution_breached.is_(None), resolution_overdue(moment))


def state_clause(wanted: str, moment: datetime) -> Any:
    """The SQL condition for tickets in SLA state `wanted` (same rules as `state`)."""

    def overdue_by(limit: datetime) -> Any:
        return or_(first_response_overdue(limit), resolution_overdue(limit))

    flagged = or_(
        func.coalesce(Ticket.first_response_breached, false()),
        func.coalesce(Ticket.resolution_breached, false()),
    )
    running = Ticket.status.not_in(FINISHED)
    breached = or_(flagged, overdue_by(moment))
    if wanted == "breached":
        return breached
    voided = or_(Ticket.status == "cancelled", Ticket.merged_into_id.is_not(None))
    if wanted == "met":
        return and_(not_(flagged), not_(running), not_(voided))
    if wanted == "void":
        return and_(not_(flagged), voided)
    due_soon = and_(running, not_(breached), overdue_by(moment + DUE_SOON))
    if wanted == "due_soon":
        return due_soon
    if wanted == "on_track":
        return and_(running, not_(breached), not_(due_soon))
    raise ValueError(f"unknown SLA state {wanted!r}")


def _literals(values: tuple[str, ...]) -> list[Any]:
    """Constant statuses written into the SQL (not bound), to match the index predicates."""
    return [literal_column(f"'{value}'") for value in values]
