"""contacts: a phone number (E.164) and the language the customer reads

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("phone", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("language", sa.String(length=10), nullable=False, server_default=""))
        batch_op.create_unique_constraint(batch_op.f("uq_contacts_phone"), ["phone"])


def downgrade():
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_contacts_phone"), type_="unique")
        batch_op.drop_column("language")
        batch_op.drop_column("phone")
