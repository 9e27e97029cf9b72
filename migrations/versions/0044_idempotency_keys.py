"""idempotency keys: the ticket or reply an API call under an `Idempotency-Key` made

A client of the API that lost our 201 on the way back (a timeout, a proxy cutting
the connection, its own crash) could only send the call again, and the retry
opened a second ticket or mailed the same reply twice. A call sent with an
`Idempotency-Key` header is recorded here, in the transaction of what it made,
once per caller and key (docs/web.md, "Idempotency keys"); a retry is answered
what the first one made. Rows are kept `IDEMPOTENCY_KEY_LIFETIME` (a day by
default) and deleted by the gateway's lifecycle jobs, hence the index on
`created_at`. A new table: nothing existing is rewritten, and the downgrade drops
it (retries then open tickets again, as before).

Revision ID: 0044
Revises: 0043
"""

import sqlalchemy as sa
from alembic import op

revision = "0044"
down_revision = "0043"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "idempotency_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("caller", sa.String(length=40), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=True),
        sa.Column("message_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["tickets.id"], name=op.f("fk_idempotency_keys_ticket_id_tickets")
        ),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name=op.f("fk_idempotency_keys_message_id_messages")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idempotency_keys")),
        sa.UniqueConstraint("caller", "key", name=op.f("uq_idempotency_keys_caller")),
    )
    op.create_index(op.f("ix_idempotency_keys_created_at"), "idempotency_keys", ["created_at"], unique=False)


def downgrade():
    op.drop_index(op.f("ix_idempotency_keys_created_at"), table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
