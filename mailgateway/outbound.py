"""The outbound sender: delivers the outbox to `OUTBOUND_SMTP_URL` (docs/outbound-mail.md).

`gateway.py` runs one `Sender` thread beside the SMTP listener and the IMAP
pollers; any number of gateway processes may share one database. The loop is
`while not stopping: claim → send → mark`, sleeping `OUTBOUND_POLL_SECONDS` when
nothing is due.

- **Claim**, in one short transaction: due rows of the kinds this release has
  templates for (a newer release's kind waits for its own senders) — `pending` whose
  `next_attempt_at` has come, or `sending` whose lease (`OUTBOUND_LEASE`) ran out
  because their sender died, both by the database's clock (see One clock; such a
  row alone, the one claimed longest ago first: the mail being sent when its
  sender died may be what killed it) — are
  selected `FOR UPDATE SKIP LOCKED` on PostgreSQL (on SQLite, `BEGIN IMMEDIATE`
  lets one writer in at a time), marked
  `sending` with `claimed_at`, checked against the recipient rules below and,
  on their first claim, rendered (`compose`); their tickets' languages are fixed
  first, in ticket-id order (`Composer.fix_languages`). Two senders never hold
  one row. Only what needs the database: each mail is built without its files,
  and a batch takes rows up to `_BATCH_FILE_BYTES` of files.
- **Send** outside any transaction, one SMTP connection per batch, one mail at a
  time: its files are read and attached just before it is sent (`_data`), so the
  claim stays short and the sender holds one mail's bytes at a time.
- **Mark** each row right after the server's answer, in its own transaction and
  only while the claim is still ours: `250` → `sent`; a `5xx` → `failed` for
  good (the reply is kept in `last_error`; `flask outbox retry ID` requeues);
  a `4xx`, no connection or a `5xx` about our session rather than the mail
  (`_SETUP_CODES`, a refused `MAIL FROM`, a refused EHLO/HELO) → `pending`
  again after a backoff that doubles from `OUTBOUND_RETRY_FIRST` up to
  `OUTBOUND_RETRY_MAX`, until the row is older than `OUTBOUND_GIVE_UP_AFTER` →
  `failed`.

One clock: every time on an outbox row is stamped by the database's clock
(`clock.database_clock`; a new row's times are the model's default,
`clock.DatabaseClock`), by whichever host writes it (a SQL expression in the
INSERT or UPDATE, no extra round trip), and judged by it: queued and due
(`created_at`, `next_attempt_at`: the web app, the gateway, the SLA check,
`flask outbox retry`), claimed (`claimed_at`), sent, bounced. A host whose clock
runs ahead neither takes over a live claim nor queues mail that waits for its
clock; one behind queues none that looks overdue (given up early, the outbox
"backed up" for `--check` and the Mail page). The customer's mails a row is
threaded onto are received by that clock too (`ingest`, `compose`). The sender
reads that clock once a batch, at the claim (`clock.database_now`), which judges
what is due and a failed row's age (so a row is given up at most half a lease
late, never early). A retry's due time, its backoff counted from the failure,
and the sent time are that clock in the row's UPDATE (counted from the claim, a
retry late in a slow batch was due at once). How long it has held its batch it
measures on its monotonic clock.

At-least-once: a crash (or a lost database) between the server's `250` and the
mark leaves that one row `sending`; when its lease runs out it is sent again, with
the same Message-ID. Claimed rows that were not sent yet are sent later; nothing
is lost and nothing else is sent twice.

Recipient rules, checked at every claim so the newest knowledge wins; a refused
row becomes `skipped` with the reason: machine addresses (noreply,
mailer-daemon, postmaster…; `automail.is_machine_address`), addresses under the
reserved `.invalid` domain (customers known by phone only), addresses
`addresses.is_valid` refuses (stored before it did), address literals
(`ann@[192.0.2.1]`: the relay would connect to that host), the helpdesk's own
addresses, addresses a bounce (or a 5.1.x refusal at RCPT, `_BAD_MAILBOX`)
marked undeliverable (but for a verification code, which its owner asked for),
staff mail (SLA alerts, digests, escalations) to an address
no active staff member has (deactivated since it was queued); and, for automatic customer mail
(acknowledgments, status notices; not verification codes, which `email_proofs`
bounds where they are asked for) on its first claim, at most
`OUTBOUND_MAX_AUTO_PER_RECIPIENT` per address and `OUTBOUND_MAX_AUTO_PER_TICKET`
per ticket within `OUTBOUND_RATE_WINDOW` — the brake on any loop nobody foresaw;
an address is counted by the mailbox it reaches (`addresses.mailbox`: no
detail, lower-case, the domain's IDNA form, Gmail's dots dropped), so
plus-addresses and the spellings of one Gmail inbox are one.
A row that passed counts until it is sent or given up, retries included (a row
waiting for one is `pending` again, rendered). Several senders count each
other's committed claims only, so under concurrency a limit can be passed by a
batch at most.
"""

from __future__ import annotations

import base64
import logging
import re
import smtplib
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from typing import Literal, cast, overload

from flask import Flask
from sqlalchemy import and_, bindparam, exists, func, or_, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, aliased, selectinload
from sqlalchemy.sql.elements import ColumnElement

