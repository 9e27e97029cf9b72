"""The one inbound pipeline. The SMTP listener and the IMAP poller both call
`ingest` with the raw bytes and the envelope, so a mail gets the same outcome
whichever way it arrives (docs/mail-gateway.md).

Steps, each in its own module: parse (`parser`, within `limits`) → deduplicate
(`dedup`) → auto-mail (`automail`) → match a ticket (`matching`) → authorize
(`authentication`, `authorization`) → store (`storage`) → create or append
through TicketsService (which queues the notifications). A failure report
addressed to the signed envelope sender of one of our notifications
(`return_paths`) marks that notification bounced and its address undeliverable,
and is otherwise ignored like any auto-mail.

Every mail is recorded in the inbound-mail table with its outcome in the same
transaction as its effect, so a caller that acknowledges only after `ingest`
returned never loses a mail. Only the database failing raises `TransientError`
(SMTP 451, IMAP leaves the message); anything else that goes wrong (a value the
database refuses, a bug) quarantines the raw mail, because answering "try again"
to a mail that fails the same way each time is how a poison mail blocks a queue.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, NamedTuple, cast

from sqlalchemy import Column, String, select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from helpdesk import addresses, languages, message_ids, return_paths
from helpdesk.clock import DatabaseClock, database_clock
from helpdesk.database import adopt, is_transient
from helpdesk.extensions import db
from helpdesk.inbound import authentication, authorization, automail, matching, room, storage
from helpdesk.inbound.dedup import (
    beside_key,
    beside_of,
    count_duplicate,
    dedup_key,
    dedup_keys,
    earlier_delivery,
)
from helpdesk.inbound.limits import MailLimits
from helpdesk.inbound.parser import InboundMail, clean, parse, sender_note
from helpdesk.inbound.room import QuarantineFull
from helpdesk.languages import N_, gettext_in
from helpdesk.message_ids import Signer
from helpdesk.models import InboundMail as InboundRecord
from helpdesk.models import OutboxMessage, QuarantineItem, StaffUser, Ticket
from helpdesk.numbering import display_number
from helpdesk.return_paths import ReturnPaths
from helpdesk.services import Actor, TicketsService, contacts, customer_limits, notifications, visibility
from helpdesk.services.tickets import MAX_NAME, MAX_SUBJECT, lock_with_survivor

log = logging.getLogger("helpdesk.inbound.ingest")

# What a mail with no subject, or no text, is stored with: in the language of the
# ticket's mail (docs/languages.md), as the customer reads it in every mail of the thread.
NO_SUBJECT = N_("(no subject)")
NO_TEXT = N_("(no text)")
# Who writes the gateway's notes for staff (`_note_for_staff`, open_ticket's `note`).
GATEWAY = Actor.system("mail gateway")

_COLUMNS = InboundRecord.__table__.c
# The received time is the database's (`clock.DatabaseClock`), written into the
# statement, and returned with the id: no round trip of its own. Built once, not per
# mail: a statement composed anew is keyed for SQLAlchemy's cache anew, a third of
# what the INSERT costs the gateway (docs/benchmarks.md, "Issue 19: CPU per mail,
# sixteenth session").
_INSERT_RECORD = (
    InboundRecord.__table__.insert()
    .values(received_at=DatabaseClock())
    .returning(_COLUMNS.id, _COLUMNS.received_at)
)


class Outcome(str, enum.Enum):
    CREATED = "created"
    APPENDED = "appended"
    QUARANTINED = "quarantined"
    IGNORED = "ignored"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"


# How the reasons of mail that could not be processed begin (`Result.failed`), a
# policy's reasons never so: a later delivery of such a mail (found again after a
# crash between the commit and the IMAP move) is answered with the earlier record,
# failed as it was, and the poller files it where the first pass would have
# (docs/mail-gateway.md).
_UNPARSEABLE = "unparseable mail: "
_OVER_A_LIMIT = "over a limit: "
_PROCESSING_FAILED = "processing failed"
_UNFETCHABLE = "could not be fetched from the mailbox"
_UNFINISHED = "its taking from the mailbox never finished"
# How the reason of such a mail ends: filed, or, when the server refused every move,
# left where it was (`note_unfetchable_unmoved`).
_FILED_AS_IT_WAS = "filed in the failed folder as it was"
_LEFT_IN_THE_MAILBOX = (
    "the server refused to move it to the failed folder, so it stays in the mailbox as it was, "
    "passed by the poller"
)
_FAILED_HOLDS = (_UNPARSEABLE, _OVER_A_LIMIT, _PROCESSING_FAILED, _UNFETCHABLE, _UNFINISHED)
# A mail too big to take, refused by `refuse_oversized`: "{size}" and then this.
_TOO_BIG = " bytes, larger than MAX_MESSAGE_BYTES ("


class TransientError(Exception):
    """The mail could not be recorded now (database unreachable); ask for a retry."""


class UnstorableError(Exception):
    """Not even the mail's raw bytes could be recorded, and not for the database being
    unreachable (a constraint nobody foresaw, a schema behind the code): the same mail
    fails the same way at each delivery. Raised from its second delivery to this
    process on; the first is a `TransientError`, in case the reason is one
    `is_transient` does not know. The SMTP listener refuses it for good (554), so its
    sender returns it to its author instead of retrying for days (docs/mail-gateway.md,
    "SMTP replies")."""


@dataclass(frozen=True)
class Envelope:
    mail_from: str
    recipients: tuple[str, ...]
    channel: str  # "smtp" or "imap"
    # The mailbox's key or the SMTP listener it came in by, kept on the record and
    # counted per source (docs/web.md, "Mail flow"); "" when the caller names none.
    source: str = ""

    def within(self, most: int) -> Envelope:
        """The first `most` distinct recipients that can be addresses (at most 254
        characters): all the record keeps and matching reads, however many the IMAP
        poller's Delivered-To fields or a caller named (docs/security.md)."""
        fitting = dict.fromkeys(r for r in self.recipients if len(r) <= addresses.MAX_LENGTH)
        return replace(self, recipients=tuple(fitting)[:most])


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    reason: str
    message_id: str | None
    inbound_id: int | None = None
    ticket_number: str | None = None
    # Quarantined because it could not be processed (unparseable, over a structural
    # limit, or a failure that is not the database's), not by a sender policy: the
    # IMAP poller files it as failed.
    failed: bool = False


@dataclass(frozen=True)
class Decision:
    """What `decide` concluded a mail should become; `apply` carries it out. Frozen:
    a caller that wants another outcome (quarantine approval) makes a new one."""

    outcome: Outcome
    reason: str
    # The ticket to append to, or to link a new one to; held, the ticket it names.
    ticket: Ticket | None = None
    organization_id: int | None = None
    actor: Actor | None = None
    failed: bool = False
    # Notifications this mail reports as undeliverable (it is a bounce of them).
    bounced: tuple[OutboxMessage, ...] = ()
    internal: bool = False  # append as an internal note, not a public reply
    acknowledge: bool = True  # a new ticket's requester gets the acknowledgment
    # Held, and sent by nobody vouched for (an unknown sender, no sender, mail that
    # could not be read): held only while the quarantine has room (`room`).
    stranger: bool = False


