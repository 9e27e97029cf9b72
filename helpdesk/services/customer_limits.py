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

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from helpdesk.clock import now
from helpdesk.models import Contact, Ticket

FINISHED = ("resolved", "closed", "cancelled")

# Built once with bind parameters: every new mail runs both, and composing them anew
# cost more than running them (docs/benchmarks.md, the levers of issue 19). Two
# statements, not one: the count must see what a transaction that held the lock
# committed, so it needs a snapshot taken after the lock is granted. FOR NO KEY
# UPDATE, as `contacts.current` takes: it serialises the counting, yet a ticket
# inserted for the contact meanwhile (its foreign key takes KEY SHARE while the number
# counter is held) does not wait for it (docs/lifecycle.md, "Concurrent changes").
_LOCK = select(Contact.id).where(Contact.id == bindparam("contact")).with_for_update(key_share=True)
_COUNTS = select(
    func.count(Ticket.id).filter(Ticket.created_at >= bindparam("since")),
    func.count(Ticket.id).filter(Ticket.status.not_in(FINISHED)),
).where(Ticket.requester_id == bindparam("contact"))


def may_open(session: Session, contact: Contact, config: Mapping[str, Any]) -> bool:
    """Whether `contact` may open another ticket now (see `reached_limit`)."""
    return reached_limit(session, contact, config) is None


def reached_limit(session: Session, contact: Contact, config: Mapping[str, Any]) -> str | None:
    """The limit `contact` has reached, in words (mail held for it shows them to
    staff), or None while they may open another ticket. On PostgreSQL the lock holds
    until the caller's commit or rollback, so the caller creates the ticket in the
    same transaction or the count means nothing. A contact found in an earlier
    transaction may have been merged away since: such a caller passes what
    `contacts.current` makes of it, and opens the ticket under that."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_LOCK, {"contact": contact.id})
    recent, unfinished = session.execute(
        _COUNTS, {"contact": contact.id, "since": now() - timedelta(hours=1)}
    ).one()
    per_hour, at_once = config["CUSTOMER_MAX_TICKETS_PER_HOUR"], config["CUSTOMER_MAX_OPEN_TICKETS"]
    if recent >= per_hour:
        return (
            f"{_counted(recent, 'ticket')} opened in the last hour "
            f"(CUSTOMER_MAX_TICKETS_PER_HOUR is {per_hour})"
        )
    if unfinished >= at_once:
        return f"{_counted(unfinished, 'open ticket')} (CUSTOMER_MAX_OPEN_TICKETS is {at_once})"
    return None


def _counted(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
