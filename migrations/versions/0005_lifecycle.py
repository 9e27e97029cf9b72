"""lifecycle: SLA breach history rows, breach alerts, the SLA check's indexes

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 16:30:53.228349

History rows may record an SLA breach (field `sla`), outbox rows may be breach
alerts to staff (kind `sla_breach`), and two partial indexes hold only the
tickets the SLA check still watches (their predicates are `helpdesk.sla`'s
FIRST_RESPONSE_WATCH / RESOLUTION_WATCH, copied here as a migration must be).
Downgrading deletes the breach history rows and alerts, which 0004 cannot hold.
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

OLD_FIELDS = "'status', 'assignee', 'priority', 'category'"
NEW_FIELDS = "'status', 'assignee', 'priority', 'category', 'sla'"
OLD_KINDS = "'created', 'reply', 'status', 'resolved'"
NEW_KINDS = "'created', 'reply', 'status', 'resolved', 'sla_breach'"
FIRST_RESPONSE_WATCH = (
    "first_response_breached IS NULL AND first_responded_at IS NULL "
    "AND status NOT IN ('resolved', 'closed', 'cancelled')"
)
RESOLUTION_WATCH = (
    "resolution_breached IS NULL AND status NOT IN ('resolved', 'closed', 'cancelled', 'pending_customer')"
)


def _check(batch_op, name, column, values):
    batch_op.drop_constraint(batch_op.f(name), type_="check")
    batch_op.create_check_constraint(batch_op.f(name), f"{column} IN ({values})")


def upgrade():
    with op.batch_alter_table("ticket_history", schema=None) as batch_op:
        _check(batch_op, "ck_ticket_history_field", "field", NEW_FIELDS)
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        _check(batch_op, "ck_outbox_kind", "kind", NEW_KINDS)
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.create_index(
            "ix_tickets_first_response_watch",
            ["first_response_due_at"],
            unique=False,
            sqlite_where=sa.text(FIRST_RESPONSE_WATCH),
            postgresql_where=sa.text(FIRST_RESPONSE_WATCH),
        )
        batch_op.create_index(
            "ix_tickets_resolution_watch",
            ["resolution_due_at"],
            unique=False,
            sqlite_where=sa.text(RESOLUTION_WATCH),
            postgresql_where=sa.text(RESOLUTION_WATCH),
        )


def downgrade():
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_index("ix_tickets_resolution_watch")
        batch_op.drop_index("ix_tickets_first_response_watch")
    op.execute("DELETE FROM outbox WHERE kind = 'sla_breach'")
    op.execute("DELETE FROM ticket_history WHERE field = 'sla'")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        _check(batch_op, "ck_outbox_kind", "kind", OLD_KINDS)
    with op.batch_alter_table("ticket_history", schema=None) as batch_op:
        _check(batch_op, "ck_ticket_history_field", "field", OLD_FIELDS)
