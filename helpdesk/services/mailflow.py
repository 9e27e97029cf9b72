"""How mail is flowing (docs/web.md): what came in per channel and outcome, and per
mailbox and listener (SPEC §10), whether each IMAP mailbox is being polled, and
whether the outbox is draining.

All aggregates in SQL. A mailbox is *stuck* when it has not had a successful poll
for `IMAP_STUCK_AFTER`; the outbox is *backed up* when its oldest pending row has
waited longer than `OUTBOX_BACKLOG_AFTER`, both by the database's clock, which
stamped those times on whichever host wrote them (the hosts' own clocks may
disagree; `clock.database_clock`). Both show on the portal's Mail page and
on `/metrics`. Deduplicated deliveries are not rows (that is the point of
deduplication): each channel and source counts them (`dedup.count_duplicate`), all
time only. A source is the IMAP mailbox's key or the SMTP listener ("smtp " and its
SMTP_LISTEN); "" for mail recorded before sources were (migration 0043).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from helpdesk import vocabulary as v
from helpdesk.clock import database_now
from helpdesk.models import (
    ImapMailboxState,
    InboundDuplicates,
    InboundMail,
    OutboxMessage,
    StaffUser,
)
from helpdesk.services import contacts

# How the sender's refusal of a row to a marked address begins: the sender writes it
# (`mailgateway.outbound`), the Mail page counts the alerts it skipped by it.
UNDELIVERABLE_REASON = "undeliverable since"


@dataclass(frozen=True)
class MailboxHealth:
    key: str
    last_success_at: datetime | None
    last_error: str
    last_error_at: datetime | None
    stuck: bool


@dataclass(frozen=True)
class SourceFlow:
    """What came in by one mailbox or listener: every outcome, all time and in the
    last day, and the deliveries that were mail received before."""

    channel: str
    source: str  # "" for mail recorded before migration 0043 (or naming no source)
    inbound: dict[str, int]  # outcome -> count
    last_day: dict[str, int]
    duplicates: int


@dataclass(frozen=True)
class MailFlow:
    inbound: dict[str, dict[str, int]]  # channel -> outcome -> count
    inbound_last_day: dict[str, dict[str, int]]
    duplicates: dict[str, int]  # channel -> deliveries that were mail received before
    # The same split per mailbox and listener: each source that has counts, and each
    # IMAP mailbox polled, by channel and source.
    sources: list[SourceFlow]
    mailboxes: list[MailboxHealth]
    outbox: dict[str, int]  # state -> count
    oldest_pending_at: datetime | None
    outbox_backed_up: bool
    moment: datetime


def mail_flow(
    session: Session, *, stuck_after: timedelta, backlog_after: timedelta, moment: datetime | None = None
) -> MailFlow:
    moment = moment or database_now(session)
    counts = _inbound(session, None)
    recent = _inbound(session, moment - timedelta(days=1))
    mailboxes = [
        MailboxHealth(
            row.key,
            row.last_success_at,
            row.last_error,
            row.last_error_at,
            stuck=row.last_success_at is None or row.last_success_at < moment - stuck_after,
        )
        for row in session.execute(select(ImapMailboxState).order_by(ImapMailboxState.key)).scalars()
    ]
    found = dict(
        session.execute(
            select(OutboxMessage.state, func.count(OutboxMessage.id)).group_by(OutboxMessage.state)
        ).all()
    )
    oldest = session.execute(
        select(func.min(OutboxMessage.created_at)).where(OutboxMessage.state == "pending")
    ).scalar()
    duplicates = {
        (channel, source): int(count)
        for channel, source, count in session.execute(
            select(InboundDuplicates.channel, InboundDuplicates.source, InboundDuplicates.count)
        )
    }
    places = sorted({*counts, *duplicates, *(("imap", box.key) for box in mailboxes)})
    sources = [
        SourceFlow(
            channel,
            source,
            counts.get((channel, source), _none()),
            recent.get((channel, source), _none()),
            duplicates.get((channel, source), 0),
        )
        for channel, source in places
        if channel in v.INBOUND_CHANNELS
    ]
    return MailFlow(
        inbound=_per_channel(counts),
        inbound_last_day=_per_channel(recent),
        duplicates={
            channel: sum(count for (c, _source), count in duplicates.items() if c == channel)
            for channel in v.INBOUND_CHANNELS
        },
        sources=sources,
        mailboxes=mailboxes,
        outbox={state: int(found.get(state, 0)) for state in v.OUTBOX_STATES},
        oldest_pending_at=oldest,
        outbox_backed_up=oldest is not None and oldest < moment - backlog_after,
        moment=moment,
    )


@dataclass(frozen=True)
class UnmailedStaff:
    """An active staff member whose address is marked undeliverable: their alerts
    (escalations, SLA alerts and digests) are skipped, `skipped` of them since the mark."""

    staff_id: int
    name: str
    email: str
    since: datetime
    skipped: int


def unmailed_staff(session: Session) -> list[UnmailedStaff]:
    """Active staff whose alerts are not mailed because a bounce (or a 5.1.x refusal
    at RCPT) marked their address undeliverable (docs/outbound-mail.md, "Loop rules").
    Skipped silently, such an alert was a breach nobody heard of; the Mail page shows
    each, with the count of alerts skipped since the mark.

    The mark is read as the sender reads it (`contacts.undeliverable_marks`: on any
    spelling of the mailbox the address is mailed at): compared as written,
    `jane@bücher.example`'s alerts were skipped for the mark on
    `jane@xn--bcher-kva.example` while this page named nobody, and a staff address
    typed in fullwidth letters is marked on the form the relay is given
    (`contacts.mark_undeliverable`). The staff table is a helpdesk's staff, read
    whole as `contacts.is_ours` reads it."""
    staff = session.execute(
        select(StaffUser.id, StaffUser.name, StaffUser.email)
        .where(StaffUser.is_active.is_(True))
        .order_by(StaffUser.name, StaffUser.id)
    ).all()
    marks = contacts.undeliverable_marks(session, {email for _, _, email in staff})
    marked = [(staff_id, name, email, marks[email]) for staff_id, name, email in staff if email in marks]
    if not marked:
        return []
    skipped = dict(
        session.execute(
            select(OutboxMessage.to_address, func.count(OutboxMessage.id))
            .where(
                or_(
                    *(
                        and_(OutboxMessage.to_address == email, OutboxMessage.claimed_at >= since)
                        for _, _, email, since in marked
                    )
                ),
                OutboxMessage.kind.in_(v.STAFF_NOTIFICATION_KINDS),
                OutboxMessage.state == "skipped",
                OutboxMessage.last_error.startswith(UNDELIVERABLE_REASON, autoescape=True),
            )
            .group_by(OutboxMessage.to_address)
        ).all()
    )
    return [
        UnmailedStaff(staff_id, name, email, since, int(skipped.get(email, 0)))
        for staff_id, name, email, since in marked
    ]


def _inbound(session: Session, since: datetime | None) -> dict[tuple[str, str], dict[str, int]]:
    """Mail recorded per channel and source, by outcome (every outcome, 0 when none);
    since `since` when given. Mail naming no source is counted under ""."""
    query = select(InboundMail.channel, InboundMail.source, InboundMail.outcome, func.count(InboundMail.id))
    if since is not None:
        query = query.where(InboundMail.received_at >= since)
    found: dict[tuple[str, str], dict[str, int]] = {}
    for channel, source, outcome, count in session.execute(
        query.group_by(InboundMail.channel, InboundMail.source, InboundMail.outcome)
    ):
        outcomes = found.setdefault((channel, source or ""), _none())
        outcomes[outcome] = outcomes.get(outcome, 0) + int(count)
    return found


def _none() -> dict[str, int]:
    return dict.fromkeys(v.INBOUND_OUTCOMES, 0)


def _per_channel(counts: dict[tuple[str, str], dict[str, int]]) -> dict[str, dict[str, int]]:
    """The sources' counts added up per channel, every channel and outcome named."""
    totals = {channel: _none() for channel in v.INBOUND_CHANNELS}
    for (channel, _source), outcomes in counts.items():
        if channel in totals:
            for outcome, count in outcomes.items():
                totals[channel][outcome] = totals[channel].get(outcome, 0) + count
    return totals
