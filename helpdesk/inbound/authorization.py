"""May this sender open a ticket, or write into this one? (docs/mail-gateway.md.)

Only a sender whose `From` is believed (see `authentication`) gets here as known.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, select, text
from sqlalchemy.orm import Session

from helpdesk import addresses
from helpdesk.models import Contact, Participant, Ticket


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
    email = addresses.normalize(address)
    if "@" not in email:
        return UNKNOWN
    organization_id, staff_id = session.execute(
        _IDENTIFY, {"email": email, "domain": "@" + email.rsplit("@", 1)[1]}
    ).one()
    return Sender(organization_id, staff_id)


# Written out rather than composed with select(): every inbound mail runs it, and
# building and cache-keying the composed statement cost three times its execution.
_IDENTIFY = text(
    "SELECT (SELECT organization_id FROM authorized_senders"
    "        WHERE pattern IN (:email, :domain) ORDER BY pattern = :email DESC LIMIT 1),"
    "       (SELECT id FROM staff_users WHERE email = :email AND is_active)"
)
# Built once for the same reason: every reply not from its requester asks it.
_PARTICIPANT = select(Participant.id).where(
    Participant.ticket_id == bindparam("ticket"), Participant.email == bindparam("email")
)


def may_reply(session: Session, ticket: Ticket, address: str, sender: Sender | None = None) -> bool:
    """Requester, CC participant, authorized sender of T's organization, or staff.

    `sender` is `identify(session, address)` when the caller has it already."""
    requester = session.get(Contact, ticket.requester_id)
    if requester is not None and requester.email == address:
        return True
    participant = session.execute(_PARTICIPANT, {"ticket": ticket.id, "email": address}).first()
    if participant is not None:
        return True
    if sender is None:
        sender = identify(session, address)
    if sender.authorized and sender.organization_id == ticket.organization_id:
        return True
    return sender.staff_id is not None
