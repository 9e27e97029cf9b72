"""merge, links, tags: a merged ticket points at its survivor; related tickets; tags

History rows may record a merge, a link and a change of tags.

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

OLD_FIELDS = "'status', 'assignee', 'priority', 'category', 'sla', 'ticket_type', 'team', 'escalation'"
NEW_FIELDS = (
    "'status', 'assignee', 'priority', 'category', 'sla', 'ticket_type', 'team', 'escalation', "
    "'merge', 'link', 'tags'"
)


def _history_fields(values):
    with op.batch_alter_table("ticket_history", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_ticket_history_field"), type_="check")
        batch_op.create_check_constraint(batch_op.f("ck_ticket_history_field"), f"field IN ({values})")


def upgrade():
    op.create_table(
        "tags",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tags")),
        sa.UniqueConstraint("name", name=op.f("uq_tags_name")),
    )
    op.create_table(
        "ticket_tags",
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("tag_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["tag_id"], ["tags.id"], name=op.f("fk_ticket_tags_tag_id_tags")),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], name=op.f("fk_ticket_tags_ticket_id_tickets")),
        sa.PrimaryKeyConstraint("ticket_id", "tag_id", name=op.f("pk_ticket_tags")),
    )
    with op.batch_alter_table("ticket_tags", schema=None) as batch_op:
        batch_op.create_index("ix_ticket_tags_tag_id_ticket_id", ["tag_id", "ticket_id"], unique=False)
    op.create_table(
        "ticket_links",
        sa.Column("low_id", sa.Integer(), nullable=False),
        sa.Column("high_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint("low_id < high_id", name=op.f("ck_ticket_links_ordered")),
        sa.ForeignKeyConstraint(["high_id"], ["tickets.id"], name=op.f("fk_ticket_links_high_id_tickets")),
        sa.ForeignKeyConstraint(["low_id"], ["tickets.id"], name=op.f("fk_ticket_links_low_id_tickets")),
        sa.PrimaryKeyConstraint("low_id", "high_id", name=op.f("pk_ticket_links")),
    )
    with op.batch_alter_table("ticket_links", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ticket_links_high_id"), ["high_id"], unique=False)
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("merged_into_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_tickets_merged_into_id"), ["merged_into_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_tickets_merged_into_id_tickets"), "tickets", ["merged_into_id"], ["id"]
        )
    _history_fields(NEW_FIELDS)


def downgrade():
    op.execute("DELETE FROM ticket_history WHERE field IN ('merge', 'link', 'tags')")
    _history_fields(OLD_FIELDS)
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_tickets_merged_into_id_tickets"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_tickets_merged_into_id"))
        batch_op.drop_column("merged_into_id")
    op.drop_table("ticket_links")
    op.drop_table("ticket_tags")
    op.drop_table("tags")
