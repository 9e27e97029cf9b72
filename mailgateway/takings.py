"""The mail one gateway process is taking in, so that a mail which kills the process
is told from the mail beside it (docs/mail-gateway.md, "A mail that kills the
gateway").

The IMAP poller counts, in the database, the processes that died while it took a
message alone; after a few it files that message as failed, unread. That count is
only right if nothing else of the process was in flight when it died: a poller of
another mailbox, or the SMTP listener, taking the mail that really kills. So a
message taken alone is the only mail the process takes meanwhile: it waits for the
mail in flight to end, and no other mail begins while it waits or is taken. An SMTP
mail that a listener process died storing is taken alone too (`smtp_takings`).
Every other taking (an IMAP batch, an SMTP mail being stored) shares with its kind.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

# How often a wait looks at its stop event: a stop is never held up longer.
_LOOK_SECONDS = 1.0
# Gateway processes that may begin taking one mail alone and die before it is
# recorded (killed or crashed; a restart that ends a taking waiting on the database,
# or comes during an orderly stop, is no death) before it is kept unread,
# an IMAP message filed as failed, an SMTP mail parked in the quarantine: such a
# mail likely kills every process that reads it. Counted outside the process, since
# a dying process loses its memory: in the mailbox's row for IMAP, in the listener's
# files for SMTP (`smtp_takings`; docs/mail-gateway.md, "A mail that kills the gateway",
# "A mail that kills the listener").
TAKING_ATTEMPTS = 3


class Takings:
    """Who takes mail in this process now: any number sharing, or one message alone.
    A wait here lasts as long as the takings before it: an IMAP batch's are bounded
    by its reads' deadlines, an SMTP mail's by `ingest` returning, which may come
    after its 451 (docs/mail-gateway.md, "A mail that kills the gateway")."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._shared = 0  # takings in flight beside each other
        self._alone = False  # a message taken alone in flight
        self._waiting_alone = 0  # messages waiting to be taken alone: no shared taking begins

    @contextmanager
    def taking(
        self, *, alone: bool, stopping: threading.Event | None = None, until: float | None = None
    ) -> Iterator[bool]:
        """Take mail once the rule allows it: `alone`, or beside other takings. Yields
        False when `stopping` was set first, or `until` (a `time.monotonic()`) came,
        and then nothing may be taken: a wait to be taken alone behind a taking that
        hangs would otherwise hold every later taking of the process behind it."""

        def blocked() -> bool:
            return self._alone or (self._shared > 0 if alone else self._waiting_alone > 0)

        def ended() -> bool:
            return (stopping is not None and stopping.is_set()) or (
                until is not None and time.monotonic() >= until
            )

        with self._changed:
            self._waiting_alone += alone
            try:
                while not ended() and blocked():
                    left = _LOOK_SECONDS if until is None else until - time.monotonic()
                    self._changed.wait(max(0.0, min(_LOOK_SECONDS, left)))
            finally:
                self._waiting_alone -= alone
                self._changed.notify_all()
            entered = not (stopping is not None and stopping.is_set()) and not blocked()
            if entered and alone:
                self._alone = True
            elif entered:
                self._shared += 1
        try:
            yield entered
        finally:
            with self._changed:
                if entered and alone:
                    self._alone = False
                elif entered:
                    self._shared -= 1
                self._changed.notify_all()


# The one of this process: every IMAP poller and the SMTP listener's storing threads.
TAKINGS = Takings()
