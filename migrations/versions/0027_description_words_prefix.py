"""tickets: the description's words index reads its first 50,000 characters, on PostgreSQL

A tsvector holds at most 1 MB of lexemes and positions, and migration 0023's index
took the whole description: a pasted log of 140,000 different words (700,000
characters) made PostgreSQL refuse the statement that opens the ticket ("string is
too long for tsvector"), so such a mail was held as failed processing, and the
portal, the API and the chat could never open it. The index is now on
`left(description, 50000)`, and the queue search asks that very expression
(`helpdesk.services.queue.SEARCHED_DESCRIPTION_CHARS`, docs/web.md, "Search").

Why 50,000 fits whatever the text: a lexeme costs its bytes, an alignment byte, a
2-byte count and 2 bytes a position. Each character is read into at most two
tokens (a hyphenated word and its part, a URL and its host or path) of at most
4 bytes a character once lowercased, and each token adds at most 5 bytes more:
at most 8 + 2 × 5 = 18 bytes a character, 900,000 for 50,000 characters, under
the limit of 1,048,575. The worst text measured (hyphenated words of
single 4-byte letters, all different) makes 8.7 bytes a character, whole vector
included.

Like 0023's it is PostgreSQL-only and not in the models; building it reads every
description once, with the tickets table locked for writes meanwhile. A downgrade
fails while a ticket's description is too long for 0023's index.

Revision ID: 0027
Revises: 0026
"""

from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX ix_tickets_description_words")
        op.execute(
            "CREATE INDEX ix_tickets_description_words ON tickets "
            "USING gin (to_tsvector('simple'::regconfig, left(description, 50000)))"
        )


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX ix_tickets_description_words")
        op.execute(
            "CREATE INDEX ix_tickets_description_words ON tickets "
            "USING gin (to_tsvector('simple'::regconfig, description))"
        )
