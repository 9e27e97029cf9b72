"""The SMTP listener (aiosmtpd): status strings only; the pipeline decides.

Replies (docs/mail-gateway.md): RCPT is accepted only for the support addresses and their
plus-addresses (`550 5.1.1` otherwise: not a relay), at most `MAX_RECIPIENTS` of
them (`452 4.5.3` past it), none longer than 254 characters (`501 5.1.3`); mail over
`MAX_MESSAGE_BYTES` gets `552 5.3.4`; `250` is sent only after `ingest` committed;
`451 4.3.0` when the database cannot be reached or anything transient fails, so the
sending server retries; `554 5.3.0` for a mail the database refused to record even
as raw bytes a second time (`UnstorableError`), so its sender returns it at once;
`550 5.7.1` only under `UNKNOWN_SENDER_POLICY=reject`, the same text whatever the
reason; `452 4.3.1` for a stranger's mail while the quarantine is full
(`QuarantineFull`, "Quarantine room").
Past `SMTP_MAX_CONNECTIONS` sessions in this process, or `SMTP_MAX_CONNECTIONS_PER_IP`
from one client address, a new connection gets `421 4.3.2` and is closed; a
command after `SMTP_SESSION_TIMEOUT` gets `421 4.4.2` and ends its session.
The database work runs in a thread pool so one slow mail never stalls the event
loop and the other connections; each session hands the loop on after every
command, so a client pipelining them stalls none either, and a session whose
answers go unread is aborted at its idle timeout (docs/mail-gateway.md, "Timeouts").
DATA is read in large pieces, not line by line (`smtp_data.py`), and the common
MAIL and RCPT paths without the standard library's header parser (`plain_path`).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import string
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import BOGUS_LIMIT, MISSING, SMTP, syntax
from aiosmtpd.smtp import Envelope as SMTPEnvelope
from aiosmtpd.smtp import Session as SMTPSession
from flask import Flask

from config import ConfigurationError
from helpdesk import addresses
from helpdesk.extensions import db
from helpdesk.inbound.ingest import (
    Envelope,
    Outcome,
    QuarantineFull,
    TransientError,
    UnstorableError,
    ingest,
    quarantine_deadly,
)
from helpdesk.inbound.limits import MailLimits
from helpdesk.inbound.parser import clean, header_as_servers_read
from helpdesk.message_ids import ascii_domain
from helpdesk.security import limit_key
from mailgateway.database_waits import DATABASE_WAITS
from mailgateway.smtp_data import read_data, unstuff
from mailgateway.smtp_takings import SmtpTakings, taking_key, takings_directory
from mailgateway.takings import TAKING_ATTEMPTS, TAKINGS

log = logging.getLogger("mailgateway.smtp")
# What a log line says for a mail whose Message-ID was not read: a mail too big is
# drained unread, and one may have no Message-ID field.
NO_MESSAGE_ID = "(no Message-ID read)"
_LOGGED_ID_CHARS = 200


def log_unrecorded(
    envelope: SMTPEnvelope, message_id: str, outcome: str, exc_info: BaseException | None = None
) -> None:
    """The one log line of a mail the pipeline did not record, so it wrote none
    (SPEC §10: one line per mail, its Message-ID and outcome): a 552, a 452 or a 451.
    The outcome is put on one line: a database's error text spans several. So are the
    paths, without control characters: aiosmtpd's parser decodes an encoded word in
    one (`=0A` is a line feed) and keeps a bare CR, so a client wrote lines of its
    own into the log. A bug's traceback (`exc_info`) follows that line in the same
    record, logged as an error."""
    log.log(
        logging.ERROR if exc_info else logging.WARNING,
        "mail %s via smtp from %s to %s: %s",
        message_id,
        clean(envelope.mail_from or ""),
        clean(",".join(envelope.rcpt_tos)),
        " ".join(outcome.split()),
        exc_info=exc_info,
    )


def logged_message_id(raw: bytes, limits: MailLimits) -> str:
    """The Message-ID for a log line, read from the top-level header within
    MAX_HEADER_BYTES and MAX_HEADER_FIELDS (`header_as_servers_read`), never the
    whole mail; control characters removed and cut, as a log line must stay one."""
    for name, value in header_as_servers_read(raw, limits).fields:
        if name == "message-id":
            return clean(value).strip(" <>")[:_LOGGED_ID_CHARS] or NO_MESSAGE_ID
    return NO_MESSAGE_ID


def listener_source(listen: str) -> str:
    """The source an SMTP listener's mail is recorded and counted under: "smtp " and
    its SMTP_LISTEN address, the same for every listener process sharing the port."""
    return f"smtp {listen}"


class SupportHandler:
    def __init__(self, app: Flask, workers: int = 8) -> None:
        self.app = app
        self.support: list[str] = app.config["SUPPORT_ADDRESSES"]
        # Every listener process on the port records its mail under this one name
        # (docs/web.md, "Mail flow").
        self.source = listener_source(app.config["SMTP_LISTEN"])
        self.max_bytes: int = app.config["MAX_MESSAGE_BYTES"]
        self.max_recipients: int = app.config["MAX_RECIPIENTS"]
        self.limits = MailLimits.from_config(app.config)
        # A mail not stored within this gets 451 (docs/mail-gateway.md, "When the
        # database hangs"): before SMTP_TIMEOUT, which would close the session first.
        self.deadline: float = INGEST_DEADLINE_SHARE * app.config["SMTP_TIMEOUT"].total_seconds()
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ingest")
        # What this process is storing, so a mail that kills it is counted (and the
        # deaths of the processes before it, counted now).
        directory = takings_directory(app.instance_path, app.config["SMTP_LISTEN"])
        self.takings = SmtpTakings(directory, hang_seconds=self.deadline)
        # Its ingest threads' waits on the database, so a supervisor's kill of a
        # listener whose database hangs is not counted as the mail's death.
        with app.app_context():
            DATABASE_WAITS.listen(db.engine)

    async def handle_RCPT(
        self,
        server: SMTP,
        session: SMTPSession,
        envelope: SMTPEnvelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        """Each recipient is kept for the record and for matching, so their count and
        length are bounded (RFC 5321 4.5.3.1.3 and 4.5.3.1.8; docs/security.md)."""
        if len(address) > addresses.MAX_LENGTH:
            return "501 5.1.3 Path too long"
        if not addresses.is_support_address(address, self.support):
            # Without control characters: a line break in a path (`log_unrecorded`)
            # split this answer in two, the second read as the next command's.
            return f"550 5.1.1 <{clean(address)}>: no such mailbox here (this is not a relay)"
        address = address.lower()
        if address in envelope.rcpt_tos:
            return "250 2.1.5 OK"
        if len(envelope.rcpt_tos) >= self.max_recipients:
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: SMTPSession, envelope: SMTPEnvelope) -> str:
        raw = envelope.original_content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        if len(raw) > self.max_bytes:
            log_unrecorded(
                envelope,
                logged_message_id(raw, self.limits),
                f"552, larger than MAX_MESSAGE_BYTES ({self.max_bytes})",
            )
            return "552 5.3.4 Message too big for this system"
        # aiosmtpd reports the null reverse-path as "<>"; the pipeline expects "".
        mail_from = "" if envelope.mail_from in (None, "<>") else envelope.mail_from
        inbound = Envelope(mail_from, tuple(envelope.rcpt_tos), "smtp", self.source)
        loop = asyncio.get_running_loop()
        try:
            # On the deadline a mail still queued is dropped; one being stored may
            # still commit, and then the sender's retry is its duplicate (250).
            result = await asyncio.wait_for(
                loop.run_in_executor(self.executor, self._ingest, raw, inbound), self.deadline
            )
        except QuarantineFull:  # a stranger's mail, no room to hold it (`room` sums them up a minute)
            log_unrecorded(envelope, logged_message_id(raw, self.limits), "452, quarantine full")
            return "452 4.3.1 Insufficient system storage, try again later"
        except TimeoutError:
            message_id = logged_message_id(raw, self.limits)
            log_unrecorded(envelope, message_id, f"451, not recorded within {self.deadline:g} s")
            return "451 4.3.0 Temporary failure storing the message; please retry"
        except TransientError as exc:
            log_unrecorded(envelope, logged_message_id(raw, self.limits), f"451 ({exc})")
            return "451 4.3.0 Temporary failure storing the message; please retry"
        except UnstorableError as exc:  # refused by the database again, not unreachable
            log_unrecorded(envelope, logged_message_id(raw, self.limits), f"554 ({exc})")
            return "554 5.3.0 The message could not be stored; it was not accepted"
        except Exception as exc:  # never a 250 for a mail that was not recorded
            message_id = logged_message_id(raw, self.limits)
            log_unrecorded(envelope, message_id, f"451 ({type(exc).__name__})", exc_info=exc)
            return "451 4.3.0 Temporary failure processing the message; please retry"
        if result.outcome is Outcome.REJECTED:
            # One text for every refusal: the reason says whether the ticket a
            # stranger named exists, so it stays in the record (docs/security.md).
            return "550 5.7.1 Sender not authorized to open tickets"
        detail = f" {result.ticket_number}" if result.ticket_number else ""
        return f"250 2.0.0 OK {result.outcome.value}{detail}"

    def _ingest(self, raw: bytes, inbound: Envelope) -> Any:
        """Store the mail, counted while it is stored (`smtp_takings`). A mail that a
        listener process died storing is taken alone from then on, so the next death
        is surely its own; after TAKING_ATTEMPTS of those it is kept unread. A kill
        while its thread waits on the database past its deadline, or during a stop,
        counts none (docs/mail-gateway.md, "A mail that kills the listener")."""
        key = taking_key(raw, inbound.mail_from, inbound.recipients)
        died = self.takings.deaths(key)
        if died.alone >= TAKING_ATTEMPTS:
            log.error(
                "mail %s via smtp: %d listener processes died storing it; quarantined unread",
                key,
                died.alone + died.beside,
            )
            with self.app.app_context():
                return quarantine_deadly(raw, died.alone + died.beside, self.source)
        # Never beside a message the IMAP poller takes alone: a mail that kills this
        # process must not be counted against that one (`takings`).
        # Waiting alone ends at the deadline of its sender's answer (451 by then), so a
        # mail storing for ever ahead of it stalls this one mail, not all behind it.
        alone = bool(died)
        until = time.monotonic() + self.deadline
        with TAKINGS.taking(alone=alone, until=until) as taken:
            if not taken:
                raise TransientError("not taken alone before its deadline: a mail being stored hangs")
            with self.takings.taking(key, taken), self.app.app_context():
                result = ingest(raw, inbound, self.app.config)
        if died:
            self.takings.forget(key)
        return result

    def close(self) -> None:
        """Wait for the mails being stored; those still queued lost their session
        at the stop (no answer sent), so they are dropped, and their senders retry."""
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.takings.close()


# The share of SMTP_TIMEOUT a mail may take to be stored before its 451 (4.5 of 5
# minutes by default): the rest is the margin before the idle timeout's close.
INGEST_DEADLINE_SHARE = 0.9
# How long a stop waits for the answers of the mails being stored (docs/operations.md).
STOP_GRACE_SECONDS = 10.0
# How long the sessions cancelled at a stop have to close their connections.
SESSION_CLOSE_SECONDS = 1.0


# How often a session may send each command (aiosmtpd's command_call_limit; past
# it `421 4.7.0` and the connection is closed). Every command restarts the idle
# timeout, so NOOP or RSET kept a session open forever. A relay sends MAIL, DATA and
# RSET about once a mail and RCPT once a recipient: 1,000 mails a session
# (docs/mail-gateway.md, "Timeouts").
COMMAND_CALL_LIMITS = {"NOOP": 20, "MAIL": 1000, "RSET": 1000, "DATA": 1000, "RCPT": 100_000, "*": 20}
# Lines that are no command (empty, not ASCII, longer than the command's limit) were
# answered 500 without a budget: pipelined, they held a session and the event loop
# until the idle timeout. Past this many a session, `421 4.7.0` and the connection is
# closed (docs/mail-gateway.md, "Timeouts").
BAD_LINE_LIMIT = 20
# RFC 5322's atext in ASCII: the characters an atom of `email`'s address parser is
# made of, besides the non-ASCII ones, which `plain_path` leaves to that parser.
_ATEXT = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~")


def _dot_atom(text: str) -> bool:
    """Whether `text` is atoms of ASCII atext joined by single dots."""
    return all(atom and _ATEXT.issuperset(atom) for atom in text.split("."))


def plain_path(arg: str) -> tuple[str, str] | None:
    """The address and the rest of a MAIL or RCPT argument of the common form
    `<local@domain>` (both dot-atoms of ASCII atext) and what follows it, as
    aiosmtpd's `_getaddr` reads them with `email`'s header parser; None for any
    other form (a null path, quotes, comments, a domain literal, a source route,
    non-ASCII, what may be an encoded word), which is left to that parser. What
    follows loses its leading white space, as there; a comment after the path is
    the parser's too. One pass over the argument, whose length the command line
    limit bounds (docs/mail-gateway.md, "How MAIL and RCPT are read")."""
    end = arg.find(">")
    if not arg.startswith("<") or end < 0:
        return None
    address = arg[1:end]
    local, at, domain = address.partition("@")
    # `=?` may begin an encoded word, which that parser decodes in a path
    # (`=?utf-8?q?a=0d=0ab?=@example.com` reads as ab@example.com): its reading.
    if not at or "=?" in address or not _dot_atom(local) or not _dot_atom(domain):
        return None
    rest = arg[end + 1 :]
    if rest[:1] in (" ", "\t"):
        rest = rest.lstrip()
    return None if rest.startswith("(") else (address, rest)


class ConnectionLimits:
    """The sessions one listener process holds, in all and per client address.

    Each session may hold a mail of up to MAX_MESSAGE_BYTES while it arrives (20
    stopped mid-DATA took a listener from 127 to 601 MiB), so their number bounds
    the listener's memory (docs/security.md). A client address is counted as the
    web's limits count it (`security.limit_key`: an IPv6 one by its network, a host
    holds a whole /64). Used on the event loop only."""

    def __init__(self, most: int, most_per_address: int, ipv6_prefix: int = 64) -> None:
        self.most = most
        self.most_per_address = most_per_address
        self.ipv6_prefix = ipv6_prefix
        self.total = 0
        self.per_address: Counter[str] = Counter()

    def admit(self, address: str) -> bool:
        key = limit_key(address, self.ipv6_prefix)
        if self.total >= self.most or self.per_address[key] >= self.most_per_address:
            return False
        self.total += 1
        self.per_address[key] += 1
        return True

    def release(self, address: str) -> None:
        key = limit_key(address, self.ipv6_prefix)
        self.total -= 1
        self.per_address[key] -= 1
        if not self.per_address[key]:
            del self.per_address[key]


class Answers:
    """The mails of one listener read to their end whose answer is not sent yet:
    a stop waits for them before it cancels the sessions (docs/operations.md). Used
    on the event loop only."""

    def __init__(self) -> None:
        self.count = 0
        self.none = asyncio.Event()
        self.none.set()

    @contextmanager
    def pending(self) -> Iterator[None]:
        self.count += 1
        self.none.clear()
        try:
            yield
        finally:
            self.count -= 1
            if not self.count:
                self.none.set()


class LiberalSMTP(SMTP):
    """Real senders exceed RFC 5322's 998-octet lines; accept them, read DATA in
    large pieces, and say 552 with its enhanced status code when a mail is too big.
    Sessions are bounded: their number (`ConnectionLimits`), their idle time, one
    mail's time and each command's count (docs/mail-gateway.md, "Timeouts")."""

    # The longest command line, and the largest piece DATA is read in; no longer a
    # limit on lines of the mail (docs/mail-gateway.md, "How DATA is read").
    line_length_limit = 1 << 20

    def __init__(
        self,
        handler: SupportHandler,
        *,
        connections: ConnectionLimits,
        data_timeout: float,
        session_timeout: float,
        answers: Answers | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, **kwargs)
        # aiosmtpd keeps these in one dict of its class: each EHLO (which adds room
        # for SIZE and SMTPUTF8 to MAIL's limit) raised it for every session, and each
        # new connection emptied it. Each session has its own.
        self.command_size_limits = collections.defaultdict(lambda: self.command_size_limit)
        if self.tls_context or self._proxy_timeout is not None:
            raise ValueError("LiberalSMTP's command loop has no STARTTLS or PROXY steps")
        self.connections = connections
        self.answers = answers or Answers()
        self.data_timeout = data_timeout
        self.session_timeout = session_timeout
        self._bad_line_budget = BAD_LINE_LIMIT
        self._data_since: float | None = None  # when the mail being read began
        self._bytes_seen = 0.0  # when bytes last arrived

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's, with the common `<local@domain>` read by `plain_path`: its
        reading through `email`'s header parser, and the typing class it defines on
        every call, cost the listener about 0.2 ms a mail at MAIL and RCPT
        (docs/mail-gateway.md, "How MAIL and RCPT are read"). Every other form is
        aiosmtpd's, with its answers."""
        plain = plain_path(arg) if arg else None
        if plain is None:
            return super()._getaddr(arg)
        address, rest = plain
        if self.local_part_limit and len(address.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return address, rest

    @syntax("EHLO hostname")
    async def smtp_EHLO(self, hostname: str) -> None:  # noqa: N802  (aiosmtpd's name)
        """aiosmtpd's EHLO adds the room SIZE and SMTPUTF8 need to MAIL's line limit
        each time it is sent: a client repeating EHLO raised its own limit by 36
        bytes a time. The limits start again from the base, as the session does
        (docs/mail-gateway.md, "Timeouts")."""
        self.command_size_limits.clear()
        await super().smtp_EHLO(hostname)

    def data_received(self, data: bytes) -> None:
        self._bytes_seen = self.loop.time()
        super().data_received(data)

    def _timeout_cb(self) -> None:
        """aiosmtpd's idle timeout counts from the last command, so a mail arriving
        steadily but slower than its size over SMTP_TIMEOUT was cut off every time.
        While a mail is read it counts from the last bytes instead, within
        SMTP_DATA_TIMEOUT for the whole mail (docs/mail-gateway.md, "Timeouts")."""
        if self._data_since is not None:
            until = min(self._bytes_seen + self._timeout_duration, self._data_since + self.data_timeout)
            left = until - self.loop.time()
            if left > 0:
                self._reset_timeout(left)
                return
        # aiosmtpd closes the transport, which waits for its send buffer to drain:
        # a client that never reads its answers kept its session and its connection
        # slot forever. Aborted, it loses both now (docs/mail-gateway.md, "Timeouts").
        log.info("%r connection timeout", self.session.peer if self.session else None)
        if self.transport is not None:
            self._writer.transport.abort()

    def _hang_up(self) -> None:
        """Close once the answers written so far are sent; a close waits for the
        client to read them, so the idle timeout, started again, aborts it if they
        are not read by then."""
        assert self.transport is not None
        self.transport.close()
        self._reset_timeout()

    async def _handle_client(self) -> None:
        """aiosmtpd's session, or `421` instead of the greeting past the connection
        limits, as Postfix's smtpd answers (RFC 5321 3.8: the client retries later)."""
        assert self.session is not None and self.transport is not None
        peer = self.session.peer
        address = str(peer[0] if isinstance(peer, tuple) else peer)
        if not self.connections.admit(address):
            log.warning("421 to %s: too many connections", address)
            self._writer.write(b"421 4.3.2 Too many connections, try later\r\n")
            self.transport.close()  # after the reply is written
            return
        try:
            await self._serve()
        finally:  # the session ended however it ended: a reply, a timeout, a lost connection
            self.connections.release(address)

    async def _serve(self) -> None:
        """aiosmtpd 1.4.6's command loop (`SMTP._handle_client`) for this listener,
        which takes no PROXY header or STARTTLS (`__init__` refuses them), with
        three changes (docs/mail-gateway.md, "Timeouts"):

        - the event loop runs once a command: aiosmtpd went back to it only when its
          buffer was empty, so a client pipelining commands had up to 256 KB of them
          answered in one turn while every other session waited;
        - an empty, undecodable or over-long line costs one of `BAD_LINE_LIMIT`;
        - a session closed for a budget ends there, instead of reading on what the
          client had sent; it is aborted if its last answer is not read;
        - a command past SMTP_SESSION_TIMEOUT is answered `421 4.4.2` and ends the
          session: each command restarts the idle time, so budgets alone let a
          client that sends one every few minutes keep its session for a year.
        aiosmtpd's log line per command line is not written."""
        assert self.session is not None
        await self.push(f"220 {self.hostname} {self.__ident__}")
        call_limit: collections.defaultdict[str, int] = collections.defaultdict(
            lambda: self._call_limit_default, self._call_limit_base if self._enforce_call_limit else {}
        )
        unknown_budget = BOGUS_LIMIT
        self._bad_line_budget = BAD_LINE_LIMIT
        ends = self.loop.time() + self.session_timeout
        while self.transport is not None:
            try:
                await asyncio.sleep(0)  # the other sessions' turn: one command each
                line = await self._read_command_line()
                if self.loop.time() > ends:
                    log.warning("%r session too long", self.session.peer)
                    await self.push("421 4.4.2 Session too long, try again later")
                    self._hang_up()
                    return
                if line is None:
                    if await self._bad_line("500 Command line too long"):
                        return
                    continue
                line = line.rstrip(b"\r\n")
                if not line:
                    if await self._bad_line("500 Error: bad syntax"):
                        return
                    continue
                command_bytes, _, arg_bytes = line.partition(b" ")
                try:
                    command = command_bytes.upper().decode("ascii")
                except UnicodeDecodeError:
                    if await self._bad_line("500 Error: bad syntax"):
                        return
                    continue
                # SMTPUTF8 is on: arguments are UTF-8, their bytes kept by surrogateescape
                arg = str(arg_bytes.strip(), "utf-8", "surrogateescape") if arg_bytes else None
                limit = (
                    self.command_size_limits[command]
                    if self.session.extended_smtp
                    else self.command_size_limit
                )
                if len(line) > limit:
                    if await self._bad_line("500 Command line too long"):
                        return
                    continue
                if self._enforce_call_limit:
                    budget = call_limit[command]
                    if budget < 1:
                        log.warning("%r over limit for %s", self.session.peer, command)
                        await self.push(f"421 4.7.0 {command} sent too many times")
                        self._hang_up()
                        return
                    call_limit[command] = budget - 1
                method = self._smtp_methods.get(command)
                if method is None:
                    # Without its control characters: a bare CR or an escape sequence
                    # went into the log and the answer as the client sent it.
                    shown = clean(command)
                    log.warning("%r unrecognised: %s", self.session.peer, shown)
                    unknown_budget -= 1
                    if unknown_budget < 1:
                        log.warning("%r too many bogus commands", self.session.peer)
                        await self.push("502 5.5.1 Too many unrecognized commands, goodbye.")
                        self._hang_up()
                        return
                    await self.push(f'500 Error: command "{shown}" not recognized')
                    continue
                self._reset_timeout()  # a valid command: the idle time starts again
                await method(arg)
            except (asyncio.CancelledError, ConnectionResetError):
                log.info("%r connection lost during a session", self.session.peer)
                self._writer.close()
                raise
            except Exception as error:  # aiosmtpd's: the handler's answer, else a 500
                try:
                    status = await self.handle_exception(error)
                except Exception as inner_error:
                    log.exception("%r exception in handle_exception()", self.session.peer)
                    status = f"500 Error: ({inner_error.__class__.__name__}) {inner_error}"
                await self.push(status)

    async def _read_command_line(self) -> bytes | None:
        """The next command line, or None for one longer than `line_length_limit`,
        read to its end and dropped as aiosmtpd does."""
        try:
            return await self._reader.readuntil()
        except asyncio.LimitOverrunError as error:
            await self._reader.read(error.consumed)
        while True:
            try:
                await self._reader.readuntil()
                return None
            except asyncio.LimitOverrunError as error:
                await self._reader.read(error.consumed)

    async def _bad_line(self, answer: str) -> bool:
        """Answer a line that is no command (aiosmtpd's 500), or past
        `BAD_LINE_LIMIT` of them hang up; True when the session is over."""
        self._bad_line_budget -= 1
        if self._bad_line_budget < 1:
            assert self.session is not None
            log.warning("%r too many bad command lines", self.session.peer)
            await self.push("421 4.7.0 Too many bad command lines")
            self._hang_up()
            return True
        await self.push(answer)
        return False

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        """aiosmtpd 1.4.6's smtp_DATA with its line-by-line loop replaced by
        `smtp_data.read_data`; the checks before `354` and every step after the mail
        is read are aiosmtpd's, in its order."""
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        self._data_since = self.loop.time()
        try:
            wire = await read_data(self._reader, self.data_size_limit)
        except asyncio.CancelledError:  # aiosmtpd cancels the session on EOF or a reset
            log.info("connection lost during DATA")  # aiosmtpd then logs the peer
            self._writer.close()
            raise
        finally:
            self._data_since = None
        self._reset_timeout()  # the idle time of the mail's sender ends with its last byte
        if wire is None:  # drained to its end, so the next command is read as one
            log_unrecorded(
                self.envelope, NO_MESSAGE_ID, f"552, larger than MAX_MESSAGE_BYTES ({self.data_size_limit})"
            )
            await self.push("552 5.3.4 Message too big for this system")
            self._set_post_data_state()
            return
        original_content = unstuff(wire)
        del wire  # the stuffed copy, if there was a dot to remove: not kept while ingesting
        content: str | bytes = original_content
        if self._decode_data:
            if self.enable_SMTPUTF8:
                content = original_content.decode("utf-8", errors="surrogateescape")
            else:
                try:
                    content = original_content.decode("ascii", errors="strict")
                except UnicodeDecodeError:
                    await self.push("500 Error: strict ASCII mode")
                    return
        self.envelope.content = content
        self.envelope.original_content = original_content
        # aiosmtpd's deprecated process_message() is not offered: SupportHandler has
        # handle_DATA, and a handler without either gets aiosmtpd's "250 OK".
        # A stop waits for this answer (`Answers`).
        with self.answers.pending():
            status = await self._call_handler_hook("DATA") if "DATA" in self._handle_hooks else MISSING
            self._set_post_data_state()
            await self.push("250 OK" if status is MISSING else status)

    async def push(self, status: str) -> None:  # type: ignore[override]  # aiosmtpd pushes str
        """aiosmtpd's push, with a deadline for the client to take the answer: past
        SMTP_TIMEOUT with its send buffer full, the connection is aborted."""
        if status.startswith("552 ") and not status.startswith("552 5.3.4"):
            status = "552 5.3.4 Message too big for this system"
        self._writer.write(status.encode("utf-8" if self.enable_SMTPUTF8 else "ascii") + b"\r\n")
        transport = self._writer.transport
        if transport.get_write_buffer_size() <= transport.get_write_buffer_limits()[1]:
            await self._writer.drain()  # returns at once: nothing to wait for
            return
        try:
            await asyncio.wait_for(self._writer.drain(), self._timeout_duration)
        except TimeoutError:
            log.info("%r answers not read: connection aborted", self.session.peer if self.session else None)
            transport.abort()
            raise ConnectionResetError("the client did not read its answers") from None


class SupportController(Controller):
    """aiosmtpd's Controller, able to share its port with sibling processes."""

    def __init__(
        self,
        handler: SupportHandler,
        *,
        connections: ConnectionLimits,
        data_timeout: float,
        session_timeout: float,
        reuse_port: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, **kwargs)
        self.connections = connections
        self.data_timeout = data_timeout
        self.session_timeout = session_timeout
        self.reuse_port = reuse_port
        self.answers = Answers()
        self.stop_grace = STOP_GRACE_SECONDS

    def factory(self) -> SMTP:
        return LiberalSMTP(
            self.handler,
            connections=self.connections,
            data_timeout=self.data_timeout,
            session_timeout=self.session_timeout,
            answers=self.answers,
            **self.SMTP_kwargs,
        )

    def stop(self, no_assert: bool = False) -> None:
        """Close the listening socket, so new connections go to a sibling process or
        are refused (their senders retry); give the mails being stored `stop_grace`
        to be answered; then cancel every session, as aiosmtpd's stop does. A mail
        still being stored then is committed all the same (`SupportHandler.close`
        waits for it), and its sender's retry is its duplicate."""
        if self._thread is not None and self.server is not None:
            answered = asyncio.run_coroutine_threadsafe(self._close_and_answer(), self.loop)
            try:
                answered.result(self.stop_grace + 5)
            except TimeoutError:  # the event loop itself is stuck; cancel all the same
                log.error("the SMTP listener did not close within %g s", self.stop_grace + 5)
        super().stop(no_assert)

    async def _close_and_answer(self) -> None:
        assert self.server is not None
        self.server.close()
        try:
            await asyncio.wait_for(self.answers.none.wait(), self.stop_grace)
        except TimeoutError:
            log.warning(
                "stopping with %d mail(s) unanswered after %g s; their senders will retry",
                self.answers.count,
                self.stop_grace,
            )
        # aiosmtpd's stop cancels the sessions and stops the loop at once, before
        # they close their connections: a client then waited for its own timeout.
        sessions = asyncio.all_tasks() - {asyncio.current_task()}
        for session in sessions:
            session.cancel()
        if sessions:
            await asyncio.wait(sessions, timeout=SESSION_CLOSE_SECONDS)

    def _run(self, ready_event: threading.Event) -> None:
        """aiosmtpd's, except that a failed bind (the port in use) wakes start() at
        once: it waited out `ready_timeout` first (docs/operations.md). aiosmtpd
        leaves its loop open then; closed at the process's exit, in whatever order
        the interpreter finalizes objects, its self-pipe socket was sometimes gone
        first, and the listener's one-line refusal came with a traceback after it."""
        super()._run(ready_event)
        if self._thread_exception is not None:
            self.loop.close()
            ready_event.set()

    def _create_server(self) -> Any:
        return self.loop.create_server(
            self._factory_invoker,
            host=self.hostname,
            port=self.port,
            ssl=self.ssl_context,
            reuse_port=self.reuse_port,
        )

    def _trigger_server(self) -> None:
        """Check that the SMTP object can be built (what aiosmtpd's start() waits for).

        aiosmtpd connects to its own port for this; with SO_REUSEPORT the kernel may
        hand that probe to a sibling process, and start() would time out. Build one
        in the event loop instead: the same check without a connection.
        """

        if self._thread_exception is not None:  # the bind failed (`_run`)
            raise self._thread_exception

        async def probe() -> None:
            self._factory_invoker()

        asyncio.run_coroutine_threadsafe(probe(), self.loop).result(self.ready_timeout)


def start_listening(controller: SupportController, handler: SupportHandler, listen: str) -> None:
    """Start `controller`, or ConfigurationError in one line when it cannot listen
    on `listen` (SMTP_LISTEN): the port in use, an address not of this host, a
    port below 1024 without the right to it. The same line from the gateway and
    from its listener processes (docs/operations.md)."""
    try:
        controller.start()
    except OSError as exc:
        handler.close()
        raise ConfigurationError(f"SMTP_LISTEN {listen}: {exc.strerror or exc}") from exc


def make_controller(
    app: Flask, handler: SupportHandler | None = None, *, reuse_port: bool = False
) -> SupportController:
    host, _, port = app.config["SMTP_LISTEN"].rpartition(":")
    handler = handler or SupportHandler(app)
    # The name in the banner and EHLO reply, in its ASCII form (docs/outbound-mail.md);
    # without it aiosmtpd asks DNS (socket.getfqdn) on the event loop for every connection.
    return SupportController(
        handler,
        hostname=host or "127.0.0.1",
        port=int(port),
        server_hostname=ascii_domain(app.config["MESSAGE_ID_DOMAIN"]),
        connections=ConnectionLimits(
            app.config["SMTP_MAX_CONNECTIONS"],
            app.config["SMTP_MAX_CONNECTIONS_PER_IP"],
            app.config["RATE_LIMIT_IPV6_PREFIX"],
        ),
        reuse_port=reuse_port,
        data_timeout=app.config["SMTP_DATA_TIMEOUT"].total_seconds(),
        session_timeout=app.config["SMTP_SESSION_TIMEOUT"].total_seconds(),
        timeout=app.config["SMTP_TIMEOUT"].total_seconds(),
        command_call_limit=COMMAND_CALL_LIMITS,
        data_size_limit=app.config["MAX_MESSAGE_BYTES"],
        decode_data=False,
        enable_SMTPUTF8=True,
        ident="helpdesk gateway",
    )
