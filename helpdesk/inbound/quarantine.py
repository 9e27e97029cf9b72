"""Quarantine review: held mail waits for a person (docs/mail-gateway.md).

Approving runs the stored raw mail through the same pipeline steps as on arrival,
with the reviewer vouching for the sender as a customer who may open a ticket, so
it creates the ticket (next number) or appends the reply exactly as the pipeline
would have. It does not vouch for the From address (`ingest.decide`): a mail whose
From was not authenticated opens a new ticket linked to the one it names rather
than landing in it. Rejecting (or marking as
spam) keeps the raw mail and the decision for the record.

Who may review what (`AGENT_VISIBILITY`, `services.visibility`): a held mail that
names a ticket (a reply held for it; `QuarantineItem.ticket_id`, the ticket it
became once approved) is shown to, and decided by, only the staff who may see that
ticket; to anyone else it does not exist, as the ticket does not. Approval matches
the mail again and is refused the same way when the ticket it would land in now is
hidden from the reviewer (`approve`). An approval writing a mail into a ticket
matches again the other held mail that may answer it, so a follow-up held with it
names that ticket from then on (`_follow_approved`). Held mail that
names no ticket is the intake review, open to every agent. Held mail whose ticket
is unknown (`QuarantineItem.ticket_unknown`: it could not be read whole or
matched, so the part nobody read may name another ticket than the one found, if
any) only admins review under `team` or `own`. Admins and the
operator's terminal (a system actor) see everything.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from sqlalchemy import Select, and_, or_, select, update
from sqlalchemy.orm import Session

from helpdesk import addresses
from helpdesk.clock import now
from helpdesk.database import is_transient
from helpdesk.errors import Conflict, NotFound
from helpdesk.inbound.ingest import (
    Envelope,
    Outcome,
    Result,
    apply,
    decide,
    named_ticket,
    with_envelope_sender,
)
from helpdesk.inbound.limits import MailLimits
from helpdesk.inbound.parser import InboundMail, parse
from helpdesk.models import InboundMail as InboundRecord
from helpdesk.models import QuarantineItem, Ticket
from helpdesk.services import Actor, visibility

log = logging.getLogger(__name__)

MAX_REMATCHED = 20
"""How many other held mails one approval matches again (`_follow_approved`), each
parsed and matched as on arrival. Past them, the rest of the candidates are marked
`ticket_unknown` (admins review them under `team` and `own`) rather than left
open to every agent while they may be a hidden ticket's content."""


def pending(session: Session, viewer: Actor | None = None, mode: str = "all") -> list[QuarantineItem]:
    """The held mail waiting for a decision that `viewer` may review under `mode`."""
    query = select(QuarantineItem).where(QuarantineItem.state == "pending").order_by(QuarantineItem.id)
    return list(session.execute(_visible(session, query, viewer, mode)).scalars())


def get(session: Session, item_id: int, viewer: Actor | None = None, mode: str = "all") -> QuarantineItem:
    """The item, in any state; NotFound as well when `viewer` may not see its ticket."""
    query = select(QuarantineItem).where(QuarantineItem.id == item_id)
    item = session.execute(_visible(session, query, viewer, mode)).scalar_one_or_none()
    if item is None:
        raise NotFound(f"No quarantine item {item_id}.")
    return item


def _visible(
    session: Session, query: Select[QuarantineItem], viewer: Actor | None, mode: str
) -> Select[QuarantineItem]:
    """`query` narrowed to the items `viewer` may see: those known to name no ticket,
    and those whose ticket `visibility` lets them see (the whole mail, the ticket's
    number in its reason included, is the ticket's content)."""
    condition = visibility.clause(session, viewer, mode)
    if condition is None:
        return query
    # The ticket's own condition only where there is a ticket: on the outer join's
    # empty side "no team" holds for an item whose ticket is unknown.
    return query.outerjoin(Ticket, QuarantineItem.ticket_id == Ticket.id).where(
        QuarantineItem.ticket_unknown.is_(False),
        or_(QuarantineItem.ticket_id.is_(None), and_(QuarantineItem.ticket_id.is_not(None), condition)),
    )


def approve(session: Session, item_id: int, reviewer: Actor, config: Mapping[str, Any]) -> Result:
    """Run the held mail through the pipeline with `reviewer` vouching for its
    sender; NotFound when the reviewer may not see the ticket it names, or the one
    it is matched to now.

    The mail is matched again here, and may name another ticket than when it was
    held: a follow-up held with the mail it answers named none then, and lands in
    the ticket that mail became once approved; a named ticket may have been merged
    into another since. The reviewer must see that ticket as well, else they would
    write into a ticket hidden from them and learn its number. Nothing is written
    before the check; the caller rolls back the locks the match took."""
    mode = config["AGENT_VISIBILITY"]
    item = _pending(session, item_id, reviewer, mode)
    record = item.inbound_mail
    envelope, mail = _read(record, config)
    decision = decide(session, mail, envelope, config, approved_by=reviewer)
    if decision.ticket is not None and not visibility.may_see(session, reviewer, mode, decision.ticket.id):
        raise NotFound(f"No quarantine item {item_id}.")
    if decision.outcome not in (Outcome.CREATED, Outcome.APPENDED):
        raise Conflict(f"Cannot approve item {item_id}: {decision.reason}.")
    decision = replace(decision, reason=f"approved by {reviewer.label}: {decision.reason}")
    result = apply(session, mail, record, decision, config)
    record.outcome = result.outcome.value
    record.reason = decision.reason
    _decide(item, "approved", reviewer)
    item.ticket_id = record.ticket_id
    session.flush()
    _follow_approved(session, mail, config)
    return result


