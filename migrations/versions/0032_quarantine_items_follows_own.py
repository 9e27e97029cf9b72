"""quarantine items: whether the held mail a follow-up answers is its own sender's

A stranger who got their mail held first under a Message-ID a customer answers
passed its unknown ticket on to the customer's held answer, which only admins then
reviewed (docs/isp-operations.md, "Visibility"). Another sender's held mail now
passes on only the ticket it was approved into; one's own passes on what it names.
Items held before are filled in here by Python, as the app decides it when holding
(`helpdesk.addresses.mailbox` needs IDNA, which SQL does not have): the follow-ups
only, in batches.

Items held since 0028 recorded the thread's root, not the mail they answer, so in
M3 → M1 beside M2 → M1 the walk from M3 never meets M2: M2 approved into a ticket
hidden from an agent left M3 open to them. Which of a root's followers answers
which is not stored, so the pending followers of a root followed more than once go
to admins (`ticket_unknown`: what they answer cannot be told); a root followed once
is a direct parent and stays as it was.

Revision ID: 0032
Revises: 0031
"""

import sqlalchemy as sa
from alembic import op

from helpdesk import addresses

revision = "0032"
down_revision = "0031"
branch_labels = None
depends_on = None

BATCH = 5000


def upgrade():
    with op.batch_alter_table("quarantine_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("follows_own", sa.Boolean(), nullable=False, server_default=sa.false()))
    items = sa.table(
        "quarantine_items",
        sa.column("id", sa.Integer),
        sa.column("inbound_mail_id", sa.Integer),
        sa.column("follows_item_id", sa.Integer),
        sa.column("follows_own", sa.Boolean),
    )
    mails = sa.table("inbound_mails", sa.column("id", sa.Integer), sa.column("from_address", sa.String))
    followed = items.alias("followed")
    followed_mail = mails.alias("followed_mail")
    connection = op.get_bind()
    mark = sa.update(items).where(items.c.id == sa.bindparam("item")).values(follows_own=True)
    after = 0
    while True:
        rows = connection.execute(
            sa.select(items.c.id, mails.c.from_address, followed_mail.c.from_address)
            .join(mails, mails.c.id == items.c.inbound_mail_id)
            .join(followed, followed.c.id == items.c.follows_item_id)
            .join(followed_mail, followed_mail.c.id == followed.c.inbound_mail_id)
            .where(items.c.id > after)
            .order_by(items.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            break
        own = [
            {"item": id_}
            for id_, sender, other in rows
            if sender and other and addresses.mailbox(sender) == addresses.mailbox(other)
        ]
        if own:
            connection.execute(mark, own)
        after = rows[-1][0]
    with op.batch_alter_table("quarantine_items", schema=None) as batch_op:
        batch_op.alter_column("follows_own", existing_type=sa.Boolean(), server_default=None)
    states = sa.table(
        "quarantine_items",
        sa.column("id", sa.Integer),
        sa.column("follows_item_id", sa.Integer),
        sa.column("state", sa.String),
        sa.column("ticket_unknown", sa.Boolean),
    )
    others = states.alias("others")
    shared_root = (
        sa.select(others.c.id)
        .where(others.c.follows_item_id == states.c.follows_item_id, others.c.id != states.c.id)
        .exists()
    )
    connection.execute(
        sa.update(states)
        .where(states.c.state == "pending", states.c.follows_item_id.is_not(None), shared_root)
        .values(ticket_unknown=True)
    )


def downgrade():
    with op.batch_alter_table("quarantine_items", schema=None) as batch_op:
        batch_op.drop_column("follows_own")
