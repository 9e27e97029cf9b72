"""threading indexes: a ticket's mails by time received, its rows by time queued, its messages by mail

The sender writes In-Reply-To and References from the customer's newest mails on
the ticket and the newest rows we sent them (`compose`). With an index on
`ticket_id` alone, each such read fetched every mail, message and outbox row of
the ticket and sorted them: 20,000 mails on one ticket made a reply's threading
read 70–120 ms of PostgreSQL's time. Each index on `ticket_id` alone becomes one
on `ticket_id` and the column read with it (`received_at`, `created_at`,
`inbound_mail_id`), which answers what the old one answered too: a new mail
writes as many index entries as before (docs/benchmarks.md, "Threading reads on
a long ticket"). Built in the migration's transaction: writes to the three tables
wait for it (docs/operations.md).

Revision ID: 0045
Revises: 0044
"""

from alembic import op

revision = "0045"
down_revision = "0044"
branch_labels = None
depends_on = None

# (table, the index on ticket_id alone, the index that takes its place, its columns)
_INDEXES = (
    ("inbound_mails", "ix_inbound_mails_ticket_id", "ix_inbound_mails_ticket_id_received_at", "received_at"),
    ("messages", "ix_messages_ticket_id", "ix_messages_ticket_id_inbound_mail_id", "inbound_mail_id"),
    ("outbox", "ix_outbox_ticket_id", "ix_outbox_ticket_id_created_at", "created_at"),
)


def upgrade():
    for table, alone, paired, column in _INDEXES:
        op.create_index(paired, table, ["ticket_id", column])
        op.drop_index(alone, table_name=table)


def downgrade():
    for table, alone, paired, _ in _INDEXES:
        op.create_index(alone, table, ["ticket_id"])
        op.drop_index(paired, table_name=table)
