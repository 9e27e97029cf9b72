"""How many tickets a customer may open (docs/integrations.md): at most
`CUSTOMER_MAX_TICKETS_PER_HOUR` new ones in the last hour and
`CUSTOMER_MAX_OPEN_TICKETS` not yet resolved, closed or cancelled.

A customer is counted by mailbox (`Contact.mailbox`, `addresses.mailbox`): the
tickets of every contact whose address reaches the requester's mailbox count, so
a sender writing from `robot+t1@`, `robot+t2@`… (each a contact of its own), or
from `v.ictim@gmail.com`, `vi.ctim@gmail.com`… (one Gmail inbox), has one count,
not a fresh one per spelling. Someone known by phone only has a stand-in
address, a mailbox of its own: their count is their contact's, as before.

Counted in the database, so every web worker and gateway agrees. On PostgreSQL the
contact's row and then the mailbox (a transaction-scoped advisory lock keyed on
it) are locked for the rest of the transaction first, so two requests for one
mailbox at the same moment, from one address or two, are counted one after the
other (SQLite's `BEGIN IMMEDIATE` serializes writers anyway). Staff opening
tickets for a customer are not limited: callers ask only for customers' own
requests.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy import Integer, bindparam, func, select
from sqlalchemy.orm import Session

from helpdesk import addresses
from helpdesk.clock import now
from helpdesk.database import advisory_key
from helpdesk.models import Contact, Ticket

FINISHED = ("resolved", "closed", "cancelled")
# The first key of the advisory lock on a customer's mailbox (the second is the
# mailbox's hash, `database.advisory_key`): two-key advisory locks are a space apart from the
# one-key locks of the lifecycle jobs, and this key keeps them apart from any other.
MAILBOX_LOCK = 0x6D6278  # "mbx"

# Built once with bind parameters: every new mail runs both, and composing them anew
# cost more than running them (docs/benchmarks.md, the levers of issue 19). Two
# statements, not one: the count must see what a transaction that held the lock
# committed, so it needs a snapshot taken after the lock is granted.
#
# The lock is one statement for two locks, in this order: the contact's row, FOR NO
# KEY UPDATE, as `contacts.current` takes it (it serialises the counting with a
# WhatsApp merge into the contact, yet a ticket inserted for the contact meanwhile,
# its foreign key taking KEY SHARE while the number counter is held, does not wait
# for it), then, once the row is locked (the subquery's LockRows runs below the
# outer select's projection), the mailbox's advisory lock: plus-addresses are
# contacts of their own, so the row alone let two of them count at once. Contacts
# before the mailbox before the counter (docs/lifecycle.md, "Concurrent changes").
#
# Both are written on the tables' columns, not the models' attributes: a statement
# naming a model runs through the ORM's compiling and result layers even when it
# returns no object, which cost a quarter of its time (docs/benchmarks.md, "Issue
# 19: CPU per mail, sixteenth session"). `reached_limit` flushes first, as the ORM
# did before its own statements.
_CONTACTS = Contact.__table__.c
_TICKETS = Ticket.__table__.c
_LOCK = select(
    func.pg_advisory_xact_lock(bindparam("space", type_=Integer), bindparam("mailbox_key", type_=Integer))
).select_from(
    select(_CONTACTS.id)
    .where(_CONTACTS.id == bindparam("contact"))
    .with_for_update(key_share=True)
    .subquery()
)
_COUNTS = select(
    func.count(_TICKETS.id).filter(_TICKETS.created_at >= bindparam("since")),
    func.count(_TICKETS.id).filter(_TICKETS.status.not_in(FINISHED)),
).where(_TICKETS.requester_id.in_(select(_CONTACTS.id).where(_CONTACTS.mailbox == bindparam("mailbox"))))


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
    mailbox = addresses.mailbox(contact.email)
    if contact.mailbox != mailbox:  # a row written without it (SQL by hand, a bench)
        contact.mailbox = mailbox
    session.flush()  # what the session holds is counted and locked in order, as before
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            _LOCK, {"contact": contact.id, "space": MAILBOX_LOCK, "mailbox_key": advisory_key(mailbox)}
        )
    recent, unfinished = session.execute(
        _COUNTS, {"mailbox": mailbox, "since": now() - timedelta(hours=1)}
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