def ingest(
    raw: bytes, envelope: Envelope, config: Mapping[str, Any], *, parsed: InboundMail | None = None
) -> Result:
    """Record one mail and its effect in one commit; never loses an accepted mail.

    `parsed` is `parse(raw, limits)` when the caller has it already (the IMAP poller reads
    each mail before deciding whether it may run beside others).

    Only the database failing (`helpdesk.database.is_transient`) raises
    `TransientError`, and only the first time for a given mail in this process:
    when the same mail fails that way again while the database can still store
    its raw bytes, it is parked in quarantine instead, so that no mail is answered
    "try again later" forever. Every other failure quarantines the raw mail."""
    envelope = envelope.within(config["MAX_RECIPIENTS"])
    mail = with_envelope_sender(
        parsed if parsed is not None else parse(raw, MailLimits.from_config(config)), envelope
    )
    session = db.session
    keys = dedup_keys(mail)
    result, key = _ingest_under(session, mail, keys.key, envelope, config, before_upgrade=keys.before_upgrade)
    _deferred.forget(key)
    if result.outcome is Outcome.DUPLICATE:
        count_duplicate(session, envelope.channel, _fit(envelope.source, _COLUMNS.source))
    log.info(
        "mail %s via %s: %s%s%s",
        mail.message_id or key,
        envelope.channel,
        result.outcome.value,
        f" {result.ticket_number}" if result.ticket_number else "",
        f" ({result.reason})" if result.reason else "",
    )
    return result


class _Taken(NamedTuple):
    """Another mail holds the key (`dedup.Earlier.same_mail` false): this one is kept
    under a key of its own beside it (`dedup.beside_key`), as any new mail, and
    staff are told (docs/mail-gateway.md, "Duplicates")."""

    key: str
    earlier_id: int

    @property
    def reason(self) -> str:
        """Added to the reason of this mail's record (the quarantine's reviewers read it)."""
        return f"Message-ID already used by another mail, #{self.earlier_id}"

    def noted(self, mail: InboundMail) -> InboundMail:
        """`mail` with a line for staff saying so (`apply`'s gateway note, wording.KNOWN)."""
        note = (
            f"The Message-ID of this mail was already used by another mail (inbound mail "
            f"#{self.earlier_id}); it was kept as a mail of its own, not as a duplicate."
        )
        return replace(mail, notes=[*mail.notes, note])


def kept_beside(session: Session, key: str) -> _Taken | None:
    """What the record under `key` says of the mail that held its key when it was
    kept beside it (`dedup.beside_key`), or None: for quarantine approval, which
    reads the raw mail again and writes the reason anew (docs/mail-gateway.md,
    "Duplicates")."""
    taken = beside_of(key)
    if taken is None:
        return None
    earlier_id = session.scalar(select(InboundRecord.id).where(InboundRecord.dedup_key == taken))
    return None if earlier_id is None else _Taken(key, earlier_id)


def _ingest_under(
    session: Session,
    mail: InboundMail,
    key: str,
    envelope: Envelope,
    config: Mapping[str, Any],
    taken: str = "",
    *,
    before_upgrade: str | None = None,
) -> tuple[Result, str]:
    """`ingest` under `key`: the result, and the key the mail is recorded under, its
    own beside another mail's when that one holds `key` (`taken`: the reason's words
    for it then). A key beside another is never taken, so this goes one level down
    at most. `before_upgrade`: the key the mail had before (`dedup.Keys`), looked up
    first."""
    try:
        try:
            # No lookup first: the mail's record is inserted before anything else is
            # written, and the dedup key's unique constraint refuses a second delivery
            # (earlier or concurrent) there. A statement saved on every new mail; a
            # duplicate, which is rare, pays for reading what the first one became.
            # Only a dated mail without Message-ID looks up one key first, the one it
            # had before the upgrade (docs/mail-gateway.md, "Decisions").
            before = _recorded_before_upgrade(session, mail, before_upgrade) if before_upgrade else None
            result: Result | _Taken
            if before is not None:
                result = before
            else:
                result = _process_new(session, mail, key, envelope, config, taken)
                session.commit()
        except IntegrityError:
            earlier = _after_duplicate(session, key, mail.raw)
            if earlier is None:
                raise
            result = earlier
    except QuarantineFull:  # nothing written: the caller refuses the mail for now
        session.rollback()
        raise
    except Exception as exc:  # sorted below: the database's trouble, or the mail's
        session.rollback()
        result = _after_failure(session, mail, key, envelope, config, exc, taken)
    if isinstance(result, _Taken):
        _deferred.forget(key)
        return _ingest_under(session, result.noted(mail), result.key, envelope, config, result.reason)
    return result, key


def _recorded_before_upgrade(session: Session, mail: InboundMail, old_key: str) -> Result | None:
    """What became of this mail when a copy of it was recorded under `old_key`, the
    key it had before (`dedup.Keys`), or None: one lookup, paid by a mail without
    Message-ID that has a Date alone (docs/mail-gateway.md, "Decisions"). Another
    mail under that key (a Message-ID written to look like one) is none of this
    one's: this one is then keyed as any new mail."""
    previous = _previous(session, old_key, mail.raw)
    if not isinstance(previous, Result):
        return None
    session.rollback()
    return previous


def with_envelope_sender(mail: InboundMail, envelope: Envelope) -> InboundMail:
    """The mail, its sender taken from the envelope's MAIL FROM when no header names
    one: the last fallback (docs/mail-gateway.md, "Who sent it"), noted for staff like the others."""
    if mail.from_address or mail.parse_error:
        return mail
    address = addresses.normalize(clean(envelope.mail_from))
    if not addresses.is_valid(address):
        return mail
    from_values = mail.header_all("from")
    return replace(
        mail,
        from_address=address,
        from_source="envelope",
        notes=[sender_note("envelope", from_values[0] if from_values else None), *mail.notes],
    )


def refuse_oversized(head: bytes, size: int, envelope: Envelope, config: Mapping[str, Any]) -> Result:
    """Record a mail too big to take (`MAX_MESSAGE_BYTES`) that is already in a
    mailbox, so it cannot be refused the SMTP way (552): its header is kept, at most
    `MAX_HEADER_BYTES` of it (a mail without a blank line is all header), and the
    outcome is `rejected`; the poller files the whole mail in the failed folder."""
    limits = MailLimits.from_config(config)
    kept = head[: limits.header_bytes]
    mail = parse(kept, limits)
    stored = (
        "only its header was stored"
        if len(kept) < limits.header_bytes
        else f"only the first {limits.header_bytes} bytes of its header were stored (MAX_HEADER_BYTES)"
    )
    reason = f"{size}{_TOO_BIG}{config['MAX_MESSAGE_BYTES']}); {stored}"
    return _refuse_under(db.session, mail, dedup_key(mail), envelope, size, reason)


