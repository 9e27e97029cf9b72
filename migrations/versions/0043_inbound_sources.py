"""inbound mails and duplicates: the source each came in by, the IMAP mailbox or the SMTP listener

SPEC §10 counts mail per mailbox and listener; a record named its channel only. Each
inbound record now names its source (`inbound_mails.source`: the mailbox's key
`user@host:port/MAILBOX`, or "smtp " and the listener's SMTP_LISTEN), and the
duplicate deliveries are counted per channel and source (docs/web.md, "Mail flow").

Mail recorded before keeps NULL: nobody knows which mailbox an IMAP mail came from,
and the channel written again as a source would be counted as a mailbox or listener
of that name. A nullable column writes no row, so `inbound_mails` (every raw mail)
is not rewritten on either database. The duplicate counts kept so far stay under
the source "" (a key column cannot be NULL); `inbound_duplicates` holds a row per
channel, so it is rebuilt. The downgrade drops the column (SQLite copies the table
for it) and adds each channel's counts up again.

Revision ID: 0043
Revises: 0042
"""

import sqlalchemy as sa
from alembic import op

revision = "0043"
down_revision = "0042"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("inbound_mails", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source", sa.String(length=500), nullable=True))
    connection = op.get_bind()
    old = sa.table("inbound_duplicates", sa.column("channel", sa.String), sa.column("count", sa.BigInteger))
    counts = connection.execute(sa.select(old.c.channel, old.c.count)).all()
    op.drop_table("inbound_duplicates")
    new = op.create_table(
        "inbound_duplicates",
        sa.Column("channel", sa.String(length=10), nullable=False),
        sa.Column("source", sa.String(length=500), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("channel", "source", name=op.f("pk_inbound_duplicates")),
    )
    if counts:
        op.bulk_insert(new, [{"channel": channel, "source": "", "count": count} for channel, count in counts])


def downgrade():
    connection = op.get_bind()
    now = sa.table("inbound_duplicates", sa.column("channel", sa.String), sa.column("count", sa.BigInteger))
    counts = connection.execute(
        sa.select(now.c.channel, sa.func.sum(now.c.count)).group_by(now.c.channel)
    ).all()
    op.drop_table("inbound_duplicates")
    old = op.create_table(
        "inbound_duplicates",
        sa.Column("channel", sa.String(length=10), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("channel", name=op.f("pk_inbound_duplicates")),
    )
    if counts:
        op.bulk_insert(old, [{"channel": channel, "count": int(count)} for channel, count in counts])
    with op.batch_alter_table("inbound_mails", schema=None) as batch_op:
        batch_op.drop_column("source")
