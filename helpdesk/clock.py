"""The one source of "now" for stored times.

Times are stored as naive UTC on both SQLite (which has no time zones) and
PostgreSQL, so comparisons behave the same on both; tests move this clock with
time-machine instead of sleeping.

A time one host stamps and another host judges (a lease, every time on an outbox
row, the last good poll of a mailbox) is stamped and judged by `database_clock`
instead: on PostgreSQL that is the database server's clock, which every host
reads alike, so two hosts whose clocks disagree still agree on what has run out
or is due. Never mix the two on one comparison: a time stamped by a host's clock
and judged by the database's is off by the host's error. Columns holding such a
time default to `DatabaseClock`, so a writer that names none still stamps it.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import DateTime, bindparam, func, literal_column, select, type_coerce
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement


def now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


# One expression, so statements that write it in as SQL can cache its text.
_SERVER_CLOCK: ColumnElement[datetime] = type_coerce(
    func.timezone(literal_column("'UTC'"), func.clock_timestamp()), DateTime()
)


def database_clock(session: Session) -> datetime | ColumnElement[datetime]:
    """Now for a statement to stamp or compare with, by the clock every host shares:
    on PostgreSQL the server's `clock_timestamp()` as naive UTC, as stored times are
    (a host whose clock runs ahead could otherwise take over another's lease, or
    find a healthy gateway stuck); on SQLite, which serves one host, that host's
    `now()`."""
    if session.get_bind().dialect.name == "postgresql":
        return _SERVER_CLOCK
    return now()


class DatabaseClock(FunctionElement[datetime]):
    """`database_clock` as a column default (`default=DatabaseClock()`), for a row
    whose time one host stamps and another judges: a writer that names no time
    still stamps the database's, never the host's. Compiled per database when the
    statement is: PostgreSQL's server clock, SQLite's host `now()` as a parameter
    read at each execution (so a cached statement is never stale, and tests that
    move the host's clock move it). Being SQL, not a value, the ORM writes rows
    that leave it to this default in one multi-row INSERT."""

    type = DateTime()
    name = "database_clock"
    inherit_cache = True


@compiles(DatabaseClock)
def _host_clock(element: DatabaseClock, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(bindparam("database_clock", callable_=now, type_=DateTime()), **kw)


@compiles(DatabaseClock, "postgresql")
def _server_clock(element: DatabaseClock, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(_SERVER_CLOCK, **kw)


def database_now(session: Session) -> datetime:
    """`database_clock` as a value, for a time to be compared in Python or written
    more than once (one round trip on PostgreSQL)."""
    moment = database_clock(session)
    if isinstance(moment, datetime):
        return moment
    return session.execute(select(moment)).scalar_one()


def describe(duration: timedelta) -> str:
    """`timedelta(hours=4)` → "4 hours": durations as mail and history rows show them."""
    seconds = int(duration.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    minutes = max(1, round(seconds / 60))
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def iso(moment: datetime | None) -> str | None:
    """A stored (naive UTC) time as the API and the integrations write it: ISO 8601
    to the second, with `Z`."""
    return None if moment is None else moment.isoformat(timespec="seconds") + "Z"
