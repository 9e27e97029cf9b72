"""How many tickets a customer may open (docs/integrations.md): at most
`CUSTOMER_MAX_TICKETS_PER_HOUR` new ones in the last hour and
`CUSTOMER_MAX_OPEN_TICKETS` not yet resolved, closed or cancelled.

Counted in the database, so every web worker and gateway agrees. On PostgreSQL the
contact's row is locked for the rest of the transaction first, so two requests for
one customer at the same moment are counted one after the other (SQLite's
`BEGIN IMMEDIATE` serializes writers anyway). Staff opening tickets for a customer
are not limited: callers ask only for customers' own requests.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from helpdesk.clock import now
from helpdesk.models import Contact, Ticket

FINISHED = ("resolved", "closed", "cancelled")


def may_open(session: Session, contact: Contact, config: Mapping[str, Any]) -> bool:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(Contact.id).where(Contact.id == contact.id).with_for_update())
    hour_ago = now() - timedelta(hours=1)
    recent, unfinished = session.execute(
        select(
            func.count(Ticket.id).filter(Ticket.created_at >= hour_ago),
            func.count(Ticket.id).filter(Ticket.status.not_in(FINISHED)),
        ).where(Ticket.requester_id == contact.id)
    ).one()
    return bool(
        recent < config["CUSTOMER_MAX_TICKETS_PER_HOUR"] and unfinished < config["CUSTOMER_MAX_OPEN_TICKETS"]
    )
