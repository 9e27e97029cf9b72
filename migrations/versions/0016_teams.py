"""teams: agents in teams, a routing table from ticket type to team, a ticket's team

A new install starts with `support_team`, `onboarding_team` and `field_ops`, and
routes installation requests to field operations and every other type to the
support team (an admin changes it). Existing tickets get the team their type
routes to. History rows may record a team change.

Revision ID: 0016
Revises: 0015
"""

from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

TICKET_TYPES = (
    "general_inquiry",
    "billing_issue",
    "technical_support",
    "installation_request",
    "outage_report",
    "service_upgrade",
    "service_downgrade",
    "cancellation_request",
    "equipment_issue",
    "speed_issue",
    "network_issue",
    "connectivity_issue",
)
TEAMS = ("support_team", "onboarding_team", "field_ops")
ROUTES = {ticket_type: "support_team" for ticket_type in TICKET_TYPES} | {"installation_request": "field_ops"}
OLD_FIELDS = "'status', 'assignee', 'priority', 'category', 'sla', 'ticket_type'"
NEW_FIELDS = "'status', 'assignee', 'priority', 'category', 'sla', 'ticket_type', 'team'"


def _history_fields(values):
    with op.batch_alter_table("ticket_history", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_ticket_history_field"), type_="check")
        batch_op.create_check_constraint(batch_op.f("ck_ticket_history_field"), f"field IN ({values})")


def upgrade():
    teams = op.create_table(
        "teams",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_teams")),
        sa.UniqueConstraint("name", name=op.f("uq_teams_name")),
    )
    op.create_table(
        "team_members",
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("staff_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["staff_id"], ["staff_users.id"], name=op.f("fk_team_members_staff_id_staff_users")
        ),
        sa.ForeignKeyConstraint(["team_id"], ["teams.id"], name=op.f("fk_team_members_team_id_teams")),
        sa.PrimaryKeyConstraint("team_id", "staff_id", name=op.f("pk_team_members")),
    )
    with op.batch_alter_table("team_members", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_team_members_staff_id"), ["staff_id"], unique=False)
    routes = op.create_table(
        "team_routes",
        sa.Column("ticket_type", sa.String(length=30), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "ticket_type IN (" + ", ".join(f"'{t}'" for t in TICKET_TYPES) + ")",
            name=op.f("ck_team_routes_ticket_type"),
        ),
        sa.ForeignKeyConstraint(["team_id"], ["teams.id"], name=op.f("fk_team_routes_team_id_teams")),
        sa.PrimaryKeyConstraint("ticket_type", name=op.f("pk_team_routes")),
    )
    created = datetime.now(timezone.utc).replace(tzinfo=None)  # naive UTC, as every time column
    op.bulk_insert(teams, [{"id": n, "name": name, "created_at": created} for n, name in enumerate(TEAMS, 1)])
    op.bulk_insert(
        routes, [{"ticket_type": t, "team_id": TEAMS.index(team) + 1} for t, team in ROUTES.items()]
    )
    if op.get_bind().dialect.name == "postgresql":  # ids were given: move the sequence past them
        op.execute("SELECT setval('teams_id_seq', (SELECT max(id) FROM teams))")
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("team_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_tickets_team_id"), ["team_id"], unique=False)
        batch_op.create_foreign_key(batch_op.f("fk_tickets_team_id_teams"), "teams", ["team_id"], ["id"])
    op.execute(
        "UPDATE tickets SET team_id = "
        "(SELECT team_id FROM team_routes WHERE team_routes.ticket_type = tickets.ticket_type)"
    )
    _history_fields(NEW_FIELDS)


def downgrade():
    op.execute("DELETE FROM ticket_history WHERE field = 'team'")
    _history_fields(OLD_FIELDS)
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_tickets_team_id_teams"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_tickets_team_id"))
        batch_op.drop_column("team_id")
    op.drop_table("team_routes")
    op.drop_table("team_members")
    op.drop_table("teams")
