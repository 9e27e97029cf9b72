"""Room in the quarantine for mail from senders nobody vouched for.

Anyone on the internet may mail the support address, and under
UNKNOWN_SENDER_POLICY=quarantine each stranger's mail is held with its raw bytes:
mail from new addresses, each under every per-sender limit, filled the database
without bound. Past `QUARANTINE_MAX_MAILS` held mails waiting for review, or
`QUARANTINE_MAX_BYTES` of their raw bytes, such mail is refused for now
(`QuarantineFull`: SMTP `452 4.3.1`, the sender retries) instead of held; mail a
customer sent is never refused (docs/mail-gateway.md, "Quarantine room").

The pipeline's cost per mail is measured (docs/benchmarks.md, issue 19), so the
held mail is not counted for every mail: each process counts it (one query) at most
every `RECOUNT_SECONDS`, and adds each stranger's mail it lets in meanwhile. Only
mail about to be held as a stranger's asks. Several processes each add their own,
so together they may pass a cap by what the others held since their last count.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import weakref

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from helpdesk.models import InboundMail, QuarantineItem

log = logging.getLogger("helpdesk.inbound.room")

# How old a process's count of the held mail may be before it is counted again.
RECOUNT_SECONDS = 10.0
# At most one log line this often while mail is refused, with how many were.
LOG_EVERY_SECONDS = 60.0


class QuarantineFull(Exception):
    """The quarantine has no room for another mail from a stranger; nothing of the
    mail was recorded. The SMTP listener answers `452 4.3.1`, the IMAP poller files
    the mail in its failed folder (docs/mail-gateway.md, "Quarantine room")."""


def held(session: Session) -> tuple[int, int]:
    """The mails held waiting for review and their raw bytes (one query)."""
    mails, size = session.execute(
        select(func.count(QuarantineItem.id), func.coalesce(func.sum(InboundMail.size), 0))
        .join(InboundMail, InboundMail.id == QuarantineItem.inbound_mail_id)
        .where(QuarantineItem.state == "pending")
    ).one()
    return int(mails), int(size)


class Room:
    """One process's count of the held mail of one database, kept between counts
    by what it let in. Thread-safe: the listener stores mail in a thread pool."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counted_at = -math.inf
        self.mails = 0
        self.bytes = 0
        self._refused = 0
        self._logged_at = -math.inf

    def take(self, session: Session, size: int, most_mails: int, most_bytes: int) -> bool:
        """Whether a stranger's mail of `size` bytes may be held; if so it is counted
        as held from now on (a mail then not held is counted until the next count:
        the cautious side). Past a cap, False, and the refusal counted for the log."""
        if time.monotonic() - self._counted_at >= RECOUNT_SECONDS:
            mails, total = held(session)  # outside the lock: the other threads go on
            with self._lock:
                self.mails, self.bytes, self._counted_at = mails, total, time.monotonic()
        with self._lock:
            if (not most_mails or self.mails < most_mails) and (
                not most_bytes or self.bytes + size <= most_bytes
            ):
                self.mails += 1
                self.bytes += size
                return True
            self._refused += 1
            if time.monotonic() - self._logged_at < LOG_EVERY_SECONDS:
                return False
            refused, self._refused, self._logged_at = self._refused, 0, time.monotonic()
            mails, total = self.mails, self.bytes
        log.warning(
            "quarantine full (%d mails, %d bytes held; QUARANTINE_MAX_MAILS %d, QUARANTINE_MAX_BYTES %d): "
            "%d mail(s) from unknown senders refused for now since the last such line",
            mails,
            total,
            most_mails,
            most_bytes,
            refused,
        )
        return False


_rooms: weakref.WeakKeyDictionary[Engine, Room] = weakref.WeakKeyDictionary()
_rooms_lock = threading.Lock()


def room_of(session: Session) -> Room:
    """The count kept for the database `session` is bound to."""
    engine = session.get_bind()
    assert isinstance(engine, Engine)
    with _rooms_lock:
        found = _rooms.get(engine)
        if found is None:
            found = _rooms[engine] = Room()
        return found
