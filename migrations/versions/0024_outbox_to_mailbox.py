"""outbox: the mailbox a row goes to (detail dropped, lower-case, domain in IDNA ASCII), for the per-recipient limit

The limit on automatic mail per recipient counted rows by their exact address, so
an auto-responder answering from `robot+t1@`, `robot+t2@`… got an acknowledgment
every time (docs/outbound-mail.md, "Loop rules"). The sender writes the key
(`helpdesk.addresses.mailbox`) when it claims a row and counts by it; the index
replaces the one on the exact address, which nothing else reads. The key needs
IDNA, which SQL does not have, so existing rows are not filled in: rows claimed
before the upgrade are not counted, for one `OUTBOUND_RATE_WINDOW` at most.

Revision ID: 0024
Revises: 0023
"""

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("to_mailbox", sa.String(length=320), nullable=True))
        batch_op.drop_index("ix_outbox_to_address_claimed_at")
        batch_op.create_index("ix_outbox_to_mailbox_claimed_at", ["to_mailbox", "claimed_at"], unique=False)


def downgrade():
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_to_mailbox_claimed_at")
        batch_op.create_index("ix_outbox_to_address_claimed_at", ["to_address", "claimed_at"], unique=False)
        batch_op.drop_column("to_mailbox")
