"""languages: staff language and time zone, and the language of a ticket's mail

Both staff columns are "" for "not chosen" (the browser's language, then
DEFAULT_LANGUAGE; BUSINESS_TIMEZONE), and a ticket's language is "" until its first
customer mail fixes it (helpdesk.languages, docs/languages.md). History rows may
record staff setting a customer's language.

Revision ID: 0020
Revises: 0019
"""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

OLD_FIELDS = (
    "'status', 'assignee', 'priority', 'category', 'sla', 'ticket_type', 'team', 'escalation', "
    "'merge', 'link', 'tags'"
)
NEW_FIELDS = OLD_FIELDS + ", 'language'"


def _history_fields(values):
    with op.batch_alter_table("ticket_history", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_ticket_history_field"), type_="check")
        batch_op.create_check_constraint(batch_op.f("ck_ticket_history_field"), f"field IN ({values})")


def upgrade():
    with op.batch_alter_table("staff_users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("language", sa.String(length=10), server_default="", nullable=False))
        batch_op.add_column(sa.Column("timezone", sa.String(length=64), server_default="", nullable=False))
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("language", sa.String(length=10), server_default="", nullable=False))
    _history_fields(NEW_FIELDS)


def downgrade():
    op.execute("DELETE FROM ticket_history WHERE field = 'language'")
    _history_fields(OLD_FIELDS)
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_column("language")
    with op.batch_alter_table("staff_users", schema=None) as batch_op:
        batch_op.drop_column("timezone")
        batch_op.drop_column("language")
