"""tickets: a merged ticket points at the survivor at the end of its merges

A merge now moves the tickets merged into the merged one to its survivor, so none
is more than one step from the ticket that carries on for it (docs/isp-operations.md,
"Merge and links"). Chains stored before are flattened here: each pass points every
ticket merged into a merged one at that one's own target, until none is left (each
pass at least halves the longest chain on PostgreSQL, shortens it by one or more on
SQLite). The walk over a chain stopped after 20 steps, on a ticket itself merged, so
a chain longer than that had a customer's message reopen that ticket. Merges cannot
loop; the passes are bounded by the number of merged tickets all the same. History
rows are left as they are: each merge was recorded when it was made. The downgrade
leaves the tickets where they are: a survivor one step away is where the old code
finds it too.

Revision ID: 0042
Revises: 0041
"""

import sqlalchemy as sa
from alembic import op

revision = "0042"
down_revision = "0041"
branch_labels = None
depends_on = None


def upgrade():
    tickets = sa.table("tickets", sa.column("id", sa.Integer), sa.column("merged_into_id", sa.Integer))
    target = tickets.alias("target")
    step = (
        sa.update(tickets)
        .where(
            tickets.c.merged_into_id.in_(sa.select(target.c.id).where(target.c.merged_into_id.is_not(None)))
        )
        .values(
            merged_into_id=sa.select(target.c.merged_into_id)
            .where(target.c.id == tickets.c.merged_into_id)
            .scalar_subquery()
        )
    )
    connection = op.get_bind()
    merged = connection.execute(
        sa.select(sa.func.count()).select_from(tickets).where(tickets.c.merged_into_id.is_not(None))
    ).scalar_one()
    for _ in range(merged):
        if connection.execute(step).rowcount == 0:
            break


def downgrade():
    pass
