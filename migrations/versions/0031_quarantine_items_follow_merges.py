"""quarantine items: held mail of a merged ticket is its survivor's

A merge now moves the held mail of the merged ticket to the survivor in any state
(it moved pending mail only, and only since 9865628): a held follow-up of mail
approved into a ticket merged since is judged by the survivor, where its approval
lands (docs/isp-operations.md, "Visibility"). Items of tickets merged before are
moved here, one merge step per statement, as many steps as a chain of merges may
take (`MAX_MERGE_CHAIN`; merges cannot loop). The downgrade leaves them where they
are: the survivor is where they belong under the old rules too.

Revision ID: 0031
Revises: 0030
"""

import sqlalchemy as sa
from alembic import op

revision = "0031"
down_revision = "0030"
branch_labels = None
depends_on = None

MAX_MERGE_CHAIN = 20  # as helpdesk.services.tickets; only bounds the loop


def upgrade():
    items = sa.table("quarantine_items", sa.column("ticket_id", sa.Integer))
    tickets = sa.table("tickets", sa.column("id", sa.Integer), sa.column("merged_into_id", sa.Integer))
    step = (
        sa.update(items)
        .where(items.c.ticket_id.in_(sa.select(tickets.c.id).where(tickets.c.merged_into_id.is_not(None))))
        .values(
            ticket_id=sa.select(tickets.c.merged_into_id)
            .where(tickets.c.id == items.c.ticket_id)
            .scalar_subquery()
        )
    )
    connection = op.get_bind()
    for _ in range(MAX_MERGE_CHAIN):
        if connection.execute(step).rowcount == 0:
            break


def downgrade():
    pass
