"""email proofs: a code mailed to an address a WhatsApp customer names, and the outbox kind `email_code`

An email typed into WhatsApp binds the number to nothing until the customer gives
back the code mailed to that address (docs/integrations.md, "Who the customer is").
Each request is a row (the code's keyed hash, its tries, when it expires), counted
by number and by mailbox for the request limits; the mail is an outbox row of the
new kind, about no ticket.

Revision ID: 0038
Revises: 0037
"""

import sqlalchemy as sa
from alembic import op

revision = "0038"
down_revision = "0037"
branch_labels = None
depends_on = None

OLD_KINDS = "'created', 'reply', 'status', 'resolved', 'sla_breach', 'escalation', 'sla_digest'"
NEW_KINDS = "'created', 'reply', 'status', 'resolved', 'sla_breach', 'escalation', 'sla_digest', 'email_code'"


def _check(values):
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_outbox_kind"), type_="check")
        batch_op.create_check_constraint(batch_op.f("ck_outbox_kind"), f"kind IN ({values})")


def upgrade():
    op.create_table(
        "email_proofs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("phone", sa.String(length=16), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("mailbox", sa.String(length=320), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("wrong_tries", sa.Integer(), nullable=False),
        sa.Column("spent", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_proofs")),
    )
    with op.batch_alter_table("email_proofs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_email_proofs_phone"), ["phone"], unique=False)
        batch_op.create_index(batch_op.f("ix_email_proofs_mailbox"), ["mailbox"], unique=False)
        batch_op.create_index(batch_op.f("ix_email_proofs_created_at"), ["created_at"], unique=False)
    _check(NEW_KINDS)


def downgrade():
    op.execute("DELETE FROM outbox WHERE kind = 'email_code'")
    _check(OLD_KINDS)
    op.drop_table("email_proofs")
