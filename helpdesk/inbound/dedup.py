"""Has this mail been received before? (docs/mail-gateway.md.)

The key is the normalized Message-ID, or a hash of the mail's content when there is
none, and the inbound-mail table holds it under a unique constraint: a second
delivery of the same mail — a sender's retry, the same mail to two support
addresses, SMTP and IMAP both, a poller that crashed before moving it — is refused
by that constraint when its record is inserted (`ingest` writes the record first),
and then answered with what became of the first one, changing nothing.

A key is a claim anyone can make: whoever saw a Message-ID (in Cc, on a list) can
mail under it first. So a second mail under a used key is a duplicate only when it
is the same mail, the same as `written_hash` reads it (the author's fields and the
body, whatever the servers on its way added); another mail is kept under a key of
its own beside the first (`beside_key`), which its own retries and copies find
again (docs/mail-gateway.md, "Duplicates").

The content of a mail without Message-ID is read the same way, when it has a Date:
the author's fields and the body (`written_hash`), without what receiving servers
and filters write, wherever they write it (each relay's Received, the delivery
agent's Return-Path and Delivered-To above a mailbox's copy, amavis' and
SpamAssassin's stamps between them), CRLF and LF alike, as SMTP and a mailbox may
store it either way.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import NamedTuple

from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from helpdesk.inbound.parser import InboundMail
from helpdesk.models import InboundDuplicates
from helpdesk.models import InboundMail as InboundRecord

log = logging.getLogger(__name__)

# In UTF-8 bytes: PostgreSQL's unique index refuses a key over about 2,700 bytes,
# and 900 characters of four-byte ones would be 3,600.
MAX_KEY_BYTES = 900

# The fields a receiving server or a forwarding hop writes at the top of a mail it
# takes in, lower-case: the block of them on top is what the key of a mail without
# Message-ID left out before it was read by its author's fields (`Keys`).
TRACE_FIELDS = frozenset(
    {
        b"return-path",  # RFC 5321 §4.4: the final delivery's MAIL FROM
        b"received",  # RFC 5321 §4.4: one for each hop
        b"delivered-to",  # RFC 9228: Postfix, Dovecot LMTP
        b"x-original-to",  # Postfix: RCPT TO before aliases
        b"envelope-to",  # Exim
        b"authentication-results",  # RFC 8601
        b"received-spf",  # RFC 7208 §9.1
        b"arc-seal",  # RFC 8617: a forwarding hop's chain
        b"arc-message-signature",
        b"arc-authentication-results",
        b"dkim-signature",  # RFC 6376
    }
)
# A field's name is looked for this far into its line (the longest name, and room for
# the spaces RFC 5322 §4.5's obsolete syntax allows before the colon).
_NAME_SCAN = 64


def dedup_key(mail: InboundMail) -> str:
    """The normalized Message-ID, or a hash of the content when there is none: of
    the author's fields and the body (`written_hash`) when the mail has a Date, so
    that its copies by any way are one mail, whatever the servers on each way wrote
    into its header; of the bytes as they came when it has no Date.

    Without a Date, the same text is not the same mail: a device that writes
    neither field sends "Toner low" again next week, and keyed by its content that
    one would be taken for a duplicate and dropped. Its trace (the relay's Received
    with its time) is then all that tells the two apart; the cost is that such a
    mail through both SMTP and the mailbox makes two tickets, which staff can merge.
    With a Date, the same text sent on another day is another mail.

    The domain part of a Message-ID is case-insensitive, the local part is not. A
    longer id is keyed by its hash, so every key fits the unique index.
    """
    if mail.message_id:
        local, at, domain = mail.message_id.strip().strip("<>").rpartition("@")
        key = f"{local}@{domain.lower()}" if at else mail.message_id.strip()
        encoded = key.encode("utf-8", "replace")
        if len(encoded) <= MAX_KEY_BYTES:
            return key
        return "mid-sha256:" + hashlib.sha256(encoded).hexdigest()
    return _content_keys(mail.raw, before_upgrade=False).key


class Keys(NamedTuple):
    """A mail's `dedup_key`, and the key it had before a mail without Message-ID was
    keyed by its author's fields, when that was another (a Date, no Message-ID): the
    hash of its bytes below the block of `TRACE_FIELDS` on top. Not what makes two
    mails one (`written_hash` is): `ingest` looks it up once, so that a copy of a
    mail recorded under it is still that mail's duplicate (docs/mail-gateway.md,
    "Decisions")."""

    key: str
    before_upgrade: str | None


def dedup_keys(mail: InboundMail) -> Keys:
    """`dedup_key` and the key before the upgrade (`Keys`), reading the header once."""
    if mail.message_id:
        return Keys(dedup_key(mail), None)
    return _content_keys(mail.raw, before_upgrade=True)


def _content_keys(raw: bytes, *, before_upgrade: bool) -> Keys:
    """The keys of a mail without Message-ID (`dedup_key`, `Keys`); the one before the
    upgrade only when asked for. Each line of the header is looked at once, by
    `_written`, and those of the trace block on top once more."""
    text = _lf(raw)
    written = _written(text)
    if not any(field.startswith(b"date:") for field in written.fields):
        return Keys("sha256:" + hashlib.sha256(raw).hexdigest(), None)  # then as now
    old = None
    if before_upgrade:
        old = "sha256:" + hashlib.sha256(memoryview(text)[_after_trace(text) :]).hexdigest()
    return Keys("sha256:" + _written_digest(text, written), old)


def _lf(raw: bytes) -> bytes:
    """The mail with lines ending in LF and no line break at its very end."""
    return raw.replace(b"\r\n", b"\n").rstrip(b"\r\n")


# The fields that make a mail what its author wrote, lower-case, and those of its
# fields that decide what becomes of it (`automail`) where a relay may add them: a
# second mail under a used key is its duplicate when these and the body are the
# same (`written_hash`). Every other field is the way it came, wherever it stands:
# the trace, and the stamps of filters and hosted mail among it (amavis
# X-Virus-Scanned, X-Spam-*, Gmail's X-Received, Exchange's X-MS-Exchange-*).
# docs/mail-gateway.md, "Duplicates", says why these.
AUTHOR_FIELDS = frozenset(
    {
        b"from",
        b"sender",
        b"reply-to",
        b"to",
        b"cc",
        b"subject",
        b"date",
        b"message-id",
        b"in-reply-to",
        b"references",
        b"mime-version",
        b"content-type",
        b"content-transfer-encoding",
        b"content-disposition",
        # What makes `automail` ignore a mail: a copy that has them and one that has
        # not are two mails, else one ignored copy would stand for the other.
        b"auto-submitted",
        b"precedence",
        b"x-precedence",
        b"x-autoreply",
        b"x-autorespond",
        b"x-autoresponse",
        b"x-autoreply-from",
        b"x-mail-autoreply",
        b"x-autogenerated",
        b"x-fc-machinegenerated",
        b"x-loop",
        b"x-failed-recipients",
        b"x-auto-response-suppress",
        b"list-id",
        b"list-unsubscribe",
    }
)


class _Written(NamedTuple):
    """The author's fields of a header (`AUTHOR_FIELDS`), each `name:value` with the
    name lower-case and the value unfolded, its whitespace runs one space, in their
    order; where the body starts; and whether a blank line ended the header (else it
    was cut, or the mail is all header)."""

    fields: list[bytes]
    body: int
    whole: bool


def _written(text: bytes) -> _Written:
    """The author's fields of `text` (lines ending in LF): one pass over its lines."""
    fields: list[bytes] = []
    current: list[bytes] | None = None  # the lines of the author's field being read
    start = 0
    while start < len(text):
        end = text.find(b"\n", start)
        if end < 0:
            end = len(text)
        if start == end:  # a blank line ends the header
            if current is not None:
                fields.append(_unfolded(current))
            return _Written(fields, end + 1, True)
        line = text[start:end]
        if line[:1] in (b" ", b"\t"):
            if current is not None:
                current.append(line)
        else:
            if current is not None:
                fields.append(_unfolded(current))
            colon = line.find(b":", 0, _NAME_SCAN)
            name = line[:colon].rstrip(b" \t").lower() if colon >= 0 else b""
            current = [name + b":", line[colon + 1 :]] if name in AUTHOR_FIELDS else None
        start = end + 1
    if current is not None:
        fields.append(_unfolded(current))
    return _Written(fields, len(text), False)


