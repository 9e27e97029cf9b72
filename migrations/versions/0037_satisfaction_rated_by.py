"""satisfaction_ratings: who rated, when it was a CC participant

A ticket's one rating was shown, comment included, to everyone who may read the
ticket. `participant_email` records the CC participant who rated; empty means the
requester did, which every rating stored before was taken to be, so existing rows
need no backfill (docs/integrations.md, "Satisfaction").

Revision ID: 0037
Revises: 0036
"""

import sqlalchemy as sa
from alembic import op

revision = "0037"
down_revision = "0036"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("satisfaction_ratings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("participant_email", sa.String(length=320), nullable=True))


def downgrade():
    with op.batch_alter_table("satisfaction_ratings", schema=None) as batch_op:
        batch_op.drop_column("participant_email")
