"""inbound duplicates: how many deliveries per channel were mail received before

SPEC §10 counts mail deduplicated; a second delivery writes no inbound_mails row
(that is what deduplication is), so each channel keeps a count, one row per
channel, raised by the delivery found to be a duplicate (`ingest`). New mail, the
common case, writes nothing here.

Revision ID: 0033
Revises: 0032
"""

import sqlalchemy as sa
from alembic import op

revision = "0033"
down_revision = "0032"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "inbound_duplicates",
        sa.Column("channel", sa.String(length=10), primary_key=True),
        sa.Column("count", sa.BigInteger(), nullable=False),
    )


def downgrade():
    op.drop_table("inbound_duplicates")