def _refuse_under(
    session: Session, mail: InboundMail, key: str, envelope: Envelope, size: int, reason: str
) -> Result:
    """`refuse_oversized` under `key`, or under the mail's own key beside another
    mail's that holds it: compared by the author's fields of the header kept
    (`dedup.earlier_delivery`'s `head_of`), with the record under `key` and those
    beside it, as its copies and retries are."""
    head_of = _fit(mail.message_id, _COLUMNS.message_id)
    try:
        try:
            previous = _previous(session, key, mail.raw, head_of)
            session.rollback()
            if previous is None:
                record = _record(session, mail, key, envelope, Outcome.REJECTED, reason)
                record.size = size
                session.add(record)
                session.commit()
                log.info("mail %s via %s: rejected (%s)", mail.message_id or key, envelope.channel, reason)
                return Result(Outcome.REJECTED, reason, mail.message_id, record.id, failed=True)
        except IntegrityError:
            previous = _after_duplicate(session, key, mail.raw, head_of) or Result(
                Outcome.DUPLICATE, "recorded concurrently", mail.message_id
            )
    except DBAPIError as exc:
        session.rollback()
        if is_transient(exc):
            raise TransientError(str(exc.orig or exc)) from exc
        return _park(session, mail, key, envelope, f"{type(exc).__name__} while recording it as too big")
    if isinstance(previous, _Taken):
        return _refuse_under(session, mail, previous.key, envelope, size, _joined(reason, previous.reason))
    return previous


class _RecentlyDeferred:
    """Dedup keys of mail this process answered "try again later", newest last and
    at most `size` of them: a mail that comes back and fails again is parked. Per
    process on purpose: each listener process may defer a mail once before one
    parks it (docs/mail-gateway.md, "SMTP replies")."""

    def __init__(self, size: int = 10_000) -> None:
        self._keys: OrderedDict[str, None] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def failed_before(self, key: str) -> bool:
        """Whether `key` was deferred before; remembers it either way."""
        with self._lock:
            if key in self._keys:
                self._keys.move_to_end(key)
                return True
            self._keys[key] = None
            if len(self._keys) > self._size:
                self._keys.popitem(last=False)
            return False

    def forget(self, key: str) -> None:
        with self._lock:
            self._keys.pop(key, None)


_deferred = _RecentlyDeferred()


def _after_failure(
    session: Session,
    mail: InboundMail,
    key: str,
    envelope: Envelope,
    config: Mapping[str, Any],
    exc: Exception,
    taken: str = "",
) -> Result | _Taken:
    """What to answer for a mail whose processing raised `exc` (rolled back already);
    `taken` as `_ingest_under` has it."""
    if is_transient(exc):
        if not _deferred.failed_before(key):
            raise TransientError(str(getattr(exc, "orig", None) or exc)) from exc
        log.warning("mail %s failed again (%s); parking it in quarantine", key, exc)
        return _park(session, mail, key, envelope, _joined(f"failed twice: {type(exc).__name__}", taken))
    try:
        # An earlier delivery met the same fate; or another mail holds the key, and
        # this one is processed again under its own (which fails the same way, or not).
        previous = _previous(session, key, mail.raw)
        session.rollback()
        if isinstance(previous, _Taken):
            # As before a quarantine (`_quarantine_after_failure`): rows the failed
            # attempt adopted stay in the session, and SQLite may give their ids again.
            session.expunge_all()
        if previous is not None:
            return previous
        log.error("processing failed for %s; quarantining", key, exc_info=exc)
        return _quarantine_after_failure(session, mail, key, envelope, config, exc, taken)
    except Exception as second:  # the quarantine path itself
        session.rollback()
        if is_transient(second):
            raise TransientError(str(getattr(second, "orig", None) or second)) from second
        log.exception("quarantining %s failed; parking its raw bytes", key)
        return _park(
            session,
            mail,
            key,
            envelope,
            _joined(f"{type(exc).__name__}, then {type(second).__name__} while quarantining", taken),
        )


def _after_duplicate(
    session: Session, key: str, raw: bytes, head_of: str | None = None
) -> Result | _Taken | None:
    """After the dedup key's constraint refused an insert: what became of the
    earlier delivery, or that another mail holds the key, read in a fresh
    transaction (None: it was another constraint). `head_of` as `_previous` has it."""
    session.rollback()
    earlier = _previous(session, key, raw, head_of)
    session.rollback()
    return earlier


def _previous(session: Session, key: str, raw: bytes, head_of: str | None = None) -> Result | _Taken | None:
    """What became of the earlier delivery of this mail (`raw`), failed if it failed;
    or, when the mail under `key` is another one, the key this one goes under.
    `head_of`: `raw` is the header of a mail too big to take with that Message-ID
    (`dedup.earlier_delivery`)."""
    earlier = earlier_delivery(session, key, raw, head_of=head_of)
    if earlier is None:
        return None
    if not earlier.same_mail:
        return _Taken(beside_key(key, raw), earlier.inbound_id)
    failed = _failed(earlier.outcome, earlier.reason)
    if earlier.outcome == Outcome.REJECTED.value:  # refuse again, the same way
        return Result(
            Outcome.REJECTED, "already refused", earlier.message_id, earlier.inbound_id, failed=failed
        )
    return Result(
        Outcome.DUPLICATE,
        f"already received as #{earlier.inbound_id} ({earlier.outcome})",
        earlier.message_id,
        earlier.inbound_id,
        failed=failed,
    )


def _failed(outcome: str, reason: str) -> bool:
    """Whether a stored record is of mail that could not be processed (`Result.failed`):
    held for a reason of `_FAILED_HOLDS`, or refused as too big by `refuse_oversized`."""
    if outcome == Outcome.QUARANTINED.value:
        return reason.startswith(_FAILED_HOLDS)
    if outcome == Outcome.REJECTED.value:
        size, too_big, _rest = reason.partition(_TOO_BIG)
        return bool(too_big) and size.isdigit()
    return False


def _quarantine_after_failure(
    session: Session,
    mail: InboundMail,
    key: str,
    envelope: Envelope,
    config: Mapping[str, Any],
    exc: Exception,
    taken: str = "",
) -> Result:
    # Rows adopted by the rolled-back attempt are still in the session, expired; a
    # new row may get one of their ids again (SQLite reuses them).
    session.expunge_all()
    named, unknown, follows = _named_after_failure(session, mail, envelope, config)
    return _hold(
        session,
        mail.message_id,
        _record(
            session,
            mail,
            key,
            envelope,
            Outcome.QUARANTINED,
            _joined(f"{_PROCESSING_FAILED}: {type(exc).__name__}: {exc}", taken),
        ),
        ticket_id=named.id if named is not None else None,
        ticket_unknown=unknown,
        follows=follows,
    )


def _named_after_failure(
    session: Session, mail: InboundMail, envelope: Envelope, config: Mapping[str, Any]
) -> tuple[Ticket | None, bool, Followed | None]:
    """The ticket a mail whose processing failed names, matched again in this
    transaction (the failed attempt's match was rolled back with it), whether
    which one it names is unknown, and, naming none, the held item it follows
    (`_followed_item`). When matching is what fails, the mail is still
    held with its reason, its ticket unknown; the database failing raises, as it
    does everywhere in `ingest`. A mail read in part is not matched at all: its
    ticket is unknown whatever the part read names (`_read_in_part`)."""
    if _read_in_part(mail):
        return None, True, None
    try:
        named = _named_ticket(session, mail, envelope, config)
        follows = _followed_item(session, mail, config) if named is None else None
    except Exception as exc:
        if is_transient(exc):
            raise
        log.error("matching failed again for a mail being quarantined", exc_info=exc)
        session.rollback()
        session.expunge_all()
        return None, True, None
    return named, False, follows


