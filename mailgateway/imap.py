"""The IMAP poller (imapclient): feeds every message of a mailbox to the one
inbound pipeline, the same `ingest` the SMTP listener calls (docs/mail-gateway.md).

Where other helpdesks lose or duplicate mail, and what this one does instead:
- It works by UID, never by sequence number (sequence numbers shift under every
  expunge: osTicket #6979), and remembers UIDVALIDITY and the last UID per mailbox
  in the database. When UIDVALIDITY changes, the remembered UID means nothing: the
  whole mailbox is rescanned, and the inbound dedup key makes mail already taken a
  no-op.
- It never looks at `\\Seen` (a person reading the mailbox in another client must
  not hide mail from the helpdesk: FreeScout #3406), and fetches with BODY.PEEK so
  it does not set it either.
- A message is moved to the processed folder only after `ingest` committed its
  outcome (FreeScout #1620 marked mail read first and lost it on error). A crash
  between the commit and the move is harmless: the next pass finds the message
  again and `ingest` answers "duplicate" (Zammad #1662 made a second ticket there),
  failed if the first delivery failed, so it is filed where the first pass would
  have filed it.
- A transient failure (database unreachable) leaves the message where it is and
  the poller retries after a backoff; a message that cannot be processed for good
  is quarantined by `ingest` with its raw bytes and filed in the failed folder, and
  so is one whose reading before `ingest` (its envelope, its parse) fails. A
  message the server fails to hand over is asked for alone; after FETCH_ATTEMPTS
  refusals (FETCH_DROPS when only the connection dropped: a restart or a network
  does that to any fetch) it is quarantined by its place and filed there too, unread, so it
  never holds back the mail after it (SPEC §7).
- Those counts live in the process; a message that kills the process (or hangs it
  until a restart) would take them along every time. So the mailbox's row keeps
  the batch begun and the message begun alone with the processes that began it:
  after TAKING_ATTEMPTS processes that never finished it, it is filed the same way.
- A mail whose `ingest` runs past SMTP_TIMEOUT hangs (a lock never released, a
  database that stopped answering): the lease thread logs it and records it on
  the mailbox for the health check. The poller waits on (the mail stays in the
  mailbox until its ingest ends). A taking that waits on the database for
  `database_waits.WAITING_SECONDS` is no death: its count is taken back, so the
  restarts that end a hang never file a good mail. One that hangs otherwise (the
  pipeline spinning on the mail) keeps its count.
- IDLE where the server has it, renewed well within the 29 minutes of RFC 2177
  (servers and middleboxes drop quieter connections after 10), polling otherwise;
  an outer reconnect loop with exponential backoff survives the server going away.
  The server tells a connection about new mail once (EXISTS), and mail delivered
  just before the IDLE is told before it: with the last SEARCH's answer, which does
  not include it yet, or with IDLE's continuation. The poller acts on both, so no
  mail waits for the IDLE's renewal.
- Backlogs are listed PENDING_CHUNK UIDs at a time, so no command outgrows a
  server's line limit, and fetched in batches bounded by count and by bytes.
  Within a batch, mail is ingested by `IMAP_INGEST_THREADS` threads side by side,
  so one mail's database round trips overlap another's parsing, unless it could
  find something different in strict UID order: a second copy of a mail still in
  flight, and mail answering a mail still in flight (In-Reply-To, References) or a
  ticket numbered from where the batch's new tickets start (subject,
  plus-address). Such mail waits until all mail before it has committed, so it
  finds what it answers, or the copy it duplicates, exactly as in strict UID
  order; any other answer waits for the answers before it only, since two may
  answer one ticket. Only committed mail is moved, and the remembered UID only
  passes a message once every message before it in the batch committed too.

One poller per mailbox, even with several gateways configured alike (several
hosts): two pollers would not lose or duplicate tickets (the dedup key sees to
that) but would race each other's moves. A poller polls only while it holds the
mailbox's lease (its row in `imap_mailboxes`, taken with one conditional UPDATE,
which works through PgBouncer in transaction mode where session advisory locks do
not), and gives it up when it stops; another gateway takes over within
`IMAP_LEASE_SECONDS` of one dying. A thread renews the lease every third of it for
as long as the poller is connected, so a batch held up by a slow database keeps the
mailbox; a renewal that gets no database connection (the pool busy, the database
restarting) is tried again at the next turn, and the poller stops only once the
lease has run out unrenewed, by its own reckoning, which never comes after the
database's. Every move and every write of the mailbox's state first renews the lease
with `WHERE owner = me`: a poller that stalled past its lease and finds it taken
stops without moving anything (what it committed is a duplicate for the new
holder, who moves it). Lease times are the database's clock on PostgreSQL, so
hosts whose clocks disagree still agree on who holds a mailbox.
"""

from __future__ import annotations

import imaplib
import logging
import os
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple, NoReturn

from flask import Flask
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError
from sqlalchemy import case, or_, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.sql.elements import ColumnElement

from config import Config
from helpdesk import numbering
from helpdesk.clock import database_clock
from helpdesk.database import OutcomeUnknown, commit_or_unknown
from helpdesk.extensions import db
from helpdesk.inbound import matching
from helpdesk.inbound.dedup import dedup_key
from helpdesk.inbound.ingest import (
    Envelope,
    Outcome,
    QuarantineFull,
    Result,
    TransientError,
    UnstorableError,
    ingest,
    note_unfetchable_unmoved,
    quarantine_unfetchable,
    quarantine_unfinished,
    quarantine_unread,
    refuse_oversized,
)
from helpdesk.inbound.limits import DEFAULT as DEFAULT_LIMITS
from helpdesk.inbound.limits import MailLimits
from helpdesk.inbound.parser import InboundMail, header_addresses, parse
from helpdesk.models import ImapMailboxState
from mailgateway.database_waits import DATABASE_WAITS
from mailgateway.loop import Loop
from mailgateway.serverurl import InvalidServerUrl, Schemes, parse_server_url
from mailgateway.takings import TAKING_ATTEMPTS, TAKINGS, Taking

log = logging.getLogger("mailgateway.imap")

BATCH_MESSAGES = 50
# UIDs a pass takes up at a time. imapclient writes a UID list with commas, never
# as ranges, and a server refuses a command line past its limit (Dovecot 64 KiB:
# some 10,000 UIDs; RFC 7162 §4 asks clients to stay under 8,192 octets), so the
# sizes of a deep backlog are asked for 500 UIDs (at most 5.5 KB) at a time
# (docs/mail-gateway.md).
PENDING_CHUNK = 500
# Fetches of one message that may fail before it is filed as failed: as with a mail
# the database keeps failing on (helpdesk.inbound.ingest), the second failure parks it.
FETCH_ATTEMPTS = 2
# Fetches of one message that may end with the connection dropping (no word from the
# server: EOF, a reset, a timeout) before it is filed as failed. A server restarting or
# a network failing drops a connection once, whatever it was fetching; a message that
# crashes the server or hangs its answer drops every one (docs/mail-gateway.md).
FETCH_DROPS = 5
# Refused moves of one committed message before the poller goes past it, leaving it
# in the mailbox: found again, it would only be a duplicate (docs/mail-gateway.md).
MOVE_ATTEMPTS = 2
BATCH_BYTES = 32 * 1024 * 1024
# The longest literal accepted in an answer that should hold none (a size answer).
UNASKED_LITERAL_BYTES = 64 * 1024
IDLE_RENEW_SECONDS = 540  # under 10 minutes
SOCKET_TIMEOUT = 60.0
# SOCKET_TIMEOUT bounds each recv, so a server dripping its answer a byte at a time
# holds a read for ever. Each read of an answer (a line; a literal, at
# READ_BYTES_PER_SECOND at least) must also end within READ_SECONDS of its start,
# and within STOP_GRACE_SECONDS of a stop: past that the lease thread, which looks
# every WATCH_SECONDS, cuts the connection (docs/mail-gateway.md).
READ_SECONDS = 2 * SOCKET_TIMEOUT
READ_BYTES_PER_SECOND = 16 * 1024
STOP_GRACE_SECONDS = 2.0
WATCH_SECONDS = 1.0
# Errors of the connection or the server: reconnect after a backoff.
_CONNECTION_ERRORS = (IMAPClientError, OSError, socket.timeout, ssl.SSLError, EOFError)
# The database away or busy: no connection from the pool in time, a statement
# failed, or a COMMIT's answer was lost. Says nothing about who holds a mailbox.
_DATABASE_ERRORS = (DBAPIError, PoolTimeout, OutcomeUnknown)
# How the mailbox's last error begins while a taking hangs (`hung_taking`).
HUNG = "ingest hangs: "
# What reading one mail for the pipeline may raise that is not the mail's own
# failure: the batch stops there, and the mail stays for the next pass. Anything
# else is that mail's failure alone (`ImapPoller._unread`).
_NOT_THE_MAILS = (TransientError, *_DATABASE_ERRORS)


