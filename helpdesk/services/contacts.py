"""Customers known by email address, and whether mail still reaches them (docs/outbound-mail.md)."""

from __future__ import annotations

from sqlalchemy import bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from helpdesk import addresses
from helpdesk.clock import now
from helpdesk.models import Contact

# Built once: every new ticket looks its requester up, and composing the statement
# anew cost as much as running it.
_BY_EMAIL = select(Contact).where(Contact.email == bindparam("email"))


def find_or_create(session: Session, email: str, name: str = "") -> Contact:
    """Find or create the contact; safe against a concurrent creator (the insert
    does nothing on conflict and the winner's row is read back)."""
    email = addresses.normalize(email)
    name = addresses.display_name(name)
    contact = session.execute(_BY_EMAIL, {"email": email}).scalar_one_or_none()
    if contact is not None:
        if name and not contact.name:
            contact.name = name
        return contact
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(
        insert(Contact)
        .values(email=email, name=name or "", created_at=now())
        .on_conflict_do_nothing(index_elements=["email"])
    )
    return session.execute(_BY_EMAIL, {"email": email}).scalar_one()


def mark_undeliverable(session: Session, email: str) -> Contact:
    """A bounce proved mail to this address fails: notifications skip it from now on."""
    contact = find_or_create(session, email)
    if contact.undeliverable_since is None:
        contact.undeliverable_since = now()
    return contact


def heard_from(contact: Contact) -> None:
    """Mail from the address itself proves it works again (a full mailbox emptied,
    a typo fixed by the customer's admin), so an earlier bounce stops counting."""
    if contact.undeliverable_since is not None:
        contact.undeliverable_since = None
