"""tickets: the description's words are stored in a column, indexed, on PostgreSQL

The queue search asked `to_tsvector('simple', left(description, 50000)) @@ query`,
served by 0027's expression index. When the planner preferred to read the table (a
term most tickets hold, or another filter such as the status it finds cheaper),
it computed that expression for every row it read, on every search: PostgreSQL
prices parsing a text as a fraction of what it costs, so 3,000 tickets of 2.8 KB
took about 1 s a search, 1,000 of 44 KB several (docs/benchmarks.md). The words are
now a stored generated column, `description_words`, computed once when the
description is written, and the GIN index is on the column; whatever the plan, a
search only reads them (docs/web.md, "Search"). Other updates of a ticket leave
the column as it is (PostgreSQL recomputes it only when the description changes).
The words are stored without their positions (`strip`): the search asks only
whether each word of a term begins one of them, never for a phrase or a distance,
and the positions were 40-55 % of the column's room.

Like 0023's and 0027's index it is PostgreSQL-only and not in the models (Alembic
leaves it out of the comparison: `helpdesk.database.include_in_autogenerate`).

What it locks: adding a stored column rewrites the tickets table, parsing every
description once and rebuilding all its indexes, under an ACCESS EXCLUSIVE lock
(no reads, no writes: the portal's queue and the mail that opens or answers a
ticket wait) until the migration commits. Measured with fsync off on the
development machine (2 cores, shared with other work): 20,000 tickets of
mail-sized descriptions (median 2.8 KB) took 11-20 s, about 1 ms a ticket (parsing
them; the same with positions or without), and 1,000 of 44 KB 6 s; 100,000 tickets
would wait one to two minutes, so run it when mail is quiet. The table grows by the
words' room (20,000 tickets: 79 MB to 110 MB). The downgrade drops the column (no
rewrite) and builds 0027's expression index again, which parses every description
once while the drop's lock is held, so reads of the table wait too (the staff
queue): 10-24 s at the same 20,000, 29 s at 40,000 of 4.5 KB.

Revision ID: 0039
Revises: 0038
"""

from alembic import op
from sqlalchemy import text

revision = "0039"
down_revision = "0038"
branch_labels = None
depends_on = None

# helpdesk.services.queue.SEARCHED_DESCRIPTION_CHARS, written here as 0027 wrote it.
WORDS = "to_tsvector('simple'::regconfig, left(description, 50000))"
# The stored words without their positions: the search asks only whether each word
# of the term begins one of them, never where or how near (docs/web.md, "Search").
STORED = f"strip({WORDS})"


def _has_lz4() -> bool:
    """As migration 0022: lz4 where PostgreSQL has it (less CPU a new ticket)."""
    return bool(
        op.get_bind()
        .execute(
            text(
                "SELECT current_setting('server_version_num')::int >= 140000 AND EXISTS ("
                " SELECT 1 FROM pg_settings"
                " WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals))"
            )
        )
        .scalar()
    )


def upgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    # Dropped first: the rewrite below rebuilds every index, this one by parsing again.
    op.execute("DROP INDEX ix_tickets_description_words")
    compression = " COMPRESSION lz4" if _has_lz4() else ""
    op.execute(
        f"ALTER TABLE tickets ADD COLUMN description_words tsvector{compression} "
        f"GENERATED ALWAYS AS ({STORED}) STORED"
    )
    op.execute("CREATE INDEX ix_tickets_description_words ON tickets USING gin (description_words)")


def downgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX ix_tickets_description_words")
    op.execute("ALTER TABLE tickets DROP COLUMN description_words")
    op.execute(f"CREATE INDEX ix_tickets_description_words ON tickets USING gin ({WORDS})")
