"""inbound mails: which header the sender was read from

The gateway takes the sender from From, else Sender, Reply-To, Return-Path or the
SMTP envelope (docs/mail-gateway.md, "Who sent it"); the record says which. Mail
recorded before this revision with a sender had it from From.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("inbound_mails", schema=None) as batch_op:
        batch_op.add_column(sa.Column("from_source", sa.String(length=20), nullable=False, server_default=""))
    op.execute("UPDATE inbound_mails SET from_source = 'from' WHERE from_address <> ''")


def downgrade():
    with op.batch_alter_table("inbound_mails", schema=None) as batch_op:
        batch_op.drop_column("from_source")