def _hold(
    session: Session,
    message_id: str | None,
    record: InboundRecord,
    *,
    ticket_id: int | None,
    ticket_unknown: bool,
    follows: Followed | None = None,
) -> Result:
    """Commit a quarantined record and its quarantine item, which names `ticket_id`
    or, `ticket_unknown`, may name a ticket nobody could tell, or follows the held
    item `follows` (who may review it: `quarantine`, AGENT_VISIBILITY)."""
    session.add(record)
    session.flush()
    session.add(_held_item(record.id, record.reason, ticket_id, ticket_unknown, follows))
    session.commit()
    return Result(Outcome.QUARANTINED, record.reason, message_id, record.id, failed=True)


def _park(session: Session, mail: InboundMail, key: str, envelope: Envelope, why: str) -> Result:
    """The last resort: the raw bytes and fixed words only, nothing the mail chose
    but its dedup key (made safe by `dedup_key`), so this cannot fail on the mail."""
    session.expunge_all()
    reason = f"{_PROCESSING_FAILED} ({why}); parked with its raw bytes for review"
    return _hold_fixed(session, mail.message_id, key, envelope.channel, envelope.source, reason, mail.raw)


def quarantine_unfetchable(place: str, errors: list[str], source: str = "") -> Result:
    """Record a mail its IMAP server failed to hand over, each of `errors` a failed
    fetch of it alone, so it is not lost unseen: nothing of it is known but where it
    was, which the record names, and the poller files it in the failed folder for a
    person to read there (docs/mail-gateway.md). Keyed by the place, so a second
    record of it (a crash before the move) is a duplicate of the first. `source`: the
    mailbox's key, as `Envelope.source`."""
    reason = f"{_UNFETCHABLE} after {len(errors)} attempts ({place}: {errors[-1]}); {_FILED_AS_IT_WAS}"
    return _hold_in_place(place, reason, source)


def quarantine_unfinished(place: str, processes: int, source: str = "") -> Result:
    """Record a mail that `processes` gateway processes in turn began to take from its
    mailbox and never finished: each died or was stopped first (an out-of-memory kill,
    a crash, a hang ended by a restart), most likely on this very mail, so it is not
    read again. Held and filed as `quarantine_unfetchable` holds and files a mail, by
    its place (docs/mail-gateway.md, "A mail that kills the gateway")."""
    reason = (
        f"{_UNFINISHED}: {processes} gateway processes began it and each stopped first "
        f"(a crash, a kill or a hang), so it was not read again ({place}); {_FILED_AS_IT_WAS}"
    )
    return _hold_in_place(place, reason, source)


def _hold_in_place(place: str, reason: str, source: str) -> Result:
    """Hold an IMAP message known only by its place, keyed by it: a second record of
    it (a crash before its move) is a duplicate of the first."""
    return _hold_fixed(db.session, None, _unfetchable_key(place), "imap", source, clean(reason), b"")


def note_unfetchable_unmoved(place: str) -> None:
    """The server refused to move the mail `quarantine_unfetchable` (or
    `quarantine_unfinished`) recorded at `place` to the failed folder, for the last
    time: its record, and what the quarantine shows, say that it stays in the mailbox
    rather than that it was filed (docs/mail-gateway.md, "A message the server will
    not move")."""
    session = db.session
    record = session.execute(
        select(InboundRecord).where(InboundRecord.dedup_key == _unfetchable_key(place))
    ).scalar_one_or_none()
    if record is None:
        return
    held = session.execute(
        select(QuarantineItem).where(QuarantineItem.inbound_mail_id == record.id)
    ).scalars()
    for row in (record, *held):
        row.reason = row.reason.replace(_FILED_AS_IT_WAS, _LEFT_IN_THE_MAILBOX)
    session.commit()


def never_read(record: InboundRecord) -> bool:
    """Whether `record` is a mail held by its place (`quarantine_unfetchable`,
    `quarantine_unfinished`): the gateway never read it, so nothing of it is stored,
    no sender among it, and there is nothing here to approve."""
    return record.dedup_key.startswith(_HELD_BY_PLACE)


def _unfetchable_key(place: str) -> str:
    return _HELD_BY_PLACE + hashlib.sha256(place.encode("utf-8", "replace")).hexdigest()


_HELD_BY_PLACE = "unfetchable:"  # how the dedup key of a mail held by its place begins
_HELD_UNREAD = "unread:"  # how the dedup key of a mail held unread begins (`_hold_unread`)


def held_unread(record: InboundRecord) -> bool:
    """Whether `record` is a mail held with its raw bytes but never read (its
    listener processes died storing it, or its processing failed before the
    pipeline): an approval reads it for the first time (`apart`)."""
    return record.dedup_key.startswith(_HELD_UNREAD)


def quarantine_unread(raw: bytes, channel: str, exc: Exception, source: str = "") -> Result:
    """Record a mail whose reading before `ingest` failed with `exc` (the IMAP
    poller's envelope, parse or record of a mail too big: a bug, or bytes nobody
    foresaw), so it neither is lost nor holds back the mail after it: its raw bytes
    and fixed words, held as failed. Keyed by its bytes, so a second record of it (a
    crash before the move) is a duplicate of the first. `source` as `Envelope.source`."""
    reason = f"{_PROCESSING_FAILED} before the pipeline ({type(exc).__name__}: {str(exc)[:500]})"
    return _hold_unread(raw, channel, source, reason)


def quarantine_deadly(raw: bytes, deaths: int, source: str = "") -> Result:
    """Record an SMTP mail whose storing `deaths` listener processes began and died
    on (a crash in C code, the out-of-memory killer), the last ones while it was the
    only mail taken: read again it would kill again, at each retry of its sender. So
    it is not read: its raw bytes are held as failed, and the sender is answered 250
    (SPEC §7: a mail the pipeline cannot store is quarantined, never lost).
    `source` as `Envelope.source` (docs/mail-gateway.md, "A mail that kills the listener")."""
    reason = (
        f"{_PROCESSING_FAILED}: {deaths} gateway processes died while storing it (a crash, a kill, "
        "the memory exhausted), so it was not read again"
    )
    return _hold_unread(raw, "smtp", source, reason)


def _hold_unread(raw: bytes, channel: str, source: str, reason: str) -> Result:
    """Hold `raw` unread, as failed, keyed by its bytes: a second record of it (a
    crash before the IMAP move, a sender's retry after a lost 250) is a duplicate."""
    key = _HELD_UNREAD + hashlib.sha256(raw).hexdigest()
    reason = clean(f"{reason}; parked with its raw bytes for review")
    return _hold_fixed(db.session, None, key, channel, source, reason, raw)


def _bare_record(
    session: Session, key: str, channel: str, source: str, reason: str, raw: bytes
) -> InboundRecord:
    """A quarantined record of fixed words and the raw bytes only: nothing read from
    the mail that could make storing it fail. Received by the database's clock, as
    every inbound record is (see `_record`)."""
    return InboundRecord(
        dedup_key=key,
        message_id=None,
        channel=channel,
        source=_fit(source, _COLUMNS.source) or None,
        mail_from="",
        from_address="",
        recipients="",
        subject="",
        size=len(raw),
        outcome=Outcome.QUARANTINED.value,
        reason=reason,
        raw=raw,
        received_at=database_clock(session),
    )


