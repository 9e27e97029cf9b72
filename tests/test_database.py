"""Pooled PostgreSQL connections: pinged when they sat idle, not when just used
(`helpdesk.database`), against a real server whose backends are killed under them."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
from flask import Flask
from sqlalchemy import create_engine, event, exc, text
from sqlalchemy.exc import DBAPIError

from helpdesk.database import CONNECTION_OPTIONS, POOL_PING_IDLE_SECONDS, is_transient
from helpdesk.extensions import db
from tests.support.app import make_app
from tests.support.pgserver import PostgresServer
from tests.support.waiting import wait_until


@pytest.fixture
def pooled(pg_server: PostgresServer) -> Iterator[tuple[Flask, str]]:
    url = pg_server.create_database("pool_ping")
    app = make_app(url)
    with app.app_context():
        yield app, url
        db.engine.dispose()


def _backend_pid() -> int:
    with db.engine.connect() as connection:
        return int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _terminate(url: str, pid: int) -> None:
    """Kill the server side of a pooled connection, as a database restart would."""
    admin = psycopg2.connect(url.replace("postgresql+psycopg2://", "postgresql://"))
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", (pid,))

            def gone() -> bool:
                cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,))
                return cursor.fetchone()[0] == 0

            wait_until(gone, timeout=10, interval=0.02, what=f"backend {pid} going away")
    finally:
        admin.close()


def test_an_idle_connection_whose_server_went_away_is_replaced_before_use(pooled):
    _app, url = pooled
    first = _backend_pid()
    _terminate(url, first)
    time.sleep(POOL_PING_IDLE_SECONDS + 0.2)
    second = _backend_pid()  # no error: the ping found it dead and the pool reconnected
    assert second != first


def test_a_connection_reused_at_once_is_not_pinged(pooled):
    """The trade for not pinging under load: if the server vanished in that instant,
    one statement fails (the caller's transient-error path), and the whole pool is
    replaced, so the next one succeeds."""
    _app, url = pooled
    first = _backend_pid()
    _terminate(url, first)
    with pytest.raises(DBAPIError) as failure:
        _backend_pid()
    assert failure.value.connection_invalidated
    assert _backend_pid() != first


def test_the_pool_is_sized_by_the_settings(pg_server: PostgresServer) -> None:
    """DB_POOL_SIZE connections kept, DB_MAX_OVERFLOW more under load, and no more:
    the per-process budget that several hosts must fit in PostgreSQL's max_connections."""
    url = pg_server.create_database("pool_size")
    app = make_app(url, DB_POOL_SIZE=2, DB_MAX_OVERFLOW=1, SQLALCHEMY_ENGINE_OPTIONS={"pool_timeout": 0.5})
    with app.app_context():
        engine = db.engine
        held = [engine.connect() for _ in range(3)]
        try:
            with pytest.raises(exc.TimeoutError):
                engine.connect()
        finally:
            for connection in held:
                connection.close()
        assert engine.pool.checkedin() == 2  # the overflow connection was closed, not kept
        engine.dispose()


@pytest.mark.parametrize("own", [None, "connect_timeout=1&keepalives_idle=7"], ids=["defaults", "url-s-own"])
def test_a_new_connection_has_a_deadline_and_keepalives(pg_server: PostgresServer, own: str | None) -> None:
    """libpq waits for a server's answer to a new connection for ever, and for a
    query's answer on a connection whose host vanished as long as TCP retries: the
    gateway's ingest threads stuck in connect with a paused server, and the mails
    they held got no answer. Every connection now has libpq's deadline and TCP
    keepalives (docs/operations.md); a DATABASE_URL's own values win."""
    url = pg_server.create_database("connect_options")
    app = make_app(f"{url}?{own}" if own else url)
    seen: list[dict[str, object]] = []
    with app.app_context():
        engine = db.engine
        event.listen(engine, "do_connect", lambda _d, _r, _a, parameters: seen.append(dict(parameters)))
        with engine.connect() as connection:
            assert connection.execute(text("SELECT 1")).scalar_one() == 1
            raw = connection.connection.dbapi_connection
            options = raw.get_dsn_parameters()  # type: ignore[union-attr]
        engine.dispose()
    expected = {"connect_timeout": "1", "keepalives_idle": "7"} if own else {}
    assert {name: str(seen[0][name]) for name in CONNECTION_OPTIONS} == {
        **{name: str(value) for name, value in CONNECTION_OPTIONS.items()},
        **expected,
    }
    assert options["keepalives"] == "1" and options["tcp_user_timeout"] == str(
        CONNECTION_OPTIONS["tcp_user_timeout"]
    )


class _Said(Exception):
    """What psycopg2 raises, reduced to the SQLSTATE `is_transient` reads."""

    def __init__(self, pgcode: str) -> None:
        super().__init__(f"SQLSTATE {pgcode}")
        self.pgcode = pgcode


def _sqlite_error(tmp_path: Path, statement: str, *, read_only: bool = False) -> DBAPIError:
    path = tmp_path / "classified.db"
    sqlite3.connect(path).close()
    engine = create_engine(f"sqlite:///file:{path}?mode={'ro' if read_only else 'rw'}&uri=true")
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(statement)
    except DBAPIError as error:
        return error
    finally:
        engine.dispose()
    raise AssertionError(f"{statement} did not fail")


def test_which_database_errors_are_retried(tmp_path: Path) -> None:
    """`is_transient`, the one rule for "retry later" (API 503, SMTP 451, a form's "try
    again"): the database unable to do the work now, never the work itself. A schema
    behind the code is an OperationalError on SQLite too, and is no retry; a database
    that takes no writes now (a PostgreSQL standby after a failover, a read-only
    SQLite file) or an I/O error is one: the mail gateway would otherwise refuse mail
    for good that a moment later it could store (docs/operations.md)."""
    assert not is_transient(_sqlite_error(tmp_path, "SELECT * FROM missing"))
    assert is_transient(_sqlite_error(tmp_path, "CREATE TABLE u (a)", read_only=True))
    transient = {"40P01": exc.OperationalError, "25006": exc.InternalError, "58030": exc.OperationalError}
    for code, kind in transient.items():
        assert is_transient(kind("INSERT", {}, _Said(code))), code
    for code, kind in {
        "42703": exc.ProgrammingError,
        "23505": exc.IntegrityError,
        "XX000": exc.InternalError,
    }.items():
        assert not is_transient(kind("INSERT", {}, _Said(code))), code
