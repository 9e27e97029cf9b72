"""The public tracker: a customer looks a ticket up with its number and their email.

Nobody may learn anything that is not theirs: an unknown number and a known number
with the wrong email get the same `NotFound`, with the same message, and the same
work (the ticket is always looked up, the address always compared), so neither the
answer nor its timing tells them apart. The view holds what the customer already
knows or is owed: no internal notes, no staff e-mail addresses, no reasons.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from helpdesk import addresses, numbering
from helpdesk.errors import NotFound
from helpdesk.models import Participant, Ticket

NOT_FOUND = "No ticket matches this number and email address."


@dataclass(frozen=True)
class PublicReply:
    author: str
    body: str
    created_at: datetime
    from_customer: bool


@dataclass(frozen=True)
class StatusChange:
    status: str
    created_at: datetime


@dataclass(frozen=True)
class CustomerView:
    number: str
    subject: str
    status: str
    priority: str
    category: str
    created_at: datetime
    updated_at: datetime
    replies: list[PublicReply]
    timeline: list[StatusChange]


def find(session: Session, number_text: str, email: str, prefix: str) -> Ticket:
    """The ticket if `email` is its requester or a CC participant, else NotFound."""
    number = numbering.parse_number(number_text or "", prefix)
    ticket = None
    if number is not None:
        ticket = session.execute(select(Ticket).where(Ticket.number == number)).scalar_one_or_none()
    address = addresses.normalize(email)
    allowed: list[str] = []
    if ticket is not None:
        allowed = [
            ticket.requester.email,
            *session.execute(select(Participant.email).where(Participant.ticket_id == ticket.id)).scalars(),
        ]
    matched = False
    for candidate in allowed or ["-"]:
        matched |= hmac.compare_digest(candidate.encode(), address.encode())
    if ticket is None or not matched or not address:
        raise NotFound(NOT_FOUND)
    return ticket


def customer_view(ticket: Ticket, config: Mapping[str, Any]) -> CustomerView:
    replies = [
        PublicReply(
            author=(
                message.author_staff.name
                if message.author_staff is not None
                else "Support"
                if message.author_contact_id is None
                else message.author_label
            ),
            body=message.body,
            created_at=message.created_at,
            from_customer=message.author_contact_id is not None,
        )
        for message in ticket.messages
        if message.kind == "reply"
    ]
    timeline = [
        StatusChange(row.new_value or "", row.created_at) for row in ticket.history if row.field == "status"
    ]
    return CustomerView(
        number=numbering.display_number(ticket.number, config),
        subject=ticket.subject,
        status=ticket.status,
        priority=ticket.priority,
        category=ticket.category,
        created_at=ticket.created_at,
        updated_at=ticket.updated_at,
        replies=replies,
        timeline=timeline,
    )
