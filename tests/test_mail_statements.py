"""What one mail asks of the database (docs/benchmarks.md, the levers of issue 19).

Every statement is a round trip and PostgreSQL's work, on every mail: a question
asked twice or a row read back right after its INSERT is measured cost. These
tests name the questions a new ticket's mail and a reply ask, and fail when one is
asked more than once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.orm import ORMExecuteState, Session

from helpdesk.extensions import db
from helpdesk.inbound.ingest import Envelope, Outcome, ingest
from helpdesk.models import InboundMail
from tests.support.database import open_ticket
from tests.support.mail import SUPPORT, message


@contextmanager
def questions() -> Iterator[Counter[str]]:
    """How often the block asked each of the questions below."""
    asked: Counter[str] = Counter()

    def record(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        text = " ".join(statement.split())
        if "FROM authorized_senders" in text:
            asked["sender rule"] += 1
        if text.startswith("SELECT contacts.id, contacts.email"):
            asked["contact by address"] += 1
        if text.startswith("INSERT INTO contacts"):
            asked["new contact"] += 1
        if text.startswith("SELECT count(tickets.id)"):
            asked["customer's ticket counts"] += 1
        if "ticket_counter" in text:
            asked["number"] += 1

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield asked
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


@contextmanager
def statements() -> Iterator[list[tuple[object, bool]]]:
    """Each statement the block ran through a session, as the object it was, and
    whether it went through the ORM's layers (it names a model)."""
    ran: list[tuple[object, bool]] = []

    def record(state: ORMExecuteState) -> None:
        ran.append((state.statement, state.is_orm_statement))

    event.listen(Session, "do_orm_execute", record)
    try:
        yield ran
    finally:
        event.remove(Session, "do_orm_execute", record)


def mail(app, msg, sender):  # type: ignore[no-untyped-def]
    return ingest(msg.as_bytes(), Envelope(sender, (SUPPORT,), "smtp"), app.config)


def test_a_new_customers_first_mail_asks_each_question_once(app, senders):
    with questions() as asked:
        result = mail(app, message(sender="new@corp.example"), "new@corp.example")
    assert result.outcome is Outcome.CREATED
    assert asked == {
        "sender rule": 1,
        "contact by address": 1,  # the limit's check finds it; the ticket reuses it
        "new contact": 1,  # and its INSERT returns the row: no second SELECT
        "customer's ticket counts": 1,
        "number": 1,
    }


def test_a_colleagues_reply_asks_the_sender_rule_once(app, senders):
    """Not the requester, not a participant: allowed as an authorized sender of the
    ticket's organization, which `identify` answered already."""
    first = mail(app, message(sender="ann@corp.example", subject="VPN down"), "ann@corp.example")
    db.session.remove()
    with questions() as asked:
        reply = mail(
            app,
            message(sender="bob@corp.example", subject=f"Re: VPN down [{first.ticket_number}]"),
            "bob@corp.example",
        )
    assert (reply.outcome, reply.ticket_number) == (Outcome.APPENDED, first.ticket_number)
    assert asked["sender rule"] == 1
    assert asked["number"] == 0


def test_a_staff_reply_to_three_recipients_is_queued_in_one_insert(app, backend, service, agent_actor):
    """The copies of a reply leave their times to the model's default, the database's
    clock as SQL in the INSERT, so PostgreSQL gets them in one statement: each held
    that SQL as a value of its own, which the ORM writes one INSERT a row. (SQLite's
    driver is handed one row at a time either way.)"""
    ticket = open_ticket(
        service, requester_email="ann@example.com", cc=[("bob@example.com", ""), ("cy@example.com", "")]
    )
    inserts: list[str] = []

    def record(conn, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
        if statement.lstrip().startswith("INSERT INTO outbox"):
            inserts.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        service.add_message(ticket, body="Which model is it?", actor=agent_actor, channel="web")
        db.session.commit()
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    assert len(inserts) == (1 if backend == "postgresql" else 3)


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_mail_answering_received_mail_finds_it_through_an_index(app):
    """Matching and holding look received mail up by Message-ID (In-Reply-To,
    References): with no index on `inbound_mails.message_id` every such mail read
    the whole table, the longer the helpdesk ran the slower, and a flood of held
    mail naming 50 References each made a scan apiece. Asked with sequential scans
    off, PostgreSQL's plan shows whether an index can serve the lookup at all."""
    lookup = select(InboundMail.ticket_id).where(InboundMail.message_id.in_(["<a@x>", "<b@x>"]))
    compiled = lookup.compile(db.engine, compile_kwargs={"literal_binds": True})
    db.session.execute(text("SET LOCAL enable_seqscan = off"))
    plan = "\n".join(db.session.execute(text(f"EXPLAIN {compiled}")).scalars())
    db.session.rollback()
    assert "ix_inbound_mails_message_id" in plan, plan


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_new_tickets_mail_runs_statements_built_once_and_loads_only_its_contact(app, senders):
    """Every new mail runs the same statement objects: one composed per mail is keyed
    for SQLAlchemy's compiled cache anew, and one naming a model runs through the
    ORM's compiling and result layers though it loads no object. Each cost the
    gateway's CPU on every mail (docs/benchmarks.md, "Issue 19: CPU per mail,
    sixteenth session"); the contact is the one object the mail path loads.
    PostgreSQL only: SQLite writes a ticket's rows one statement each, composed
    per ticket (`numbering`), and no gateway runs on it under load."""
    mail(app, message(sender="ann@corp.example", subject="Printer jammed"), "ann@corp.example")
    db.session.remove()
    with statements() as first:
        mail(app, message(sender="ann@corp.example", subject="Scanner jammed"), "ann@corp.example")
    db.session.remove()
    with statements() as second:
        mail(app, message(sender="ann@corp.example", subject="Fax jammed"), "ann@corp.example")
    assert len(first) == len(second) >= 5
    assert [ran for ran, _ in second if not any(ran is earlier for earlier, _ in first)] == []
    assert [" ".join(str(ran).split())[:34] for ran, orm in second if orm] == [
        "SELECT contacts.id, contacts.email"
    ]


def test_forged_signed_ids_cost_one_outbox_query(app, senders):
    """A signed Message-ID's MAC covers the recipient its outbox row stored, so it
    can only be checked against the row: each of the ~100 ids a mail may name
    (`MAX_THREAD_IDS` of In-Reply-To and of References), forged in our domain's
    format, cost a primary-key lookup, and again for each question asked of them.
    The rows they name are read in one query per question."""
    domain = app.config["MESSAGE_ID_DOMAIN"]
    forged = [f"<tkt.{n}.{1000 + n}.{'0' * 24}@{domain}>" for n in range(1, 101)]
    outbox: list[str] = []

    def record(conn, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
        if "FROM outbox" in statement:
            outbox.append(statement)

    msg = message(in_reply_to=" ".join(forged[:50]), references=" ".join(forged[50:]))
    event.listen(db.engine, "before_cursor_execute", record)
    try:
        result = mail(app, msg, "ann@example.com")
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    assert result.outcome is Outcome.CREATED
    assert len(outbox) == 2, outbox[:3]  # a reply's ticket, and staff mail of no ticket
