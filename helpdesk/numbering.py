"""Ticket numbers (docs/numbering.md): one gap-free sequence for every channel.

The number comes from a single counter row, incremented in the same transaction
that stores the ticket; a rolled-back creation also rolls back its increment, so no
number is ever skipped, and the row lock (PostgreSQL) or the database write lock
(SQLite) means no number is ever handed out twice. The lock is held from the
increment until commit, which bounds throughput, so `insert_numbered` writes the
ticket and its dependent rows together with the increment (one statement on
PostgreSQL) and callers commit right after it.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from flask import Flask
from sqlalchemy import ColumnDefault, Dialect, Integer, Table, Text, TextualSelect, column, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ClauseElement

from config import ConfigurationError
from helpdesk.errors import Conflict, ValidationError
from helpdesk.models import Ticket, TicketCounter

COUNTER_ID = 1
# The largest ticket number: the patterns below read at most 18 digits, so a larger
# one would never be recognised again, and the column is a BIGINT (docs/numbering.md).
MAX_NUMBER = 10**18 - 1
# What a TICKET_PREFIX may hold (`check_prefix`): RFC 5322 atext that a URL path
# carries as it is, and dots, single ones (a dot-atom).
_PREFIX_CHARACTERS = frozenset(string.ascii_letters + string.digits + "-_.")
# How long PostgreSQL lets a session that took a number say nothing before it ends
# the session (docs/numbering.md, "A host that freezes"): between the numbering
# statement and the commit nothing runs, so silence that long is a frozen host.
COUNTER_IDLE_LIMIT_MS = 10_000

_TAKE = text(
    "UPDATE ticket_counter SET next_value = next_value + 1 WHERE id = :counter RETURNING next_value - 1"
)


def check_prefix(prefix: str) -> None:
    """Refuse a `TICKET_PREFIX` a ticket number cannot carry everywhere it goes
    (docs/operations.md): ASCII letters, digits, `-`, `_` and single dots only. The
    number is the detail of our Reply-To (`support+TKT-000078@`), which RFC 5322
    writes unquoted only as a dot-atom: with `Case `, mail clients read the address
    as `"support+Case 000078"@…` and our listener refused the customers' replies
    (550 5.1.1). It is also a path in the portal's links (`/tickets/TKT-000078`),
    where `#`, `/`, `?` or `%` end or change the path, and a plain-text link ends at
    a space."""
    if prefix.isascii() and _PREFIX_CHARACTERS.issuperset(prefix) and ".." not in prefix:
        return
    raise ConfigurationError(
        f"TICKET_PREFIX {prefix!r} must be ASCII letters, digits, '-', '_' or single dots (such as "
        "TKT- or INC.): the ticket number goes into our Reply-To address (support+TKT-000078@…) "
        "and into portal links, which cannot carry a space or other characters unquoted"
    )


def init_app(app: Flask) -> None:
    check_prefix(app.config["TICKET_PREFIX"])


def format_number(number: int, prefix: str, width: int) -> str:
    """`78` → `TKT-000078`; past the width it grows (`TKT-1000000`), never wraps."""
    return f"{prefix}{number:0{width}d}"


def display_number(number: int, config: Mapping[str, Any]) -> str:
    """A ticket number as people read it, in the configured form: the one place
    that reads `TICKET_PREFIX` and `TICKET_NUMBER_WIDTH` for display."""
    return format_number(number, config["TICKET_PREFIX"], config["TICKET_NUMBER_WIDTH"])


@lru_cache(maxsize=16)
def _patterns(prefix: str) -> tuple[re.Pattern[str], re.Pattern[str]]:
    # Possessive runs (mail chooses this text): `\s*\[?\s*` let two runs share the
    # same spaces, quadratic on a long run of them, and backtracking into the zeros
    # cost 18 tries a zero. An all-zero number is no number either way.
    body = re.escape(prefix) + r"0*+(\d{1,18})"
    exact = re.compile(r"^\s*+(?:\[\s*+)?(?:" + body + r"|0*+(\d{1,18}))\s*+\]?\s*+$", re.IGNORECASE)
    anywhere = re.compile(r"(?<![A-Za-z0-9])" + body + r"(?![A-Za-z0-9])", re.IGNORECASE)
    return exact, anywhere


def parse_number(value: str, prefix: str) -> int | None:
    """Read a number typed by a person: `tkt-78`, `TKT-000078`, `[TKT-000078]`, `78`."""
    match = _patterns(prefix)[0].match(value or "")
    if not match:
        return None
    number = int(match.group(1) or match.group(2))
    return number if number > 0 else None


def find_numbers(text_: str, prefix: str, limit: int | None = None) -> list[int]:
    """Every ticket number mentioned in free text (a subject line), in order, each
    once; only the first `limit` of them when given, and the text is read no further
    (a Subject of mail can name 20,000)."""
    found: dict[int, None] = {}
    for match in _patterns(prefix)[1].finditer(text_ or ""):
        if limit is not None and len(found) >= limit:
            break
        number = int(match.group(1))
        if number > 0:
            found[number] = None
    return list(found)


Row = dict[str, Any]


def insert_numbered(
    session: Session,
    ticket: Row,
    dependents: Sequence[tuple[Table, Row]] = (),
    linked: Sequence[tuple[Table, int]] = (),
    attached: Sequence[tuple[Table, Row]] = (),
    following: Sequence[tuple[Table, Row]] = (),
) -> tuple[int, int]:
    """Insert a ticket with the next number, plus rows that point at it (its first
    message, history, participants: their `ticket_id` is filled in), rows that
    point at the first of those (`attached`, e.g. the first message's attachments:
    their foreign key to that table is filled in), rows that point at the ticket
    and are written after the first of those, in order (`following`, e.g. the mail
    gateway's note after the first message: their ids come after its), and point
    existing rows at it (`linked`: table and id, e.g. the inbound mail it came from);
    returns `(id, number)`. Nothing is committed: the caller's transaction decides.

    PostgreSQL gets everything in one statement, so the counter row is locked for
    that statement and the commit only. SQLite serializes writers with its database
    lock anyway, so plain statements in order do the same there.
    """
    if (attached or following) and not dependents:
        raise ValueError("attached and following rows need a first dependent")
    ticket = _with_defaults(Ticket.__table__, ticket)
    dependents = [(table, _with_defaults(table, values)) for table, values in dependents]
    attached = [(table, _with_defaults(table, values)) for table, values in attached]
    following = [(table, _with_defaults(table, values)) for table, values in following]
    for _attempt in range(2):
        row: Sequence[Any] | None
        dialect = session.get_bind().dialect
        if dialect.name == "postgresql":
            statement = _pg_insert_all(dialect, ticket, dependents, linked, attached, following)
            row = session.execute(*statement).first()
        else:
            row = _insert_in_order(session, ticket, dependents, linked, attached, following)
        if row is not None:
            return int(row[0]), int(row[1])
        _create_counter(session)
    raise RuntimeError("ticket counter row could not be created")


def _with_defaults(table: Table, values: Row) -> Row:
    """`values` with the model's column defaults filled in where it names no value:
    the one place they are applied, for both databases, since the PostgreSQL
    statement is text and Core's own defaults never reach it. A model column
    gains a default, and every ticket creation applies it."""
    missing = [(name, default) for name, default in _defaults(table) if name not in values]
    if not missing:
        return values
    # SQLAlchemy wraps a callable default to take an execution context; most of the
    # models' defaults (`clock.now`) use none, a row's mailbox key reads the row's
    # address from it (`_RowContext`). A SQL-expression default
    # (`clock.DatabaseClock`) is kept as SQL, which the statement writes in (`_values`).
    context = _RowContext(values)
    return {
        **values,
        **{name: default.arg(context) if default.is_callable else default.arg for name, default in missing},
    }


class _RowContext:
    """The part of SQLAlchemy's execution context a column default may ask for: the
    values of the row being inserted (`get_current_parameters`)."""

    def __init__(self, values: Row) -> None:
        self.values = values

    def get_current_parameters(self, isolate_multiinsert_groups: bool = True) -> Row:
        return self.values


@lru_cache(maxsize=32)
def _defaults(table: Table) -> tuple[tuple[str, ColumnDefault], ...]:
    """Each column's Python-side default (a value, a function or a SQL expression)."""
    found: list[tuple[str, ColumnDefault]] = []
    for col in table.c:
        default = col.default
        if default is None:
            continue
        if not isinstance(default, ColumnDefault) or not (
            default.is_scalar or default.is_callable or default.is_clause_element
        ):
            raise TypeError(f"{table.name}.{col.name}: this default cannot be applied to the numbered insert")
        found.append((col.name, default))
    return tuple(found)


def _parent_key(child: Table, parent: Table) -> str:
    """The column of `child` that references `parent`."""
    [column] = [c.name for c in child.c if any(fk.column.table is parent for fk in c.foreign_keys)]
    return column


def _pg_insert_all(
    dialect: Dialect,
    ticket: Row,
    dependents: Sequence[tuple[Table, Row]],
    linked: Sequence[tuple[Table, int]],
    attached: Sequence[tuple[Table, Row]],
    following: Sequence[tuple[Table, Row]] = (),
) -> tuple[Any, Row]:
    params: Row = {"counter": COUNTER_ID}
    columns = list(ticket)
    parts = [
        "WITH c AS (UPDATE ticket_counter SET next_value = next_value + 1 "
        "WHERE id = :counter RETURNING next_value - 1 AS n)",
        f", t AS (INSERT INTO tickets (number, {', '.join(columns)}) "
        f"SELECT c.n, {_values(dialect, 't', ticket, columns, params)} FROM c RETURNING id, number)",
    ]
    for index, (table, values) in enumerate(dependents):
        names = [name for name in values if name != "ticket_id"]
        parts.append(
            f", d{index} AS (INSERT INTO {table.name} (ticket_id, {', '.join(names)}) "
            f"SELECT t.id, {_values(dialect, f'd{index}', values, names, params)} FROM t"
            f"{' RETURNING id' if index == 0 and (attached or following) else ''})"
        )
    for index, (table, values) in enumerate(attached):
        key = _parent_key(table, dependents[0][0])
        names = [name for name in values if name != key]
        # Each reads the one row its predecessor returned: PostgreSQL runs the
        # sub-statements of a WITH in no set order, and this keeps the rows' ids in
        # the order given (attachments are listed by id).
        after = f", a{index - 1}" if index else ""
        parts.append(
            f", a{index} AS (INSERT INTO {table.name} ({key}, {', '.join(names)}) "
            f"SELECT d0.id, {_values(dialect, f'a{index}', values, names, params)} "
            f"FROM d0{after} RETURNING {table.name}.id)"
        )
    for index, (table, values) in enumerate(following):
        names = [name for name in values if name != "ticket_id"]
        # Reading the row before it returned, as the attachments do: written after it.
        before = f"f{index - 1}" if index else "d0"
        parts.append(
            f", f{index} AS (INSERT INTO {table.name} (ticket_id, {', '.join(names)}) "
            f"SELECT t.id, {_values(dialect, f'f{index}', values, names, params)} "
            f"FROM t, {before} RETURNING {table.name}.id)"
        )
    for index, (table, row_id) in enumerate(linked):
        params[f"u{index}_id"] = row_id
        parts.append(
            f", u{index} AS (UPDATE {table.name} SET ticket_id = t.id FROM t "
            f"WHERE {table.name}.id = :u{index}_id)"
        )
    # Set in the statement that takes the lock, for this transaction only (PgBouncer's
    # transaction mode keeps it), at no extra round trip.
    params["idle_limit"] = str(COUNTER_IDLE_LIMIT_MS)
    parts.append(
        " SELECT id, number,"
        " set_config('idle_in_transaction_session_timeout', :idle_limit, true) AS idle_limit FROM t"
    )
    return _statement("".join(parts)), params


def _values(dialect: Dialect, prefix: str, values: Row, names: Sequence[str], params: Row) -> str:
    """The values of one row in the text statement: a bind parameter each (added to
    `params`), except a SQL expression, written in as SQL (the database's clock,
    `clock.database_clock`, which the outbox's times are stamped by)."""
    written = []
    for name in names:
        value = values[name]
        if isinstance(value, ClauseElement):
            written.append(_inline(value, dialect))
        else:
            params[f"{prefix}_{name}"] = value
            written.append(f":{prefix}_{name}")
    return ", ".join(written)


@lru_cache(maxsize=8)
def _inline(expression: ClauseElement, dialect: Dialect) -> str:
    """An expression without parameters as SQL text (the few there are recur)."""
    return str(expression.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


@lru_cache(maxsize=64)
def _statement(sql: str) -> TextualSelect:
    """The same few shapes recur (a mail with or without CC, attachments, ...):
    parsing a statement's bind parameters again on every ticket costs more than
    running it. Its result columns are declared so SQLAlchemy can keep the result's
    description with the statement instead of reading it again on every ticket."""
    return text(sql).columns(column("id", Integer), column("number", Integer), column("idle_limit", Text))


def _insert_in_order(
    session: Session,
    ticket: Row,
    dependents: Sequence[tuple[Table, Row]],
    linked: Sequence[tuple[Table, int]],
    attached: Sequence[tuple[Table, Row]],
    following: Sequence[tuple[Table, Row]] = (),
) -> tuple[int, int] | None:
    number = session.execute(_TAKE, {"counter": COUNTER_ID}).scalar()
    if number is None:
        return None
    tickets = Ticket.__table__
    ticket_id = session.execute(
        tickets.insert().values(number=number, **ticket).returning(tickets.c.id)
    ).scalar_one()
    first_id = None
    for table, values in dependents:
        inserted = session.execute(
            table.insert().values({**values, "ticket_id": ticket_id}).returning(table.c.id)
        )
        first_id = inserted.scalar_one() if first_id is None else first_id
    for table, values in attached:
        key = _parent_key(table, dependents[0][0])
        session.execute(table.insert().values({**values, key: first_id}))
    for table, values in following:
        session.execute(table.insert().values({**values, "ticket_id": ticket_id}))
    for table, row_id in linked:
        session.execute(table.update().where(table.c.id == row_id).values(ticket_id=ticket_id))
    return ticket_id, number


def _create_counter(session: Session) -> None:
    """Create the counter row for a database built without the migration's seed.

    A concurrent creator may win the race; the savepoint keeps our transaction alive
    and the retry then uses their row.
    """
    highest = session.execute(select(func.max(Ticket.number))).scalar() or 0
    try:
        with session.begin_nested():
            session.add(TicketCounter(id=COUNTER_ID, next_value=highest + 1))
    except IntegrityError:
        return  # the other creator's row is there now; the caller retries with it


def peek_next(session: Session) -> int:
    """The number the next ticket will get, as committed now. No ticket below it
    can be created any more: a number is taken in the transaction that stores its
    ticket, and `set_next` only moves the sequence up."""
    counter = session.get(TicketCounter, COUNTER_ID)
    if counter is not None:
        return counter.next_value
    return (session.execute(select(func.max(Ticket.number))).scalar() or 0) + 1


def set_next(session: Session, next_value: int) -> None:
    """Start the sequence at `next_value` (for an install migrated from elsewhere).

    Refuses a value at or below the highest number in use: that would hand out a
    number twice; and one past `MAX_NUMBER`, which no reply would find again. The
    counter row is locked first so no creation slips in between the check and the
    write.
    """
    if next_value < 1:
        raise ValidationError({"next": "must be a positive integer"})
    if next_value > MAX_NUMBER:
        raise ValidationError({"next": f"must be below {MAX_NUMBER + 1} (18 digits at most)"})
    counter = session.execute(
        select(TicketCounter).where(TicketCounter.id == COUNTER_ID).with_for_update()
    ).scalar_one_or_none()
    highest = session.execute(select(func.max(Ticket.number))).scalar() or 0
    if next_value <= highest:
        raise Conflict(
            f"Refusing to set the next number to {next_value}: "
            f"{highest} is already in use (choose a value above {highest})."
        )
    if counter is None:
        session.add(TicketCounter(id=COUNTER_ID, next_value=next_value))
    else:
        counter.next_value = next_value
    session.flush()
