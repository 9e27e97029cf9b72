"""The database's schema revision against the one this code was written for.

Migrations are a deploy step (`flask --app wsgi db upgrade`), run from one host
before new code starts. When that step was skipped, or ran on another database,
new code met an older schema: every mail was answered 451 for ever, or 250 and
quarantined, and the portal's pages failed, while the web's health answer said
all was well and `--check` did too (or failed on a missing column by chance).
The gateway now refuses to start on a schema behind its code, and both health
checks report it; a schema ahead of the code (the next release migrated it
first, as a rolling deploy does) is only noted. See docs/operations.md,
"Upgrades and the schema revision".

One query (the `alembic_version` row); the code's revisions are read from
`migrations/versions` once a process. The gateway's start gives that query
`READ_SECONDS`: a database that logs the client in and never answers held the
start for as long (docs/operations.md).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from functools import lru_cache

from alembic.script import ScriptDirectory
from flask import Flask
from sqlalchemy import column, select, table, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from config import ConfigurationError
from helpdesk.database import is_transient
from helpdesk.extensions import db

log = logging.getLogger("helpdesk.schema")

_RUN = "run `flask --app wsgi db upgrade`"

_VERSION = table("alembic_version", column("version_num"))

#: How long reading the revision waits, on PostgreSQL, for a lock another session
#: holds on its table (`VACUUM FULL`, `LOCK TABLE`, a migration altering it) before
#: the revision is unknown. Unbounded, the gateway's start and every health probe
#: waited as long as the lock was held (docs/operations.md).
LOCK_WAIT_SECONDS = 2.0


@dataclass(frozen=True)
class Revisions:
    """The revisions the database is at (none when it was never migrated) and this
    code's head, with every revision this code knows."""

    database: tuple[str, ...]
    head: tuple[str, ...]
    known: frozenset[str]
    #: Why the revision table could not be read, when it is there (the database's
    #: own words: "permission denied for table alembic_version"); "" when it was read.
    unreadable: str = ""

    @property
    def ahead(self) -> bool:
        """The database is at a revision this code does not know: a newer release's."""
        return any(revision not in self.known for revision in self.database)

    @property
    def behind(self) -> bool:
        """Migrations this code needs have not run (never migrated included)."""
        return not self.unreadable and not self.ahead and set(self.database) != set(self.head)

    @property
    def state(self) -> str:
        """In a word, as the web's health answer names it."""
        if self.unreadable:
            return "unknown"
        return "behind" if self.behind else "ahead" if self.ahead else "ok"

    def describe(self) -> str:
        """One line for the operator, naming both revisions."""
        database = ", ".join(self.database)
        head = ", ".join(self.head)
        if self.unreadable:
            return f"the schema revision could not be read ({self.unreadable}); not compared with {head}"
        if not self.database:
            return f"the database was never migrated (no schema revision), this code needs {head}: {_RUN}"
        if self.behind:
            return f"the database's schema is at revision {database}, this code needs {head}: {_RUN}"
        if self.ahead:
            return (
                f"the database's schema is at revision {database}, newer than this code's {head} "
                "(a newer release migrated it)"
            )
        return f"schema at revision {head}"


@lru_cache(maxsize=None)
def _code(directory: str) -> tuple[tuple[str, ...], frozenset[str]]:
    script = ScriptDirectory(directory)
    return tuple(script.get_heads()), frozenset(s.revision for s in script.walk_revisions())


def read(app: Flask, session: Session) -> Revisions:
    """The revisions of the database `session` reaches. The database failing now
    (`is_transient`) raises; a database without the revision table was never
    migrated; any other failure of the query (the application's role may not read
    the table, or its table stayed locked `LOCK_WAIT_SECONDS`) leaves the revision
    `unreadable`, neither behind nor ahead: it was taken for never migrated, and the
    gateway refused to start on a database at its head. The session is rolled back
    after a failure."""
    head, known = _code(app.extensions["migrate"].directory)
    try:
        if session.get_bind().dialect.name == "postgresql":
            # For this transaction only, as PgBouncer allows (the check's own queries
            # after it, in `mailgateway.health`, wait no longer on a lock either).
            session.execute(
                text("SELECT set_config('lock_timeout', :ms, true)"),
                {"ms": str(int(LOCK_WAIT_SECONDS * 1000))},
            )
        database = tuple(sorted(session.execute(select(_VERSION.c.version_num)).scalars()))
    except DBAPIError as exc:
        locked = getattr(exc.orig, "pgcode", None) == "55P03"  # lock_not_available: lock_timeout
        if is_transient(exc) and not locked:
            raise
        session.rollback()
        if not _no_revision_table(exc):
            said = (str(exc.orig or exc).strip().splitlines() or [type(exc.orig).__name__])[0]
            return Revisions((), head, known, unreadable=said)
        database = ()
    return Revisions(database, head, known)


