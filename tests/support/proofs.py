"""Proving a WhatsApp customer reads a mailbox in tests (docs/integrations.md, "Who
the customer is"), the way a customer does it: a code is requested, read from the
mail the outbox queued, and given back. Nothing in the product is bypassed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from helpdesk import addresses
from helpdesk.models import Contact, OutboxMessage
from helpdesk.services import email_proofs, notifications


def mailed_code(session: Session, email: str) -> str:
    """The code in the newest verification mail queued for `email`."""
    reason = session.execute(
        select(OutboxMessage.status_reason)
        .where(OutboxMessage.kind == "email_code", OutboxMessage.to_address == addresses.normalize(email))
        .order_by(OutboxMessage.id.desc())
        .limit(1)
    ).scalar_one()
    return notifications.code_entries(reason)[1]


def request(session: Session, config: Mapping[str, Any], phone: str, email: str) -> str:
    """Ask for a code for `phone` and `email` and commit; the code mailed."""
    email_proofs.request_code(session, config, phone, email, "en")
    session.commit()
    return mailed_code(session, email)


def prove(session: Session, config: Mapping[str, Any], phone: str, email: str, name: str = "") -> Contact:
    """Ask for a code, give it back (binding the number to `email`), commit; the
    bound contact."""
    code = request(session, config, phone, email)
    contact = email_proofs.confirm(session, config, phone, email, code, name)
    session.commit()
    return contact


def verify_by_tools(tools: Any, session: Session, customer: dict[str, str], email: str) -> dict[str, Any]:
    """The same through the assistant's `verify_email`, with a `tools(customer, *calls)`
    that answers the outputs of one request; the confirming call's output."""
    (asked,) = tools(customer, ("verify_email", {"email": email}))
    assert asked["success"] is True, asked
    code = mailed_code(session, email)
    (confirmed,) = tools(customer, ("verify_email", {"email": email, "code": code}))
    return dict(confirmed)