class InvalidImapUrl(InvalidServerUrl):
    """`IMAP_URL` cannot be read; the gateway refuses to start."""


@dataclass(frozen=True)
class MailboxSource:
    """One mailbox from `IMAP_URL`: `imap://` or `imaps://user:pass@host:port/MAILBOX`.

    `?starttls=true` upgrades an `imap://` connection with STARTTLS (required then);
    plain `imap://` without it sends the password in clear, for loopback only.
    """

    host: str
    port: int
    username: str
    password: str
    folder: str
    tls: bool
    starttls: bool

    @property
    def key(self) -> str:
        """Names the mailbox in logs and in the database (its lease); no password.
        INBOX in any case is one mailbox (RFC 3501 §5.1), so it has one key."""
        return f"{self.username}@{self.host}:{self.port}/{_mailbox_name(self.folder)}"


def _mailbox_name(folder: str) -> str:
    """`folder` as the server names it: INBOX is case-insensitive, every other name
    is not. ASCII only: Python upper-cases a dotless ı to I (docs/mail-gateway.md)."""
    return "INBOX" if folder.isascii() and folder.upper() == "INBOX" else folder


def parse_imap_urls(value: str) -> list[MailboxSource]:
    """Read `IMAP_URL`: one URL, or several separated by commas or whitespace
    (percent-encode `@`, `:`, `/`, `,` and `%` in user names and passwords)."""
    sources = [_parse_url(part) for part in value.replace(",", " ").split()]
    keys = [source.key for source in sources]
    if len(set(keys)) != len(keys):
        raise InvalidImapUrl("IMAP_URL names the same mailbox twice")
    return sources


_SCHEMES = Schemes("IMAP_URL", "imap", "imaps", 143, 993, credentials_required=True)


def _parse_url(url: str) -> MailboxSource:
    try:
        parsed = parse_server_url(url, _SCHEMES)
    except InvalidServerUrl as exc:
        raise InvalidImapUrl(str(exc)) from None
    return MailboxSource(
        host=parsed.host,
        port=parsed.port,
        username=parsed.username or "",
        password=parsed.password or "",
        folder=_mailbox_name(parsed.path or "INBOX"),
        tls=parsed.tls,
        starttls=parsed.starttls,
    )


def envelope_from_headers(
    raw: bytes, limits: MailLimits = DEFAULT_LIMITS, most: int = Config.MAX_RECIPIENTS, source: str = ""
) -> Envelope:
    """What SMTP would have said, as far as the delivering server wrote it down:
    Return-Path for MAIL FROM, Delivered-To / X-Original-To / Envelope-To for RCPT
    (which keeps a Bcc'd plus-address usable for matching); at most `most`
    (`MAX_RECIPIENTS`) of them. `source` is the mailbox's key (`Envelope.source`).

    The sender can write these fields too, so they are read as the pipeline reads
    addresses, from the header within its caps (`parser.header_addresses`); never
    raises (docs/mail-gateway.md)."""
    return_path = header_addresses(raw, ("return-path",), 1, limits)
    recipients = header_addresses(raw, ("delivered-to", "x-original-to", "envelope-to"), most, limits)
    return Envelope(return_path[0] if return_path else "", tuple(recipients), "imap", source)


@dataclass(frozen=True)
class _Flight:
    """A mail of a batch handed to the ingest threads, not yet settled, and what a
    later mail of the batch could find of it."""

    future: Future[Result]
    key: str  # its dedup key
    message_id: str  # "" when it has none: no mail answers that
    answers: bool  # it has thread signs: it answers a ticket


@dataclass
class _Ingesting:
    """A mail in `ingest` now, for the lease thread to tell when it hangs
    (`ImapPoller._watch_ingests`): when it began, and the thread taking it, whose
    waits on the database `DATABASE_WAITS` knows."""

    uid: int
    taking: Taking | None  # of its batch
    started: float  # time.monotonic()
    thread: int  # its `threading.get_ident()`
    uncounted: bool = False  # seen waiting: no death of its mail (`ImapPoller._waiting`)
    reported: bool = False  # seen hanging (`ImapPoller._hung`)


def hung_taking(state: ImapMailboxState) -> str:
    """What the mailbox's row says of a taking that hangs now (its last error, written
    by `ImapPoller._hung` since its last good poll), or "" (docs/mail-gateway.md)."""
    if not state.last_error.startswith(HUNG) or state.last_error_at is None:
        return ""
    if state.last_success_at is not None and state.last_success_at >= state.last_error_at:
        return ""
    return state.last_error


class _FetchFailure(NamedTuple):
    """A failed fetch of one message alone: what was said, and whether it was only
    the connection dropping (no word from the server)."""

    said: str
    dropped: bool


class OversizedLiteral(IMAPClientAbortError):
    """The server sent a literal longer than was asked for (`_literals_within`): the
    message's failure, though the connection is given up."""


def _dropped(client: IMAPClient, exc: BaseException) -> bool:
    """Whether a failed command ended with the connection lost and nothing said by
    the server: no tagged NO or BAD, no BYE with its reason, no literal refused
    (docs/mail-gateway.md)."""
    cause: BaseException | None = exc
    while cause is not None:  # imaplib raises its own abort in place of the refusal
        if isinstance(cause, OversizedLiteral):
            return False
        cause = cause.__context__
    if isinstance(exc, IMAPClientAbortError):  # imaplib's: a BYE it read, or the socket failing
        return not client._imap.untagged_responses.get("BYE")
    return not isinstance(exc, IMAPClientError)


class ServerFault(IMAPClientError):
    """The server left a message it still lists out of a FETCH answer, or refused to
    move one: the pass ends, and the message is tried again after the backoff, its
    attempts counted (docs/mail-gateway.md)."""


class LeaseLost(Exception):
    """Another gateway holds the mailbox now (this one stalled past its lease), or
    may: the lease ran out before it could be renewed."""