from helpdesk import addresses
from helpdesk import vocabulary as v
from helpdesk.clock import database_clock, database_now, describe
from helpdesk.extensions import db
from helpdesk.inbound import automail
from helpdesk.instance import ConfigurationError
from helpdesk.models import Attachment, InboundMail, OutboxMessage, StaffUser, Ticket
from helpdesk.outbound.compose import Composer, ThreadHint
from helpdesk.services import contacts, notifications
from helpdesk.services.mailflow import UNDELIVERABLE_REASON
from helpdesk.services.notifications import AUTOMATIC_KINDS
from mailgateway.loop import Loop
from mailgateway.serverurl import InvalidServerUrl, Schemes, ServerUrl, parse_server_url

log = logging.getLogger("mailgateway.outbound")

_SCHEMES = Schemes("OUTBOUND_SMTP_URL", "smtp", "smtps", 25, 465, credentials_required=False)
# What the rate limits count: rows that passed the check at their first claim (and
# were rendered then) and are not given up — a row waiting for a retry is `pending`
# again, and still a mail on its way.
_COUNTED_STATES = ("pending", "sending", "sent", "bounced")
_MAX_BACKOFF_DOUBLINGS = 30
# Replies about our session with the relay, not a mail (RFC 4954 §6, RFC 3207):
# authentication required (530), too weak (534), refused (535), needs TLS (538).
_SETUP_CODES = frozenset({530, 534, 535, 538})
# A batch is handed back at half the lease and its connection cut at this share of
# it, leaving the rest to mark the rows while the claim is ours (`_Cutoff`).
_CUT_AT = 0.75
_CUT_RETRY_SECONDS = 0.05  # how soon a cut due before the connection existed looks again
_TOO_BIG = 552  # at MAIL FROM, the SIZE we declared: this mail's fault (RFC 1870)
# How many bytes of files a batch carries at most (one row at least): a reply's
# files go to each recipient in a copy of its own, 20 MiB to 20 addresses are 20
# copies, and a batch's rows are held `sending` until the last has gone.
_BATCH_FILE_BYTES = 64 * 2**20
# Enhanced codes (RFC 3463, RFC 7505) saying the recipient's mailbox or domain does
# not exist: bad mailbox (5.1.1), bad system (5.1.2), bad address syntax (5.1.3),
# mailbox moved (5.1.6), null MX (5.1.10). Not the other 5.1.x: 5.1.7 and 5.1.8
# are about our sender, 5.1.0 and 5.1.4 say too little.
_BAD_MAILBOX = re.compile(r"5\.1\.(?:1|2|3|6|10)(?!\d)")
# Whether a staff alert's recipient is still an active staff member (`refusal`).
_ACTIVE_STAFF = select(exists().where(StaffUser.email == bindparam("email"), StaffUser.is_active.is_(True)))
# How often the running sender looks for waiting rows of a kind it does not know
# (`_note_unknown_kinds`): one cheap statement, not one a claim.
_UNKNOWN_KINDS_EVERY = 300.0


def parse_outbound_url(value: str) -> ServerUrl | None:
    """`smtp://[user:pass@]host[:port][?starttls=true]` or `smtps://…`; None when empty."""
    if not value.strip():
        return None
    server = parse_server_url(value, _SCHEMES)
    if server.path:
        raise InvalidServerUrl("OUTBOUND_SMTP_URL takes no path")
    return server


@dataclass(frozen=True)
class Outgoing:
    """A claimed, rendered row on its way to the server (no ORM object: the
    claim's transaction is over while it is sent). Its mail is built without the
    reply's files, which are read and encoded just before it is sent (`_data`)."""

    row_id: int
    claimed_at: datetime
    created_at: datetime
    attempts: int
    to_address: str  # as SMTP carries it (`addresses.on_the_wire`)
    mail_from: str  # the row's own signed envelope sender, so a bounce names it (`return_paths.make`)
    smtputf8: bool  # a mailbox name beyond ASCII: RFC 6531 mail
    mail: EmailMessage  # headers and bodies (`Composer.build`)
    files_of: int | None  # the public reply whose files go with it (`Composer.files_of`)
    label: str  # for the log: "outbox #12 created to ann@example.com <tkt.…>"


