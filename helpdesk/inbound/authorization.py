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
    every inbound mail asks this, so it costs one small statement, not two ORM loads.

    A rule or a staff address stored in another spelling of an internationalised
    domain (`addresses.either_form`: `bücher.example` for `xn--bcher-kva.example`)
    is the same one; an address rule in any spelling wins over a domain rule, and
    the spelling as written over the others (docs/mail-gateway.md, "One domain, two
    spellings")."""
    email = addresses.normalize(address)
    if "@" not in email:
        return UNKNOWN
    domain = "@" + email.rsplit("@", 1)[1]
    forms = addresses.either_form(email)
    if len(forms) == 1:  # an ASCII domain: the statement of one spelling
        organization_id, staff_id = session.execute(_IDENTIFY, {"email": email, "domain": domain}).one()
    else:
        organization_id, staff_id = session.execute(
            _IDENTIFY_SPELLINGS,
            {
                "email": email,
                "domain": domain,
                "emails": sorted(forms),
                "patterns": sorted(forms | {"@" + form.rsplit("@", 1)[1] for form in forms}),
            },
        ).one()
    return Sender(organization_id, staff_id)


# Written out rather than composed with select(): every inbound mail runs it, and
# building and cache-keying the composed statement cost three times its execution.
_IDENTIFY = text(
    "SELECT (SELECT organization_id FROM authorized_senders"
    "        WHERE pattern IN (:email, :domain) ORDER BY pattern = :email DESC LIMIT 1),"
    "       (SELECT id FROM staff_users WHERE email = :email AND is_active)"
)
# The same for an internationalised domain, every spelling of it at once: address
# rules (no leading @) first, then the spelling as written.
_IDENTIFY_SPELLINGS = text(
    "SELECT (SELECT organization_id FROM authorized_senders WHERE pattern IN :patterns"
    "        ORDER BY substr(pattern, 1, 1) = '@', pattern IN (:email, :domain) DESC LIMIT 1),"
    "       (SELECT id FROM staff_users WHERE email IN :emails AND is_active"
    "        ORDER BY email = :email DESC LIMIT 1)"
).bindparams(bindparam("patterns", expanding=True), bindparam("emails", expanding=True))
# Built once for the same reason: every reply not from its requester asks it.
_PARTICIPANT = select(Participant.id).where(
    Participant.ticket_id == bindparam("ticket"), Participant.email == bindparam("email")
)
_PARTICIPANT_SPELLINGS = select(Participant.id).where(
    Participant.ticket_id == bindparam("ticket"), Participant.email.in_(bindparam("emails", expanding=True))
)


def may_reply(session: Session, ticket: Ticket, address: str, sender: Sender | None = None) -> bool:
    """Requester, CC participant, authorized sender of T's organization, or staff.

    `sender` is `identify(session, address)` when the caller has it already. The
    requester or a participant stored in another spelling of an internationalised
    domain is the same person (`addresses.either_form`)."""
    forms = addresses.either_form(address)
    requester = session.get(Contact, ticket.requester_id)
    if requester is not None and requester.email in forms:
        return True
    if len(forms) == 1:
        participant = session.execute(_PARTICIPANT, {"ticket": ticket.id, "email": address}).first()
    else:
        participant = session.execute(
            _PARTICIPANT_SPELLINGS, {"ticket": ticket.id, "emails": sorted(forms)}
        ).first()
    if participant is not None:
        return True
    if sender is None:
        sender = identify(session, address)
    if sender.authorized and sender.organization_id == ticket.organization_id:
        return True
    return sender.staff_id is not None
