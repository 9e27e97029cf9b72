"""imap mailboxes: a lease, so one gateway at a time polls each mailbox

Two gateways configured with the same IMAP_URL (two hosts) used to poll and move
the same messages side by side. The poller now holds a lease on the mailbox's row
and renews it while it works; another gateway takes over once it runs out
(docs/operations.md, "Running on several machines").

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("imap_mailboxes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("owner", sa.String(length=200), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("lease_until", sa.DateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table("imap_mailboxes", schema=None) as batch_op:
        batch_op.drop_column("lease_until")
        batch_op.drop_column("owner")
