"""Finding a customer's contact by address (helpdesk.services.contacts.find_or_create).

Every new mail asks for its sender's contact twice in one transaction (the
per-customer limit, then the ticket's requester) and a new customer's contact is
created there: the statements it costs are counted here, and the shortcut that
saves them is shown never to answer from another transaction or a rolled-back one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event, select, update

from helpdesk.extensions import db
from helpdesk.models import Contact
from helpdesk.services import contacts


@contextmanager
def statements() -> Iterator[list[str]]:
    """The first word of each SQL statement the block sends to the database, in
    order (SQLite's BEGIN, which opens the transaction, left out)."""
    sent: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if not statement.startswith("BEGIN"):
            sent.append(statement.split(None, 1)[0])

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


def test_a_new_contact_costs_a_lookup_and_an_insert_and_is_its_row(app):
    """The INSERT returns the row: no SELECT reads it back."""
    with statements() as sent:
        contact = contacts.find_or_create(db.session, "Ann@Example.com", "Ann")
    assert sent == ["SELECT", "INSERT"]
    assert (contact.email, contact.name, contact.language, contact.phone) == (
        "ann@example.com",
        "Ann",
        "",
        None,
    )
    db.session.commit()
    row = db.session.execute(
        select(Contact.id, Contact.created_at).where(Contact.email == "ann@example.com")
    ).one()
    assert (contact.id, contact.created_at) == (row.id, row.created_at)


def test_asked_again_in_the_same_transaction_it_costs_nothing(app):
    first = contacts.find_or_create(db.session, "ann@example.com")
    with statements() as sent:
        again = contacts.find_or_create(db.session, "ANN@example.com", "Ann")
    assert again is first and sent == []
    assert again.name == "Ann"  # a name learnt later is still taken
    db.session.flush()
    with statements() as sent:
        other = contacts.find_or_create(db.session, "bob@example.com")
    assert other is not first and sent == ["SELECT", "INSERT"]


def test_an_existing_contact_costs_one_select(app):
    contacts.find_or_create(db.session, "ann@example.com", "Ann")
    db.session.commit()
    db.session.remove()
    with statements() as sent:
        contact = contacts.find_or_create(db.session, "ann@example.com")
    assert sent == ["SELECT"]
    assert contact.name == "Ann"


def test_after_a_commit_the_row_is_read_again(app):
    """Another transaction may change the contact between two of ours."""
    contacts.find_or_create(db.session, "ann@example.com", "Ann")
    db.session.commit()
    with db.engine.begin() as other:
        other.execute(update(Contact).where(Contact.email == "ann@example.com").values(language="es"))
    with statements() as sent:
        contact = contacts.find_or_create(db.session, "ann@example.com")
    assert sent, "answered from the committed transaction"
    assert contact.language == "es"


def test_after_a_rollback_the_contact_is_created_again(app):
    """A contact whose INSERT was rolled back does not exist; the shortcut must not
    hand it out (the ticket would point at a row that is not there)."""
    contacts.find_or_create(db.session, "ann@example.com", "Ann")
    db.session.rollback()
    contact = contacts.find_or_create(db.session, "ann@example.com", "Ann")
    db.session.commit()
    assert (
        db.session.execute(select(Contact.id).where(Contact.email == "ann@example.com")).scalar_one()
        == contact.id
    )


def test_a_contact_created_by_another_transaction_first_is_read_back(app):
    """Between the lookup that found nothing and the INSERT, a concurrent creator
    wins: the INSERT does nothing on conflict and returns no row, and the winner's
    row is the answer. The winner's row is written on the same connection just
    before our INSERT, so the race is lost the same way on both databases."""

    def competitor(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if statement.lstrip().startswith("INSERT INTO contacts"):
            cursor.connection.cursor().execute(
                "INSERT INTO contacts (email, name, created_at, language) "
                "VALUES ('ann@example.com', 'Winner', CURRENT_TIMESTAMP, 'pt')"
            )

    event.listen(db.engine, "before_cursor_execute", competitor)
    try:
        with statements() as sent:
            contact = contacts.find_or_create(db.session, "ann@example.com", "Loser")
    finally:
        event.remove(db.engine, "before_cursor_execute", competitor)
    assert sent == ["SELECT", "INSERT", "SELECT"]
    assert (contact.name, contact.language) == ("Winner", "pt")
    db.session.commit()
    assert db.session.execute(
        select(Contact.name).where(Contact.email == "ann@example.com")
    ).scalars().all() == ["Winner"]


def test_mail_from_a_marked_address_clears_its_mark_and_logs_that_the_customer_did(app, caplog):
    """The customer's own mail clears the mark (`heard_from`), on their row without a
    statement when the address is its mailbox's one spelling; that clearing is
    logged as every other is, with the customer as who cleared it, and mail from an
    address not marked logs nothing (docs/outbound-mail.md, "Loop rules")."""
    caplog.set_level(logging.INFO, logger="helpdesk.services.contacts")
    marked = contacts.mark_undeliverable(db.session, "ann@example.com")
    fine = contacts.find_or_create(db.session, "bob@example.com")
    for contact in (marked, fine, marked):
        contacts.heard_from(db.session, contact, "email")
    assert marked.undeliverable_since is None
    assert [r.getMessage() for r in caplog.records if r.name == "helpdesk.services.contacts"] == [
        "undeliverable mark cleared: address='ann@example.com' contacts=['ann@example.com'] "
        "by='ann@example.com' kind=customer staff_id=None"
    ]
