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
like the held mail up its thread: hidden once any of it is approved into a hidden
ticket, or while the sender's own mail up it names a hidden ticket or an unknown one. Other held
mail that names no ticket is the intake review, open to every agent. Held mail whose ticket
is unknown (`QuarantineItem.ticket_unknown`: it could not be read whole or
matched, so the part nobody read may name another ticket than the one found, if
any) only admins review under `team` or `own`. Admins and the
operator's terminal (a system actor) see everything.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Integer,
    Select,
    and_,
    func,
    literal_column,
    or_,
    select,
)
from sqlalchemy.orm import Session, aliased, joinedload

from helpdesk.clock import now
from helpdesk.errors import Conflict, NotFound, ValidationError
from helpdesk.inbound.apart import why_it_cannot_be_read
from helpdesk.inbound.ingest import (
    Envelope,
    Outcome,
    Result,
    apply,
    decide,
    held_unread,
    kept_beside,
    never_read,
    with_envelope_sender,
)
from helpdesk.inbound.limits import MailLimits
from helpdesk.inbound.parser import parse
from helpdesk.models import InboundMail, QuarantineItem, Ticket
from helpdesk.services import Actor, visibility
from helpdesk.services.queue import MAX_PER_PAGE, Page, settled_total

log = logging.getLogger(__name__)

# What a download of a held mail reads from the database at a time (`raw_slices`).
RAW_CHUNK_BYTES = 1024 * 1024
MAX_FOLLOWED = 8  # held mail a follow-up is judged by, up its thread; past it, admins only
PER_PAGE = 25  # held mail on a page of the portal's list, as tickets on the queue's


def pending(
    session: Session,
    viewer: Actor | None = None,
    mode: str = "all",
    *,
    page: int = 1,
    per_page: int = PER_PAGE,
    newest: bool = False,
) -> Page[QuarantineItem]:
    """One page of the held mail waiting for a decision that `viewer` may review
    under `mode`, oldest first (`newest`: the other way round, for the mail that
    came in today under a flood of spam), and how many wait in all; `per_page` is
    capped at the queue's MAX_PER_PAGE (docs/web.md, "Quarantine").

    Anyone on the internet gets mail held (UNKNOWN_SENDER_POLICY=quarantine), so
    the list is never read whole: 2,000 held mails were 2,003 statements and 2.2 s
    per view, each item's mail read on its own. Two statements now, whatever is
    held (and the agent's teams under `team`): the count, and the page with its
    inbound mail joined (its raw bytes stay deferred). Both ask the one visibility
    query (`_visible`), so an agent's count never tells of held mail hidden from
    them. A page not full tells the total itself, as the queue's does
    (`queue.settled_total`): a held mail decided between the count and the page
    made them disagree, an empty "page 2 of 2"."""
    asked = {"page": page, "per_page": per_page}
    errors = {name: "must be 1 or more" for name, value in asked.items() if value < 1}
    if errors:
        raise ValidationError(errors)
    per_page = min(per_page, MAX_PER_PAGE)
    query = _visible(session, lambda item: item.state == "pending", viewer, mode)
    counting = query.with_only_columns(func.count(QuarantineItem.id))
    total = session.execute(counting).scalar_one()
    # The page is picked from item ids alone and only its rows are joined to their
    # mail, as the queue picks its tickets: joined before the OFFSET, every item
    # skipped was joined too (page 2,000 of 100,000 held: 228 ms instead of 29).
    order = QuarantineItem.id.desc() if newest else QuarantineItem.id
    chosen = (
        query.with_only_columns(QuarantineItem.id)
        .order_by(order)
        .limit(per_page)
        .offset((page - 1) * per_page)
        .scalar_subquery()
    )
    items = (
        session.execute(
            select(QuarantineItem)
            .where(QuarantineItem.id.in_(chosen))
            .options(joinedload(QuarantineItem.inbound_mail, innerjoin=True))
            .order_by(order)
        )
        .scalars()
        .all()
    )
    total = settled_total(total, len(items), page, per_page, lambda: session.execute(counting).scalar_one())
    return Page(list(items), page, per_page, total)


def get(session: Session, item_id: int, viewer: Actor | None = None, mode: str = "all") -> QuarantineItem:
    """The item, in any state; NotFound as well when `viewer` may not see its ticket."""
    query = _visible(session, lambda item: item.id == item_id, viewer, mode)
    item = session.execute(query).scalar_one_or_none()
    if item is None:
        raise NotFound(f"No quarantine item {item_id}.")
    return item


