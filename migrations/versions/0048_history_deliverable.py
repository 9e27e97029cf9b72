"""ticket history: an admin clearing an address's undeliverable mark on a ticket's page

The "Mail works again" button of a ticket's page cleared the mark a bounce set and
left nothing on the ticket: `ck_ticket_history_field` (last written by 0020) allowed
no field for it, so only a log line told who resumed mail to the address and when.
The field `deliverable` is allowed now, and that button writes one row on the
ticket (docs/outbound-mail.md, "Loop rules"). The downgrade deletes those rows.

Revision ID: 0048
Revises: 0047
"""

from alembic import op

revision = "0048"
down_revision = "0047"
branch_labels = None
depends_on = None

OLD_FIELDS = (
    "'status', 'assignee', 'priority', 'category', 'sla', 'ticket_type', 'team', 'escalation', "
    "'merge', 'link', 'tags', 'language'"
)
NEW_FIELDS = OLD_FIELDS + ", 'deliverable'"


def _history_fields(values):
    with op.batch_alter_table("ticket_history", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_ticket_history_field"), type_="check")
        batch_op.create_check_constraint(batch_op.f("ck_ticket_history_field"), f"field IN ({values})")


def upgrade():
    _history_fields(NEW_FIELDS)


def downgrade():
    op.execute("DELETE FROM ticket_history WHERE field = 'deliverable'")
    _history_fields(OLD_FIELDS)
