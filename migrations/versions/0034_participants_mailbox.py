"""participants: the mailbox an address reaches (as contacts.mailbox), for judging whether a WhatsApp number may claim an address

A number naming an address is bound to it only while nothing happened to that
mailbox (docs/integrations.md, "Who the customer is"). Copied on a ticket was
judged by the exact address, so a number naming `bob+x@` or
`bobsmith@googlemail.com` was bound although `bob@` or `bob.smith@gmail.com` was
copied on tickets, and the per-customer limits, which count by mailbox, counted
its tickets against that customer's. The key is `helpdesk.addresses.mailbox`;
it needs IDNA, so existing rows are filled here, in batches, by Python (as 0025).

Revision ID: 0034
Revises: 0033
"""

import sqlalchemy as sa
from alembic import op

from helpdesk import addresses

revision = "0034"
down_revision = "0033"
branch_labels = None
depends_on = None

BATCH = 5000


def upgrade():
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
    while True:
        rows = connection.execute(
            sa.select(participants.c.id, participants.c.email)
            .where(participants.c.id > after)
            .order_by(participants.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            break
        connection.execute(
            fill, [{"participant": id_, "key": addresses.mailbox(email)} for id_, email in rows]
        )
        after = rows[-1][0]


def downgrade():
    with op.batch_alter_table("participants", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_participants_mailbox"))
        batch_op.drop_column("mailbox")