def _read(record: InboundRecord, config: Mapping[str, Any]) -> tuple[Envelope, InboundMail]:
    """The held mail's envelope and its raw bytes parsed, as on arrival."""
    envelope = Envelope(record.mail_from, tuple(filter(None, record.recipients.split(","))), record.channel)
    return envelope, with_envelope_sender(parse(record.raw, MailLimits.from_config(config)), envelope)


def _follow_approved(session: Session, approved: InboundMail, config: Mapping[str, Any]) -> None:
    """Match again the pending items that named no ticket and may answer the mail just
    approved, and record the ticket each names now (in the approval's transaction).

    A follow-up held with the mail it answers named no ticket (that mail had none
    yet), so every agent reviewed it; once the first mail is written into a ticket
    hidden from them, the follow-up is that ticket's content, and the list, its page
    and every decision judge the stored `ticket_id` (`_visible`, `_may_review`).
    The candidates are the held mail of the approved mail's sender and of the
    people it was addressed to (a reply-all from its Cc): one statement over the
    pending items, the rows the held-mail list reads. A follow-up from anyone else
    keeps naming no ticket; approving it is still judged by where it lands. Items
    another decision holds locked are skipped (it judges them as it found them),
    so an approval never waits for one that may wait for this one's ticket locks."""
    limits = MailLimits.from_config(config)
    support = set(config["SUPPORT_ADDRESSES"])
    addressed = [address for _, address in approved.to + approved.cc]
    senders = {approved.from_address} | {
        address
        for address in addressed[: limits.cc_participants]
        if not addresses.is_support_address(address, support)
    }
    senders.discard("")
    if not senders:
        return
    ids = list(
        session.execute(
            select(QuarantineItem.id)
            .join(InboundRecord, InboundRecord.id == QuarantineItem.inbound_mail_id)
            .where(
                QuarantineItem.state == "pending",
                QuarantineItem.ticket_id.is_(None),
                QuarantineItem.ticket_unknown.is_(False),
                InboundRecord.from_address.in_(sorted(senders)),
            )
            .order_by(QuarantineItem.id)
            .with_for_update(of=QuarantineItem, skip_locked=True)
        ).scalars()
    )
    for item_id in ids[:MAX_REMATCHED]:
        item = session.get_one(QuarantineItem, item_id)
        item.ticket_id, item.ticket_unknown = _names_now(session, item.inbound_mail, config)
    past = ids[MAX_REMATCHED:]
    for start in range(0, len(past), 500):
        session.execute(
            update(QuarantineItem)
            .where(QuarantineItem.id.in_(past[start : start + 500]))
            .values(ticket_unknown=True)
        )
    session.flush()


def _names_now(session: Session, record: InboundRecord, config: Mapping[str, Any]) -> tuple[int | None, bool]:
    """The ticket a held mail names now and whether which one is unknown, matched as
    when it was held (`ingest.named_ticket`). Matching that fails on the mail leaves
    it unknown, as at hold time, without failing the approval: the match runs in a
    savepoint, rolled back alone."""
    envelope, mail = _read(record, config)
    try:
        with session.begin_nested():
            named, unknown = named_ticket(session, mail, envelope, config)
    except Exception as exc:
        if is_transient(exc):
            raise
        log.error("matching a held mail again failed", exc_info=exc)
        return None, True
    return (named.id if named is not None else None), unknown


def reject(session: Session, item_id: int, reviewer: Actor, mode: str, *, spam: bool = False) -> None:
    """Keep the held mail out for good; NotFound when `reviewer` may not see (under
    `AGENT_VISIBILITY` `mode`) the ticket it names."""
    _decide(_pending(session, item_id, reviewer, mode), "spam" if spam else "rejected", reviewer)
    session.flush()


def _pending(session: Session, item_id: int, reviewer: Actor, mode: str) -> QuarantineItem:
    """The item, locked until the transaction ends, if it still waits for a decision
    and `reviewer` may see it (else NotFound, before its state is told).

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
    # `may_see` after the lock, not `_visible` in it: PostgreSQL refuses FOR UPDATE
    # on the nullable side of an outer join.
    if item is None or not _may_review(session, item, reviewer, mode):
        raise NotFound(f"No quarantine item {item_id}.")
    if item.state != "pending":
        raise Conflict(f"Quarantine item {item_id} was already {item.state}.")
    return item


def _may_review(session: Session, item: QuarantineItem, reviewer: Actor, mode: str) -> bool:
    """`_visible` for one item already read."""
    if item.ticket_unknown:
        return visibility.clause(session, reviewer, mode) is None
    if item.ticket_id is not None:
        return visibility.may_see(session, reviewer, mode, item.ticket_id)
    return True


def _decide(item: QuarantineItem, state: str, reviewer: Actor) -> None:
    item.state = state
    item.decided_by_id = reviewer.staff_id
    item.decided_at = now()