def _hold_fixed(
    session: Session, message_id: str | None, key: str, channel: str, source: str, reason: str, raw: bytes
) -> Result:
    """`_hold` a record of fixed words and `raw` (`_bare_record`), which cannot fail
    on the mail: the key recorded before answers with what became of it (held
    under the mail's own key when another mail holds it), and the database failing
    is `TransientError`. Nothing of the mail was matched, so its ticket is unknown."""
    record = _bare_record(session, key, channel, source, reason, raw)
    try:
        return _hold(session, message_id, record, ticket_id=None, ticket_unknown=True)
    except IntegrityError as exc:
        earlier = _after_duplicate(session, key, raw)
        if earlier is None:  # another constraint than the dedup key's
            raise _refused(key, exc) from exc
        if isinstance(earlier, _Taken):
            return _hold_fixed(
                session, message_id, earlier.key, channel, source, _joined(reason, earlier.reason), raw
            )
        return earlier
    except DBAPIError as exc:
        session.rollback()
        if is_transient(exc):
            raise TransientError(str(exc.orig or exc)) from exc
        raise _refused(key, exc) from exc


def _refused(key: str, exc: DBAPIError) -> Exception:
    """What to raise when the database refused the last resort's record of the mail
    under `key` for a reason of its own (`exc`, not `is_transient`): "try again
    later" the first time this process meets the mail, `UnstorableError` from then
    on, so the same bytes never get 451 twice for it (SPEC §7)."""
    log.error("the database refused even the raw bytes of %s", key, exc_info=exc)
    said = str(exc.orig or exc)
    return UnstorableError(said) if _deferred.failed_before(key) else TransientError(said)


def _record(
    session: Session,
    mail: InboundMail,
    key: str,
    envelope: Envelope,
    outcome: Outcome,
    reason: str,
    ticket_id: int | None = None,
) -> InboundRecord:
    """An inbound record received by the database's clock (`clock.database_clock`),
    as the outbox rows that answer it are queued: threading (`compose`) orders the
    two, stamped on different hosts; a mail held here may be approved and threaded."""
    return InboundRecord(
        **_record_values(mail, key, envelope, outcome, reason, ticket_id), received_at=database_clock(session)
    )


def _record_values(
    mail: InboundMail,
    key: str,
    envelope: Envelope,
    outcome: Outcome,
    reason: str,
    ticket_id: int | None = None,
) -> dict[str, Any]:
    """The inbound record's columns, each cleaned and cut to fit (the envelope and
    the reason quote the sender too)."""
    return dict(
        dedup_key=key,
        message_id=_fit(mail.message_id, _COLUMNS.message_id) or None,
        channel=envelope.channel,
        source=_fit(envelope.source, _COLUMNS.source) or None,
        mail_from=_fit(envelope.mail_from, _COLUMNS.mail_from),
        from_address=_fit(mail.from_address, _COLUMNS.from_address),
        from_source=mail.from_source,
        recipients=clean(",".join(envelope.recipients)),
        subject=_fit(mail.subject, _COLUMNS.subject),
        size=len(mail.raw),
        outcome=outcome.value,
        reason=clean(reason),
        raw=mail.raw,
        ticket_id=ticket_id,
    )


def _fit(text: str | None, column: Column[Any]) -> str:
    return clean(text or "")[: cast(String, column.type).length]


def _process_new(
    session: Session,
    mail: InboundMail,
    key: str,
    envelope: Envelope,
    config: Mapping[str, Any],
    taken: str = "",
) -> Result:
    decision = _within_customer_limits(session, mail, decide(session, mail, envelope, config), config)
    if decision.stranger and not _room_for(session, mail, key, config):
        raise QuarantineFull(decision.reason)
    if taken:  # the reason says which mail held its key (`_ingest_under`)
        decision = replace(decision, reason=_joined(decision.reason, taken))
    # A reply's ticket is known already: insert the row pointing at it (apply's
    # assignment then changes nothing), instead of an UPDATE after the insert.
    appended_to = (
        decision.ticket.id if decision.outcome is Outcome.APPENDED and decision.ticket is not None else None
    )
    values = _record_values(mail, key, envelope, decision.outcome, decision.reason, appended_to)
    # Written with Core and adopted: the unit of work's flush cost more than the
    # INSERT itself, on every mail.
    record_id, values["received_at"] = session.execute(_INSERT_RECORD, values).one()
    record = adopt(session, InboundRecord(id=record_id, **values))
    return apply(session, mail, record, decision, config)


def _room_for(session: Session, mail: InboundMail, key: str, config: Mapping[str, Any]) -> bool:
    """Whether a stranger's mail may be held (`room`: QUARANTINE_MAX_MAILS and
    QUARANTINE_MAX_BYTES); a copy of a mail recorded before always may, its record
    then answering it as a duplicate (one lookup, paid only when there is no room)."""
    most_mails, most_bytes = config["QUARANTINE_MAX_MAILS"], config["QUARANTINE_MAX_BYTES"]
    if not most_mails and not most_bytes:
        return True
    if room.room_of(session).take(session, len(mail.raw), most_mails, most_bytes):
        return True
    return session.scalar(select(InboundRecord.id).where(InboundRecord.dedup_key == key)) is not None


def _within_customer_limits(
    session: Session, mail: InboundMail, decision: Decision, config: Mapping[str, Any]
) -> Decision:
    """Hold a new ticket mailed in by a customer who reached a per-customer limit
    (docs/mail-gateway.md, "Per-customer limits"); held, so never acknowledged.

    Replies are never limited, and quarantine approval skips this step: a reviewer
    approving is staff opening the ticket for the customer. It runs before the
    mail's record is written, so the record says why it was held; the contact's
    row lock taken here (PostgreSQL) lasts until the commit that creates the
    ticket, so two gateways counting for one customer count one after the other.
    """
    if decision.outcome is not Outcome.CREATED:
        return decision
    contact = contacts.find_or_create(session, mail.from_address, mail.from_name[:MAX_NAME])
    reached = customer_limits.reached_limit(session, contact, config)
    if reached is None:
        return decision
    return Decision(
        Outcome.QUARANTINED,
        f"customer limit: {reached}; approving opens the ticket ({decision.reason})",
        decision.ticket,
    )


def decide(
    session: Session,
    mail: InboundMail,
    envelope: Envelope,
    config: Mapping[str, Any],
    approved_by: Actor | None = None,
) -> Decision:
    """What should happen to this mail. Reads only; `apply` does the writing.

    `approved_by` is a staff member who vouched for the mail in quarantine review.
    That vouches for the sender as a customer who may open a ticket, exactly as if
    a rule had matched, and for nothing more. It does not vouch for the From
    address: only a From the trusted server authenticated (`authentication`) is
    the requester, CC participant or colleague who may write into the ticket the
    mail names, so an approved mail whose From was not believed opens a new ticket
    linked to that one, as does a sender who does not belong on it; a staff
    address still needs its proof (docs/mail-gateway.md). A new ticket from mail
    a list distributed is not acknowledged (`automail.via_mailing_list`).
    """
    decision = _decide(session, mail, envelope, config, approved_by)
    listed = automail.via_mailing_list(mail)
    if decision.outcome is Outcome.CREATED and listed:
        return replace(
            decision,
            acknowledge=False,
            reason=decision.reason + f"; came through the list {listed}, so no acknowledgment is sent",
        )
    return decision


