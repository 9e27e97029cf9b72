"""the columns that hold whole mails and texts are compressed with lz4 on PostgreSQL

PostgreSQL compresses a value over about 2 KB before storing it, with pglz unless
a column says otherwise. Every mail writes several such values (the raw mail, the
description, the message's text and HTML, attachments) inside the statement that
holds the ticket counter's row lock; lz4 compresses them for less CPU (measured in
docs/benchmarks.md, the levers of issue 19). Only new values are compressed the new
way; stored ones stay readable as they are. PostgreSQL before 14, or built without
lz4, keeps pglz, and SQLite has no such setting: nothing happens there.

Revision ID: 0022
Revises: 0021
"""

from alembic import op
from sqlalchemy import text

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

COLUMNS = (
    ("inbound_mails", "raw"),
    ("tickets", "description"),
    ("messages", "body"),
    ("messages", "body_html"),
    ("attachments", "data"),
    ("outbox", "body_text"),
    ("outbox", "body_html"),
)


def _has_lz4() -> bool:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return False
    return bool(
        bind.execute(
            text(
                "SELECT current_setting('server_version_num')::int >= 140000 AND EXISTS ("
                " SELECT 1 FROM pg_settings"
                " WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals))"
            )
        ).scalar()
    )


def upgrade():
    if _has_lz4():
        for table, column in COLUMNS:
            op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION lz4")


def downgrade():
    if _has_lz4():
        for table, column in COLUMNS:
            op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION DEFAULT")