class ImapPoller(Loop):
    """Polls one mailbox until `stopping` is set; `run` never raises."""

    # The database or the server away: noted on the mailbox's state, then retried.
    failed_quietly = (TransientError, *_DATABASE_ERRORS, LeaseLost, *_CONNECTION_ERRORS)
    # The reads of the connection `connect` made last, watched by the lease thread.
    reads: _ReadWatch | None = None

    def __init__(
        self,
        app: Flask,
        source: MailboxSource,
        stopping: threading.Event,
        *,
        max_backoff: float | None = None,
    ) -> None:
        config = app.config
        longest = float(max_backoff if max_backoff is not None else config["IMAP_MAX_BACKOFF_SECONDS"])
        super().__init__(stopping, idle_seconds=0.0, first_backoff=min(1.0, longest), max_backoff=longest)
        self.name = source.key
        self.app = app
        with app.app_context():  # its ingests' waits, to tell one that hangs (`_watch_ingests`)
            DATABASE_WAITS.listen(db.engine)
        self.source = source
        self.processed_folder: str = config["IMAP_PROCESSED_FOLDER"]
        self.failed_folder: str = config["IMAP_FAILED_FOLDER"]
        self.poll_seconds: float = float(config["IMAP_POLL_SECONDS"])
        self.max_bytes: int = config["MAX_MESSAGE_BYTES"]
        self.max_recipients: int = config["MAX_RECIPIENTS"]
        self.threads: int = max(1, int(config["IMAP_INGEST_THREADS"]))
        self.ticket_prefix: str = config["TICKET_PREFIX"]
        self.support: list[str] = config["SUPPORT_ADDRESSES"]
        self.limits = MailLimits.from_config(config)
        if _mailbox_name(source.folder) in map(_mailbox_name, (self.processed_folder, self.failed_folder)):
            raise InvalidImapUrl(f"{source.key}: the mailbox cannot also be the processed or failed folder")
        self.last_uid = 0
        self.uidvalidity: int | None = None
        # Failed fetches of one message alone, by UID (the server's words for each),
        # and the UIDs up to which messages are fetched one at a time because a
        # fetch of several failed: the server does not say which one it failed on.
        self.fetch_failures: dict[int, list[_FetchFailure]] = {}
        self.one_at_a_time_until = 0
        # What the mailbox's row says of mail begun and not finished (`_begin`), as
        # this poller last read or wrote it: the last UID of the batch begun last, and
        # the message begun alone last with the processes that began it. `marked_until`:
        # the last batch mark this poller wrote itself (its own, found again after a
        # reconnect, is no death); `counted`: the message whose count holds this
        # process's one now, taken back whenever its taking ends alive (`_uncount`).
        self.taking_until = 0
        self.taking_alone = (0, 0)
        self.marked_until = 0
        self.counted: int | None = None
        self._count_lock = threading.Lock()  # `counted`: the lease thread takes it back too
        # The mails in `ingest` now, by UID, and how long one may run before it is
        # reported as hanging (`_watch_ingests`): as long as an SMTP mail's storing.
        self.ingesting: dict[int, _Ingesting] = {}
        self._ingesting_lock = threading.Lock()
        self.hung_after: float = config["SMTP_TIMEOUT"].total_seconds()
        # What this process is taking in (`takings`): a message taken alone is its only one.
        self.takings = TAKINGS
        # The batch's (or message's) taking in flight, for `_waiting` to share it.
        self.taking: Taking | None = None
        # Refused moves of one message alone, by UIDVALIDITY and UID (`_move`).
        self.move_refusals: dict[tuple[int | None, int], int] = {}
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease_seconds = float(config["IMAP_LEASE_SECONDS"])
        # Set by the renewing thread (or a check before a move) when another gateway
        # holds the mailbox now: the poller stops before moving anything more.
        self.lease_lost = threading.Event()
        # When the lease runs out by this host's monotonic clock: the start of the last
        # claim or renewal that succeeded, plus its length. The database stamped that
        # renewal later than it began, so this comes no later than the stored end.
        self.lease_ends = 0.0
        self._lease_lock = threading.Lock()
        self.held_by = ""  # who else held it when we last looked, to log changes only

    # -- the outer loop --------------------------------------------------------

    def round(self) -> bool:
        """One connection while holding the lease: drain, wait for mail, repeat until
        stopping. Any failure ends it, and the loop reconnects after its backoff."""
        if not self.claim():
            self.stopping.wait(self.lease_seconds / 3)
            return False
        with self._renewing(), self.connect() as client:
            self.prepare(client)
            heed = True
            while not self.stopping.is_set():
                taken = self.drain(client)
                self.recovered()
                # An announcement the last pass followed and found nothing for is not
                # followed at once again: a server repeating EXISTS unchanged (RFC
                # 3501 allows it) would keep the poller searching without end.
                heed = not self.wait_for_mail(client, heed_announcements=heed or bool(taken))
        return False

    def run(self) -> None:
        try:
            super().run()
        finally:
            self.release()

    def failed(self, exc: Exception) -> None:
        """Noted on the mailbox's state either way; a bug also gets its traceback
        (the mail stays in place)."""
        if not self.quiet(exc):
            log.error("%s: unexpected error", self.source.key, exc_info=exc)
        self._note_error(exc)
        try:
            self._uncount()  # the round ended, the process lives: no death to count
        except _DATABASE_ERRORS:
            log.debug("%s: the count of the message begun stays until it can be taken back", self.source.key)

    def connect(self) -> IMAPClient:
        source = self.source
        # Watched from the first byte: imaplib reads the greeting while it is built.
        self.reads = reads = _ReadWatch()
        with reads.whole():
            client = _WatchedClient(
                reads, source.host, source.port, ssl.create_default_context() if source.tls else None
            )
        reads.attach(client)
        try:
            if source.starttls:
                client.starttls(ssl.create_default_context())
            self._login(client)
        except BaseException:
            try:
                client.shutdown()
            except OSError:  # a failed STARTTLS leaves the socket closed already
                log.debug("%s: socket already closed", source.key)
            raise  # the reason it failed (a certificate, a password), not the cleanup's
        return client

    def _login(self, client: IMAPClient) -> None:
        """LOGIN with the user name quoted too (imaplib quotes the password only: a
        user name with a space was a BAD command). LOGIN's strings are ASCII, so other
        credentials go by AUTHENTICATE PLAIN in UTF-8 (RFC 4616) where the server
        offers it, and fail with the reason where it does not (docs/mail-gateway.md)."""
        source = self.source
        if source.username.isascii() and source.password.isascii():
            client.login(_quoted(source.username), source.password)
        elif client.has_capability("AUTH=PLAIN"):
            client.plain_login(source.username, source.password)
        else:
            raise LoginError(
                f"{source.key}: the server offers no AUTHENTICATE PLAIN, and LOGIN cannot send "
                "a user name or password that is not ASCII"
            )

    def prepare(self, client: IMAPClient) -> None:
        """Create the folders, select the mailbox and check UIDVALIDITY (raises
        `LeaseLost` when another gateway holds the mailbox now)."""
        for folder in (self.processed_folder, self.failed_folder):
            if not client.folder_exists(folder):
                try:
                    client.create_folder(folder)
                except IMAPClientError:
                    if not client.folder_exists(folder):  # else: another client made it
                        raise
        selected = client.select_folder(self.source.folder)
        uidvalidity = int(selected[b"UIDVALIDITY"])
        with self.app.app_context():
            state = self._state()
            last_uid = state.last_uid
            taking_until, taking_alone = state.taking_until, (state.taking_uid, state.taking_processes)
            renumbered = state.uidvalidity != uidvalidity
            if renumbered:  # the UIDs of mail begun name other messages now
                taking_until, taking_alone = 0, (0, 0)
            if state.uidvalidity is not None and state.uidvalidity != uidvalidity:
                log.warning(
                    "%s: UIDVALIDITY changed from %s to %s; rescanning the mailbox "
                    "(already received mail is recognised by its dedup key)",
                    self.source.key,
                    state.uidvalidity,
                    uidvalidity,
                )
                last_uid = 0
            db.session.commit()  # the row, if `_state` just made it
        # Written only when renumbered: another gateway may take back its count
        # meanwhile (`_uncount`), which a write of what was read here would undo.
        begun: dict[str, Any] = (
            {"taking_until": 0, "taking_uid": 0, "taking_processes": 0} if renumbered else {}
        )
        if not self._write_state(uidvalidity=uidvalidity, last_uid=last_uid, **begun):
            self._lost()
        if uidvalidity != self.uidvalidity:  # the UIDs name other messages now
            self.fetch_failures, self.one_at_a_time_until = {}, 0
            self.marked_until, self.counted = 0, None
        self.uidvalidity, self.last_uid = uidvalidity, last_uid
        self.taking_until = taking_until
        if taking_until > last_uid and taking_until != self.marked_until:
            # A batch begun by another process was not finished: that process died on
            # one of its messages, maybe. Each is taken alone, so the one that kills is
            # counted. (Its own mark a poller finds after a reconnect is no death.)
            self.one_at_a_time_until = max(self.one_at_a_time_until, taking_until)
        if taking_alone[1] and taking_alone[0] > last_uid:  # begun alone and not finished
            self.one_at_a_time_until = max(self.one_at_a_time_until, taking_alone[0])
        log.info(
            "%s: connected (UIDVALIDITY %s, %s messages waiting)",
            self.source.key,
            uidvalidity,
            selected.get(b"EXISTS", "?"),
        )

    # -- taking mail ------------------------------------------------------------

    def drain(self, client: IMAPClient) -> list[tuple[int, Result]]:
        """Process every message now in the mailbox, oldest UID first, PENDING_CHUNK
        at a time and each chunk in batches.

        Returns each message's UID and result. Raises `TransientError` (after moving
        what was committed) when the database cannot be reached, `LeaseLost` (moving
        nothing) when another gateway holds the mailbox now, and the server's
        error when a fetch fails (the next pass narrows it down to one message, which
        is filed as failed once FETCH_ATTEMPTS fetches of it alone failed), or
        `ServerFault` when its answer left out a message it still lists (counted as
        such a failure).
        """
        results: list[tuple[int, Result]] = []
        while not self.stopping.is_set():
            uids = self._pending_uids(client)
            if not uids:
                break
            if uids[0] <= self.one_at_a_time_until:
                uids = uids[:1]
                if self._unfetchable(uids[0]) or self._never_finished(uids[0]):
                    results.append((uids[0], self._give_up(client, uids[0])))
                    continue
            sizes = {
                uid: int(data[b"RFC822.SIZE"])
                for uid, data in self._fetch(client, uids, ["RFC822.SIZE"]).items()
                if b"RFC822.SIZE" in data
            }
            # A UID the answer left out and still listed is not passed: the mail before
            # it is taken, then the pass ends, to ask for it alone after the backoff.
            kept = self._left_out(client, [uid for uid in uids if uid not in sizes])
            before = min(kept, default=uids[-1] + 1)
            passed = self.last_uid
            for batch in _batches([uid for uid in uids if uid in sizes and uid < before], sizes):
                self._check_lease()
                alone = len(batch) == 1 and batch[0] <= self.one_at_a_time_until
                with self.takings.taking(alone=alone, stopping=self.stopping) as taking:
                    if not taking:  # stopped while the process took a message alone
                        break
                    self.taking = taking
                    self._begin(batch, alone=alone)
                    results.extend(self._process_batch(client, batch, sizes))
                self._save_state(success=True)  # where it got to: a long backlog is no stuck mailbox
                if self.stopping.is_set():
                    break
            if kept:
                raise ServerFault(f"{self.source.key}: the server's answer left out UID {kept[0]}")
            if self.last_uid == passed:  # all gone, though listed: searched again next pass, not now
                break
        self._save_state(success=True)
        return results

    def _pending_uids(self, client: IMAPClient) -> list[int]:
        """The first PENDING_CHUNK UIDs above the last one taken.

        Safe because `last_uid` only moves past a message after its outcome was
        committed and it was moved out, and new mail always gets a higher UID.
        `UID n:*` always includes the highest UID even when it is below n
        (RFC 3501 §6.4.8), hence the filter.
        """
        criteria = ["ALL"] if self.last_uid == 0 else ["UID", f"{self.last_uid + 1}:*"]
        _mail_announced(client)  # this SEARCH sees the mail announced so far
        return sorted(uid for uid in client.search(criteria) if uid > self.last_uid)[:PENDING_CHUNK]

    def _process_batch(
        self, client: IMAPClient, batch: list[int], sizes: Mapping[int, int]
    ) -> list[tuple[int, Result]]:
        small = [uid for uid in batch if sizes[uid] <= self.max_bytes]
        large = [uid for uid in batch if sizes[uid] > self.max_bytes]
        fetched: dict[int, dict[bytes, Any]] = {}
        if small:
            # At most one byte past the cap: the size a server announces may be wrong
            # (Exchange's are), and a mail that is longer is too big, whatever it said.
            fetched.update(self._fetch(client, small, [f"BODY.PEEK[]<0.{self.max_bytes + 1}>"]))
        if large:
            # Its header only, and at most MAX_HEADER_BYTES of it: a mail without a
            # blank line is all header.
            fetched.update(self._fetch(client, large, [f"BODY.PEEK[HEADER]<0.{self.limits.header_bytes}>"]))
        # Dovecot answers NIL for a message another client expunged meanwhile; a server
        # may also leave one out. Gone, it is passed; still listed, it is not.
        kept = self._left_out(client, [uid for uid in batch if _content(fetched.get(uid)) is None])
        results: dict[int, Result] = {}
        error: BaseException | None = None
        with ThreadPoolExecutor(self.threads, thread_name_prefix="imap-ingest") as pool:
            in_flight: dict[int, _Flight] = {}

            def settle(uids: Iterable[int] | None = None) -> None:
                """Wait for the mail in flight, or for the mail of `uids`; keep the first error."""
                nonlocal error
                for uid in list(in_flight if uids is None else uids):
                    try:
                        results[uid] = in_flight.pop(uid).future.result()
                    except BaseException as exc:  # re-raised below, after the moves
                        error = error or exc

            try:
                next_number = self._next_number() if self.threads > 1 else 0
                for uid in batch:
                    if self.stopping.is_set() or error is not None or self.lease_lost.is_set():
                        break
                    data = fetched.get(uid)
                    content = _content(data)
                    if content is None:  # gone, or left out (counted by `_left_out`)
                        continue
                    if uid in large or len(content) > self.max_bytes:  # too big: refused by its header
                        settle()
                        if error is None:
                            head = _head(content, self.limits.header_bytes)
                            results[uid] = self._refuse(uid, head, max(sizes[uid], len(content)))
                        continue
                    raw = content
                    try:
                        envelope = envelope_from_headers(
                            raw, self.limits, self.max_recipients, self.source.key
                        )
                        mail = parse(raw, self.limits)
                        if self.threads > 1:
                            key = dedup_key(mail)
                            recipients = matching.recipients(mail, envelope.recipients, self.support)
                            signs = matching.thread_signs(mail, recipients, self.ticket_prefix)
                    except _NOT_THE_MAILS:
                        raise
                    except Exception as exc:  # this mail's failure alone: the batch goes on
                        settle()
                        if error is None:
                            results[uid] = self._unread(uid, raw, exc)
                        continue
                    if self.threads == 1:
                        results[uid] = self._watched(uid, raw, envelope, mail)
                        continue
                    flights = in_flight.values()
                    if any(f.key == key for f in flights) or signs.may_point_into(
                        {f.message_id for f in flights}, next_number
                    ):
                        # A second copy of a mail in flight must find the first one's
                        # record, and an answer what mail in flight may create.
                        settle()
                    elif signs:
                        # Answers keep their order among themselves: two may answer one ticket.
                        settle([uid for uid, flight in in_flight.items() if flight.answers])
                    if error is not None:
                        break
                    future = pool.submit(self._watched, uid, raw, envelope, mail)
                    in_flight[uid] = _Flight(future, key, mail.message_id or "", bool(signs))
            except BaseException as exc:
                error = error or exc
            finally:
                settle()
        if results:
            # Moved only by the holder of the lease: one that lost it leaves the mail to
            # the new holder, whose pass finds what was committed here a duplicate.
            self._confirm_lease()
        # Only what `ingest` committed is moved; on TransientError the rest stays.
        refused = self._move(
            client,
            [uid for uid in batch if uid in results and not results[uid].failed],
            self.processed_folder,
        ) + self._move(
            client, [uid for uid in batch if uid in results and results[uid].failed], self.failed_folder
        )
        # A committed mail the server would not move is passed once it refused
        # MOVE_ATTEMPTS times (found again, it would be a duplicate), never before.
        unmoved = [uid for uid in refused if not self._may_pass_unmoved(uid)]
        for uid in batch:  # past every UID whose mail was committed and moved (or is gone)
            if uid not in results and (uid in kept or _content(fetched.get(uid)) is not None):
                break
            if uid in unmoved:
                break
            self.last_uid = max(self.last_uid, uid)
        if error is None and (kept or unmoved):
            error = ServerFault(
                f"{self.source.key}: the server's answer left out UID {kept[0]}"
                if kept
                else f"{self.source.key}: the server refused to move UID {unmoved[0]}"
            )
        if error is not None:
            raise error
        return [(uid, results[uid]) for uid in batch if uid in results]

    def _fetch(self, client: IMAPClient, uids: list[int], items: list[str]) -> dict[int, dict[bytes, Any]]:
        """`client.fetch`; when it fails, the next pass asks for each of `uids` alone,
        and a failure of one alone is noted against it: the server's error, or the
        connection's (a FETCH that times out, or that the server answers by resetting
        the connection, fails the same way each time). Raised either way: a server may
        close the connection with it (Dovecot does)."""
        try:
            with _literals_within(client, _longest_literal(items)):
                return client.fetch(uids, items)
        except _CONNECTION_ERRORS as exc:
            self.one_at_a_time_until = max(self.one_at_a_time_until, uids[-1])
            if len(uids) == 1:
                said = str(exc) if isinstance(exc, IMAPClientError) else f"{type(exc).__name__}: {exc}"
                dropped = _dropped(client, exc)
                if dropped:
                    said = f"the connection dropped ({said})"
                self.fetch_failures.setdefault(uids[0], []).append(_FetchFailure(said, dropped))
            raise

    def _unfetchable(self, uid: int) -> bool:
        """Whether the fetches of `uid` alone failed often enough to file it: the
        server's own refusal FETCH_ATTEMPTS times, or any failure, the connection
        dropping included, FETCH_DROPS times."""
        failures = self.fetch_failures.get(uid, [])
        refused = sum(not failure.dropped for failure in failures)
        return refused >= FETCH_ATTEMPTS or len(failures) >= FETCH_DROPS

    def _never_finished(self, uid: int) -> bool:
        """Whether TAKING_ATTEMPTS gateway processes, this one not among them, began
        taking `uid` alone and none finished: each died on it. Read from the row now,
        not at connecting: a gateway whose taking ended alive takes its count back
        whether it holds the mailbox or not (`_uncount`)."""
        with self.app.app_context():
            table = ImapMailboxState.__table__.c
            row = db.session.execute(
                select(table.taking_uid, table.taking_processes).where(table.key == self.source.key)
            ).one()
            db.session.commit()
        self.taking_alone = (row.taking_uid, row.taking_processes)
        ours = self.counted == uid
        return row.taking_uid == uid and row.taking_processes - ours >= TAKING_ATTEMPTS

    def _begin(self, batch: list[int], *, alone: bool) -> None:
        """Write down, before its first byte is fetched, that `batch` is being taken
        (one UPDATE a batch, which renews the lease too): a process that dies on a
        message of it leaves the mark for the next one, which takes each of them
        alone. A message begun `alone` (the only mail of this process in flight,
        `takings.Takings`) counts the processes that began it, this one once while it tries,
        added in the UPDATE itself: other gateways take theirs back meanwhile
        (docs/mail-gateway.md, "A mail that kills the gateway")."""
        first = batch[0]
        counts = alone and self.counted != first
        if not counts and batch[-1] <= self.taking_until:
            return
        table = ImapMailboxState.__table__.c
        values: dict[str, Any] = {"taking_until": max(self.taking_until, batch[-1])}
        if counts:
            values["taking_uid"] = first
            again = table.taking_uid == first
            values["taking_processes"] = case((again, table.taking_processes + 1), else_=1)
        try:
            written = self._write_state(**values)
        except OutcomeUnknown:
            # The COMMIT's answer was lost: the count may have been kept. Taken back
            # as when it surely was, or each such loss would stand as a death and
            # file a good mail; one that was not kept takes back a death's count,
            # which costs a deadly mail one more death at most.
            if counts:
                with self._count_lock:
                    self.counted = first
            raise
        if not written:
            self._lost()
        self.taking_until = max(self.taking_until, batch[-1])
        if counts:
            with self._count_lock:
                self.counted = first
        elif not alone:
            self.marked_until = self.taking_until

    def _uncount(self, only: int | None = None) -> bool:
        """Take back this process's count of the message it began alone and has not
        finished, when its taking ended with the process alive: a failure the loop
        retries, the lease lost, a clean stop, or (`only` that message's) its ingest
        waiting rather than computing (`_waiting`). Only a process that dies on a
        message counts against it (docs/mail-gateway.md, "A mail that kills the
        gateway"). Whoever holds the mailbox: the count is this process's own, and
        taken back in one UPDATE that reads the row as it is. Whether there was a
        count to take back."""
        with self._count_lock:  # the poller's thread and the lease thread
            uid = self.counted
            if uid is None or only not in (None, uid):
                return False
            if uid > self.last_uid:
                with self.app.app_context():
                    table = ImapMailboxState.__table__.c
                    db.session.execute(
                        update(ImapMailboxState)
                        .where(
                            table.key == self.source.key,
                            table.uidvalidity == self.uidvalidity,  # the UID names the same message
                            table.taking_uid == uid,
                            table.taking_processes > 0,
                        )
                        .values(taking_processes=table.taking_processes - 1)
                    )
                    db.session.commit()
            self.counted = None
            return True

    def _left_out(self, client: IMAPClient, uids: list[int]) -> list[int]:
        """Of `uids`, which a FETCH answer left out or answered NIL, those the server
        still lists (UID SEARCH): each counts as a failed fetch of it alone, and is
        fetched alone from now on. The others are gone: another client expunged them
        meanwhile (docs/mail-gateway.md)."""
        if not uids:
            return []
        listed = set(client.search(["UID", ",".join(map(str, uids))]))
        kept = [uid for uid in uids if uid in listed]
        for uid in kept:
            log.warning(
                "%s: the server's FETCH answer left out UID %s, still in the mailbox", self.source.key, uid
            )
            self.fetch_failures.setdefault(uid, []).append(
                _FetchFailure("the server's FETCH answer left it out", dropped=False)
            )
            self.one_at_a_time_until = max(self.one_at_a_time_until, uid)
        if len(kept) < len(uids):
            log.info(
                "%s: UIDs %s are gone (expunged by another client meanwhile)",
                self.source.key,
                ", ".join(str(uid) for uid in uids if uid not in listed),
            )
        return kept

    def _give_up(self, client: IMAPClient, uid: int) -> Result:
        """File the message of `uid`, the first one waiting, that its server failed
        to hand over FETCH_ATTEMPTS times, or that TAKING_ATTEMPTS processes began
        and never finished: quarantined with where it is, and moved to the failed
        folder without another fetch, so the mail after it is taken."""
        place = f"{self.source.key}, UIDVALIDITY {self.uidvalidity}, UID {uid}"
        unfetchable = self._unfetchable(uid)
        self._confirm_lease()
        try:
            with self.app.app_context():  # once: keyed by the place
                result = (
                    quarantine_unfetchable(
                        place, [failure.said for failure in self.fetch_failures[uid]], self.source.key
                    )
                    if unfetchable
                    else quarantine_unfinished(place, self.taking_alone[1], self.source.key)
                )
        except UnstorableError as exc:
            result = self._unstorable(None, exc)
        self._confirm_lease()
        if not self._move(client, [uid], self.failed_folder):
            log.error(
                "%s: UID %s %s; filed in %s",
                self.source.key,
                uid,
                "could not be fetched" if unfetchable else "was begun by processes that each died",
                self.failed_folder,
            )
        elif not self._may_pass_unmoved(uid):
            raise ServerFault(f"{self.source.key}: the server refused to move UID {uid}")
        else:  # its record said "filed in the failed folder": it stays here instead
            with self.app.app_context():
                note_unfetchable_unmoved(place)
        self.fetch_failures.pop(uid, None)
        self.last_uid = uid
        return result

    def _next_number(self) -> int:
        """Where the batch's new tickets will be numbered from: mail naming a ticket
        below it answers one that no mail of the batch can create."""
        with self.app.app_context():
            return numbering.peek_next(db.session)

    def _watched(self, uid: int, raw: bytes, envelope: Envelope, mail: InboundMail) -> Result:
        """`_ingest`, seen by the lease thread while it runs (`_watch_ingests`)."""
        with DATABASE_WAITS.telling() as thread:
            ingesting = _Ingesting(uid, self.taking, time.monotonic(), thread)
            with self._ingesting_lock:
                self.ingesting[uid] = ingesting
            try:
                return self._ingest(raw, envelope, mail)
            finally:
                with self._ingesting_lock:
                    del self.ingesting[uid]

    def _ingest(self, raw: bytes, envelope: Envelope, mail: InboundMail) -> Result:
        self._check_lease()  # mail still queued when the lease went is left to the new holder
        try:
            with self.app.app_context():
                return ingest(raw, envelope, self.app.config, parsed=mail)
        except UnstorableError as exc:
            return self._unstorable(mail.message_id, exc)
        except QuarantineFull as exc:
            return self._no_room(mail.message_id, exc)

    def _no_room(self, message_id: str | None, exc: QuarantineFull) -> Result:
        """A stranger's mail the quarantine has no room for (`room`, logged there
        once a minute): filed in the failed folder without a record. Left in the
        mailbox it would hold back every mail after it, as the poller passes a UID
        only once its mail is moved; a person moves it back to be taken again
        (docs/mail-gateway.md, "Quarantine room")."""
        return Result(Outcome.QUARANTINED, f"not recorded: quarantine full ({exc})", message_id, failed=True)

    def _unstorable(self, message_id: str | None, exc: UnstorableError) -> Result:
        """A mail the database refused to record again, even as raw bytes (`ingest`'s
        `UnstorableError`): filed in the failed folder without a record, where its only
        copy waits for a person, so it does not hold back the mail after it for good
        (docs/mail-gateway.md, "IMAP")."""
        log.error("%s: mail %s could not be recorded (%s); filed as failed", self.source.key, message_id, exc)
        return Result(Outcome.QUARANTINED, f"not recorded: {exc}", message_id, failed=True)

    def _refuse(self, uid: int, head: bytes, size: int) -> Result:
        """Record a mail over MAX_MESSAGE_BYTES by the part of its header fetched."""
        try:
            envelope = envelope_from_headers(head, self.limits, self.max_recipients, self.source.key)
            with self.app.app_context():
                return refuse_oversized(head, size, envelope, self.app.config)
        except _NOT_THE_MAILS:
            raise
        except Exception as exc:  # this mail's failure alone: the batch goes on
            return self._unread(uid, head, exc)

    def _unread(self, uid: int, raw: bytes, exc: Exception) -> Result:
        """A mail whose reading for the pipeline failed with `exc`, outside `ingest`'s
        safety net: quarantined with its bytes and filed as failed, so it does not hold
        back the mail after it (SPEC §7; docs/mail-gateway.md)."""
        log.error("%s: UID %s could not be read; quarantining it", self.source.key, uid, exc_info=exc)
        try:
            with self.app.app_context():
                return quarantine_unread(raw, "imap", exc, self.source.key)
        except UnstorableError as refused:
            return self._unstorable(None, refused)

    def _move(self, client: IMAPClient, uids: list[int], folder: str) -> list[int]:
        """Move `uids` to `folder`; the UIDs the server refused to move (NO or BAD),
        each counted against its message. When it refuses several, each is moved
        alone, so one message it will not move holds back no other. A failure of the
        connection is raised: what moved is unknown, and all is found again."""
        if not uids:
            return []
        try:
            self._move_now(client, uids, folder)
        except IMAPClientAbortError:
            raise
        except IMAPClientError as exc:
            if len(uids) == 1:
                key = (self.uidvalidity, uids[0])
                self.move_refusals[key] = self.move_refusals.get(key, 0) + 1
                log.warning(
                    "%s: the server refused to move UID %s to %s: %s", self.source.key, uids[0], folder, exc
                )
                return uids
            log.warning(
                "%s: the server refused to move %s messages (%s); moving each alone",
                self.source.key,
                len(uids),
                exc,
            )
            return [uid for uid in uids if self._move(client, [uid], folder)]
        for uid in uids:
            self.move_refusals.pop((self.uidvalidity, uid), None)
        return []

    def _may_pass_unmoved(self, uid: int) -> bool:
        """Whether the poller may go past the message of `uid`, whose outcome it has
        recorded, though the server refused to move it: after MOVE_ATTEMPTS refusals,
        with a line in the log; it stays in the mailbox."""
        if self.move_refusals.get((self.uidvalidity, uid), 0) < MOVE_ATTEMPTS:
            return False
        log.error(
            "%s: the server refused %s times to move UID %s; its outcome is recorded, and it stays in the "
            "mailbox, passed by the poller",
            self.source.key,
            MOVE_ATTEMPTS,
            uid,
        )
        return True

    def _move_now(self, client: IMAPClient, uids: list[int], folder: str) -> None:
        if client.has_capability("MOVE"):
            client.move(uids, folder)
            return
        client.copy(uids, folder)
        client.add_flags(uids, [b"\\Deleted"], silent=True)
        if client.has_capability("UIDPLUS"):
            client.expunge(uids)  # UID EXPUNGE: only these messages
            return
        # Without UIDPLUS, EXPUNGE removes every message marked \Deleted: also one
        # another client marked that the poller has not taken yet, which would be lost
        # unread. Then ours stay marked, passed by `last_uid`, until an EXPUNGE that
        # takes nothing untaken (docs/mail-gateway.md, "Moved only after the commit").
        # Asked only above `last_uid`: the messages passed and left marked, which may be
        # many, would come back at every move (`UID n:*` may name one below n, hence
        # the filter; `_pending_uids`).
        moving = set(uids)
        marked = client.search(["DELETED", "UID", f"{self.last_uid + 1}:*"])
        untaken = [uid for uid in marked if uid > self.last_uid and uid not in moving]
        if untaken:
            log.info(
                "%s: not expunging: UID %s, not taken yet, is marked \\Deleted by another client "
                "(the server has no UIDPLUS); the moved messages stay marked until a later move",
                self.source.key,
                untaken[0],
            )
            return
        client.expunge()

    # -- waiting ----------------------------------------------------------------

    def wait_for_mail(self, client: IMAPClient, *, heed_announcements: bool = True) -> bool:
        """IDLE until the server reports new mail (or the renewal time), else sleep;
        whether it returned for mail announced before the wait began.

        A server reports new mail to a connection once, and may have done so before
        the IDLE: with the answer to the last SEARCH, which did not see that mail
        yet, or in the same packet as IDLE's continuation. Either report sends the
        poller back to search at once; IDLE would tell it nothing more. Unless
        `heed_announcements` is false (the last such search found nothing): then
        they are dropped, and the wait is a whole one.
        """
        idle = client.has_capability("IDLE")
        if _mail_announced(client) and heed_announcements:
            return True
        if not idle:
            deadline = time.monotonic() + self.poll_seconds
            while time.monotonic() < deadline and not self.stopping.wait(min(1.0, self.lease_seconds / 3)):
                self._check_lease()
            if not self.stopping.is_set():
                client.noop()
            return False
        client.idle()
        try:
            if _announced_with_idle(client) and heed_announcements:
                return True
            deadline = time.monotonic() + min(self.poll_seconds, IDLE_RENEW_SECONDS)
            while not self.stopping.is_set() and time.monotonic() < deadline:
                self._check_lease()
                responses = client.idle_check(timeout=1)
                if any(_is_new_mail(response) for response in responses):
                    return False
                if any(_is_bye(response) for response in responses):
                    raise ConnectionError("server closed the connection (BYE)")
        finally:
            client.idle_done()
        return False

    # -- the lease ----------------------------------------------------------------

    def claim(self) -> bool:
        """Take or renew the mailbox's lease: it must be ours already, free, or run out
        by the database's clock."""
        with self.app.app_context():
            self._state()
            started = time.monotonic()
            moment, until = self._lease_times()
            table = ImapMailboxState.__table__.c
            taken = db.session.execute(
                update(ImapMailboxState)
                .where(
                    table.key == self.source.key,
                    or_(table.owner == self.owner, table.lease_until.is_(None), table.lease_until < moment),
                )
                .values(owner=self.owner, lease_until=until)
            ).rowcount  # type: ignore[attr-defined]
            holder = (
                ""
                if taken
                else db.session.execute(select(table.owner).where(table.key == self.source.key)).scalar()
            )
            db.session.commit()
        if taken:
            self._renewed(started)
            if self.held_by:
                log.info("%s: taken over from %s", self.source.key, self.held_by)
            self.held_by = ""
        elif holder != self.held_by:
            self.held_by = holder or ""
            log.info("%s: held by %s; waiting for its lease to run out", self.source.key, self.held_by)
        return bool(taken)

    def renew(self) -> bool:
        """Extend the lease if this poller still holds it (one UPDATE … WHERE owner =
        me, so nothing comes between the check and the renewal); False when another
        gateway holds the mailbox now."""
        return self._write_state()

    @contextmanager
    def _renewing(self) -> Iterator[None]:
        """Renew the lease from a thread of its own while the block runs: the poller's
        thread may wait on the database or the server for longer than the lease."""
        self.lease_lost.clear()
        done = threading.Event()
        thread = threading.Thread(
            target=self._renew_until, args=(done,), name=f"imap-lease {self.source.key}", daemon=True
        )
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    def _renew_until(self, done: threading.Event) -> None:
        """Every third of the lease until `done`. A renewal that gets no database
        connection (none free in the pool in time, the database restarting) says
        nothing about who holds the mailbox: it is tried again at the next turn. If
        none succeeds before the lease runs out, the poller's `_check_lease` stops
        the round; only an UPDATE that finds another owner stops it here.

        Between renewals it watches the connection's reads: one past its deadline,
        or still going once the poller is stopping, gets the connection cut (the read
        fails and the round ends), and the lease is renewed no more: a server that
        drips its answers must not hold the mailbox, or a stop, for ever."""
        turn = self.lease_seconds / 3
        renew_at = time.monotonic() + turn
        while not done.wait(min(turn, WATCH_SECONDS)):
            reads = self.reads
            if reads is not None and reads.overdue(stopping=self.stopping.is_set()):
                log.warning(
                    "%s: cutting the connection: the server has not finished answering %s",
                    self.source.key,
                    "and the poller is stopping" if self.stopping.is_set() else "within its deadline",
                )
                reads.cut()
                return
            self._watch_ingests()
            if time.monotonic() < renew_at:
                continue
            renew_at = time.monotonic() + turn
            try:
                if self.renew():
                    continue
                log.warning("%s: another gateway holds the mailbox now; stopping", self.source.key)
            except _DATABASE_ERRORS as exc:
                log.warning(
                    "%s: could not renew the lease (trying again): %s",
                    self.source.key,
                    getattr(exc, "orig", None) or exc,
                )
                continue
            except Exception:  # a bug: stop working the mailbox rather than risk two holders
                log.exception("%s: renewing the lease failed", self.source.key)
            self.lease_lost.set()
            return

    def _watch_ingests(self) -> None:
        """Look at the mails in `ingest`: one whose thread waits on the database
        (`DatabaseWaits.waited`, the rule SMTP's slots are marked by too) is no death
        of its mail (`_waiting`); one that has run for `hung_after` hangs (`_hung`)."""
        now = time.monotonic()
        with self._ingesting_lock:
            ingests = list(self.ingesting.values())
        for each in ingests:
            if each.reported:
                continue
            if not each.uncounted and DATABASE_WAITS.waited(each.thread, self.hung_after):
                each.uncounted = self._waiting(each.uid)
                if each.uncounted and each.taking is not None:
                    each.taking.waiting()  # no death of its mail now: others may begin
            if now - each.started >= self.hung_after:
                each.reported = True
                self._hung(each.uid, computing=not each.uncounted)

    def _waiting(self, uid: int) -> bool:
        """The ingest of `uid` waits on the database rather than computes:
        this process's count of it, if it took the mail alone, is taken back at once,
        so a restart that ends the wait, even before it is reported, counts no death,
        and the process's other takings need not wait for it (`takings.Taking.waiting`).
        A mail that kills computes (it fills the memory, crashes the parser); one
        that makes the database wait harms no process. False when the count could
        not be taken back (tried again at the next look)."""
        try:
            if self._uncount(only=uid):
                log.info("%s: UID %s waits in ingest: not counted as its death", self.source.key, uid)
        except _DATABASE_ERRORS as exc:
            log.warning(
                "%s: could not take back the count of UID %s: %s",
                self.source.key,
                uid,
                getattr(exc, "orig", None) or exc,
            )
            return False
        return True

    def _hung(self, uid: int, computing: bool) -> None:
        """The ingest of `uid` has run for `hung_after`: logged, and written on the
        mailbox for the health check (`hung_taking`). The poller waits on: taking the
        mail again beside it would add a thread and a connection hung the same way,
        and what it commits once it ends is moved as usual. One computing (the
        pipeline spinning on the mail) keeps its count: each restart that ends it
        counts, and after TAKING_ATTEMPTS the mail is filed unread
        (docs/mail-gateway.md, "A taking that hangs")."""
        how = (
            "computing: a restart that ends it counts as its death"
            if computing
            else "waiting (on the database, a lock): not counted as its death"
        )
        error = (
            f"{HUNG}UID {uid} has been in ingest for more than {self.hung_after:g} s "
            f"(SMTP_TIMEOUT), {how}; it stays in the mailbox until its ingest ends"
        )
        log.error("%s: %s", self.source.key, error)
        self._save_state(success=False, error=error)

    def _renewed(self, started: float) -> None:
        """A claim or renewal begun at `started` (monotonic) succeeded: the lease runs
        until a lease's length after that, at the earliest. Any thread may renew, so
        the later end wins."""
        with self._lease_lock:
            self.lease_ends = max(self.lease_ends, started + self.lease_seconds)

    def _check_lease(self) -> None:
        """Raise `LeaseLost` once the renewing thread found the mailbox taken, or once
        the lease ran out with no renewal since: another gateway may hold it by now."""
        if self.lease_lost.is_set():
            self._lost()
        if time.monotonic() >= self.lease_ends:
            self._lost("the lease ran out before it could be renewed")

    def _confirm_lease(self) -> None:
        """Before a move or a write of the mailbox's state: renew the lease, or raise
        `LeaseLost` when another gateway holds it now."""
        self._check_lease()
        if not self.renew():
            self._lost()

    def _lost(self, why: str = "another gateway holds the mailbox now") -> NoReturn:
        """Stop working the mailbox: a renewal found another gateway holding it, or
        (`why`) the lease ran out unrenewed."""
        self.lease_lost.set()
        raise LeaseLost(f"{self.source.key}: {why}")

    def _lease_times(self) -> tuple[datetime | ColumnElement[datetime], datetime | ColumnElement[datetime]]:
        """Now and the end of a lease taken now, by the database's clock
        (`clock.database_clock`), so one host's clock running ahead cannot take a
        held mailbox."""
        moment = database_clock(db.session)
        return moment, moment + timedelta(seconds=self.lease_seconds)

    def release(self) -> None:
        """Give the mailbox up at once on a clean stop: the next gateway need not wait.
        A clean stop is no death: the batch mark this poller left is lowered to where
        it got (the rest was left for the stop, not for a crash), and its count of
        the message it was taking alone is taken back, so neither sends the next
        process one message at a time nor files a good mail (docs/mail-gateway.md)."""
        try:
            self._uncount()
            with self.app.app_context():
                table = ImapMailboxState.__table__.c
                own_mark = table.taking_until == self.marked_until
                db.session.execute(
                    update(ImapMailboxState)
                    .where(table.key == self.source.key, table.owner == self.owner)
                    .values(
                        owner="",
                        lease_until=None,
                        taking_until=case((own_mark, table.last_uid), else_=table.taking_until),
                    )
                )
                db.session.commit()
        except _DATABASE_ERRORS as exc:  # the lease runs out by itself
            log.warning(
                "%s: could not give up the lease: %s", self.source.key, getattr(exc, "orig", None) or exc
            )

    # -- state --------------------------------------------------------------------

    def _state(self) -> ImapMailboxState:
        state = db.session.execute(
            select(ImapMailboxState).where(ImapMailboxState.key == self.source.key)
        ).scalar_one_or_none()
        if state is None:
            state = ImapMailboxState(key=self.source.key, last_uid=0, last_error="")
            db.session.add(state)
            db.session.flush()
        return state

    def _write_state(self, *, stamped: Iterable[str] = (), **values: object) -> bool:
        """Write the mailbox's state if this poller holds its lease, renewing it in the
        same UPDATE; False (nothing written) when another gateway holds it. The
        columns named in `stamped` get the lease's "now": the database's clock, which
        the health check on another host reads its times by."""
        with self.app.app_context():
            started = time.monotonic()
            moment, until = self._lease_times()
            table = ImapMailboxState.__table__.c
            written = db.session.execute(
                update(ImapMailboxState)
                .where(table.key == self.source.key, table.owner == self.owner)
                .values(lease_until=until, **dict.fromkeys(stamped, moment), **values)
            ).rowcount  # type: ignore[attr-defined]
            commit_or_unknown(db.session)  # `_begin` tells a lost answer apart
        if written:
            self._renewed(started)
        return bool(written)

    def _save_state(self, *, success: bool, error: str = "") -> None:
        """Record a pass or a batch of one (or its error) on the mailbox, as its holder
        only: a poller that lost the lease must not set back the new holder's
        `last_uid`. A committed batch stamps a success, so the health check does not
        call a mailbox stuck while it takes a backlog longer than `IMAP_STUCK_AFTER`."""
        try:
            if success:
                values: dict[str, object] = {"last_uid": self.last_uid}
                if self.uidvalidity is not None:
                    values["uidvalidity"] = self.uidvalidity
                if not self._write_state(stamped=("last_poll_at", "last_success_at"), **values):
                    self._lost()
            elif not self._write_state(stamped=("last_poll_at", "last_error_at"), last_error=error[:2000]):
                log.debug("%s: not the mailbox's holder; the error is not recorded on it", self.source.key)
        except _DATABASE_ERRORS:
            if success:
                raise
            # Recording an error while the database is down is best effort.
            log.warning("%s: could not record the error (database unreachable)", self.source.key)

    def _note_error(self, exc: BaseException) -> None:
        if isinstance(exc, OutcomeUnknown) and exc.__cause__ is not None:
            exc = exc.__cause__  # what was lost, not the empty "unknown"
        text = f"{type(exc).__name__}: {exc}"
        log.warning("%s: %s; retrying", self.source.key, text)
        self._save_state(success=False, error=text)


