"""What every benchmark does with its private PostgreSQL: migrate a database, run
administrative statements, and describe the server's durability settings (printed
with each table, since they decide what a commit costs)."""

from __future__ import annotations

import os
from typing import Any

import flask_migrate
import psycopg2

from config import TestingConfig
from helpdesk import create_app
from helpdesk.extensions import db


def migrate(url: str) -> None:
    app = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=url)
    with app.app_context():
        flask_migrate.upgrade()
        db.engine.dispose()


def admin(url: str, *statements: str) -> list[tuple[Any, ...] | None]:
    """Run statements in autocommit mode (VACUUM and CHECKPOINT need it); returns
    each statement's first row, or None."""
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        rows: list[tuple[Any, ...] | None] = []
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
                rows.append(cur.fetchone() if cur.description else None)
        return rows
    finally:
        conn.close()


def server_settings(url: str) -> str:
    version, fsync, sync_commit = (
        row[0] if row else "?"
        for row in admin(url, "SHOW server_version", "SHOW fsync", "SHOW synchronous_commit")
    )
    return (
        f"PostgreSQL {version}, fsync={fsync}, synchronous_commit={sync_commit}; {os.cpu_count()} CPU cores"
    )
