"""imap mailboxes: the mail begun and not finished, so a mail that kills the gateway is filed

The poller counted the failed attempts at a message in its process's memory. A
message whose taking kills the gateway process (an out-of-memory kill, a crash in C
code, a hang its supervisor ends with a restart) took that count with it: every new
process, or the gateway on another host taking the lease over, began again from
nothing, died on it again, and the mail after it was never read. The mailbox's row
now keeps the last UID of the batch begun last and the message begun alone last
with how many gateway processes began it; after a few it is filed as failed unread
(docs/mail-gateway.md, "A mail that kills the gateway").

Three columns with constant defaults: PostgreSQL adds them without rewriting the
table, which holds one row per mailbox anyway.

Revision ID: 0047
Revises: 0046
"""

import sqlalchemy as sa
from alembic import op

revision = "0047"
down_revision = "0046"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("imap_mailboxes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("taking_until", sa.BigInteger(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("taking_uid", sa.BigInteger(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("taking_processes", sa.Integer(), nullable=False, server_default="0"))


def downgrade():
    with op.batch_alter_table("imap_mailboxes", schema=None) as batch_op:
        batch_op.drop_column("taking_processes")
        batch_op.drop_column("taking_uid")
        batch_op.drop_column("taking_until")
