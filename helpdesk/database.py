"""Engine setup that makes SQLite safe for several processes.

SQLite: WAL so readers never block the writer, a busy timeout so writers queue
instead of failing, foreign keys on, and every transaction opened with
`BEGIN IMMEDIATE`. The last matters for correctness: a deferred transaction that
reads and then writes can fail at once with SQLITE_BUSY (no waiting) when another
process committed in between; taking the write lock up front makes all writers
simply queue. Readers of an embedded install pay with brief serialization, which
is the trade an embedded database makes anyway.

PostgreSQL: each process keeps `DB_POOL_SIZE` connections and opens up to
`DB_MAX_OVERFLOW` more under load. A pooled connection that sat idle is pinged before use, so the portal
and the gateway survive a database restart without failing a request. Only an idle
one: SQLAlchemy's `pool_pre_ping` pings on every checkout, one more round trip
(and its CPU on both sides) for every mail and every request. A connection reused
within `POOL_PING_IDLE_SECONDS` is not pinged; if the server went away in that
instant, the statement fails, SQLAlchemy invalidates the whole pool, and the caller
sees the transient error it already handles (SMTP 451, IMAP retry, HTTP 503).

Every new PostgreSQL connection gets libpq's `CONNECTION_OPTIONS` unless the
database URL gives its own: a deadline for the server's answer to the connection
(libpq waits for ever without one, so a paused server held the gateway's ingest
threads for good) and TCP keepalives and a user timeout, so a connection whose
host or network vanished fails in about a minute instead of waiting on TCP's
retries. No statement timeout: a migration or a mail with large attachments may
rightly take longer, and one set at connection is not kept through PgBouncer
(docs/operations.md, "When the database hangs").
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from flask import Flask
from sqlalchemy import Select, event, exc, inspect
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, make_transient_to_detached

from config import normalize_database_url
from helpdesk.extensions import db


def init_app(app: Flask) -> None:
    uri = normalize_database_url(app.config["SQLALCHEMY_DATABASE_URI"])
    app.config["SQLALCHEMY_DATABASE_URI"] = uri
    options: dict[str, Any] = app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {})
    if uri.startswith("sqlite"):
        options.setdefault("connect_args", {}).setdefault(
            "timeout", app.config["SQLITE_BUSY_TIMEOUT_MS"] / 1000
        )
    else:  # the per-process connection budget (docs/operations.md)
        options.setdefault("pool_size", app.config["DB_POOL_SIZE"])
        options.setdefault("max_overflow", app.config["DB_MAX_OVERFLOW"])
    db.init_app(app)
    with app.app_context():
        engine = db.engine
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine, app.config["SQLITE_BUSY_TIMEOUT_MS"])
        return
    if engine.dialect.name == "postgresql":
        event.listen(engine, "do_connect", _connection_options)
    if not options.get("pool_pre_ping"):
        _ping_idle_connections(engine, POOL_PING_IDLE_SECONDS)


# libpq's parameters for every new PostgreSQL connection (docs/operations.md, "When
# the database hangs"): 5 s for the server to answer a new connection (the health
# check's deadline too); a connection idle 30 s is probed every 10 s and dropped
# after 3 unanswered probes; data the server's host has not acknowledged for 60 s
# drops it as well. All are the client's own: PgBouncer sees none of them.
CONNECTION_OPTIONS: dict[str, int] = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 60_000,
}


def _connection_options(_dialect: object, _record: object, _args: object, parameters: dict[str, Any]) -> None:
    for name, value in CONNECTION_OPTIONS.items():
        parameters.setdefault(name, value)


# Under load a connection goes back to the pool and out again within milliseconds;
# a restart takes longer than this to come and go unnoticed.
POOL_PING_IDLE_SECONDS = 1.0


def _ping_idle_connections(engine: Engine, idle_seconds: float) -> None:
    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.pop("idle_since", None)
        if idle_since is None or time.monotonic() - idle_since < idle_seconds:
            return  # new, or just used
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            # The pool discards this connection and checks out another (or a new one).
            raise exc.DisconnectionError(str(error)) from error


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


# PostgreSQL (Appendix A of its manual): SQLSTATE classes of the database failing to
# do the work now, whatever the work: connection exceptions, insufficient resources
# (a full disk), operator intervention (a shutdown), transaction rollback (deadlock,
# serialization failure), system errors (an I/O error); a lock that was not
# available; and a database that takes no writes now (a standby the connection
# reached after a failover). Class 54, program limit exceeded, is also an
# OperationalError to psycopg2, but the data caused it (an index row too large): the
# same statement would fail again. So would any other class: a schema behind the
# code (42), a constraint (23), a bug.
_TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "53", "57", "40", "58"})
_TRANSIENT_SQLSTATES = frozenset({"55P03", "25006"})
# SQLite: busy or locked past the busy timeout, I/O, a full disk, an unopenable or
# read-only file. Its other OperationalErrors are the work's: "no such table", "no
# such column" (SQLITE_ERROR), a schema behind the code as on PostgreSQL.
_TRANSIENT_SQLITE_ERRORS = (
    "SQLITE_BUSY",
    "SQLITE_LOCKED",
    "SQLITE_IOERR",
    "SQLITE_FULL",
    "SQLITE_CANTOPEN",
    "SQLITE_NOMEM",
    "SQLITE_PROTOCOL",
    "SQLITE_READONLY",
)


def is_program_limit(error: BaseException) -> bool:
    """Did PostgreSQL refuse the statement for the size of what it was to store
    (SQLSTATE class 54, program limit exceeded: a text too long for a tsvector, an
    index row too large)? The input caused it and the same input fails again, so it
    is refused as input (API 422, a form's error), never "retry" (docs/web.md)."""
    if not isinstance(error, exc.DBAPIError):
        return False
    return str(getattr(error.orig, "pgcode", None) or "").startswith("54")


def is_transient(error: BaseException) -> bool:
    """Did the database fail to do the work now (unreachable, shutting down, out of
    resources, a deadlock, taking no writes), so that the same work may succeed later?
    Any other error is about the work itself (a schema behind the code, a constraint,
    a bug), and repeating it would fail the same way. The one rule for "retry later":
    the API's 503, the portal's "try again", the gateway's 451 (docs/web.md,
    "Database errors").

    The mail gateway answers the first kind with "try again later" (SMTP 451) and
    must never answer the second kind so: the sender would retry the same bytes
    forever (docs/mail-gateway.md).
    """
    if isinstance(error, exc.TimeoutError):  # no pooled connection came free in `pool_timeout`
        return True
    if not isinstance(error, exc.DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    sqlstate = getattr(error.orig, "pgcode", None)
    if sqlstate:  # whatever psycopg2's class for it (a read-only database is an InternalError)
        return sqlstate[:2] in _TRANSIENT_SQLSTATE_CLASSES or sqlstate in _TRANSIENT_SQLSTATES
    if not isinstance(error, (exc.OperationalError, exc.InterfaceError)):
        return False
    sqlite_error = getattr(error.orig, "sqlite_errorname", None)
    if sqlite_error:
        return sqlite_error.startswith(_TRANSIENT_SQLITE_ERRORS)
    # psycopg2 gives no SQLSTATE when there is no server to give one: refused,
    # closed, timed out.
    return True


Model = TypeVar("Model")


def adopt(session: Session, obj: Model) -> Model:
    """Make an object whose row was just written with Core (primary key included)
    persistent in the session, without the SELECT a load would cost.

    Its attributes are taken as the row's values. An object already holding its
    identity can only be left over from a rolled-back write (SQLite reuses row
    ids), so it is dropped rather than mistaken for this row.
    """
    key = inspect(type(obj)).identity_key_from_instance(obj)
    stale = session.identity_map.get(key)
    if stale is not None:
        session.expunge(stale)
    make_transient_to_detached(obj)
    session.add(obj)
    return obj


@contextmanager
def transaction() -> Iterator[Session]:
    """Commit what the block did, or roll all of it back if it raised."""
    try:
        yield db.session
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise


def commit_or_found(session: Session, kept: Select[Any]) -> None:
    """Commit a creation, and when the commit's answer is lost, look for what it
    created: `kept` is a SELECT that finds its row (a ticket by id and number).
    The connection dropping as the COMMIT goes leaves it unknown whether the
    database kept the work; "retry" then made a client that retried a kept ticket
    open a second one (docs/web.md, "A lost answer"). The row is looked for on a new
    connection: found, the commit happened and the caller answers as it would have;
    not found, or the database still unreachable, the first error is raised
    (503, the retry takes the same number)."""
    try:
        session.commit()
    except exc.DBAPIError as error:
        session.rollback()
        if not is_transient(error):
            raise
        try:
            found = session.execute(kept).first() is not None
        except exc.DBAPIError:
            session.rollback()
            raise error from None
        session.rollback()
        if not found:
            raise


def answer_lost(error: BaseException) -> bool:
    """Did the database fail without an answer (the connection dropped or timed out),
    rather than refuse the work with a reason (an SQLSTATE, SQLite's error name)?
    Raised by a COMMIT, such a failure leaves it unknown whether the work was kept
    (docs/web.md, "A lost answer"); a refusal with a reason kept nothing."""
    if isinstance(error, exc.TimeoutError):  # no pooled connection came free in `pool_timeout`
        return True
    if not isinstance(error, exc.DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    if getattr(error.orig, "pgcode", None) or getattr(error.orig, "sqlite_errorname", None):
        return False
    return isinstance(error, (exc.OperationalError, exc.InterfaceError))


class OutcomeUnknown(Exception):
    """The answer to a COMMIT was lost (`answer_lost`): the database may or may not
    have kept the work, and nobody here can tell. Answered as such, never as
    "nothing was kept" (docs/web.md, "A lost answer")."""


def commit_or_unknown(session: Session) -> None:
    """Commit a change that has no row to look for afterwards (compare
    `commit_or_found`), telling a lost answer apart: its own statements are flushed
    first, so their failures still mean nothing was kept and raise as they are; the
    COMMIT itself failing without an answer raises `OutcomeUnknown`. A database
    error answered "retry" there made a client take a kept change for a lost one."""
    session.flush()
    try:
        session.commit()
    except exc.DBAPIError as error:
        session.rollback()
        if answer_lost(error):
            raise OutcomeUnknown() from error
        raise


def include_in_autogenerate(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Which schema objects Alembic compares with the models.

    The search indexes (trigrams, migrations 0006 and 0015; the description's words,
    0023) and the column holding those words (0039) exist only on PostgreSQL and only
    in migrations (the models cannot describe what one dialect lacks), so they are
    left out.
    """
    if type_ == "column" and reflected and name == "description_words":
        return getattr(getattr(obj, "table", None), "name", None) != "tickets"
    return not (type_ == "index" and reflected and (name or "").endswith(("_trgm", "_words")))


def insert_ignoring(session: Session, model: Any, unique: list[str]) -> Any:
    """`INSERT … ON CONFLICT (unique) DO NOTHING` in the session's dialect: the way
    to create a row another transaction may be creating at the same moment (the
    caller reads the winner's row back)."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    return insert(model).on_conflict_do_nothing(index_elements=unique)


def advisory_key(text: str) -> int:
    """`text` as the second key of a two-key advisory lock, a signed 32-bit number
    every process computes alike (Python's `hash` differs per process). Two texts
    sharing a key only wait for each other now and then (a customer's mailbox,
    `customer_limits`; a WhatsApp number, `contacts.for_customer`)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "big", signed=True)
