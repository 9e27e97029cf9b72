"""Engine setup that makes SQLite safe for several processes.

SQLite: WAL so readers never block the writer, a busy timeout so writers queue
instead of failing, foreign keys on, and every transaction opened with
`BEGIN IMMEDIATE`. The last matters for correctness: a deferred transaction that
reads and then writes can fail at once with SQLITE_BUSY (no waiting) when another
process committed in between; taking the write lock up front makes all writers
simply queue. Readers of an embedded install pay with brief serialization, which
is the trade an embedded database makes anyway.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

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
    else:
        # The gateway outlives database restarts: test pooled connections first.
        options.setdefault("pool_pre_ping", True)
    db.init_app(app)
    with app.app_context():
        engine = db.engine
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine, app.config["SQLITE_BUSY_TIMEOUT_MS"])


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


@contextmanager
def transaction() -> Iterator[Session]:
    """Commit what the block did, or roll all of it back if it raised."""
    try:
        yield db.session
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise


def include_in_autogenerate(obj: Any, name: str | None, type_: str, reflected: bool,
                            compare_to: Any) -> bool:
    """Which schema objects Alembic compares with the models.

    The trigram search indexes exist only on PostgreSQL and only in migration 0006
    (the models cannot describe an index one dialect lacks), so they are left out.
    """
    return not (type_ == "index" and reflected and (name or "").endswith("_trgm"))