def _no_revision_table(error: DBAPIError) -> bool:
    """Is the failure the revision table missing (PostgreSQL's undefined_table,
    SQLite's "no such table")?"""
    if getattr(error.orig, "pgcode", None):
        return bool(error.orig.pgcode == "42P01")  # type: ignore[union-attr]
    return "no such table" in str(error.orig)


def refuse_when_behind(app: Flask) -> None:
    """For the gateway's start: `ConfigurationError` (its one line on stderr) on a
    schema behind the code; a warning on one ahead of it. A database that cannot be
    reached now, or gives no answer within `READ_SECONDS` (PgBouncer holding the
    query while PostgreSQL is down, a server that hangs after the login), is left to
    the start as before (mail gets 451 until it answers), with a warning."""
    outcome = _read_within(app, READ_SECONDS)
    if outcome is None:
        log.warning(
            "the schema revision was not read within %g s (the database took the connection and did "
            "not answer); starting anyway",
            READ_SECONDS,
        )
        return
    if isinstance(outcome, DBAPIError):
        log.warning("the schema revision could not be read (%s); starting anyway", outcome.orig or outcome)
        return
    revisions = outcome
    if revisions.behind:
        raise ConfigurationError(revisions.describe())
    if revisions.unreadable:
        log.warning("%s; starting anyway", revisions.describe())
    elif revisions.ahead:
        log.warning("%s; starting: migrations keep the release before working", revisions.describe())


#: How long the gateway's start waits for the schema revision (the connection
#: included: libpq's `connect_timeout` is 5 s). What neither `connect_timeout` nor
#: `LOCK_WAIT_SECONDS` ends, a database that logs the client in and never answers,
#: held the start for as long (docs/operations.md).
READ_SECONDS = 10.0


def _read_within(app: Flask, seconds: float) -> Revisions | DBAPIError | None:
    """`read` in a thread of its own, None when it gave no answer within `seconds`.
    The thread is left behind, waiting on the database: nothing else can end a wait
    on a server that does not answer. On PostgreSQL the same bound is the read's
    `statement_timeout` (that transaction only), so a server that is slow rather than
    paused ends the read itself instead of running it on after the start went on.
    A read that ends late and finds the schema behind logs that as an error, since
    the start could not refuse."""
    answer: list[Revisions | Exception] = []
    lock = threading.Lock()
    gave_up = False

    def reading() -> None:
        outcome: Revisions | Exception
        with app.app_context():  # its end gives the session's connection back
            try:
                if db.session.get_bind().dialect.name == "postgresql":
                    db.session.execute(
                        text("SELECT set_config('statement_timeout', :ms, true)"),
                        {"ms": str(max(1, int(seconds * 1000)))},
                    )
                outcome = read(app, db.session)
            except Exception as exc:  # handed to the start, which raises what is no DBAPIError
                outcome = exc
        with lock:
            answer.append(outcome)
            late = gave_up
        if not late:
            return
        if isinstance(outcome, Revisions) and outcome.behind:
            log.error("read after the start went on: %s", outcome.describe())
        elif isinstance(outcome, Exception) and not isinstance(outcome, DBAPIError):
            log.error("reading the schema revision failed after the start went on", exc_info=outcome)

    reader = threading.Thread(target=reading, name="schema-revision", daemon=True)
    reader.start()
    reader.join(seconds)
    with lock:
        gave_up = True
        outcome = answer[0] if answer else None
    if isinstance(outcome, Exception) and not isinstance(outcome, DBAPIError):
        raise outcome
    return outcome
