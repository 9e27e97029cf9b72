"""contacts: the mailbox an address reaches (detail dropped, lower-case, domain in IDNA ASCII), for the per-customer limits

The per-customer limits counted the tickets of one contact, and a contact is one
exact address, so a sender writing from `robot+t1@`, `robot+t2@`… opened tickets
without ever reaching a limit (docs/integrations.md, "Per-customer limits"). They
now count every contact of the requester's mailbox, found by this indexed column.
The key is `helpdesk.addresses.mailbox`, the one the app writes with each new
contact and counts by; it needs IDNA, which SQL does not have, so existing rows are
filled in here, in batches, by Python (15–20 s for 200,000 contacts on the 2-core
development machine, docs/benchmarks.md).

Revision ID: 0025
Revises: 0024
"""

import sqlalchemy as sa
from alembic import op

from helpdesk import addresses

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None

BATCH = 5000


def upgrade():
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("mailbox", sa.String(length=320), nullable=True))
        batch_op.create_index(batch_op.f("ix_contacts_mailbox"), ["mailbox"], unique=False)
    connection = op.get_bind()
    contacts = sa.table("contacts", sa.column("id", sa.Integer), sa.column("email"), sa.column("mailbox"))
    fill = (
        sa.update(contacts)
        .where(contacts.c.id == sa.bindparam("contact"))
        .values(mailbox=sa.bindparam("key"))
    )
    after = 0
    while True:
        rows = connection.execute(
            sa.select(contacts.c.id, contacts.c.email)
            .where(contacts.c.id > after)
            .order_by(contacts.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            break
        connection.execute(fill, [{"contact": id_, "key": addresses.mailbox(email)} for id_, email in rows])
        after = rows[-1][0]


def downgrade():
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_contacts_mailbox"))
        batch_op.drop_column("mailbox")
