"""tickets: an ISP's ticket type and service fields (address, services, device serials)

Existing tickets become `general_inquiry` with empty service fields. History rows
may record a ticket type change. On PostgreSQL the service address and the serials
get trigram indexes like the other searched columns (see 0006), so `q` finds a
serial or an address without reading every ticket.

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

TICKET_TYPES = (
    "'general_inquiry', 'billing_issue', 'technical_support', 'installation_request', "
    "'outage_report', 'service_upgrade', 'service_downgrade', 'cancellation_request', "
    "'equipment_issue', 'speed_issue', 'network_issue', 'connectivity_issue'"
)
OLD_FIELDS = "'status', 'assignee', 'priority', 'category', 'sla'"
NEW_FIELDS = "'status', 'assignee', 'priority', 'category', 'sla', 'ticket_type'"
TRIGRAM = ("service_address", "device_serials")


def _history_fields(values):
    with op.batch_alter_table("ticket_history", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_ticket_history_field"), type_="check")
        batch_op.create_check_constraint(batch_op.f("ck_ticket_history_field"), f"field IN ({values})")


def upgrade():
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("ticket_type", sa.String(length=30), nullable=False, server_default="general_inquiry")
        )
        batch_op.add_column(
            sa.Column("service_address", sa.String(length=500), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column("affected_services", sa.String(length=40), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("device_serials", sa.Text(), nullable=False, server_default=""))
        batch_op.create_index(batch_op.f("ix_tickets_ticket_type"), ["ticket_type"], unique=False)
        batch_op.create_check_constraint(
            batch_op.f("ck_tickets_ticket_type"), f"ticket_type IN ({TICKET_TYPES})"
        )
    _history_fields(NEW_FIELDS)
    if op.get_bind().dialect.name == "postgresql":
        for column in TRIGRAM:
            op.execute(f"CREATE INDEX ix_tickets_{column}_trgm ON tickets USING gin ({column} gin_trgm_ops)")


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        for column in TRIGRAM:
            op.execute(f"DROP INDEX ix_tickets_{column}_trgm")
    op.execute("DELETE FROM ticket_history WHERE field = 'ticket_type'")
    _history_fields(OLD_FIELDS)
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_tickets_ticket_type"), type_="check")
        batch_op.drop_index(batch_op.f("ix_tickets_ticket_type"))
        batch_op.drop_column("device_serials")
        batch_op.drop_column("affected_services")
        batch_op.drop_column("service_address")
        batch_op.drop_column("ticket_type")
