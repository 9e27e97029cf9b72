"""May this sender open a ticket, or write into this one? (SPEC §7 steps 4–5.)

Only a sender whose `From` is believed (see `authentication`) gets here as known.
"""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from helpdesk.models import AuthorizedSender, Contact, Participant, StaffUser, Ticket
from helpdesk.services.senders import SendersService


def sender_rule(session: Session, address: str) -> AuthorizedSender | None:
    """The authorized-sender rule that lets `address` open tickets, if any."""
    return SendersService(session).match(address)


def staff_user(session: Session, address: str) -> StaffUser | None:
    return session.execute(
        select(StaffUser).where(StaffUser.email == address, StaffUser.is_active.is_(True))
    ).scalar_one_or_none()


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
    rule = sender_rule(session, address)
    if rule is not None and ticket.organization_id is not None:
        if rule.organization_id == ticket.organization_id:
            return True
    return staff_user(session, address) is not None
