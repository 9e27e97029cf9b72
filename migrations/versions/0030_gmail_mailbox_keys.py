"""contacts, outbox: the mailbox keys of Gmail addresses without dots, googlemail.com as gmail.com

Gmail ignores dots in the local part and googlemail.com is gmail.com, so
`v.ictim@gmail.com`, `vi.ctim@gmail.com` and `victim@googlemail.com` reach one
inbox; as different mailboxes, a stranger writing as each spelling passed the
per-customer limits and the limit per recipient (docs/security.md).
`helpdesk.addresses.mailbox` now drops those dots; the keys stored before
(contacts.mailbox, outbox.to_mailbox) are computed again here, or the tickets and
acknowledgments of the old spellings would not count. Only the keys this changes
are read (a dot before `@gmail.com`, or `@googlemail.com`; an IDNA spelling of
either domain was stored in its ASCII form), in batches, by Python as migration
0025 did, so the key is the app's own function. The downgrade writes the keys the
code before it computes.

Revision ID: 0030
Revises: 0029
"""

import sqlalchemy as sa
from alembic import op

from helpdesk import addresses

revision = "0030"
down_revision = "0029"
branch_labels = None
depends_on = None

BATCH = 5000  # rows read at a time
CHUNK = 300  # rows written by one statement: 900 parameters, under old SQLite's 999
# (table, its address column, the column holding the address's mailbox key)
KEYED = (("contacts", "email", "mailbox"), ("outbox", "to_address", "to_mailbox"))


def _dotted_key(address):
    """`addresses.mailbox` as it was before this revision: Gmail's dots kept."""
    bare = addresses.without_detail(address)
    return addresses.on_the_wire(bare) or bare


def _fill(table, key_column, size):
    """One UPDATE writing the keys of `size` rows (`i<n>` the id, `k<n>` its key):
    psycopg2 sends an executemany as one statement per row, which took 41 s where
    this takes 16–18 s for 133,000 rows (docs/operations.md)."""
    ids = [sa.bindparam(f"i{n}") for n in range(size)]
    keys = sa.case(*((ids[n], sa.bindparam(f"k{n}")) for n in range(size)), value=table.c.id)
    return sa.update(table).where(table.c.id.in_(ids)).values({key_column: keys})


def _recompute(key_of, patterns):
    """Write `key_of(address)` into each row whose key matches one of `patterns`."""
    connection = op.get_bind()
    for name, address_column, key_column in KEYED:
        table = sa.table(name, sa.column("id", sa.Integer), sa.column(address_column), sa.column(key_column))
        matches = sa.or_(*(table.c[key_column].like(pattern) for pattern in patterns))
        fill = _fill(table, key_column, CHUNK)
        after = 0
        while True:
            rows = connection.execute(
                sa.select(table.c.id, table.c[address_column])
                .where(table.c.id > after, matches)
                .order_by(table.c.id)
                .limit(BATCH)
            ).all()
            if not rows:
                break
            for start in range(0, len(rows), CHUNK):
                chunk, params = rows[start : start + CHUNK], {}
                for n, (id_, address) in enumerate(chunk):
                    params[f"i{n}"], params[f"k{n}"] = id_, key_of(address)
                connection.execute(
                    fill if len(chunk) == CHUNK else _fill(table, key_column, len(chunk)), params
                )
            after = rows[-1][0]


def upgrade():
    _recompute(addresses.mailbox, ("%.%@gmail.com", "%@googlemail.com"))


def downgrade():
    _recompute(_dotted_key, ("%@gmail.com",))