def _unfolded(lines: list[bytes]) -> bytes:
    """A field's name and its lines as one, whitespace runs as one space."""
    return lines[0] + b" ".join(b" ".join(lines[1:]).split())


def written_hash(raw: bytes) -> str:
    """SHA-256 (hex) of the mail as its author wrote it: its author's fields
    (`AUTHOR_FIELDS`, as `_written` reads them) and its body, lines ending in LF,
    line breaks at the very end left out; no other field, wherever it stands. What
    tells a second delivery under a used key from another mail (`earlier_delivery`):
    the same mail through SMTP and a mailbox, with whatever the servers on either
    way wrote into its header, is one; another text under its Message-ID is not.
    With or without a Date: the key tells mails apart (a Message-ID, or the Date's
    presence for a mail without one, `dedup_key`)."""
    text = _lf(raw)
    return _written_digest(text, _written(text))


def _written_digest(text: bytes, written: _Written) -> str:
    """`written_hash` of `text` (lines ending in LF), whose `_written` this is."""
    # No field holds a line break, so the first blank line ends them here too.
    digest = hashlib.sha256(b"\n".join(written.fields) + b"\n\n")
    digest.update(memoryview(text)[written.body :])  # the body is not copied
    return digest.hexdigest()


def same_header(one: bytes, other: bytes) -> bool:
    """Whether two headers (or mails: their headers) have the same author's fields,
    the way a mail too big to take is compared: by the header the poller fetched,
    which `MAX_HEADER_BYTES` may have cut. A header cut short is compared up to its
    last whole author's field (the one it ends in may be cut), so copies whose
    trace blocks of other lengths cut them at other places are one; one cut before
    any field of the author's is no proof of anything, and is another mail."""
    mine, theirs = (_written(raw.replace(b"\r\n", b"\n")) for raw in (one, other))
    if mine.whole and theirs.whole:
        return mine.fields == theirs.fields
    a = mine.fields if mine.whole else mine.fields[:-1]
    b = theirs.fields if theirs.whole else theirs.fields[:-1]
    shared = min(len(a), len(b))
    if not mine.whole and not theirs.whole:
        return shared > 0 and a[:shared] == b[:shared]
    cut, whole = (a, b) if not mine.whole else (b, a)
    return 0 < len(cut) <= len(whole) and cut == whole[: len(cut)]