def _decide(
    session: Session,
    mail: InboundMail,
    envelope: Envelope,
    config: Mapping[str, Any],
    approved_by: Actor | None,
) -> Decision:
    """The outcome by auto-mail, thread, sender and policy, see `decide`."""
    if mail.parse_error and approved_by is None:
        return Decision(Outcome.QUARANTINED, f"{_UNPARSEABLE}{mail.parse_error}", failed=True, stranger=True)
    if mail.over_limit and approved_by is None:
        return Decision(Outcome.QUARANTINED, f"{_OVER_A_LIMIT}{mail.over_limit}", failed=True, stranger=True)
    support = config["SUPPORT_ADDRESSES"]
    signer = Signer.from_config(config)
    reason = None
    if envelope.channel == "smtp" and envelope.mail_from == "" and approved_by is None:
        # RFC 5321 §4.5.5 / RFC 3834 §3.3: only delivery reports and auto-responses
        # use the null reverse-path.
        reason = "null reverse-path (bounce or auto-reply)"
    reason = reason or automail.detect(mail, own_addresses=support, own_message_id_domains=[signer.domain])
    if reason:
        bounced, named = _bounced_notifications(session, mail, envelope, config, signer)
        if bounced:
            reason += "; bounce of " + ", ".join(f"outbox #{row.id} to {row.to_address}" for row in bounced)
        if named:
            reason += (
                "; names "
                + ", ".join(f"outbox #{row.id} to {row.to_address}" for row in named)
                + " but was not addressed to its return path, so nothing was marked"
            )
        return Decision(Outcome.IGNORED, reason, bounced=bounced)
    sender = mail.from_address
    if not sender:  # approval refuses it too: no one to open a ticket for
        return _held(
            session,
            mail,
            envelope,
            config,
            "no sender address: none in From, Sender, Reply-To, Return-Path or the envelope",
        )
    if addresses.is_reserved_invalid(sender):
        # No mail comes from `.invalid` (RFC 2606): the From is forged, most likely as
        # the stand-in of someone known by phone only, to write into their tickets or
        # use up their limits. Held like mail naming no sender; approval refuses it.
        return _held(
            session,
            mail,
            envelope,
            config,
            f"the sender {sender} is in the reserved .invalid domain, which sends no mail",
        )
    if addresses.is_address_literal(sender):
        # `root@127.0.0.1`, `ann@[192.0.2.1]`: no customer's address on any channel, and
        # never mailed (docs/mail-gateway.md, "What an address is"). Held whatever the
        # policy, as `accept` would make it a customer; approval refuses it.
        return _held(
            session,
            mail,
            envelope,
            config,
            f"the sender {sender} names a host by its IP address, which is no customer's address",
        )
    assessment = authentication.assess(mail, config["TRUSTED_AUTHSERV_ID"])
    verdict = assessment.verdict
    believed = verdict.believed
    # Who the From address is. What it may do rests on the From being believed: an
    # approval vouches for opening a ticket, never for the From (`decide`).
    identified = (
        authorization.identify(session, sender)
        if believed or approved_by is not None
        else authorization.UNKNOWN
    )
    known = identified if believed else authorization.UNKNOWN
    customer = Actor.customer(sender, mail.from_name)
    unauthenticated = f"From not authenticated ({assessment.reason})"

    match = _match(session, mail, envelope, config, signer)
    if match is None:
        answered = matching.answered_staff_mail_of_no_ticket(session, mail, signer)
        if answered is not None:
            # A staff member answering an SLA digest: no ticket to file it in, and no
            # customer's request (docs/mail-gateway.md, "Answering staff mail about no ticket").
            return Decision(
                Outcome.IGNORED,
                f"answers {answered.kind} outbox #{answered.id} to {answered.to_address}, staff mail "
                "about no single ticket: nothing to file it in; answer on the tickets in the portal",
            )
    organization_id = identified.organization_id
    if match is not None:
        # Locked for change until the mail's commit, as it is now: a resolution, a
        # cancellation or a merge committed since the match is seen before anything
        # is judged by the ticket's status or people; merged meanwhile, the survivor
        # is taken (docs/lifecycle.md, "Concurrent changes").
        match = replace(match, ticket=lock_with_survivor(session, match.ticket))
        ticket = match.ticket
        number = display_number(ticket.number, config)
        # `identified` names a staff account only when the From is believed or the mail
        # approved. A staff address acts as staff only with its own proof, approved or
        # not; without it the mail is an unverified internal note, never mailed.
        hidden = ""
        replying = known
        if identified.staff_id is not None:
            as_staff = _staff_mail(session, mail, match, identified.staff_id, verdict, signer, number, config)
            if as_staff is not None:
                return as_staff
            # Proven staff who may not see the ticket: no staff there, decided as their
            # address would be were it no staff account's (docs/isp-operations.md).
            hidden = (
                f"{sender} is staff but may not see {number} (AGENT_VISIBILITY={config['AGENT_VISIBILITY']})"
            )
            known = replace(known, staff_id=None)
            # On it only as its requester or a CC participant: as an authorized sender
            # of the ticket's organization (staff writing from the customer's domain,
            # an internal helpdesk) they wrote into it and learnt it exists.
            replying = authorization.UNKNOWN
        if believed and authorization.may_reply(session, ticket, sender, replying):
            if ticket.status == "cancelled":
                return Decision(
                    Outcome.CREATED,
                    _joined(f"reply to cancelled {number}; new ticket", hidden),
                    ticket,
                    organization_id or ticket.organization_id,
                    customer,
                )
            return Decision(
                Outcome.APPENDED,
                _joined(
                    f"matched {number} by {match.method}",
                    hidden and f"{hidden}: written as {sender}, not as staff",
                ),
                ticket,
                actor=customer,
            )
        if hidden:
            stranger = f"{hidden}, and does not belong on it otherwise"
        elif believed:
            stranger = f"{sender} does not belong on {number}"
        else:
            stranger = f"{unauthenticated}: {sender} may not write into {number}"
        if known.authorized or approved_by is not None:
            return Decision(
                Outcome.CREATED, f"{stranger}; new ticket linked to it", ticket, organization_id, customer
            )
        return _unknown_sender(config, stranger, ticket, customer)
    if known.authorized or approved_by is not None:
        return Decision(
            Outcome.CREATED,
            "authorized sender" if known.authorized else "approved",
            organization_id=organization_id,
            actor=customer,
        )
    why = "unknown sender" if believed else unauthenticated
    return _unknown_sender(config, f"{why}: {sender}", None, customer)


def _match(
    session: Session, mail: InboundMail, envelope: Envelope, config: Mapping[str, Any], signer: Signer
) -> matching.Match | None:
    """The ticket the mail answers, by `matching` on what was read of it and the
    support addresses it was delivered to."""
    return matching.find_ticket(
        session,
        mail,
        matching.recipients(mail, envelope.recipients, config["SUPPORT_ADDRESSES"]),
        config["TICKET_PREFIX"],
        signer,
    )


def _held(
    session: Session, mail: InboundMail, envelope: Envelope, config: Mapping[str, Any], reason: str
) -> Decision:
    """A mail held for its sender whatever the unknown-sender policy (none, one in
    `.invalid`, an address literal), shown to who may see the ticket it names;
    approving it is refused for the same reason."""
    return Decision(
        Outcome.QUARANTINED, reason, _named_ticket(session, mail, envelope, config), stranger=True
    )