class Sender(Loop):
    name = "outbound sender"

    def __init__(
        self,
        app: Flask,
        stopping: threading.Event | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        """`clock` (tests move one) stands for the database's (see One clock) in
        every answer `_now` gives."""
        config = app.config
        poll = float(config["OUTBOUND_POLL_SECONDS"])
        # A failed round (the database away, a bug) is tried again at the next poll:
        # rows wait for their lease either way.
        super().__init__(stopping, idle_seconds=poll, first_backoff=poll, max_backoff=poll)
        self.app = app
        self._test_clock = clock
        self.server = parse_outbound_url(config["OUTBOUND_SMTP_URL"])
        self.composer = Composer(config)
        _check_outbound_from(
            self.composer.envelope_from, config["SUPPORT_ADDRESSES"], self.composer.signer.domain
        )
        # Compared by the mailbox they reach (`addresses.is_support_address`).
        self.own_addresses = [*config["SUPPORT_ADDRESSES"], self.composer.envelope_from]
        self.batch_size = int(config["OUTBOUND_BATCH_SIZE"])
        self.timeout = float(config["OUTBOUND_TIMEOUT_SECONDS"])
        self.lease = config["OUTBOUND_LEASE"]
        self.retry_first = config["OUTBOUND_RETRY_FIRST"]
        self.retry_max = config["OUTBOUND_RETRY_MAX"]
        self.give_up_after = config["OUTBOUND_GIVE_UP_AFTER"]
        self.rate_window = config["OUTBOUND_RATE_WINDOW"]
        self.max_per_recipient = int(config["OUTBOUND_MAX_AUTO_PER_RECIPIENT"])
        self.max_per_ticket = int(config["OUTBOUND_MAX_AUTO_PER_TICKET"])
        # Kinds of waiting rows this release does not know, logged once each, and when
        # the loop looks for them next (`_note_unknown_kinds`).
        self.unknown_kinds: set[str] = set()
        self.unknown_kinds_due = 0.0

    # -- the loop ------------------------------------------------------------------

    def off(self) -> str | None:
        return "OUTBOUND_SMTP_URL is empty" if self.server is None else None

    def started(self) -> None:
        assert self.server is not None
        log.info("outbound sender delivering to %s:%s", self.server.host, self.server.port)
        unsigned = self.composer.return_paths.first_unsigned_row()
        if unsigned is not None:
            log.warning(
                "outbox rows from #%s on are sent from %s itself: its local part leaves no room for "
                "a return path within 64 octets, so their bounces mark nothing (docs/outbound-mail.md)",
                unsigned,
                self.composer.return_paths.base,
            )

    def round(self) -> bool:
        """A full batch was claimed: more may be waiting."""
        if time.monotonic() >= self.unknown_kinds_due:
            self._note_unknown_kinds()
        return self.run_once() > 0

    def _note_unknown_kinds(self) -> None:
        """Log, once per kind and process, that rows of a kind of mail this release
        has no template for wait for a sender of the release that queued them (the
        claim leaves them alone; docs/operations.md, "Upgrades and the schema revision")."""
        with self.app.app_context():
            try:
                kinds = db.session.execute(
                    select(OutboxMessage.kind, func.count())
                    .where(
                        OutboxMessage.state.in_(("pending", "sending")),
                        OutboxMessage.kind.not_in(v.NOTIFICATION_KINDS),
                    )
                    .group_by(OutboxMessage.kind)
                ).all()
            finally:
                db.session.remove()  # type: ignore[attr-defined]  # the scoped session's
        self.unknown_kinds_due = time.monotonic() + _UNKNOWN_KINDS_EVERY
        for kind, waiting in kinds:
            if kind not in self.unknown_kinds:
                self.unknown_kinds.add(kind)
                log.warning(
                    "%s outbox row(s) of kind %r wait for a sender that knows it: this release has no "
                    "template for it (queued by a newer release?); left unclaimed, never failed",
                    waiting,
                    kind,
                )

    def run_once(self) -> int:
        """Claim one batch and deliver it; returns how many rows were claimed."""
        with self.app.app_context():
            try:
                started = time.monotonic()
                claimed, outgoing = self.claim()
                if outgoing:
                    self.deliver(outgoing, started)
                return claimed
            finally:
                db.session.remove()  # type: ignore[attr-defined]  # the scoped session's

    # -- claim ---------------------------------------------------------------------

    def claim(self) -> tuple[int, list[Outgoing]]:
        session = db.session
        moment = self._now()
        try:
            rows = (
                session.execute(
                    select(OutboxMessage)
                    .where(
                        # A kind a newer release queued (during a rolling upgrade) is
                        # left to a sender that has its templates: claimed here, it
                        # could only fail (docs/operations.md, "Upgrades and the schema revision").
                        OutboxMessage.kind.in_(v.NOTIFICATION_KINDS),
                        or_(
                            and_(OutboxMessage.state == "pending", OutboxMessage.next_attempt_at <= moment),
                            and_(
                                OutboxMessage.state == "sending",
                                OutboxMessage.claimed_at < moment - self.lease,
                            ),
                        ),
                    )
                    .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
                    .limit(self.batch_size)
                    .with_for_update(skip_locked=True)
                )
                .scalars()
                .all()
            )
            rows = _alone_if_its_sender_died(rows)
            tickets, hints, undeliverable, file_bytes = (
                self._batch_context(session, rows) if rows else ({}, {}, {}, {})
            )
            rows = _within_bytes(rows, file_bytes)
            counts = self._rate_counts(session, rows, moment)
            # Before any row is rendered, in ticket-id order (`Composer.fix_languages`).
            self.composer.fix_languages(
                session,
                {tickets[row.ticket_id] for row in rows if _fixes_language(row) and row.ticket_id in tickets},
            )
            outgoing = [
                item
                for row in rows
                if (
                    item := self._prepare(
                        session,
                        row,
                        moment,
                        tickets,
                        undeliverable.get(row.to_address),
                        hints.get(row.ticket_id) if row.ticket_id is not None else None,
                        counts,
                    )
                )
            ]
            session.commit()
        except BaseException:
            session.rollback()
            raise
        return len(rows), outgoing

    @staticmethod
    def _batch_context(
        session: Session,
        rows: Sequence[OutboxMessage],
    ) -> tuple[dict[int, Ticket], dict[int, ThreadHint], dict[str, datetime], dict[int, int]]:
        """What every row of a batch needs, read once for the batch: the tickets with
        requester and CC participants (held here: the session's identity map keeps
        only objects someone refers to, and rendering looks them up), and whether
        each has tickets merged into it or mail to thread to (`ThreadHint`; in the
        same statement), since when
        each bounced recipient is undeliverable (the claim changes neither), by the
        row's address, for a mark on any spelling of its mailbox: a bounce names
        `ana@xn--bcher-kva.example`, the same mailbox as a row's `ana@bücher.example`,
        and how many bytes of files each reply of the batch has (`_within_bytes`)."""
        batch_ids = [row.id for row in rows]
        merged_in = aliased(Ticket)
        merged = select(merged_in.id).where(merged_in.merged_into_id == Ticket.id).exists()
        mailed = or_(
            select(InboundMail.id)
            .where(InboundMail.ticket_id == Ticket.id, InboundMail.message_id.is_not(None))
            .exists(),
            select(OutboxMessage.id)
            .where(
                OutboxMessage.ticket_id == Ticket.id,
                OutboxMessage.message_id.is_not(None),
                OutboxMessage.id.not_in(batch_ids),
            )
            .exists(),
        )
        found = session.execute(
            select(Ticket, merged, mailed)
            .options(selectinload(Ticket.participants))
            .where(Ticket.id.in_({row.ticket_id for row in rows if row.ticket_id is not None}))
        ).all()
        tickets = [ticket for ticket, _, _ in found]
        # Another row of the batch on the same ticket may be rendered first and be
        # this one's thread: those tickets are read row by row, as before.
        shared = Counter(row.ticket_id for row in rows)
        hints = {
            ticket.id: ThreadHint(merged=bool(is_merged), earlier=bool(has_mail) or shared[ticket.id] > 1)
            for ticket, is_merged, has_mail in found
        }
        # A mark on any spelling of the mailbox a row goes to holds (the ones the
        # portal shows and `flask addresses deliverable` clears): a copy to
        # ana@xn--bcher-kva.example was mailed though ana@bücher.example was marked.
        # Each row's own spellings: keyed by the wire form for the whole batch, a
        # mark on one row's spelling held for another row only in the same batch.
        since = contacts.undeliverable_marks(session, {row.to_address for row in rows})
        replies = {row.reply_id for row in rows if row.reply_id is not None}
        file_bytes = (
            session.execute(
                select(Attachment.message_id, func.sum(Attachment.size))
                .where(Attachment.message_id.in_(replies))
                .group_by(Attachment.message_id)
            ).all()
            if replies
            else []
        )
        return (
            {ticket.id: ticket for ticket in tickets},
            hints,
            since,
            {reply: int(size) for reply, size in file_bytes},
        )

    def _prepare(
        self,
        session: Session,
        row: OutboxMessage,
        moment: datetime,
        tickets: dict[int, Ticket],
        undeliverable: datetime | None,
        hint: ThreadHint | None,
        counts: _RateCounts,
    ) -> Outgoing | None:
        # The batch's earlier rows are written now, each in one UPDATE: this row's
        # thread may be one of them (rendering reads without flushing).
        session.flush()
        if row.state == "sending":
            if moment - row.created_at >= self.give_up_after:
                # Giving up is otherwise decided after a failed attempt: a row whose
                # sending kills its sender every time would be claimed for ever.
                row.state, row.claimed_at = "failed", moment
                row.last_error = f"gave up: its sender stopped while sending it (attempts: {row.attempts})"
                log.warning("outbox #%s: %s", row.id, row.last_error)
                return None
            log.warning("outbox #%s: lease expired (its sender stopped?); sending again", row.id)
        first_claim = row.message_id is None
        # This row's claim and rendering are written in one UPDATE, at the next row's
        # flush or the commit.
        refusal = self.refusal(session, row, moment, first_claim, undeliverable, counts)
        row.state, row.claimed_at, row.attempts = "sending", moment, row.attempts + 1
        row.to_mailbox = addresses.mailbox(row.to_address)  # what the limit per recipient counts
        if refusal:
            row.state, row.last_error = "skipped", refusal
            notifications.forget_code(row)  # never rendered: its code goes unmailed
            log.info("outbox #%s %s to %s: skipped (%s)", row.id, row.kind, row.to_address, refusal)
            return None
        try:
            if first_claim:
                with session.no_autoflush:
                    self.composer.render(session, row, hint)
            else:
                self.composer.sign_again_if_not_ascii(row)
            # Every row is about a ticket but an SLA digest, which is about many.
            ticket = tickets[row.ticket_id] if row.ticket_id is not None else None
            mail = self.composer.build(row, ticket, moment)  # its files after the claim (`_data`)
        except DBAPIError:
            raise
        except Exception as exc:  # a broken template or row: fail this row, visibly
            log.exception("outbox #%s: cannot render", row.id)
            row.state, row.last_error = "failed", f"cannot render: {type(exc).__name__}: {exc}"
            notifications.forget_code(row)
            return None
        recipient = cast(str, addresses.on_the_wire(row.to_address))  # `refusal` skipped None
        return Outgoing(
            row.id,
            moment,
            row.created_at,
            row.attempts,
            recipient,
            self.composer.return_paths.make(row.id, row.to_address),
            addresses.needs_smtputf8(recipient),
            mail,
            self.composer.files_of(row),
            f"outbox #{row.id} {row.kind} to {row.to_address} <{row.message_id}>",
        )

    def refusal(
        self,
        session: Session,
        row: OutboxMessage,
        moment: datetime,
        first_claim: bool,
        undeliverable: datetime | None,
        counts: _RateCounts,
    ) -> str | None:
        """Why this row must not be mailed, or None (see the module docstring);
        `undeliverable`: since when a bounce marked the recipient undeliverable;
        `counts`: the batch's rate-limit counts (`_rate_counts`)."""
        # Every rule reads the address as the relay will see it: our own domain in
        # fullwidth letters is stored as written, but IDNA makes it ours on the wire.
        address = addresses.wire_or_stored(row.to_address)
        if automail.is_machine_address(address):
            return "machine address (noreply, mailer-daemon, postmaster…): never mailed"
        if addresses.is_reserved_invalid(address):
            return "no mail address (a customer known by phone only): never mailed"
        if not addresses.is_valid(row.to_address):
            return f"the address {addresses.INVALID} (stored before the rule refused it): never mailed"
        if addresses.is_address_literal(address):
            # A relay mailing `ann@[127.0.0.1]` connects to that host: its own loopback,
            # a server inside the network (docs/outbound-mail.md, "Loop rules").
            return "an address literal (a host named by its IP address): never mailed"
        if addresses.on_the_wire(row.to_address) is None:
            return "the domain has no ASCII form (IDNA) a relay could take: never mailed"
        if addresses.is_support_address(address, self.own_addresses) or (
            address.rpartition("@")[2] == self.composer.signer.domain
        ):
            return "the helpdesk's own address: never mailed"
        # A verification code goes even so: its owner asked for it on purpose, and
        # only a mail can clear the mark, which a code given back does
        # (docs/outbound-mail.md, "Verification codes"); a new bounce marks it again.
        if undeliverable is not None and row.kind != "email_code":
            return f"{UNDELIVERABLE_REASON} {undeliverable:%Y-%m-%d %H:%M} UTC (a mail to it bounced)"
        if (
            row.kind in v.STAFF_NOTIFICATION_KINDS
            and not session.execute(_ACTIVE_STAFF, {"email": row.to_address}).scalar_one()
        ):
            # Ticket subjects and portal links are for staff: someone who left and
            # was deactivated after the row was queued gets none.
            return "no active staff member has this address (deactivated since it was queued)"
        if first_claim and row.kind in AUTOMATIC_KINDS:
            return self._rate_limited(row, moment, counts)
        return None

    def _rate_counts(self, session: Session, rows: Sequence[OutboxMessage], moment: datetime) -> _RateCounts:
        """The rate limits' counts for a batch, in one statement: the counted rows
        (`_COUNTED_STATES`, rendered, claimed within the window) outside the batch,
        by mailbox and ticket. The batch's own rows are counted as they stand when
        each row is judged (`_rate_limited`), as the row-by-row count read them."""
        judged = [row for row in rows if row.message_id is None and row.kind in AUTOMATIC_KINDS]
        if not judged:
            return _RateCounts(rows)
        mailboxes = {addresses.mailbox(row.to_address) for row in judged}
        on_tickets = {row.ticket_id for row in judged if row.ticket_id is not None}
        found = session.execute(
            select(OutboxMessage.to_mailbox, OutboxMessage.ticket_id, func.count())
            .where(
                OutboxMessage.kind.in_(AUTOMATIC_KINDS),
                OutboxMessage.state.in_(_COUNTED_STATES),
                OutboxMessage.message_id.is_not(None),
                OutboxMessage.claimed_at >= moment - self.rate_window,
                OutboxMessage.id.not_in([row.id for row in rows]),
                or_(OutboxMessage.to_mailbox.in_(mailboxes), OutboxMessage.ticket_id.in_(on_tickets)),
            )
            .group_by(OutboxMessage.to_mailbox, OutboxMessage.ticket_id)
        ).all()
        counts = _RateCounts(rows)
        for mailbox, ticket_id, count in found:
            if mailbox is not None:
                counts.by_mailbox[mailbox] += count
            if ticket_id is not None:
                counts.by_ticket[ticket_id] += count
        return counts

    def _rate_limited(self, row: OutboxMessage, moment: datetime, counts: _RateCounts) -> str | None:
        """Over a limit on automatic mail? The recipient is counted by mailbox
        (`addresses.mailbox`): a bot answering from `robot+t1@`, `robot+t2@`… is one.
        A row about no ticket is counted per recipient only."""
        mailbox = addresses.mailbox(row.to_address)
        since = moment - self.rate_window
        batch = [
            other
            for other in counts.batch
            if other is not row
            and other.kind in AUTOMATIC_KINDS
            and other.state in _COUNTED_STATES
            and other.message_id is not None
            and other.claimed_at is not None
            and other.claimed_at >= since
        ]
        to_recipient = counts.by_mailbox[mailbox] + sum(other.to_mailbox == mailbox for other in batch)
        for_ticket = (
            counts.by_ticket[row.ticket_id] + sum(other.ticket_id == row.ticket_id for other in batch)
            if row.ticket_id is not None
            else 0
        )
        window = describe(self.rate_window)
        if to_recipient >= self.max_per_recipient:
            return f"rate limit: {self.max_per_recipient} automatic mails to this address within {window}"
        if for_ticket >= self.max_per_ticket:
            return f"rate limit: {self.max_per_ticket} automatic mails on this ticket within {window}"
        return None

    # -- send ----------------------------------------------------------------------

    def deliver(self, batch: list[Outgoing], claimed: float) -> None:
        """Send a batch claimed at `claimed` (this host's monotonic clock: how long
        the batch has been held needs no database, and no host's wall clock). Past
        half the lease the rest is handed back before another sender may take it; at
        three quarters the connection is cut (`_Cutoff`), whatever the relay is doing."""
        with _Cutoff(claimed + self.lease.total_seconds() * _CUT_AT - time.monotonic()) as cutoff:
            try:
                connection = self.connect(cutoff)
            except (OSError, smtplib.SMTPException) as exc:
                for item in batch:
                    self._retry(item, f"cannot connect to {self._where()}: {cutoff.explain(exc)}")
                return
            self._send(batch, claimed, connection, cutoff)

    def _send(self, batch: list[Outgoing], claimed: float, connection: smtplib.SMTP, cutoff: _Cutoff) -> None:
        try:
            for index, item in enumerate(batch):
                if self.stopping.is_set() or time.monotonic() - claimed > self.lease.total_seconds() / 2:
                    self._release(batch[index:])  # another sender may take them right away
                    return
                data = self._data(item)
                if data is None:
                    continue
                try:
                    connection.sendmail(
                        item.mail_from,
                        [item.to_address],
                        data,
                        mail_options=["SMTPUTF8"] if item.smtputf8 else [],
                    )
                except smtplib.SMTPRecipientsRefused as exc:
                    code, text = next(iter(exc.recipients.values()), (0, b"refused"))
                    self._answer(item, code, text, at_rcpt=True)
                except smtplib.SMTPSenderRefused as exc:  # MAIL FROM: about us, except the size
                    self._answer(item, exc.smtp_code, exc.smtp_error, setup=exc.smtp_code != _TOO_BIG)
                except smtplib.SMTPResponseException as exc:
                    self._answer(item, exc.smtp_code, exc.smtp_error)
                except (smtplib.SMTPNotSupportedError, ValueError) as exc:
                    self._mark(item, "failed", state="failed", last_error=_describe_error(exc))
                except (OSError, smtplib.SMTPException) as exc:  # the connection is gone
                    for rest in batch[index:]:
                        self._retry(rest, f"connection to {self._where()} lost: {cutoff.explain(exc)}")
                    return
                else:
                    self._mark(item, "sent", state="sent", sent_at=self._now(written=True), last_error="")
                finally:
                    del data  # gone before the next mail is made: one mail's bytes at a time
        finally:
            _close(connection)

    def _data(self, item: Outgoing) -> bytes | None:
        """The mail's bytes, made just before it is sent: the reply's files are read
        in a transaction of their own, ended before they are encoded (on SQLite every
        transaction holds the one write lock), so the claim stays short and a batch
        holds one mail's bytes at a time. A mail that cannot be written fails, as a
        row that cannot render does in the claim; None then."""
        session = db.session
        try:
            files = self.composer.files(session, item.files_of)
        finally:
            session.rollback()  # a read: ends it
        try:
            return self.composer.with_files(item.mail, files).as_bytes()
        except Exception as exc:  # a file or header the email package cannot write: this row only
            log.exception("%s: cannot render", item.label)
            error = f"cannot render: {type(exc).__name__}: {exc}"[:2000]
            self._mark(item, "failed (cannot render)", state="failed", last_error=error)
            return None

    def connect(self, cutoff: _Cutoff) -> smtplib.SMTP:
        """A greeted connection to the relay; `cutoff` watches it from before the
        greeting (a relay can drip that too)."""
        server = self.server
        if server is None:
            raise smtplib.SMTPException("OUTBOUND_SMTP_URL is empty")
        helo = self.composer.signer.domain
        connection: smtplib.SMTP
        if server.tls:
            connection = smtplib.SMTP_SSL(
                local_hostname=helo, timeout=self.timeout, context=ssl.create_default_context()
            )
        else:
            connection = smtplib.SMTP(local_hostname=helo, timeout=self.timeout)
        cutoff.watch(connection)
        # Built unconnected so the cutoff watches the greeting too; the constructor is
        # what names the host TLS checks the certificate against (SMTP_SSL, STARTTLS).
        connection._host = server.host  # type: ignore[attr-defined]  # smtplib keeps it there
        try:
            connection.connect(server.host, server.port)
            if server.starttls:
                connection.starttls(context=ssl.create_default_context())
            if server.username is not None:
                _login(connection, server.username, server.password or "")
            # Greet now, not lazily inside `sendmail`: there a refused EHLO and HELO
            # (SMTPHeloError, a 5xx about our session) read as a refusal of the mail,
            # and every row of the batch failed for good; here it is a failed
            # connection, and the rows wait for the relay to take us.
            connection.ehlo_or_helo_if_needed()
        except BaseException:
            _close(connection)
            raise
        return connection

    # -- mark ----------------------------------------------------------------------

    def _answer(
        self, item: Outgoing, code: int, text: bytes | str, *, setup: bool = False, at_rcpt: bool = False
    ) -> None:
        """Mark `item` by the relay's reply. A refusal of our session rather than of
        this mail (`setup`, or an authentication code) waits for the setup to be
        fixed: failing every row for good meant fixing the URL sent nothing. A
        recipient refused `at_rcpt` as a bad mailbox or domain (`_BAD_MAILBOX`) is
        a bounce that came at once, and marks the address as a bounce does."""
        words = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        reply = f"{code} {words}"
        if setup or code in _SETUP_CODES:
            self._retry(
                item, f"{reply} (the relay refuses our session, not this mail: check OUTBOUND_SMTP_URL)"
            )
        elif 500 <= code < 600:
            gone = at_rcpt and _BAD_MAILBOX.match(words.lstrip()) is not None
            self._mark(
                item,
                "failed (permanent; address marked undeliverable)" if gone else "failed (permanent)",
                undeliverable=gone,
                state="failed",
                last_error=reply[:2000],
            )
        else:
            self._retry(item, reply)

    def _retry(self, item: Outgoing, error: str) -> None:
        """Due again after a backoff counted from this failure (`_now`: a failure
        late in a batch held for minutes by a slow relay waits its backoff too), or
        failed for good once the row was older than `OUTBOUND_GIVE_UP_AFTER` at the
        batch's claim: at most half a lease late, never early, and no read of the
        clock per mail."""
        if item.claimed_at - item.created_at >= self.give_up_after:
            error = f"gave up after {item.attempts} attempts: {error}"
            self._mark(item, "failed (gave up)", state="failed", last_error=error[:2000])
            return
        doublings = min(item.attempts - 1, _MAX_BACKOFF_DOUBLINGS)
        delay = min(self.retry_first * (2**doublings), self.retry_max)
        self._mark(
            item,
            f"retry in {describe(delay)} ({error})",
            state="pending",
            next_attempt_at=self._now(written=True) + delay,
            last_error=error[:2000],
        )

    @overload
    def _now(self, *, written: Literal[False] = False) -> datetime: ...

    @overload
    def _now(self, *, written: Literal[True]) -> datetime | ColumnElement[datetime]: ...

    def _now(self, *, written: bool = False) -> datetime | ColumnElement[datetime]:
        """Now, by the one clock the sender answers to: the test's clock when one was
        given, else the database's (see One clock). As a value, read once a batch at
        the claim (`clock.database_now`, a round trip on PostgreSQL); `written`, for
        the UPDATE that marks a row (sent, due again), as SQL the statement evaluates
        (`clock.database_clock`, no round trip)."""
        if self._test_clock is not None:
            return self._test_clock()
        return database_clock(db.session) if written else database_now(db.session)

    def _release(self, items: list[Outgoing]) -> None:
        """Hand unsent claimed rows back at once, as if never claimed (due since their
        claim, so due now)."""
        for item in items:
            self._mark(
                item,
                "released",
                state="pending",
                next_attempt_at=item.claimed_at,
                attempts=OutboxMessage.attempts - 1,
            )

    def _mark(self, item: Outgoing, outcome: str, *, undeliverable: bool = False, **values: object) -> None:
        """Record the outcome, only while the claim is ours (a sender that outlived
        its lease must not overwrite the newer claim's result); `undeliverable`
        marks the row's address too, in the same transaction."""
        session = db.session
        try:
            result = session.execute(
                update(OutboxMessage)
                .where(
                    OutboxMessage.id == item.row_id,
                    OutboxMessage.state == "sending",
                    OutboxMessage.claimed_at == item.claimed_at,
                )
                .values(**values)
                .returning(OutboxMessage.to_address)
            )
            address = result.scalar_one_or_none()
            if undeliverable and address is not None:
                contacts.mark_undeliverable(session, address)
            session.commit()
        except BaseException:
            session.rollback()
            raise
        if address is None:
            log.warning("%s: %s, but its claim was lost (lease expired)", item.label, outcome)
        else:
            log.info("%s: %s", item.label, outcome)

    def _where(self) -> str:
        return f"{self.server.host}:{self.server.port}" if self.server else "nowhere"


@dataclass
class _RateCounts:
    """The rate limits' counts of a batch (`Sender._rate_counts`): counted rows
    outside it by mailbox and by ticket, and its own rows, read as they stand."""

    batch: Sequence[OutboxMessage]
    by_mailbox: Counter[str] = field(default_factory=Counter)
    by_ticket: Counter[int] = field(default_factory=Counter)


def _check_outbound_from(address: str, support: list[str], message_id_domain: str) -> None:
    """OUTBOUND_FROM must be a support address or a plus-address of one: mail to it
    (answers, reports from servers that write to From) must reach the gateway, and
    only those are taken at RCPT by the listener and recognised as our own mail
    when they come back (another address was refused by our own listener, and mail
    from it opened a ticket). Refusing to start says so at once (docs/operations.md).
    Our addresses and MESSAGE_ID_DOMAIN (as `message_ids.ascii_domain` keeps it) go
    out in their ASCII form: one without it could be written into no mail."""
    for ours in (address, support[0]):  # From, and Reply-To's plus-address of the first
        if not addresses.normalize(ours).rpartition("@")[0].isascii():
            raise ConfigurationError(
                f"{ours} has characters beyond ASCII before the @: our From and Reply-To "
                "could not be written in mail to an ASCII address; use an ASCII local part"
            )
        if addresses.on_the_wire(addresses.normalize(ours)) is None:
            raise ConfigurationError(
                f"the domain of {ours} has no ASCII form (IDNA) that mail could carry; use a domain with one"
            )
    if not message_id_domain.isascii():
        raise ConfigurationError(
            f"MESSAGE_ID_DOMAIN {message_id_domain} has no ASCII form (IDNA) that a "
            "Message-ID or EHLO could carry; use a domain with one"
        )
    if not addresses.is_support_address(addresses.normalize(address), support):
        raise ConfigurationError(
            f"OUTBOUND_FROM {address} is not one of SUPPORT_ADDRESSES ({', '.join(support)}) "
            "or a plus-address of one: bounces to it would be refused and mail from it taken "
            "for a stranger's; add it to SUPPORT_ADDRESSES or send from a support address"
        )


def _within_bytes(rows: Sequence[OutboxMessage], file_bytes: dict[int, int]) -> Sequence[OutboxMessage]:
    """The first rows of a batch whose files come to at most `_BATCH_FILE_BYTES`, at
    least one; the rest stay due for the next claim, untouched."""
    total = 0
    for index, row in enumerate(rows):
        total += file_bytes.get(row.reply_id, 0) if row.reply_id is not None else 0
        if index and total > _BATCH_FILE_BYTES:
            return rows[:index]
    return rows


def _alone_if_its_sender_died(rows: Sequence[OutboxMessage]) -> Sequence[OutboxMessage]:
    """The batch to claim of the due `rows`: a row whose sender died holding it
    (`sending`, its lease run out) alone, the one claimed longest ago first, else all
    of them; the others stay due for the next claim, untouched. The mail being sent
    when a sender died may be what killed it: claimed again with its batch, in the
    same order, it killed the next sender before the rest went, every lease, until
    all were given up together (docs/outbound-mail.md, "At least once")."""
    orphans = [row for row in rows if row.state == "sending"]
    if not orphans:
        return rows
    return [min(orphans, key=lambda row: (row.claimed_at, row.id))]


def _fixes_language(row: OutboxMessage) -> bool:
    """Is this row its ticket's customer mail, to be rendered at this claim? The
    first such row fixes the ticket's language (`Composer.fix_languages`)."""
    return row.ticket_id is not None and row.message_id is None and row.kind not in v.STAFF_NOTIFICATION_KINDS


def _describe_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]


