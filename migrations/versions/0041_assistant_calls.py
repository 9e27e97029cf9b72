"""assistant calls: the ticket each assistant integration's `create_ticket_report` call opened

A runtime submitting a batch of tool calls again (a retry after a lost answer or
a 503) opened a second ticket and mailed a second acknowledgment for each
`create_ticket_report` in it; one row per integration and tool call id, claimed
before the ticket's number is taken, makes the repeat answer the first one's
ticket (docs/integrations.md, "The assistant's tools"), when its arguments are
the same (`digest`) and it comes within a day (`created_at`): a runtime that
numbers its calls afresh each turn must not have a new report answered an old
ticket. One row per ticket the
assistant opened, as `chat_conversations` has per chat ticket. Tickets opened
before this revision have no row: a repeat of one of those opens a new ticket, as
every repeat did.

Revision ID: 0041
Revises: 0040
"""

import sqlalchemy as sa
from alembic import op

revision = "0041"
down_revision = "0040"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "assistant_calls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("integration_id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.String(length=200), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["integration_id"],
            ["integrations.id"],
            name=op.f("fk_assistant_calls_integration_id_integrations"),
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["tickets.id"], name=op.f("fk_assistant_calls_ticket_id_tickets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assistant_calls")),
        sa.UniqueConstraint("integration_id", "call_id", name=op.f("uq_assistant_calls_integration_id")),
    )


def downgrade():
    op.drop_table("assistant_calls")
