"""queue indexes: updated_at, and trigram indexes for search on PostgreSQL

The queue's default order is the latest activity; at 100,000 tickets sorting
without an index costs tens of milliseconds per page. Search is a substring match
(ILIKE '%term%') over subject, description and the requester's address and name;
on PostgreSQL pg_trgm's GIN indexes answer it without reading every ticket. They are
PostgreSQL-only and not in the models (SQLite has no trigram indexes), so
`helpdesk.database.include_in_autogenerate` leaves them out of comparisons.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TRIGRAM = (("tickets", "subject"), ("tickets", "description"), ("contacts", "email"), ("contacts", "name"))


def upgrade():
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tickets_updated_at"), ["updated_at"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        for table, column in TRIGRAM:
            op.execute(f"CREATE INDEX ix_{table}_{column}_trgm ON {table} USING gin ({column} gin_trgm_ops)")


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        for table, column in TRIGRAM:
            op.execute(f"DROP INDEX ix_{table}_{column}_trgm")
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tickets_updated_at"))