class _Cutoff:
    """Shuts the relay connection down `seconds` from now (docs/outbound-mail.md, "A
    relay that drips"). OUTBOUND_TIMEOUT_SECONDS bounds each read, not a mail: a
    relay answering one continuation line at a time held the claim past its lease,
    and another sender sent the row again. Cut, the read in progress fails as a lost
    connection and the rows are retried while the claim is still ours. Due while the
    connection is still opening (its TCP connect and TLS handshake are each bounded
    by the timeout as a whole), the cut comes as soon as it has a socket."""

    def __init__(self, seconds: float) -> None:
        self.fired = False
        self._connection: smtplib.SMTP | None = None
        self._lock = threading.Lock()
        self._ended = False
        self._timer = self._arm(max(seconds, 0.0))

    def __enter__(self) -> _Cutoff:
        self._timer.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        with self._lock:
            self._ended = True
            self._timer.cancel()

    def watch(self, connection: smtplib.SMTP) -> None:
        self._connection = connection

    def explain(self, exc: BaseException) -> str:
        if self.fired:
            return "cut: the relay had not finished answering within three quarters of OUTBOUND_LEASE"
        return _describe_error(exc)

    def _arm(self, seconds: float) -> threading.Timer:
        timer = threading.Timer(seconds, self._cut)
        timer.daemon = True
        return timer

    def _cut(self) -> None:
        sock = self._connection.sock if self._connection is not None else None
        if sock is None:  # not connected yet: look again in a moment, until the batch ends
            with self._lock:
                if not self._ended:
                    self._timer = self._arm(_CUT_RETRY_SECONDS)
                    self._timer.start()
            return
        self.fired = True  # only a cut explains the error it causes (`explain`)
        log.warning("cutting the connection to the relay: it has not finished answering")
        try:
            sock.shutdown(socket.SHUT_RDWR)  # the blocked read returns at once
        except OSError as exc:  # closed between the two lines: nothing left to cut
            log.debug("the relay connection was closed already: %s", exc)


def _login(connection: smtplib.SMTP, user: str, password: str) -> None:
    """smtplib's login, which encodes every mechanism's answer in ASCII: a user name
    or password beyond it raised UnicodeEncodeError at every batch and no mail went.
    Those go by AUTH PLAIN in UTF-8 (RFC 4616), as the IMAP poller's login does, and
    fail with the reason where the relay does not offer it (docs/outbound-mail.md)."""
    if user.isascii() and password.isascii():
        connection.login(user, password)
        return
    connection.ehlo_or_helo_if_needed()
    if "PLAIN" not in connection.esmtp_features.get("auth", "").upper().split():
        raise smtplib.SMTPException(
            "the relay offers no AUTH PLAIN, which a user name or password that is not ASCII needs"
        )
    answer = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode("ascii")
    code, text = connection.docmd("AUTH", "PLAIN " + answer)
    if code != 235:
        raise smtplib.SMTPAuthenticationError(code, text)


def _close(connection: smtplib.SMTP) -> None:
    """Say QUIT politely; a connection that is already gone is just dropped."""
    try:
        connection.quit()
    except (OSError, smtplib.SMTPException):
        connection.close()