def _named_ticket(
    session: Session, mail: InboundMail, envelope: Envelope, config: Mapping[str, Any]
) -> Ticket | None:
    """The ticket a mail held for any reason names, so the quarantine shows it only
    to who may see that ticket (AGENT_VISIBILITY): a reply held for being over a cap,
    unreadable or failing is that ticket's content as much as one held for its sender.

    The same matching as a reply's, so the work is bounded as a reply's is. Only for
    mail read whole: one read in part (unparseable, over a cap) is held before
    matching, its ticket unknown whatever the part read names (`_read_in_part`).
    Not locked: it decides who reviews the mail, not what becomes of it."""
    match = _match(session, mail, envelope, config, Signer.from_config(config))
    return match.ticket if match is not None else None


class Followed(NamedTuple):
    """The held item a mail follows, and whether it is the same sender's."""

    item_id: int
    own: bool


def _held_item(
    record_id: int, reason: str, ticket_id: int | None, unknown: bool, follows: Followed | None
) -> QuarantineItem:
    """The quarantine item of a held record: the ticket it names, or that nobody can
    tell, or the held item it follows (who may review it: `quarantine`)."""
    return QuarantineItem(
        inbound_mail_id=record_id,
        reason=reason,
        ticket_id=ticket_id,
        ticket_unknown=unknown,
        follows_item_id=follows.item_id if follows is not None else None,
        follows_own=follows is not None and follows.own,
    )


def _followed_item(session: Session, mail: InboundMail, config: Mapping[str, Any]) -> Followed | None:
    """The held item a mail naming no ticket follows: that of the first mail received
    it answers (In-Reply-To, then References newest first, as matching ranks them)
    that was held, in any state; its direct parent, so a thread M3 → M2 → M1 is
    walked back when judged and M3 lands where M2 did (`quarantine._hiding`). Reviewed
    like the held mail up its thread, a follow-up held beside the mail it answers is
    hidden with it once it lands in a hidden ticket.

    Held twice under one Message-ID, the first held counts: a later mail reusing the
    id cannot draw the thread's follow-ups to itself. Whether the item is the same
    sender's (`addresses.mailbox`, as contacts and the outbox count a sender) is
    recorded too: another sender's held mail passes on only the ticket it was
    approved into, so a stranger holding their mail first under a Message-ID a
    customer will answer chooses nothing of who reviews the answer. A sender links
    only their own mail this way: the other mail is untouched. One statement over
    the bounded ids matching reads (`matching.received_ids`), read when held, not
    when viewed."""
    received = matching.received_ids(mail, Signer.from_config(config))
    if not received:
        return None
    held: dict[str, Followed] = {}
    rows = session.execute(
        select(InboundRecord.message_id, QuarantineItem.id, InboundRecord.from_address)
        .join(QuarantineItem, QuarantineItem.inbound_mail_id == InboundRecord.id)
        .where(InboundRecord.message_id.in_(received))
        .order_by(QuarantineItem.id)
    )
    sender = addresses.mailbox(mail.from_address) if mail.from_address else None
    for message_id, item_id, from_address in rows:
        if message_id is not None and message_id not in held:
            own = sender is not None and bool(from_address) and addresses.mailbox(from_address) == sender
            held[message_id] = Followed(item_id, own)
    return next((held[mid] for mid in received if mid in held), None)


def _read_in_part(mail: InboundMail) -> bool:
    """Whether matching saw only part of the mail, or none of it but the envelope
    (unparseable, over a cap): what it names then proves nothing, neither no ticket
    nor the one found, since the part nobody read may name another (an In-Reply-To
    past the cap, which matching ranks before the Subject)."""
    return mail.parse_error is not None or mail.over_limit is not None


def _staff_mail(
    session: Session,
    mail: InboundMail,
    match: matching.Match,
    staff_id: int,
    verdict: authentication.Verdict,
    signer: Signer,
    number: str,
    config: Mapping[str, Any],
) -> Decision | None:
    """A mail whose From is a staff address, on the ticket it matched; None when the
    staff member proved it is theirs but may not see the ticket (`visibility`).

    It acts as the staff member, a public reply mailed to the customer, only with
    proof that it was written to this ticket: it answers a signed Message-ID the
    helpdesk sent to that address. A trusted DMARC (or aligned SPF/DKIM) pass proves
    who wrote the mail, not to whom: a signature covers only the header fields the
    sender's server chose, so a mail the staff member once sent elsewhere, replayed
    to `support+TKT-…@` with a To or Cc line added that no signature covers, passes
    still (docs/security.md). Such a mail is kept as the staff member's internal
    note, never mailed. Without either, anyone could have written it, or written it
    for someone else: an internal note labelled unverified, never the SLA's first
    response, never signed with the staff member's name.

    Proof makes the mail the staff member's, and a staff member writes only into a
    ticket they may see (AGENT_VISIBILITY; every portal and API route answers them
    404 for the others): on a hidden one the caller decides the mail as the address
    would be were it no staff account's (docs/isp-operations.md, "Visibility"). The
    unverified note is not theirs, and is what anyone forging the From gets.
    """
    ticket = match.ticket
    found = f"matched {number} by {match.method}"
    staff = session.get(StaffUser, staff_id)
    passed = verdict is authentication.Verdict.PASS
    answers = staff is not None and matching.answers_mail_sent_to(
        session, mail, signer, ticket, mail.from_address
    )
    if staff is None or not (answers or passed):
        return Decision(
            Outcome.APPENDED,
            f"{found}; From is the staff address "
            f"{mail.from_address} but the mail carries no proof (it answers no "
            "mail the helpdesk sent to that address, and no trusted Authentication-Results "
            "passed), so it is kept as an unverified internal note",
            ticket,
            actor=Actor.unverified(mail.from_address, mail.from_name),
            internal=True,
        )
    actor = Actor.staff(staff)
    if not visibility.may_see(session, actor, config["AGENT_VISIBILITY"], ticket.id):
        return None
    if not answers:
        return Decision(
            Outcome.APPENDED,
            f"{found}; the trusted Authentication-Results say {mail.from_address} wrote it, but "
            "it answers no mail the helpdesk sent to that address, so nothing says it was "
            "written to this ticket: kept as the staff member's internal note",
            ticket,
            actor=actor,
            internal=True,
        )
    to_colleagues = _written_to_colleagues(match, mail.subject, config["TICKET_PREFIX"])
    if to_colleagues is not None:
        return Decision(
            Outcome.APPENDED,
            f"{found}; {to_colleagues}, kept as an internal note",
            ticket,
            actor=actor,
            internal=True,
        )
    if ticket.status == "cancelled":
        return Decision(
            Outcome.APPENDED,
            f"{found}; the ticket is cancelled, so the staff answer is kept as an internal note",
            ticket,
            actor=actor,
            internal=True,
        )
    return Decision(Outcome.APPENDED, found, ticket, actor=actor)