# Between a key and the hash of the mail kept beside the one holding it (`beside_key`).
# No other key has a space: a Message-ID has its whitespace taken out (`parser`), and
# the keys made here and by `ingest` are names and hex digits.
_BESIDE = " sha256:"
# Mails under one Message-ID a too-big mail's header is compared with (`earlier_delivery`).
MAX_BESIDE = 20


def beside_key(key: str, raw: bytes) -> str:
    """The key of a mail whose key another mail holds: that key and `written_hash`.
    Its retries and its other copies have it too, so they are duplicates of it; it
    has a space, so no mail can claim it first with a Message-ID. At most 900 bytes
    (`MAX_KEY_BYTES`) and 72 more: it fits the column and the unique index."""
    return key + _BESIDE + written_hash(raw)


def beside_of(key: str) -> str | None:
    """The key a `beside_key` was made beside (another mail's), or None for any other."""
    taken, beside, _hash = key.partition(_BESIDE)
    return taken if beside else None


def _field_name(text: bytes, start: int) -> bytes | None:
    """The lower-case name of the field whose line starts at `start`, or None."""
    colon = text.find(b":", start, start + _NAME_SCAN)
    return None if colon < 0 else text[start:colon].rstrip(b" \t").lower()


def _after_trace(text: bytes) -> int:
    """Where the mail starts below the leading trace fields (0 when it has none)."""
    start = 0
    while True:
        if _field_name(text, start) not in TRACE_FIELDS:
            return start
        end = text.find(b"\n", start)
        while end >= 0 and text[end + 1 : end + 2] in (b" ", b"\t"):  # folded onto the next line
            end = text.find(b"\n", end + 1)
        if end < 0:
            return len(text)
        start = end + 1


