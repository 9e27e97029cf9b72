"""Quarantine review: held mail waits for a person (docs/mail-gateway.md).

Approving runs the stored raw mail through the same pipeline steps as on arrival,
with the reviewer vouching for the sender as a customer who may open a ticket, so
it creates the ticket (next number) or appends the reply exactly as the pipeline
would have. It does not vouch for the From address (`ingest.decide`): a mail whose
From was not authenticated opens a new ticket linked to the one it names rather
than landing in it. Rejecting (or marking as
spam) keeps the raw mail and the decision for the record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from helpdesk.clock import now
from helpdesk.errors import Conflict, NotFound
from helpdesk.inbound.ingest import Envelope, Outcome, Result, apply, decide, with_envelope_sender
from helpdesk.inbound.limits import MailLimits
from helpdesk.inbound.parser import parse
from helpdesk.models import QuarantineItem
from helpdesk.services import Actor


def pending(session: Session) -> list[QuarantineItem]:
    return list(
        session.execute(
            select(QuarantineItem).where(QuarantineItem.state == "pending").order_by(QuarantineItem.id)
        ).scalars()
    )


def get(session: Session, item_id: int) -> QuarantineItem:
    item = session.get(QuarantineItem, item_id)
    if item is None:
        raise NotFound(f"No quarantine item {item_id}.")
    return item


def approve(session: Session, item_id: int, reviewer: Actor, config: Mapping[str, Any]) -> Result:
    item = _pending(session, item_id)
    record = item.inbound_mail
    envelope = Envelope(record.mail_from, tuple(filter(None, record.recipients.split(","))), record.channel)
    mail = with_envelope_sender(parse(record.raw, MailLimits.from_config(config)), envelope)
    decision = decide(session, mail, envelope, config, approved_by=reviewer)
    if decision.outcome not in (Outcome.CREATED, Outcome.APPENDED):
        raise Conflict(f"Cannot approve item {item_id}: {decision.reason}.")
    decision = replace(decision, reason=f"approved by {reviewer.label}: {decision.reason}")
    result = apply(session, mail, record, decision, config)
    record.outcome = result.outcome.value
    record.reason = decision.reason
    _decide(item, "approved", reviewer)
    item.ticket_id = record.ticket_id
    session.flush()
    return result


def reject(session: Session, item_id: int, reviewer: Actor, *, spam: bool = False) -> None:
    _decide(_pending(session, item_id), "spam" if spam else "rejected", reviewer)
    session.flush()


def _pending(session: Session, item_id: int) -> QuarantineItem:
    """The item, locked until the transaction ends, if it still waits for a decision.

    Two reviewers (or a reviewer and the CLI) deciding one item at once: the second
    waits for the first one's row lock and then reads its decision, so a held mail
    becomes one ticket however many people approve it (docs/mail-gateway.md). On
    SQLite the transaction holds the write lock from its first read anyway."""
    item = session.execute(
        select(QuarantineItem)
        .where(QuarantineItem.id == item_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if item is None:
        raise NotFound(f"No quarantine item {item_id}.")
    if item.state != "pending":
        raise Conflict(f"Quarantine item {item_id} was already {item.state}.")
    return item


def _decide(item: QuarantineItem, state: str, reviewer: Actor) -> None:
    item.state = state
    item.decided_by_id = reviewer.staff_id
    item.decided_at = now()