Which = Callable[[Any], ColumnElement[bool]]


def _visible(session: Session, which: Which, viewer: Actor | None, mode: str) -> Select[QuarantineItem]:
    """The items `which` picks (a condition on the item entity given) that `viewer`
    may see: those known to name no ticket, and those whose ticket `visibility` lets
    them see (the whole mail, the ticket's number in its reason included, is the
    ticket's content). An item naming none that follows other held mail is hidden
    too when anything up its thread hides it (`_hiding`). A merge moves held mail to
    the survivor but skips an item locked at that moment, which then keeps naming
    the merged ticket: such an item, and anything following one, is admins' (it
    belongs to a survivor nobody checked the viewer against)."""
    query = select(QuarantineItem).where(which(QuarantineItem))
    condition = visibility.clause(session, viewer, mode)
    if condition is None:
        return query
    # The ticket's own condition only where there is a ticket: on the outer join's
    # empty side "no team" holds for an item naming none.
    return query.outerjoin(Ticket, QuarantineItem.ticket_id == Ticket.id).where(
        QuarantineItem.ticket_unknown.is_(False),
        or_(
            QuarantineItem.ticket_id.is_(None),
            and_(QuarantineItem.ticket_id.is_not(None), Ticket.merged_into_id.is_(None), condition),
        ),
        QuarantineItem.id.not_in(_hiding(which, condition)),
    )


