"""Reading and writing the test database the way several test files need it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import Executable, event, select, text

from helpdesk.extensions import db
from helpdesk.models import Ticket
from helpdesk.services import Actor, TicketsService

CUSTOMER = Actor.customer("ann@example.com", "Ann Example")


def tickets() -> list[Ticket]:
    return list(db.session.execute(select(Ticket).order_by(Ticket.number)).scalars())


def open_ticket(service: TicketsService, actor: Actor = CUSTOMER, **overrides) -> Ticket:
    """A committed ticket; a customer's comes by mail, a staff member's from the portal."""
    values = dict(
        subject="VPN drops every hour",
        description="Since Monday the VPN disconnects.",
        requester_email="ann@example.com",
        requester_name="Ann Example",
        channel="email" if actor.is_customer else "web",
        actor=actor,
        is_email_originated=actor.is_customer,
    )
    values.update(overrides)
    ticket = service.open_ticket(**values)
    db.session.commit()
    return ticket


def resolve(service: TicketsService, ticket: Ticket, actor: Actor) -> None:
    """Walk a ticket from new to resolved, as an agent does, and commit."""
    service.mark_viewed(ticket, actor=actor)
    service.change_status(ticket, "in_progress", actor=actor)
    service.change_status(ticket, "resolved", actor=actor, reason="Replaced the router.")
    db.session.commit()


@contextmanager
def refused_as_unreachable(word: str) -> Iterator[None]:
    """PostgreSQL refuses any message whose body holds `word` with SQLSTATE 08006
    (connection failure) while it serves everything else: a poison mail that a
    "transient" error class cannot tell apart from an outage."""
    with refused_by_database(word, "08006"):
        yield


@contextmanager
def refused_by_database(
    word: str, sqlstate: str, table: str = "messages", column: str = "body"
) -> Iterator[None]:
    """PostgreSQL refuses any row of `table` whose `column` holds `word` with
    `sqlstate` (54000: program limit exceeded, as a text too long for an index),
    while it serves everything else."""
    db.session.rollback()
    db.session.execute(
        text(
            "CREATE FUNCTION refuse_poison() RETURNS trigger AS $$ BEGIN "
            f"IF NEW.{column} LIKE '%{word}%' THEN "
            f"RAISE EXCEPTION 'refused for the test' USING ERRCODE = '{sqlstate}'; END IF; "
            "RETURN NEW; END $$ LANGUAGE plpgsql"
        )
    )
    db.session.execute(
        text(
            f"CREATE TRIGGER refuse_poison BEFORE INSERT ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION refuse_poison()"
        )
    )
    db.session.commit()
    try:
        yield
    finally:
        db.session.rollback()
        db.session.execute(text(f"DROP TRIGGER refuse_poison ON {table}"))
        db.session.execute(text("DROP FUNCTION refuse_poison()"))
        db.session.commit()


@contextmanager
def statements() -> Iterator[list[str]]:
    """Every statement the block sent to the database: what a page or a mail costs
    in round trips, which must not grow with the rows it could have read."""
    sent: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        sent.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


@contextmanager
def committed_after(is_it: Callable[[str], bool], change: Executable, nth: int = 1) -> Iterator[None]:
    """Run `change` from another connection, committed, right after the `nth`
    statement of the block that `is_it` picks: another person's change landing
    between two statements of one request, which PostgreSQL's READ COMMITTED lets the
    later one see (SQLite's BEGIN IMMEDIATE holds every other writer off until the
    request ends). Fails when the block sent fewer such statements."""
    seen = 0

    def land(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        nonlocal seen
        if not is_it(statement):
            return
        seen += 1
        if seen == nth:
            with db.engine.begin() as other:
                other.execute(change)

    event.listen(db.engine, "after_cursor_execute", land)
    try:
        yield
    finally:
        event.remove(db.engine, "after_cursor_execute", land)
    assert seen >= nth, f"the block sent {seen} of the {nth} statements looked for"
