"""tickets: whatsapp and phone channels, who opened each ticket (source), and the
chat or assistant conversation it came from

`source` is the customer, an agent for them, an assistant's language model (`ai`)
or the system. Tickets from before are carried over by their channel: portal and
API tickets were opened by agents, `system` ones by the system, the rest (mail,
chat) by customers.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

OLD_CHANNELS = "'web', 'api', 'email', 'chat', 'system'"
NEW_CHANNELS = "'web', 'api', 'email', 'chat', 'whatsapp', 'phone', 'system'"
SOURCES = "'customer', 'agent', 'ai', 'system'"


def upgrade():
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("source", sa.String(length=10), nullable=False, server_default="customer")
        )
        batch_op.add_column(sa.Column("conversation_id", sa.String(length=200), nullable=True))
        batch_op.drop_constraint(batch_op.f("ck_tickets_channel"), type_="check")
        batch_op.create_check_constraint(batch_op.f("ck_tickets_channel"), f"channel IN ({NEW_CHANNELS})")
        batch_op.create_check_constraint(batch_op.f("ck_tickets_source"), f"source IN ({SOURCES})")
        batch_op.create_index(batch_op.f("ix_tickets_source"), ["source"], unique=False)
    op.execute(
        "UPDATE tickets SET source = CASE WHEN channel IN ('web', 'api') THEN 'agent' "
        "WHEN channel = 'system' THEN 'system' ELSE 'customer' END"
    )
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.alter_column("source", server_default=None)


def downgrade():
    # The old schema knows neither channel: such tickets are kept, as API tickets.
    op.execute("UPDATE tickets SET channel = 'api' WHERE channel IN ('whatsapp', 'phone')")
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tickets_source"))
        batch_op.drop_constraint(batch_op.f("ck_tickets_source"), type_="check")
        batch_op.drop_constraint(batch_op.f("ck_tickets_channel"), type_="check")
        batch_op.create_check_constraint(batch_op.f("ck_tickets_channel"), f"channel IN ({OLD_CHANNELS})")
        batch_op.drop_column("conversation_id")
        batch_op.drop_column("source")
