"""inbound mails: an index on message_id, for the replies that look received mail up

Matching a reply (In-Reply-To, References) and holding a follow-up of held mail
look received mail up by Message-ID; with no index each such mail read the whole
table, slower the longer the helpdesk ran. A hash index on PostgreSQL (equality is
all the lookup asks, and a b-tree entry may not pass about 2,700 bytes, which a
1,000-character non-ASCII Message-ID can), a b-tree on SQLite. Built in the
migration's transaction: writes to inbound_mails wait for it (seconds per million
rows; docs/operations.md).

Revision ID: 0029
Revises: 0028
"""

from alembic import op

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index("ix_inbound_mails_message_id", "inbound_mails", ["message_id"], postgresql_using="hash")


def downgrade():
    op.drop_index("ix_inbound_mails_message_id", table_name="inbound_mails")