def _hiding(which: Which, condition: ColumnElement[bool]) -> Select[tuple[int]]:
    """The ids of the items `which` picks that name no ticket and that the held mail
    up their thread hides from whoever `condition` (on `tickets`) lets see tickets.

    A follow-up records the held mail it answers (`follows_item_id`, the direct
    parent; items held by earlier versions recorded the thread's root, a parent too),
    so M3 → M2 → M1 is walked, at most MAX_FOLLOWED steps: M3 lands where M2 did once
    M2 is approved, whatever became of M1. An item on the way approved into a ticket
    hidden from the viewer hides the follow-up, whoever sent it: the follow-up lands
    there (or beside it). The ticket the item names when held, and its ticket being
    unknown, count only while every step up is the sender's own mail
    (`follows_own`): a stranger who gets their mail held first under a Message-ID a
    customer answers must not choose who reviews the customer's mail. The sender's
    own thread longer than the walk is admins' (nobody read its top); a thread of
    others past the walk is judged by the items walked.

    A recursive CTE over the primary key, the same SQL on SQLite and PostgreSQL: one
    statement for the whole list, its work bounded by the items listed times the
    bound (docs/isp-operations.md, "Visibility", measures it)."""
    head = aliased(QuarantineItem)
    parent = aliased(QuarantineItem)
    up = (
        select(
            head.id.label("head_id"),
            head.follows_item_id.label("item_id"),
            literal_column("1", Integer).label("depth"),
            head.follows_own.label("own"),
        )
        .where(which(head), head.ticket_id.is_(None), head.follows_item_id.is_not(None))
        .cte("thread", recursive=True)
    )
    up = up.union_all(
        select(
            up.c.head_id,
            parent.follows_item_id,
            up.c.depth + literal_column("1", Integer),
            and_(up.c.own, parent.follows_own),
        ).where(parent.id == up.c.item_id, parent.follows_item_id.is_not(None), up.c.depth < MAX_FOLLOWED)
    )
    item = aliased(QuarantineItem)
    seen = select(Ticket.id).where(Ticket.id == item.ticket_id, Ticket.merged_into_id.is_(None), condition)
    own = up.c.own.is_(True)
    return (
        select(up.c.head_id)
        .join(item, item.id == up.c.item_id)
        .where(
            or_(
                and_(item.ticket_id.is_not(None), or_(own, item.state == "approved"), ~seen.exists()),
                and_(own, item.ticket_unknown.is_(True)),
                and_(own, up.c.depth >= MAX_FOLLOWED, item.follows_item_id.is_not(None)),
            )
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
    # No bytes: parsed, they read as "no sender address", which sent the reviewer
    # looking for a sender in a mail nobody read (docs/mail-gateway.md, "Quarantine").
    if never_read(record):
        raise Conflict(
            f"Cannot approve item {item_id}: the mail gateway never read this mail from its mailbox, "
            "so nothing of it is stored here to approve; its reason says where it is."
        )
    limits = MailLimits.from_config(config)
    # Read for the first time: in a process apart first, as it may be what killed
    # the gateway's processes (docs/mail-gateway.md, "A mail that kills the listener").
    if held_unread(record) and (why := why_it_cannot_be_read(record.raw, limits)) is not None:
        log.warning("quarantine item %d not approved: %s", item_id, why)
        raise Conflict(
            f"Cannot approve item {item_id}: a process reading this mail apart did not end well, as "
            "the mail gateway's processes did not; reject it, or download it to look at it."
        )
    # Its source too: approved, it is counted where it came in (docs/web.md, "Mail flow").
    recipients = tuple(filter(None, record.recipients.split(",")))
    envelope = Envelope(record.mail_from, recipients, record.channel, record.source or "")
    mail = with_envelope_sender(parse(record.raw, limits), envelope)
    # Kept beside another mail that used its Message-ID first: the reason and the
    # gateway's note keep saying so (docs/mail-gateway.md, "Duplicates").
    beside = kept_beside(session, record.dedup_key)
    if beside is not None:
        mail = beside.noted(mail)
    decision = decide(session, mail, envelope, config, approved_by=reviewer)
    if decision.ticket is not None and not visibility.may_see(session, reviewer, mode, decision.ticket.id):
        raise NotFound(f"No quarantine item {item_id}.")
    if decision.outcome not in (Outcome.CREATED, Outcome.APPENDED):
        raise Conflict(f"Cannot approve item {item_id}: {decision.reason}.")
    decision = replace(decision, reason=f"approved by {reviewer.label}: {decision.reason}")
    if beside is not None:
        decision = replace(decision, reason=f"{decision.reason}; {beside.reason}")
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
    """`_visible` for one item already read (locked by `_pending`): the same query.

    The held mail up its thread (at most MAX_FOLLOWED items, newest first as every
    decision locks them) is read under a share lock first: an approval of any of it
    in progress (which holds its row) is waited for, so the ticket it lands in is
    judged, not the one it had before. The query after the locks sees it committed."""
    followed = item.follows_item_id if item.ticket_id is None else None
    for _ in range(MAX_FOLLOWED):
        if followed is None:
            break
        followed = session.execute(
            select(QuarantineItem.follows_item_id)
            .where(QuarantineItem.id == followed)
            .with_for_update(read=True)
        ).scalar_one_or_none()
    query = _visible(session, lambda candidate: candidate.id == item.id, reviewer, mode)
    return session.execute(query.with_only_columns(QuarantineItem.id)).first() is not None


def _decide(item: QuarantineItem, state: str, reviewer: Actor) -> None:
    item.state = state
    item.decided_by_id = reviewer.staff_id
    item.decided_at = now()


def raw_length(session: Session, item: QuarantineItem) -> int:
    """How many bytes the held mail has, read without reading them."""
    length = session.execute(
        select(func.length(InboundMail.raw)).where(InboundMail.id == item.inbound_mail_id)
    ).scalar()
    return int(length or 0)


def raw_slices(engine: Engine, mail_id: int, length: int) -> Iterator[bytes]:
    """The held mail's bytes (`length` of them, `raw_length`), RAW_CHUNK_BYTES at a
    time, each read on a connection taken from the pool for that read alone: none is
    held while a slow client downloads it (the mail never changes)."""
    for start in range(0, length, RAW_CHUNK_BYTES):
        with engine.connect() as connection:
            chunk = _raw_slice(connection, mail_id, start)
        if not chunk:
            return
        yield chunk


def _raw_slice(connection: Connection, mail_id: int, start: int) -> bytes:
    """RAW_CHUNK_BYTES of the mail from `start` (0-based). SQLite's `substr` reads the
    whole value for every slice (a 20 MiB mail took three times as long in 1 MiB
    slices as read whole); its incremental blob reading reads only the slice, in no
    transaction (every `BEGIN IMMEDIATE` takes the write lock)."""
    if connection.dialect.name == "sqlite":
        sqlite = cast(sqlite3.Connection, connection.connection.driver_connection)
        with sqlite.blobopen(InboundMail.__tablename__, "raw", mail_id, readonly=True) as blob:
            blob.seek(start)
            return bytes(blob.read(RAW_CHUNK_BYTES))
    slice_ = select(func.substr(InboundMail.raw, start + 1, RAW_CHUNK_BYTES)).where(InboundMail.id == mail_id)
    return bytes(connection.execute(slice_).scalar() or b"")