def _batches(uids: list[int], sizes: Mapping[int, int]) -> Iterator[list[int]]:
    """Consecutive groups of at most BATCH_MESSAGES and (past the first) BATCH_BYTES."""
    batch: list[int] = []
    total = 0
    for uid in uids:
        size = min(sizes[uid], BATCH_BYTES)
        if batch and (len(batch) >= BATCH_MESSAGES or total + size > BATCH_BYTES):
            yield batch
            batch, total = [], 0
        batch.append(uid)
        total += size
    if batch:
        yield batch


def _longest_literal(items: list[str]) -> int:
    """The longest literal an answer to a FETCH of `items` (the poller's own) may
    hold: the N of a partial fetch (`BODY.PEEK[]<0.N>`), else a size answer's none,
    with room for what a server adds unasked."""
    asked = [int(item.rpartition(".")[2].rstrip(">")) for item in items if item.endswith(">")]
    return max(asked, default=UNASKED_LITERAL_BYTES)


@contextmanager
def _literals_within(client: IMAPClient, each: int) -> Iterator[None]:
    """Refuse, unread, a literal in an answer longer than `each` bytes, or past
    BATCH_BYTES + `each` in all: imaplib reads (and first allocates) a literal of
    whatever size the server announces, and a server may announce or send more than
    it was asked for. The refusal is the connection's failure (`IMAPClientAbortError`):
    the rest of the answer is never read (docs/mail-gateway.md)."""
    imap = client._imap
    read = imap.read
    left = BATCH_BYTES + each

    def bounded(size: int) -> bytes:
        nonlocal left
        most = min(each, left)
        if size > most:
            raise OversizedLiteral(
                f"the server sent a literal of {size} bytes where at most {most} were asked for"
            )
        left -= size
        return bytes(read(size))

    imap.read = bounded
    try:
        yield
    finally:
        imap.read = read  # what it was: the read watch's timed read (`_ReadWatch`)


