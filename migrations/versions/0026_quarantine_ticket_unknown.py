"""quarantine items: whether the ticket a held mail names is unknown (it could not be read whole or matched)

Under AGENT_VISIBILITY team or own a held mail is reviewed by those who may see
the ticket it names, and one naming none by every agent. A mail that could not be
read whole (unparseable, over a cap) or matched (its matching failed, parked) may
name a hidden ticket in the part nobody read: such an item is now reviewed by
admins only (docs/isp-operations.md, "Visibility"). Every item held before that
names no ticket is marked: none recorded the ticket its mail names, not even a
stranger's reply held for its sender ("… may not write into TKT-000001"), so none
can be shown by the ticket's visibility.

Revision ID: 0026
Revises: 0025
"""

import sqlalchemy as sa
from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("quarantine_items", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("ticket_unknown", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    items = sa.table(
        "quarantine_items", sa.column("ticket_id", sa.Integer), sa.column("ticket_unknown", sa.Boolean)
    )
    op.get_bind().execute(sa.update(items).where(items.c.ticket_id.is_(None)).values(ticket_unknown=True))
    with op.batch_alter_table("quarantine_items", schema=None) as batch_op:
        batch_op.alter_column("ticket_unknown", existing_type=sa.Boolean(), server_default=None)


def downgrade():
    with op.batch_alter_table("quarantine_items", schema=None) as batch_op:
        batch_op.drop_column("ticket_unknown")
