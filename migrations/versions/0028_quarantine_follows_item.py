"""quarantine items: the held mail a held follow-up answers

A follow-up held beside the mail it answers names no ticket (that mail had none
yet), so every agent reviewed it, even once the mail it answers was approved into
a ticket hidden from them. It now records, when held, the item of the held mail it
answers (the root of the thread), and is reviewed like that item
(docs/isp-operations.md, "Visibility"). Items held before stay NULL: they are
reviewed as before.

Revision ID: 0028
Revises: 0027
"""

import sqlalchemy as sa
from alembic import op

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("quarantine_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("follows_item_id", sa.Integer(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_quarantine_items_follows_item_id"), ["follows_item_id"], unique=False
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_quarantine_items_follows_item_id_quarantine_items"),
            "quarantine_items",
            ["follows_item_id"],
            ["id"],
        )


def downgrade():
    with op.batch_alter_table("quarantine_items", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_quarantine_items_follows_item_id_quarantine_items"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_quarantine_items_follows_item_id"))
        batch_op.drop_column("follows_item_id")