def _written_to_colleagues(match: matching.Match, subject: str, prefix: str) -> str | None:
    """Why a proven staff mail is written to colleagues, not to the customer, or None.

    A public reply is mailed to the customer: an answer to an SLA alert or an
    escalation, or a forward of one, would hand them the alert's due times and the
    words meant for colleagues. A Message-ID match says for sure whether the mail
    answers staff mail; matched by subject or plus-address, only the subject can (a
    forward from Thunderbird or Outlook carries no In-Reply-To). A forward of any
    mail is written to colleagues too (docs/mail-gateway.md, "Mail from a staff
    address")."""
    if match.answers_staff_mail:
        return "staff answer to a staff alert"
    if match.method in ("subject", "plus-address") and matching.names_staff_alert(subject, prefix):
        return "its subject is a staff alert's"
    if matching.is_forward(subject):
        return "a staff member's forward, written to colleagues"
    return None


def _unknown_sender(
    config: Mapping[str, Any], reason: str, linked: Ticket | None, customer: Actor
) -> Decision:
    policy = config["UNKNOWN_SENDER_POLICY"]
    if policy == "reject":
        return Decision(Outcome.REJECTED, reason)
    if policy == "accept":
        return Decision(Outcome.CREATED, f"{reason}; accepted by policy", linked, actor=customer)
    # Held for review by who may see `linked`, while the quarantine has room (`room`).
    return Decision(Outcome.QUARANTINED, reason, linked, stranger=True)


def apply(
    session: Session, mail: InboundMail, record: InboundRecord, decision: Decision, config: Mapping[str, Any]
) -> Result:
    """Carry out a decision inside the caller's transaction (no commit here)."""
    service = TicketsService.from_config(session, config)
    limits = MailLimits.from_config(config)
    number = None
    if decision.outcome is Outcome.QUARANTINED:
        # The ticket it names decides who may review it (`quarantine`, AGENT_VISIBILITY).
        named = decision.ticket.id if decision.ticket is not None else None
        unknown = _read_in_part(mail)
        follows = _followed_item(session, mail, config) if named is None and not unknown else None
        session.add(_held_item(record.id, decision.reason, named, unknown, follows))
    elif decision.outcome is Outcome.IGNORED:
        for row in decision.bounced:
            notifications.record_bounce(session, row, f"reported by inbound mail #{record.id}")
    elif decision.outcome is Outcome.CREATED:
        files, notes = storage.attachments(mail, limits)
        support = set(config["SUPPORT_ADDRESSES"])
        # Neither ours nor an address literal, which is never mailed (docs/mail-gateway.md,
        # "What an address is"): kept, it was shown as a participant and took a place
        # under MAX_CC_PARTICIPANTS.
        cc = [
            (name, addr)
            for name, addr in mail.to + mail.cc
            if not addresses.is_support_address(addr, support) and not addresses.is_address_literal(addr)
        ]
        if len(cc) > limits.cc_participants:
            notes.append(
                f"{len(cc) - limits.cc_participants} more To/Cc addresses were not "
                f"added as participants: more than {limits.cc_participants} "
                "(MAX_CC_PARTICIPANTS)."
            )
            cc = cc[: limits.cc_participants]
        subject, text = storage.display_subject(mail), storage.display_text(mail)
        if not subject or not text:
            # In the language the ticket's mail will be in: its requester's (what its
            # first customer mail fixes), asked for as open_ticket asks (answered from
            # the session the second time).
            language = languages.of_contact(
                contacts.find_or_create(session, mail.from_address, mail.from_name[:MAX_NAME]), config
            )
            subject = subject or gettext_in(language, NO_SUBJECT)
            text = text or gettext_in(language, NO_TEXT)
        ticket = service.open_ticket(
            subject=subject[:MAX_SUBJECT],
            description=text,
            requester_email=mail.from_address,
            requester_name=mail.from_name[:MAX_NAME],
            channel="email",
            actor=decision.actor or Actor.customer(mail.from_address),
            is_email_originated=True,
            organization_id=decision.organization_id,
            cc=[(addr, name) for name, addr in cc],
            linked_ticket=decision.ticket,
            body_html=storage.sanitized_html(mail),
            inbound_mail_id=record.id,
            attachments=files,
            acknowledge=decision.acknowledge,
            # In the numbering statement too: nothing runs while the counter is locked.
            note=(GATEWAY, "\n".join(mail.notes + notes)) if mail.notes or notes else None,
        )
        # open_ticket pointed the row at the ticket in its numbering statement; no
        # second UPDATE while the counter row is locked.
        set_committed_value(record, "ticket_id", ticket.id)
        number = service.display_number(ticket)
    elif decision.outcome is Outcome.APPENDED and decision.ticket is not None:
        files, notes = storage.attachments(mail, limits)
        written = service.add_message(
            decision.ticket,
            body=storage.display_text(mail)
            or gettext_in(languages.of_ticket(decision.ticket, config), NO_TEXT),
            actor=decision.actor or Actor.customer(mail.from_address),
            channel="email",
            internal=decision.internal,
            body_html=storage.sanitized_html(mail),
            inbound_mail_id=record.id,
            attachments=files,
        )
        # The ticket it was written on: a customer's follows a merge (add_message).
        record.ticket_id = written.ticket_id
        _note_for_staff(service, written.ticket, mail.notes + notes)
        number = service.display_number(written.ticket)
    session.flush()
    return Result(
        decision.outcome, decision.reason, mail.message_id, record.id, number, failed=decision.failed
    )


def _joined(reason: str, more: str) -> str:
    return f"{reason}; {more}" if more else reason


def _note_for_staff(service: TicketsService, ticket: Ticket, notes: list[str]) -> None:
    """The gateway's notes on a mail appended to a ticket (what it left out, where it
    found the sender) are for staff: one internal note by the gateway after the
    mail's message, never words of ours in the customer's own (docs/mail-gateway.md,
    "What is stored"). A new ticket's is written by open_ticket (`note`)."""
    if notes:
        service.add_message(ticket, body="\n".join(notes), actor=GATEWAY, channel="email", internal=True)


def _bounced_notifications(
    session: Session, mail: InboundMail, envelope: Envelope, config: Mapping[str, Any], signer: Signer
) -> tuple[tuple[OutboxMessage, ...], tuple[OutboxMessage, ...]]:
    """Our notifications this automatic mail reports as failed, and those it only
    names (docs/outbound-mail.md, "Bounces").

    Only a failure report counts (a delay notice does not), and only when it is
    addressed to the signed envelope sender (`return_paths`) of the row it reports
    on: through SMTP an envelope recipient, through IMAP a delivery header the server
    wrote (the poller's envelope) or To. A Message-ID it quotes or answers proves
    nothing: the one of Bob's copy reaches everyone Bob replies to, and a "bounce"
    naming it silenced Bob. Such ids are only looked up to tell staff which
    notification a bounce that marks nothing is about (a bounce of mail sent before
    the return paths were signed, or a forgery).
    """
    if not automail.is_bounce(mail):
        return (), ()
    support = config["SUPPORT_ADDRESSES"]
    addressed_to = list(envelope.recipients)
    if envelope.channel != "smtp":
        addressed_to += [address for _, address in mail.to]
    paths = ReturnPaths.from_config(config)
    proven = {row.id: row for row in return_paths.bounced_rows(session, paths, addressed_to, support)}
    named: dict[int, OutboxMessage] = {}
    for row in message_ids.sent_rows(session, signer, automail.original_message_ids(mail)).values():
        if row.id not in proven:
            named.setdefault(row.id, row)
    bounced = tuple(row for row in proven.values() if row.state != "bounced")
    return bounced, tuple(named.values())
