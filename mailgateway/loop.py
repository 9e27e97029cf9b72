"""The one loop of the gateway's worker threads: the IMAP pollers, the outbound
sender and the lifecycle jobs are each a `Loop` (after Mailman 3's runners).

A loop does one round of work, then waits (`idle_seconds`) unless the round says
more work is waiting, until the shared stop event is set. A round that raises
never ends the thread: the error is logged (a warning when the database or a
server is away, `failed_quietly`; with its traceback otherwise, since that is a
bug) and the loop waits before the next round, twice as long after each failure
in a row, up to `max_backoff`. `run` never raises, so one broken piece never
stops the gateway.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy.exc import DBAPIError

from helpdesk.database import is_transient

log = logging.getLogger("mailgateway")


class Loop:
    """Subclasses give `name` and `round`; see the module docstring."""

    name = "loop"
    # Errors that say something outside is away (the database, a server): worth a
    # warning and a retry, not a traceback.
    failed_quietly: tuple[type[BaseException], ...] = (DBAPIError,)

    def __init__(
        self,
        stopping: threading.Event | None,
        *,
        idle_seconds: float,
        first_backoff: float = 1.0,
        max_backoff: float = 60.0,
    ) -> None:
        self.stopping = stopping or threading.Event()
        self.idle_seconds = idle_seconds
        self.first_backoff = first_backoff
        self.max_backoff = max_backoff
        self.backoff = first_backoff

    def off(self) -> str | None:
        """Why this loop does not run here (a setting turns it off), or None."""
        return None

    def started(self) -> None:
        """Log what the loop serves, once it runs."""

    def round(self) -> bool:
        """One round of work; True when more is waiting (the next starts at once)."""
        raise NotImplementedError

    def quiet(self, exc: Exception) -> bool:
        """Whether `exc` is the outside being away (`failed_quietly`), not a bug: a
        database error only when the database failed to do the work now (a schema
        behind the code is an OperationalError on SQLite too; `is_transient`)."""
        if isinstance(exc, DBAPIError) and not is_transient(exc):
            return False
        return isinstance(exc, self.failed_quietly)

    def failed(self, exc: Exception) -> None:
        """A round raised `exc`: say so (override to record it somewhere too)."""
        if self.quiet(exc):
            log.warning(
                "%s: %s: %s; retrying", self.name, type(exc).__name__, getattr(exc, "orig", None) or exc
            )
        else:
            log.error("%s: unexpected error", self.name, exc_info=exc)

    def recovered(self) -> None:
        """The work goes well again: the next failure waits the first backoff."""
        self.backoff = self.first_backoff

    def run(self) -> None:
        """Rounds until the stop event is set, at least one; never raises."""
        reason = self.off()
        if reason is not None:
            log.info("%s off here: %s", self.name, reason)
            return
        self.started()
        while True:  # the first round runs even if a stop came first: a start catches up
            try:
                busy = self.round()
                self.recovered()
                wait = 0.0 if busy else self.idle_seconds
            except Exception as exc:  # sorted by `failed`; the thread must live on
                self.failed(exc)
                wait = self.backoff
                self.backoff = min(self.backoff * 2, self.max_backoff)
            if self.stopping.is_set() or (wait and self.stopping.wait(wait)):
                break
        log.info("%s stopped", self.name)
