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

A taking whose mail is seen waiting on the database (`Taking.waiting`: its count
taken back, its slot marked a hang) is no longer alone: a death from then on is not
counted against it as its own, so holding every other mail of the process behind a
wait that may last as long as the database's would only stop the process's mail
for nothing (the other mailboxes, the SMTP listener's 451s). Others then begin
beside it as shared takings, which a death counts against none (IMAP) or as
`beside` (SMTP); a taking alone still waits for it to end.
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


class Taking:
    """One taking let in (or not) by `Takings.taking`: true when it may take mail."""

    def __init__(self, takings: Takings, *, entered: bool, alone: bool) -> None:
        self._takings = takings
        self.entered = entered
        self.alone = alone  # changed under the gate's lock (`waiting`)
        self.waited = False  # seen waiting on the database since it began
        self.over = False  # it ended: `waiting` comes too late

    def __bool__(self) -> bool:
        return self.entered

    def waiting(self) -> None:
        """Its mail waits on the database, and a death now is no longer counted
        against it: its caller took its count back (IMAP) or marked its slot a hang
        (SMTP) first. Taken alone, it becomes a shared taking, and every other
        taking of the process may begin beside it (the module's docstring)."""
        self._takings._waits(self)


class Takings:
    """Who takes mail in this process now: any number sharing, or one message alone.
    A wait here lasts as long as the takings before it: an IMAP batch's are bounded
    by its reads' deadlines, an SMTP mail's by `ingest` returning, which may come
    after its 451 (docs/mail-gateway.md, "A mail that kills the gateway"), or until
    the one that holds it up is seen waiting on the database (`Taking.waiting`)."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._shared = 0  # takings in flight beside each other
        self._alone = False  # a message taken alone in flight
        self._waiting_alone = 0  # messages waiting to be taken alone: no shared taking begins
        self._waited = 0  # takings in flight seen waiting on the database (all shared)

    @contextmanager
    def taking(
        self, *, alone: bool, stopping: threading.Event | None = None, until: float | None = None
    ) -> Iterator[Taking]:
        """Take mail once the rule allows it: `alone`, or beside other takings. Yields
        a false `Taking` when `stopping` was set first, or `until` (a `time.monotonic()`)
        came, and then nothing may be taken: a wait to be taken alone behind a taking
        that hangs would otherwise hold every later taking of the process behind it.
        A message waiting to be taken alone holds back the shared takings, unless a
        taking in flight waits on the database: it would wait behind that one anyway."""

        def blocked() -> bool:
            if alone:
                return self._alone or self._shared > 0
            return self._alone or (self._waiting_alone > 0 and self._waited == 0)

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
            taking = Taking(
                self, entered=not (stopping is not None and stopping.is_set()) and not blocked(), alone=alone
            )
            if taking and alone:
                self._alone = True
            elif taking:
                self._shared += 1
        try:
            yield taking
        finally:
            with self._changed:
                if taking and taking.alone:
                    self._alone = False
                elif taking:
                    self._shared -= 1
                self._waited -= taking.waited
                taking.over = True
                self._changed.notify_all()

    def _waits(self, taking: Taking) -> None:
        """`Taking.waiting`: once per taking, and only while it is in flight."""
        with self._changed:
            if not taking or taking.over or taking.waited:
                return
            if taking.alone:
                taking.alone, self._alone = False, False
                self._shared += 1
            taking.waited = True
            self._waited += 1
            self._changed.notify_all()


# The one of this process: every IMAP poller and the SMTP listener's storing threads.
TAKINGS = Takings()
