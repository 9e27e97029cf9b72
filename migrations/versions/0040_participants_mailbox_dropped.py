"""participants: the mailbox column dropped; nothing reads it since a WhatsApp number binds to an address only with a proof

Migration 0034 added it so a number naming an address was bound only while no
spelling of that mailbox had been copied on a ticket. Since migration 0038 a
number binds only after a code mailed to the address came back
(docs/integrations.md, "Who the customer is"), so the key was written, with its
index, on every CC participant of every new ticket and read by nothing. The
downgrade adds it back and fills it as 0034 did, for the code before 0038 that
reads it.

Revision ID: 0040
Revises: 0039
"""

import sqlalchemy as sa
from alembic import op

from helpdesk import addresses

revision = "0040"
down_revision = "0039"
branch_labels = None
depends_on = None

BATCH = 5000


def upgrade():
    with op.batch_alter_table("participants", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_participants_mailbox"))
        batch_op.drop_column("mailbox")


def downgrade():
    with op.batch_alter_table("participants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("mailbox", sa.String(length=320), nullable=True))
        batch_op.create_index(batch_op.f("ix_participants_mailbox"), ["mailbox"], unique=False)
    connection = op.get_bind()
    participants = sa.table(
        "participants", sa.column("id", sa.Integer), sa.column("email"), sa.column("mailbox")
    )
    fill = (
        sa.update(participants)
        .where(participants.c.id == sa.bindparam("participant"))
        .values(mailbox=sa.bindparam("key"))
    )
    after = 0
    while rows := connection.execute(
        sa.select(participants.c.id, participants.c.email)
        .where(participants.c.id > after)
        .order_by(participants.c.id)
        .limit(BATCH)
    ).all():
        connection.execute(
            fill, [{"participant": id_, "key": addresses.mailbox(email)} for id_, email in rows]
        )
        after = rows[-1][0]
