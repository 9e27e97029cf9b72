"""contacts: the mailbox keys of addresses at internationalised domains, computed under IDNA 2008

`helpdesk.addresses.mailbox` puts a domain beyond ASCII into its ASCII form. It
did that with Python's `idna` codec, which is IDNA 2003 and folds `ß` into `ss`
and the final `ς` into `σ`: the key of `hans@straße.de` was `hans@strasse.de`,
another registrable domain's mailbox, so that contact's tickets counted for
strasse.de's in the per-customer limits, and strasse.de's for his. It now uses
IDNA 2008 with UTS #46 mapping (`hans@xn--strae-oqa.de`); the keys stored before
are computed again here (docs/operations.md, docs/security.md).

Only a row whose address holds a character beyond ASCII can change: an ASCII
domain (an `xn--` label included) is its own key under both rules. Those rows are
found by comparing the address's length in bytes with its length in characters,
which the database answers in the one pass over the table without a pattern
(nearly every row is ASCII and only read), and Python computes each candidate's
key and writes those that differ, in batches, as migration 0030 does. The
upgrade's key is the app's own function, the one new contacts get and the limits
count by; the downgrade writes the IDNA 2003 key of the code before, from a copy
of that rule frozen here (the app has no such function any more).

`outbox.to_mailbox` is left as it is: it counts only the limit per recipient over
`OUTBOUND_RATE_WINDOW`, so a key written before the upgrade stops counting within
that window (docs/outbound-mail.md, "Internationalised domains"). The email codes'
`email_proofs.mailbox` rows are kept a day and counted within a day the same way.

Revision ID: 0046
Revises: 0045
"""

import sqlalchemy as sa
from alembic import op

from helpdesk import addresses

revision = "0046"
down_revision = "0045"
branch_labels = None
depends_on = None

BATCH = 5000  # rows read at a time
CHUNK = 300  # rows written by one statement: 900 parameters, under old SQLite's 999

# The rule of `addresses.mailbox` before this revision, frozen (downgrade only).
_MAX_LENGTH, _MAX_DOMAIN_LENGTH, _MAX_LABEL_LENGTH = 254, 253, 63
_IDNA_DOTS = str.maketrans(dict.fromkeys("\u3002\uff0e\uff61", "."))
_DOTS_IGNORED = {"gmail.com": "gmail.com", "googlemail.com": "gmail.com"}


def _idna2003_key(address):
    """`addresses.mailbox` as it was before this revision: the domain through
    Python's IDNA 2003 codec (`hans@straße.de` → `hans@strasse.de`)."""
    text = address.strip().lower()
    if text.endswith(".") and "@" in text:
        text = text.rstrip(".")
    local, at, domain = text.strip("<>").rpartition("@")
    if not at:
        return text.strip("<>")
    local = local.split("+", 1)[0]
    key = f"{local}@{domain}"
    if not domain.isascii() and (
        len(domain) <= _MAX_DOMAIN_LENGTH
        and all(len(label) <= _MAX_LABEL_LENGTH for label in domain.translate(_IDNA_DOTS).split("."))
    ):
        try:
            wire = f"{local}@{domain.encode('idna').decode('ascii')}"
        except UnicodeError:
            wire = key
        if len(wire) <= _MAX_LENGTH:
            key = wire
    local, _, domain = key.rpartition("@")
    if domain in _DOTS_IGNORED:
        return f"{local.replace('.', '')}@{_DOTS_IGNORED[domain]}"
    return key


def _fill(table, size):
    """One UPDATE writing the keys of `size` rows (`i<n>` the id, `k<n>` its key), as 0030."""
    ids = [sa.bindparam(f"i{n}") for n in range(size)]
    keys = sa.case(*((ids[n], sa.bindparam(f"k{n}")) for n in range(size)), value=table.c.id)
    return sa.update(table).where(table.c.id.in_(ids)).values(mailbox=keys)


def _beyond_ascii(connection, column):
    """Whether `column` holds a character beyond ASCII: more bytes than characters
    (UTF-8 on both databases). No pattern, no index: a comparison in the scan."""
    if connection.dialect.name == "sqlite":
        return sa.func.length(sa.cast(column, sa.LargeBinary)) != sa.func.length(column)
    return sa.func.octet_length(column) != sa.func.char_length(column)


def _recompute(key_of):
    """Write `key_of(email)` into each contact beyond ASCII whose stored key differs."""
    connection = op.get_bind()
    contacts = sa.table("contacts", sa.column("id", sa.Integer), sa.column("email"), sa.column("mailbox"))
    candidates = _beyond_ascii(connection, contacts.c.email)
    fill = _fill(contacts, CHUNK)
    after = 0
    while True:
        rows = connection.execute(
            sa.select(contacts.c.id, contacts.c.email, contacts.c.mailbox)
            .where(contacts.c.id > after, candidates)
            .order_by(contacts.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            break
        changed = [(id_, key) for id_, email, stored in rows if (key := key_of(email)) != stored]
        for start in range(0, len(changed), CHUNK):
            chunk = changed[start : start + CHUNK]
            params = {}
            for n, (id_, key) in enumerate(chunk):
                params[f"i{n}"], params[f"k{n}"] = id_, key
            connection.execute(fill if len(chunk) == CHUNK else _fill(contacts, len(chunk)), params)
        after = rows[-1][0]


def upgrade():
    _recompute(addresses.mailbox)


def downgrade():
    _recompute(_idna2003_key)