@dataclass(frozen=True)
class Earlier:
    """The mail recorded under a key: its inbound row, what became of it, and whether
    it is the mail asked about (else another mail holds its key)."""

    inbound_id: int
    outcome: str
    message_id: str | None
    reason: str
    same_mail: bool


def earlier_delivery(session: Session, key: str, raw: bytes, *, head_of: str | None = None) -> Earlier | None:
    """The mail recorded under `key`, if any, and whether it is the one of `raw`:
    the same `written_hash`, or any under a `beside_key`, which names its hash.

    Only a mail whose key is taken pays for this: the earlier raw bytes are read
    and both hashed. The record keeps the raw bytes of every mail, so no column of
    hashes is needed. A record of only a header (`ingest.refuse_oversized`: its
    size is more than the bytes kept) is no proof that a whole mail is its copy.

    `head_of`: `raw` is only the header of a mail too big to take, whose
    Message-ID (as recorded) this is. It is compared by the author's fields alone
    (`same_header`), with the record under `key` and then with those kept beside
    it under the same Message-ID (the first `MAX_BESIDE` of them), so that neither
    the mail's copy SMTP took whole nor its own earlier record is recorded again."""
    columns = (InboundRecord.id, InboundRecord.outcome, InboundRecord.message_id, InboundRecord.reason)
    rows = select(*columns, InboundRecord.raw, InboundRecord.size)
    row = session.execute(rows.where(InboundRecord.dedup_key == key)).first()
    if row is None:
        return None
    inbound_id, outcome, message_id, reason, earlier_raw, size = row
    earlier_raw = earlier_raw or b""
    if _BESIDE in key:
        return Earlier(inbound_id, outcome, message_id, reason, True)
    if head_of is None:
        same = size <= len(earlier_raw) and written_hash(earlier_raw) == written_hash(raw)
        return Earlier(inbound_id, outcome, message_id, reason, same)
    if same_header(earlier_raw, raw):
        return Earlier(inbound_id, outcome, message_id, reason, True)
    beside = session.execute(
        rows.where(InboundRecord.message_id == head_of, InboundRecord.id != inbound_id)
        .order_by(InboundRecord.id)
        .limit(MAX_BESIDE)
    )
    for other_id, other_outcome, other_message_id, other_reason, other_raw, _size in beside:
        if same_header(other_raw or b"", raw):
            return Earlier(other_id, other_outcome, other_message_id, other_reason, True)
    return Earlier(inbound_id, outcome, message_id, reason, False)


def count_duplicate(session: Session, channel: str, source: str = "") -> None:
    """One more delivery on `channel` by `source` (its mailbox or listener, "" when
    none was named) that was a mail received before (SPEC §10, docs/web.md "Mail
    flow"), committed: one UPDATE, paid by the duplicate alone. A failure is logged, not
    raised: the mail is recorded already, and its `250 … duplicate` must not turn
    into a 451 over a count."""
    raise_count = (
        update(InboundDuplicates)
        .where(InboundDuplicates.channel == channel, InboundDuplicates.source == source)
        .values(count=InboundDuplicates.count + 1)
    )
    try:
        if session.execute(raise_count).rowcount == 0:  # type: ignore[attr-defined]
            # The source's first: its row is inserted; a concurrent first wins the
            # insert and this one raises the count it made.
            try:
                with session.begin_nested():
                    session.add(InboundDuplicates(channel=channel, source=source, count=1))
            except IntegrityError:
                session.execute(raise_count)
        session.commit()
    except DBAPIError as exc:
        session.rollback()
        log.warning("a duplicate via %s was not counted: %s", channel, " ".join(str(exc).split()))