def _head(data: bytes, most: int) -> bytes:
    """The header of a mail that begins with `data`: up to its first blank line (the
    line included), at most `most` bytes. A mail without one is all header."""
    data = data[:most]
    ends = [at + len(blank) for blank in (b"\r\n\r\n", b"\n\n") if (at := data.find(blank)) >= 0]
    return data[: min(ends)] if ends else data


def _content(data: Mapping[bytes, Any] | None) -> bytes | None:
    """The message (or header) a FETCH answer holds; None when it holds none: left
    out, or NIL. imapclient names a partial fetch's answer with its origin, as
    `BODY[]<0>` or `BODY[HEADER]<0>`."""
    for name, value in (data or {}).items():
        if name.startswith(b"BODY[") and value is not None:
            return bytes(value)
    return None


class _ReadWatch:
    """When the read of a server's answer in progress on one connection (if any)
    began and is due, for the lease thread to cut it (`ImapPoller._renew_until`).
    imaplib reads every line and literal through `readline` and `read`, which it
    documents as overridable; they are timed once the connection is built, and
    building it (TCP, a TLS handshake, the greeting, which imaplib reads in its
    constructor) is timed as one read (`whole`). The cut goes through a duplicate of
    the TCP socket (`hold`), which neither TLS nor a STARTTLS swaps. (A TLS
    handshake, at the start or after STARTTLS, is bounded by SOCKET_TIMEOUT as a
    whole anyway: the ssl module gives each operation one deadline.)"""

    def __init__(self) -> None:
        self.started: float | None = None
        self.due = 0.0
        self._spare: socket.socket | None = None

    def hold(self, sock: socket.socket) -> None:
        self._spare = sock.dup()

    def release(self) -> None:
        spare, self._spare = self._spare, None
        if spare is not None:
            spare.close()

    @contextmanager
    def whole(self) -> Iterator[None]:
        """One deadline for a step of several reads imaplib makes unwatched."""
        with self._reading(0):
            yield

    def attach(self, client: IMAPClient) -> None:
        imap = client._imap
        readline, read = imap.readline, imap.read

        def timed_readline() -> bytes:
            with self._reading(0):
                line: bytes = readline()
                return line

        def timed_read(size: int) -> bytes:
            with self._reading(size):
                data: bytes = read(size)
                return data

        imap.readline = timed_readline
        imap.read = timed_read

    @contextmanager
    def _reading(self, size: int) -> Iterator[None]:
        started = time.monotonic()
        self.due = started + READ_SECONDS + size / READ_BYTES_PER_SECOND
        self.started = started
        try:
            yield
        finally:
            self.started = None

    def overdue(self, *, stopping: bool) -> bool:
        started, now = self.started, time.monotonic()
        if started is None:
            return False
        return now >= self.due or (stopping and now - started >= STOP_GRACE_SECONDS)

    def cut(self) -> None:
        """The blocked read returns at once, as a lost connection."""
        spare = self._spare
        if spare is None:
            log.debug("the IMAP connection was closed already")
            return
        try:
            spare.shutdown(socket.SHUT_RDWR)
        except OSError as exc:  # closed meanwhile: nothing left to cut
            log.debug("the IMAP connection was closed already: %s", exc)


