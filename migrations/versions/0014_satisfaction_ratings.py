"""satisfaction_ratings: the customer's 1-5 rating of a resolved ticket

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "satisfaction_ratings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=True),
        sa.Column("rating", sa.Integer(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("via", sa.String(length=10), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint("rating BETWEEN 1 AND 5", name=op.f("ck_satisfaction_ratings_rating")),
        sa.CheckConstraint("via IN ('link', 'assistant')", name=op.f("ck_satisfaction_ratings_via")),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["staff_users.id"], name=op.f("fk_satisfaction_ratings_agent_id_staff_users")
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["tickets.id"], name=op.f("fk_satisfaction_ratings_ticket_id_tickets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_satisfaction_ratings")),
        sa.UniqueConstraint("ticket_id", name=op.f("uq_satisfaction_ratings_ticket_id")),
    )
    with op.batch_alter_table("satisfaction_ratings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_satisfaction_ratings_agent_id"), ["agent_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_satisfaction_ratings_created_at"), ["created_at"], unique=False)


def downgrade():
    op.drop_table("satisfaction_ratings")
