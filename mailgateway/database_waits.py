"""Which threads of this gateway process wait on the database now, and since when:
what tells a taking that hangs on the database (a lock nobody releases, a server
that stopped answering) from one the mail itself keeps busy. Only the first is no
death of its mail when a supervisor ends the process (docs/mail-gateway.md, "A hang
or a stop is no death of the mail"): the IMAP poller takes its count back
(`imap.ImapPoller._watch_ingests`), the SMTP listener marks its slot
(`smtp_takings`), and either lets the process's other mail be taken beside it
(`takings.Taking.waiting`).

Told by the database engine's events: a statement or a commit sent begins a wait,
a statement's answer or error ends it, and so does the connection going back to
the pool (a commit's end, which has no event of its own). In memory, no system
call: about 0.2 us a statement. Chosen over the share of its time the thread spent
on the CPU (read from Linux's /proc, about 10 us a look), which the IMAP poller used
first: that one took any wait off the CPU (a DNS lookup, a lock in the process, a
disk) for one on the database, and knew only an average since the mail began,
not whether the thread waits now, nor when its wait ends.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import event
from sqlalchemy.engine import Engine

# How long a mail's ingest may wait on the database, in one wait, before the wait is
# known to be no death of its mail (`DatabaseWaits.waited`): well within a restart's
# first minute, and past the pauses of a database that is only busy.
WAITING_SECONDS = 10.0
# The engine's events that begin and end a thread's wait (see the module's docstring).
_ASKED = ("before_cursor_execute", "commit")
_ANSWERED = ("after_cursor_execute", "handle_error", "checkin")


class DatabaseWaits:
    """The waits of this process's threads, by `threading.get_ident()`. Written by
    each thread for itself (one dictionary item, atomic under the interpreter's
    lock), read by the watchers."""

    def __init__(self) -> None:
        self._since: dict[int, float] = {}  # waiting now, since (`time.monotonic()`)
        self._answered: dict[int, Callable[[], None]] = {}  # told as its wait ends (`telling`)

    def listen(self, engine: Engine) -> None:
        """Be told of `engine`'s statements; once per engine, however often asked
        (the SMTP listener and the IMAP pollers of a process share one)."""
        for name in _ASKED:
            if not event.contains(engine, name, self.asked):
                event.listen(engine, name, self.asked)
        for name in _ANSWERED:
            if not event.contains(engine, name, self.answered):
                event.listen(engine, name, self.answered)

    def asked(self, *_event: object) -> None:
        """This thread waits on the database from now (the event's arguments say
        nothing needed here)."""
        self._since[threading.get_ident()] = time.monotonic()

    def answered(self, *_event: object) -> None:
        """This thread's wait, if any, ended: whoever watches it is told before the
        thread goes on (`telling`)."""
        thread = threading.get_ident()
        if self._since.pop(thread, None) is not None and (told := self._answered.get(thread)):
            told()

    def since(self, thread: int) -> float | None:
        """Since when `thread` (its `threading.get_ident()`) waits on the database,
        or None when it does not."""
        return self._since.get(thread)

    def waited(self, thread: int, deadline: float) -> bool:
        """Whether `thread` waits on the database now, in one wait of WAITING_SECONDS,
        or of `deadline` seconds if sooner (the sender's answer, SMTP's 451): the rule
        both transports judge a hang by, so a kill then is no death of its mail."""
        since = self._since.get(thread)
        return since is not None and time.monotonic() - since >= min(WAITING_SECONDS, deadline)

    @contextmanager
    def telling(self, answered: Callable[[], None] | None = None) -> Iterator[int]:
        """While a mail is taken in this thread: no wait left from before it, and
        `answered`, if given, called in this thread as each of its waits ends.
        Yields the thread's id, for `since`."""
        thread = threading.get_ident()
        self._since.pop(thread, None)
        if answered is not None:
            self._answered[thread] = answered
        try:
            yield thread
        finally:
            self._answered.pop(thread, None)
            self._since.pop(thread, None)


# The one of this process.
DATABASE_WAITS = DatabaseWaits()
