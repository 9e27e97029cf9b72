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
hidden from the reviewer (`approve`). Held mail that names no ticket but answers
other held mail (`QuarantineItem.follows_item_id`, recorded when held) is reviewed
like that mail: hidden with it once it is approved into a hidden ticket. Other held
mail that names no ticket is the intake review, open to every agent. Held mail whose ticket
is unknown (`QuarantineItem.ticket_unknown`: it could not be read whole or
matched, so the part nobody read may name another ticket than the one found, if
any) only admins review under `team` or `own`. Admins and the
operator's terminal (a system actor) see everything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import Session, aliased

from helpdesk.clock import now
from helpdesk.errors import Conflict, NotFound
from helpdesk.inbound.ingest import Envelope, Outcome, Result, apply, decide, with_envelope_sender
from helpdesk.inbound.limits import MailLimits
from helpdesk.inbound.parser import parse
from helpdesk.models import QuarantineItem, Ticket
from helpdesk.services import Actor, visibility


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
    number in its reason included, is the ticket's content). An item naming none
    that follows another (`follows_item_id`, the root of its thread) is judged by
    that item's ticket and ticket_unknown: one step, the root stored when held."""
    condition = visibility.clause(session, viewer, mode)
    if condition is None:
        return query
    followed = aliased(QuarantineItem)
    judged = func.coalesce(QuarantineItem.ticket_id, followed.ticket_id)
    # The ticket's own condition only where there is a ticket: on the outer join's
    # empty side "no team" holds for an item whose ticket is unknown.
    return (
        query.outerjoin(followed, QuarantineItem.follows_item_id == followed.id)
        .outerjoin(Ticket, judged == Ticket.id)
        .where(
            QuarantineItem.ticket_unknown.is_(False),
            or_(followed.id.is_(None), followed.ticket_unknown.is_(False)),
            or_(judged.is_(None), and_(judged.is_not(None), condition)),
        )
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
    envelope = Envelope(record.mail_from, tuple(filter(None, record.recipients.split(","))), record.channel)
    mail = with_envelope_sender(parse(record.raw, MailLimits.from_config(config)), envelope)
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
    return result


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
    SQLite the transaction holds the write lock from its first read anyway. FOR NO
    KEY UPDATE: an item's key never changes, and a plain FOR UPDATE made the gateway
    holding a follow-up of it (its foreign key asks KEY SHARE) wait for the decision."""
    item = session.execute(
        select(QuarantineItem)
        .where(QuarantineItem.id == item_id)
        .with_for_update(key_share=True)
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
    """`_visible` for one item already read (locked by `_pending`).

    The item it follows is read under a share lock: an approval of that item in
    progress (which holds its row) is waited for, so the ticket it lands in is
    judged, not the one it had before."""
    judged = item
    if item.ticket_id is None and item.follows_item_id is not None:
        judged = (
            session.execute(
                select(QuarantineItem)
                .where(QuarantineItem.id == item.follows_item_id)
                .with_for_update(read=True)
                .execution_options(populate_existing=True)
            ).scalar_one_or_none()
            or item
        )
    if item.ticket_unknown or judged.ticket_unknown:
        return visibility.clause(session, reviewer, mode) is None
    if judged.ticket_id is not None:
        return visibility.may_see(session, reviewer, mode, judged.ticket_id)
    return True


def _decide(item: QuarantineItem, state: str, reviewer: Actor) -> None:
    item.state = state
    item.decided_by_id = reviewer.staff_id
    item.decided_at = now()
