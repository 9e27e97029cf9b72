"""outbound mail: outbox rows record the event and are rendered by the sender

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 15:51:52.142303

The rendered fields (subject, body, Message-ID) become nullable because the sender
renders a row when it first claims it; the event columns (reply, status change),
the claim lease and the bounce time are added; `sending` and `bounced` join the
states and `kind` gets its check constraint. Downgrading drops rows that were
never rendered (0002 cannot hold them) and folds the new states into old ones.
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

NEW_STATES = "'pending', 'sending', 'sent', 'failed', 'skipped', 'bounced'"
OLD_STATES = "'pending', 'sent', 'failed', 'skipped'"
KINDS = "'created', 'reply', 'status', 'resolved'"


def upgrade():
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reply_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("old_status", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("new_status", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("status_reason", sa.Text(), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("claimed_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("bounced_at", sa.DateTime(), nullable=True))
        batch_op.alter_column("subject", existing_type=sa.VARCHAR(length=1000), nullable=True)
        batch_op.alter_column("body_text", existing_type=sa.TEXT(), nullable=True)
        batch_op.alter_column("message_id", existing_type=sa.VARCHAR(length=1000), nullable=True)
        batch_op.create_index("ix_outbox_to_address_claimed_at", ["to_address", "claimed_at"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_outbox_reply_id_messages"), "messages", ["reply_id"], ["id"]
        )
        batch_op.drop_constraint(batch_op.f("ck_outbox_state"), type_="check")
        batch_op.create_check_constraint(batch_op.f("ck_outbox_state"), f"state IN ({NEW_STATES})")
        batch_op.create_check_constraint(batch_op.f("ck_outbox_kind"), f"kind IN ({KINDS})")
    # The default only filled existing rows; the models write the value themselves.
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.alter_column("status_reason", existing_type=sa.Text(), server_default=None)


def downgrade():
    op.execute("DELETE FROM outbox WHERE subject IS NULL OR body_text IS NULL OR message_id IS NULL")
    op.execute("UPDATE outbox SET state = 'pending' WHERE state = 'sending'")
    op.execute("UPDATE outbox SET state = 'sent' WHERE state = 'bounced'")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_outbox_kind"), type_="check")
        batch_op.drop_constraint(batch_op.f("ck_outbox_state"), type_="check")
        batch_op.create_check_constraint(batch_op.f("ck_outbox_state"), f"state IN ({OLD_STATES})")
        batch_op.drop_constraint(batch_op.f("fk_outbox_reply_id_messages"), type_="foreignkey")
        batch_op.drop_index("ix_outbox_to_address_claimed_at")
        batch_op.alter_column("message_id", existing_type=sa.VARCHAR(length=1000), nullable=False)
        batch_op.alter_column("body_text", existing_type=sa.TEXT(), nullable=False)
        batch_op.alter_column("subject", existing_type=sa.VARCHAR(length=1000), nullable=False)
        batch_op.drop_column("bounced_at")
        batch_op.drop_column("claimed_at")
        batch_op.drop_column("status_reason")
        batch_op.drop_column("new_status")
        batch_op.drop_column("old_status")
        batch_op.drop_column("reply_id")