class _WatchedClient(IMAPClient):
    """IMAPClient on a connection whose TCP socket `reads` holds from before the
    greeting (`_WatchedIMAP4`)."""

    def __init__(self, reads: _ReadWatch, host: str, port: int, tls: ssl.SSLContext | None) -> None:
        self._reads = reads
        super().__init__(host, port=port, ssl=tls is not None, ssl_context=tls, timeout=SOCKET_TIMEOUT)

    def _create_IMAP4(self) -> imaplib.IMAP4:  # noqa: N802  (imapclient's name)
        return _WatchedIMAP4(self.host, self.port, self.ssl_context if self.ssl else None, self._reads)


class _WatchedIMAP4(imaplib.IMAP4):
    """imaplib's connection, TLS from the first byte when given a context (as
    imapclient's own), handing its TCP socket to the read watch before the TLS
    handshake and the greeting are read, and letting it go when closed."""

    def __init__(self, host: str, port: int, tls: ssl.SSLContext | None, reads: _ReadWatch) -> None:
        self.tls, self.reads = tls, reads
        super().__init__(host, port, SOCKET_TIMEOUT)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout)
        self.reads.hold(sock)
        if self.tls is None:
            return sock
        try:
            return self.tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:  # imaplib calls `shutdown` only once the socket exists
            self.reads.release()
            raise

    def shutdown(self) -> None:
        try:
            super().shutdown()
        finally:
            self.reads.release()


