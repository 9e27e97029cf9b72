"""quarantine items: whether the ticket a held mail names is unknown (it could not be read whole or matched)

Under AGENT_VISIBILITY team or own a held mail is reviewed by those who may see
the ticket it names, and one naming none by every agent. A mail that could not be
read whole (unparseable, over a cap) or matched (its matching failed, parked) may
name a hidden ticket in the part nobody read: such an item is now reviewed by
admins only (docs/isp-operations.md, "Visibility"). Items held before are marked
by the fixed words their reason begins with, when they name no ticket: none of
them was matched then but those held for their sender or a customer limit.

Revision ID: 0026
Revises: 0025
"""

import sqlalchemy as sa
from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None

# The reasons `helpdesk.inbound.ingest` gave mail it held before matching it.
_UNMATCHED_REASONS = (
    "unparseable mail:%",
    "over a limit:%",
    "no sender address:%",
    "processing failed%",
    "could not be fetched%",
)


def upgrade():
    with op.batch_alter_table("quarantine_items", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("ticket_unknown", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    items = sa.table(
        "quarantine_items",
        sa.column("ticket_id", sa.Integer),
        sa.column("reason", sa.Text),
        sa.column("ticket_unknown", sa.Boolean),
    )
    op.get_bind().execute(
        sa.update(items)
        .where(
            items.c.ticket_id.is_(None), sa.or_(*(items.c.reason.like(words) for words in _UNMATCHED_REASONS))
        )
        .values(ticket_unknown=True)
    )
    with op.batch_alter_table("quarantine_items", schema=None) as batch_op:
        batch_op.alter_column("ticket_unknown", existing_type=sa.Boolean(), server_default=None)


def downgrade():
    with op.batch_alter_table("quarantine_items", schema=None) as batch_op:
        batch_op.drop_column("ticket_unknown")
