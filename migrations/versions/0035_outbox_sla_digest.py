"""outbox: the kind `sla_digest`, one SLA check's breaches for one recipient in one mail

An SLA check that finds more breached tickets for one staff member than
`notifications.SLA_DIGEST_OVER` mails them one list instead of a mail per ticket
(docs/outbound-mail.md, "SLA alerts"). Such a row is about many tickets, so its
`ticket_id` is empty, which the column always allowed; only the kind is new.

Revision ID: 0035
Revises: 0034
"""

from alembic import op

revision = "0035"
down_revision = "0034"
branch_labels = None
depends_on = None

OLD_KINDS = "'created', 'reply', 'status', 'resolved', 'sla_breach', 'escalation'"
NEW_KINDS = "'created', 'reply', 'status', 'resolved', 'sla_breach', 'escalation', 'sla_digest'"


def _check(values):
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_outbox_kind"), type_="check")
        batch_op.create_check_constraint(batch_op.f("ck_outbox_kind"), f"kind IN ({values})")


def upgrade():
    _check(NEW_KINDS)


def downgrade():
    op.execute("DELETE FROM outbox WHERE kind = 'sla_digest'")
    _check(OLD_KINDS)
