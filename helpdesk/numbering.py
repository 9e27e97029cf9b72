"""Ticket numbers (SPEC §3): one gap-free sequence for every channel.

The number comes from a single counter row, incremented in the same transaction
that stores the ticket; a rolled-back creation also rolls back its increment, so no
number is ever skipped, and the row lock (PostgreSQL) or the database write lock
(SQLite) means no number is ever handed out twice. The lock is held from the
increment until commit, so `assign_number` is meant to be the ticket transaction's
last statement: callers insert the ticket and its first message first, then take
the number, then commit.
"""
from __future__ import annotations

import re
from functools import lru_cache

from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from helpdesk.errors import Conflict, ValidationError
from helpdesk.models import Ticket, TicketCounter

COUNTER_ID = 1

_PG_ASSIGN = text(
    "WITH c AS (UPDATE ticket_counter SET next_value = next_value + 1 "
    "WHERE id = :counter RETURNING next_value - 1 AS n) "
    "UPDATE tickets SET number = c.n FROM c WHERE tickets.id = :ticket RETURNING c.n"
)
_TAKE = text(
    "UPDATE ticket_counter SET next_value = next_value + 1 "
    "WHERE id = :counter RETURNING next_value - 1"
)
_STORE = text("UPDATE tickets SET number = :n WHERE id = :ticket")


def format_number(number: int, prefix: str, width: int) -> str:
    """`78` → `TKT-000078`; past the width it grows (`TKT-1000000`), never wraps."""
    return f"{prefix}{number:0{width}d}"


@lru_cache(maxsize=16)
def _patterns(prefix: str) -> tuple[re.Pattern[str], re.Pattern[str]]:
    body = re.escape(prefix) + r"0*(\d{1,18})"
    exact = re.compile(r"^\s*\[?\s*(?:" + body + r"|0*(\d{1,18}))\s*\]?\s*$", re.IGNORECASE)
    anywhere = re.compile(r"(?<![A-Za-z0-9])" + body + r"(?![A-Za-z0-9])", re.IGNORECASE)
    return exact, anywhere


def parse_number(value: str, prefix: str) -> int | None:
    """Read a number typed by a person: `tkt-78`, `TKT-000078`, `[TKT-000078]`, `78`."""
    match = _patterns(prefix)[0].match(value or "")
    if not match:
        return None
    number = int(match.group(1) or match.group(2))
    return number if number > 0 else None


def find_numbers(text_: str, prefix: str) -> list[int]:
    """Every ticket number mentioned in free text (a subject line), in order."""
    found = (int(m.group(1)) for m in _patterns(prefix)[1].finditer(text_ or ""))
    return list(dict.fromkeys(n for n in found if n > 0))


def assign_number(session: Session, ticket: Ticket) -> int:
    """Give a flushed ticket the next number, inside the caller's transaction."""
    if ticket.id is None:
        session.flush()
    for _attempt in range(2):
        number = _take_and_store(session, ticket.id)
        if number is not None:
            set_committed_value(ticket, "number", number)
            return number
        _create_counter(session)
    raise RuntimeError("ticket counter row could not be created")


def _take_and_store(session: Session, ticket_id: int) -> int | None:
    params = {"counter": COUNTER_ID, "ticket": ticket_id}
    if session.get_bind().dialect.name == "postgresql":
        # One round trip while the counter row is locked.
        return session.execute(_PG_ASSIGN, params).scalar()
    number = session.execute(_TAKE, params).scalar()
    if number is not None:
        session.execute(_STORE, {"n": number, "ticket": ticket_id})
    return number


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
    counter = session.get(TicketCounter, COUNTER_ID)
    if counter is not None:
        return counter.next_value
    return (session.execute(select(func.max(Ticket.number))).scalar() or 0) + 1


def set_next(session: Session, next_value: int) -> None:
    """Start the sequence at `next_value` (for an install migrated from elsewhere).

    Refuses a value at or below the highest number in use: that would hand out a
    number twice. The counter row is locked first so no creation slips in between
    the check and the write.
    """
    if next_value < 1:
        raise ValidationError({"next": "must be a positive integer"})
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
