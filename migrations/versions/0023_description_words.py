"""tickets: search the description by its words (full-text GIN) instead of trigrams, on PostgreSQL

A substring search over mail-sized descriptions must read every matching
description again to confirm it (a trigram index only narrows the rows): 1.8–2.3 s
a search page at 100,000 tickets. A full-text index answers "each of the term's words
begins a word of the description" from the index alone, and costs less per new
ticket than the trigram index it replaces (docs/benchmarks.md, the portal section;
docs/web.md, "Search"). The 'simple' configuration lowercases and splits, and
neither stems nor drops stop words, so it is the same for every language. Like the
trigram indexes it is PostgreSQL-only and not in the models
(`helpdesk.database.include_in_autogenerate`). Building it reads every description
once, with the tickets table locked for writes meanwhile.

Revision ID: 0023
Revises: 0022
"""

from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX ix_tickets_description_trgm")
        op.execute(
            "CREATE INDEX ix_tickets_description_words ON tickets "
            "USING gin (to_tsvector('simple'::regconfig, description))"
        )


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX ix_tickets_description_words")
        op.execute("CREATE INDEX ix_tickets_description_trgm ON tickets USING gin (description gin_trgm_ops)")
