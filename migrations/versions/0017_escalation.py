"""escalation: a ticket's support level (L1-L3), since when and to whom; the staff mail

Every existing ticket is at L1. History rows may record an escalation and outbox
rows may be the mail that tells the new assignee.

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

OLD_FIELDS = "'status', 'assignee', 'priority', 'category', 'sla', 'ticket_type', 'team'"
NEW_FIELDS = "'status', 'assignee', 'priority', 'category', 'sla', 'ticket_type', 'team', 'escalation'"
OLD_KINDS = "'created', 'reply', 'status', 'resolved', 'sla_breach'"
NEW_KINDS = "'created', 'reply', 'status', 'resolved', 'sla_breach', 'escalation'"


def _check(table, name, column, values):
    with op.batch_alter_table(table, schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f(name), type_="check")
        batch_op.create_check_constraint(batch_op.f(name), f"{column} IN ({values})")


def upgrade():
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("escalation_level", sa.String(length=2), nullable=False, server_default="L1")
        )
        batch_op.add_column(sa.Column("escalated_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("escalated_to_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_tickets_escalation_level"), ["escalation_level"], unique=False)
        batch_op.create_check_constraint(
            batch_op.f("ck_tickets_escalation_level"), "escalation_level IN ('L1', 'L2', 'L3')"
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_tickets_escalated_to_id_staff_users"), "staff_users", ["escalated_to_id"], ["id"]
        )
    _check("ticket_history", "ck_ticket_history_field", "field", NEW_FIELDS)
    _check("outbox", "ck_outbox_kind", "kind", NEW_KINDS)


def downgrade():
    op.execute("DELETE FROM outbox WHERE kind = 'escalation'")
    op.execute("DELETE FROM ticket_history WHERE field = 'escalation'")
    _check("outbox", "ck_outbox_kind", "kind", OLD_KINDS)
    _check("ticket_history", "ck_ticket_history_field", "field", OLD_FIELDS)
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_tickets_escalated_to_id_staff_users"), type_="foreignkey")
        batch_op.drop_constraint(batch_op.f("ck_tickets_escalation_level"), type_="check")
        batch_op.drop_index(batch_op.f("ix_tickets_escalation_level"))
        batch_op.drop_column("escalated_to_id")
        batch_op.drop_column("escalated_at")
        batch_op.drop_column("escalation_level")
