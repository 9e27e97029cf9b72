"""May this sender open a ticket, or write into this one? (SPEC §7 steps 4–5.)

Only a sender whose `From` is believed (see `authentication`) gets here as known.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from helpdesk.models import AuthorizedSender, Contact, Participant, StaffUser, Ticket
from helpdesk.services.contacts import normalize_email


@dataclass(frozen=True)
class Sender:
    """What the helpdesk knows about a From address."""

    organization_id: int | None  # of the authorized-sender rule: exact address, else @domain
    staff_id: int | None  # an active staff member with this address

    @property
    def authorized(self) -> bool:
        return self.organization_id is not None


UNKNOWN = Sender(None, None)


def identify(session: Session, address: str) -> Sender:
    """The sender rule and the staff account of `address`, in one round trip:
    every inbound mail asks this, so it costs one small statement, not two ORM loads."""
    email = normalize_email(address)
    if "@" not in email:
        return UNKNOWN
    rule = (select(AuthorizedSender.organization_id)
            .where(AuthorizedSender.pattern.in_((email, "@" + email.rsplit("@", 1)[1])))
            .order_by((AuthorizedSender.pattern == email).desc())
            .limit(1).scalar_subquery())
    staff = (select(StaffUser.id)
             .where(StaffUser.email == email, StaffUser.is_active.is_(True))
             .scalar_subquery())
    organization_id, staff_id = session.execute(select(rule, staff)).one()
    return Sender(organization_id, staff_id)


def may_reply(session: Session, ticket: Ticket, address: str) -> bool:
    """Requester, CC participant, authorized sender of T's organization, or staff."""
    requester = session.get(Contact, ticket.requester_id)
    if requester is not None and requester.email == address:
        return True
    participant = session.execute(
        select(Participant.id).where(Participant.ticket_id == ticket.id, Participant.email == address)
    ).first()
    if participant is not None:
        return True
    sender = identify(session, address)
    if sender.authorized and sender.organization_id == ticket.organization_id:
        return True
    return sender.staff_id is not None
