"""chat conversations: the ticket each chat integration's conversation opened

A widget posting a conversation again (a retry after a lost answer or a 503) got
a second ticket and a second acknowledgment; one row per integration and
conversation id, claimed before the ticket's number is taken, makes the repeat
find the first one's ticket (docs/integrations.md, "Chat"). Tickets opened
before this revision have no row: a repeat of one of those opens a new ticket,
as every repeat did.

Revision ID: 0036
Revises: 0035
"""

import sqlalchemy as sa
from alembic import op

revision = "0036"
down_revision = "0035"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "chat_conversations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("integration_id", sa.Integer(), nullable=False),
        sa.Column("conversation_id", sa.String(length=200), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["integration_id"],
            ["integrations.id"],
            name=op.f("fk_chat_conversations_integration_id_integrations"),
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["tickets.id"], name=op.f("fk_chat_conversations_ticket_id_tickets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chat_conversations")),
        sa.UniqueConstraint(
            "integration_id", "conversation_id", name=op.f("uq_chat_conversations_integration_id")
        ),
    )


def downgrade():
    op.drop_table("chat_conversations")