def _quoted(text: str) -> str:
    """An IMAP quoted string (RFC 3501 §4.3) of ASCII `text` without line ends (the
    URL's reader refuses control characters)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _mail_announced(client: IMAPClient) -> bool:
    """Whether the server announced new mail (EXISTS) since the last call, by the
    responses imaplib collected with the commands' answers; forgets them.

    imapclient keeps no EXISTS but SELECT's: Dovecot announces mail delivered since
    a connection's last command with the answer to the next one, a SEARCH's too,
    whose results do not include it yet, and never again. RECENT and EXPUNGE, which
    the poller does not act on, are dropped with them, or imaplib would keep every
    one for the connection's life.
    """
    imap = client._imap  # imaplib.IMAP4: `response` pops what it collected of a kind
    _, exists = imap.response("EXISTS")
    imap.response("RECENT")
    imap.response("EXPUNGE")
    return exists != [None]


def _announced_with_idle(client: IMAPClient) -> bool:
    """Whether the server announced new mail right after entering IDLE, in the
    same packet as IDLE's continuation (Dovecot reports at once mail delivered since
    the last command). imapclient's `idle` reads the continuation line only and
    `idle_check` waits on the socket, so what came with it sits in imaplib's
    buffered reader, unseen until the IDLE ends. Those untagged lines are read here
    (a non-blocking look at the reader, no command); anything else is left to
    `idle_check` and `idle_done`. A BYE among them ends the connection.
    """
    imap = client._imap
    sock = client.socket()
    timeout = sock.gettimeout()
    while True:
        sock.setblocking(False)  # `peek` reads the socket when the buffer is empty: never wait
        try:
            held = imap.file.peek()
        except (BlockingIOError, ssl.SSLWantReadError):
            held = b""
        finally:
            sock.settimeout(timeout)
        if not held.startswith(b"* ") or b"\n" not in held:
            break
        imap._get_response()  # one response (with its literal, if any) into imaplib's collection
    if imap.response("BYE")[1] != [None]:
        raise ConnectionError("server closed the connection (BYE)")
    return _mail_announced(client)


def _is_new_mail(response: Iterable[Any]) -> bool:
    items = tuple(response)
    return len(items) >= 2 and items[1] in (b"EXISTS", b"RECENT")


def _is_bye(response: Iterable[Any]) -> bool:
    items = tuple(response)
    return bool(items) and items[0] == b"BYE"
