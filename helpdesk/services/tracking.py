"""The public tracker: a customer looks a ticket up with its number and their email.

Nobody may learn anything that is not theirs: an unknown number and a known number
with the wrong email get the same `NotFound`, with the same message, and the same
work (one statement reads who may look, whether or not the number exists; the
address is always compared), so neither the answer nor its timing tells them apart.
The view holds what the customer already knows or is owed: no internal notes, no
e-mail address of staff or of other participants, no reasons, and no one else's
rating: a reader sees the score and comment of the rating they gave, and of one
someone else gave only that there is one (docs/security.md, "Customer links").

Texts here are English (the API answers in English) and marked with `N_`: the
tracker shows them in the reader's language (docs/languages.md).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from typing import Any, NamedTuple

from sqlalchemy import bindparam, func, select, union_all
from sqlalchemy.orm import Session, defer

from config import LANGUAGES
from helpdesk import addresses, numbering
from helpdesk.errors import NotFound
from helpdesk.inbound import automail
from helpdesk.languages import N_
from helpdesk.models import Contact, Message, Participant, Ticket, TicketHistory
from helpdesk.services import contacts, notifications, satisfaction, thread
from helpdesk.services.tickets import survivor

NOT_FOUND = N_("No ticket matches this number and email address.")
# Who wrote a reply when no name is known (`PublicReply.author`).
SUPPORT = N_("Support")
CUSTOMER = N_("Customer")
UNNAMED_AUTHORS = (SUPPORT, CUSTOMER)


@dataclass(frozen=True)
class PublicReply:
    author: str
    body: str  # its first REPLY_CHARS_SHOWN characters
    body_truncated: bool  # whether it had more
    created_at: datetime
    from_customer: bool


@dataclass(frozen=True)
class StatusChange:
    status: str
    created_at: datetime


@dataclass(frozen=True)
class Rating:
    rating: int
    comment: str


@dataclass(frozen=True)
class CustomerView:
    number: str
    subject: str
    status: str
    priority: str
    category: str
    created_at: datetime
    updated_at: datetime
    replies: list[PublicReply]  # the newest REPLIES_SHOWN, oldest first
    older_replies: bool  # whether older ones were left out
    timeline: list[StatusChange]
    satisfaction: Rating | None  # the reader's own rating
    rated: bool  # whether anyone rated the ticket


# Replies the customer's view shows, the newest: a mail loop or a merge can give a
# ticket thousands, and the tracker page and `POST /public/track` showed every one
# (docs/web.md, "Long threads"). The customer has the older ones in their mail.
REPLIES_SHOWN = 50
# Characters of each reply the view shows, read in SQL: a mail's text may be most of
# MAX_MESSAGE_BYTES, and a customer may send as many as they like to their own
# ticket, so 50 of them made every opening of its status link (no limit on a GET)
# a page of up to a gigabyte, read whole and rendered (docs/web.md, "The public
# tracker"). The whole text is in the customer's mail. The staff ticket page's bound.
REPLY_CHARS_SHOWN = thread.CHARS_SHOWN

# The longest spelling of a number a person types; longer text is not a number. The
# lookup and the per-ticket rate limit both read the number through
# `requested_number`, so they always name the same ticket.
MAX_NUMBER_TEXT = 64

# Who may look a ticket up: its requester and its CC participants, in one statement
# whether or not the number exists, so a known number costs what an unknown one does.
_ALLOWED = union_all(
    select(Contact.email)
    .join(Ticket, Ticket.requester_id == Contact.id)
    .where(Ticket.number == bindparam("number")),
    select(Participant.email)
    .join(Ticket, Participant.ticket_id == Ticket.id)
    .where(Ticket.number == bindparam("number")),
)


def requested_number(text: object, prefix: str) -> int | None:
    """The ticket number a visitor typed, or None when it is not one."""
    if not isinstance(text, str) or len(text) > MAX_NUMBER_TEXT:
        return None
    return numbering.parse_number(text, prefix)


class Found(NamedTuple):
    """A lookup's ticket and the address it was found by, as stored: the spelling
    the ticket's people are written in, which the customer's view, their language
    and the lookup's link read them by."""

    ticket: Ticket
    address: str


def find(session: Session, number_text: str, email: str, config: Mapping[str, Any]) -> Found:
    """The ticket if `email` is its requester or a CC participant, else NotFound. A
    merged ticket's lookup shows its survivor, where its people are participants.

    Never by an address of the helpdesk's own or of a staff member
    (`contacts.is_ours`): customers copy their account manager, so one agent's
    address is a CC of many customers' tickets, and whoever knew or guessed it (a
    name at the company's domain) read each of them by trying the numbers in turn. Staff read tickets in
    the portal. Nor by an automatic mailbox (`automail.is_machine_address`: a
    system's `noreply@` copied on tickets), which nobody reads, so nobody typing it
    is its owner. Asked before the ticket is, whatever the number: the answer's
    timing says nothing of whether that address is on the ticket.

    `email` is compared in either spelling of an internationalised domain
    (`addresses.either_form`): a customer stored as `ann@xn--bcher-kva.example`, as
    her mail program wrote her, who types `ann@bücher.example` is the same mailbox,
    and was told "not found" of her own ticket (docs/integrations.md, "Who the
    customer is"). A homograph stays another address."""
    address = addresses.normalize(email)
    ours = "@" in address and (
        contacts.is_ours(session, address, config) or automail.is_machine_address(address)
    )
    number = requested_number(number_text, config["TICKET_PREFIX"])
    allowed = session.execute(_ALLOWED, {"number": number or 0}).scalars().all()
    forms = sorted(addresses.either_form(address))
    matched = ""
    for candidate in allowed or ["-"]:  # a comparison either way: the same cost
        for form in forms:
            if hmac.compare_digest(candidate.encode(), form.encode()):
                matched = candidate
    # The stand-in "-" matches nobody, though an address of "-" equals it. A stand-in
    # address is derived from a phone number, which is no proof (docs/integrations.md):
    # someone known by phone only follows up on WhatsApp.
    if not (allowed and matched) or not address or ours or addresses.is_reserved_invalid(address):
        raise NotFound(NOT_FOUND)
    ticket = session.execute(select(Ticket).where(Ticket.number == number)).scalar_one()
    return Found(survivor(session, ticket), matched)


def customer_view(session: Session, ticket: Ticket, config: Mapping[str, Any], reader: str) -> CustomerView:
    """What `reader` (the requester or a CC participant, who proved it) sees of the
    ticket: on a ticket others were merged into, their own conversation only
    (`_theirs`)."""
    own = notifications.own_conversation(session, ticket, addresses.normalize(reader))
    since = _joined(session, own.merged_ids)
    cc_names = {participant.email: participant.name for participant in ticket.participants}
    # Read newest first in batches, and only until one more than is shown is found:
    # after a merge, whose a reply is is decided here (`_theirs`), not in SQL.
    newest_first = session.execute(
        select(Message, thread.start_of(Message.body))
        .options(defer(Message.body), defer(Message.body_html))
        .where(Message.ticket_id == ticket.id, Message.kind == "reply")
        .order_by(Message.id.desc())
        .execution_options(yield_per=REPLIES_SHOWN)
    )
    try:
        theirs = list(islice((row for row in newest_first if _theirs(row[0], own, since)), REPLIES_SHOWN + 1))
    finally:
        newest_first.close()
    replies = [_public_reply(message, start, cc_names) for message, start in reversed(theirs[:REPLIES_SHOWN])]
    timeline = _timeline(session, ticket, since)
    rated = satisfaction.rating_of(session, ticket)
    return CustomerView(
        number=numbering.display_number(ticket.number, config),
        subject=own.subject,
        status=ticket.status,
        priority=ticket.priority,
        category=ticket.category,
        created_at=ticket.created_at,
        updated_at=ticket.updated_at,
        replies=replies,
        older_replies=len(theirs) > REPLIES_SHOWN,
        timeline=timeline,
        satisfaction=(
            Rating(rated.rating, rated.comment)
            if rated is not None and satisfaction.is_theirs(ticket, rated, reader)
            else None
        ),
        rated=rated is not None,
    )


def _joined(session: Session, merged_ids: tuple[int, ...]) -> datetime | None:
    """When the first of a reader's merged tickets was merged into the ticket it
    reads (each one's last merge: a ticket merged into one that was merged in turn
    joined the survivor with the second); None for a reader of the survivor's own
    conversation."""
    if not merged_ids:
        return None
    last = (
        select(func.max(TicketHistory.created_at))
        .where(TicketHistory.ticket_id.in_(merged_ids), TicketHistory.field == "merge")
        .group_by(TicketHistory.ticket_id)
    )
    moments = list(session.execute(last).scalars())
    return min(moments) if moments else None


def _timeline(session: Session, ticket: Ticket, since: datetime | None) -> list[StatusChange]:
    """The ticket's status changes, oldest first; to a reader whose ticket was merged
    in, those since it joined (`_joined`), as the replies are: the survivor's earlier
    ones are its own customer's story. Read in SQL, status rows only: the ticket's
    whole history (every field, every reason) was loaded to keep these."""
    changes = select(TicketHistory.new_value, TicketHistory.created_at).where(
        TicketHistory.ticket_id == ticket.id, TicketHistory.field == "status"
    )
    if since is not None:
        changes = changes.where(TicketHistory.created_at >= since)
    rows = session.execute(changes.order_by(TicketHistory.id)).all()
    return [StatusChange(new_value or "", created_at) for new_value, created_at in rows]


def _theirs(message: Message, own: notifications.OwnConversation, since: datetime | None) -> bool:
    """Whether a public reply on the ticket is `own`'s reader's to read: on a ticket
    nobody was merged into, every one; after a merge, what their own conversation's
    people wrote, and what staff wrote since it joined (mailed to them; what staff
    wrote before went to the survivor's customers). A merged-in customer read the
    survivor's subject, its customer's description and messages, and the replies to
    them, and the survivor's customer read theirs (docs/web.md, "The public tracker")."""
    if own.people is None:
        return True
    if message.author_contact is not None:
        # Its people as a ticket stores them, its author as their contact is: either
        # spelling of an internationalised domain (`addresses.either_form`).
        return not own.people.isdisjoint(addresses.either_form(message.author_contact.email))
    return since is None or message.created_at >= since


def _public_reply(message: Message, start: str, cc_names: Mapping[str, str]) -> PublicReply:
    """A reply as the tracker shows it, from what `thread.start_of` read of its text."""
    body, truncated = thread.cut(start)
    return PublicReply(
        author=_author(message, cc_names),
        body=body or "",
        body_truncated=truncated,
        created_at=message.created_at,
        from_customer=message.author_contact_id is not None,
    )


def _author(message: Message, cc_names: Mapping[str, str]) -> str:
    """Who wrote a reply, by name only: whoever knows one participant's address and
    the number must not learn the other participants' addresses (their mail's
    `author_label` holds one). A CC participant's name may be known only from the
    mail that added them."""
    if message.author_staff is not None:
        return message.author_staff.name
    contact = message.author_contact
    if contact is None:
        return SUPPORT
    return contact.name or cc_names.get(contact.email) or CUSTOMER


def language_of(session: Session, address: str) -> str | None:
    """The language the contact of `address` reads, when one is set (a CC
    participant may have no contact at all). The contact is found in either
    spelling of an internationalised domain (`contacts.by_email`): a CC stored as a
    mail's Cc wrote him (`bob@xn--bcher-kva.example`) whose contact a chat made as
    `bob@bücher.example` read the tracker in the default language, not his own."""
    contact = contacts.by_email(session, addresses.normalize(address))
    return (contact.language if contact is not None else "") or None


def set_language(session: Session, address: str, language: str) -> None:
    """A customer chose the language they read (the tracker's switch, SPEC §13):
    their contact's (`language_of`'s) from now on, for mail of tickets that have no
    language yet, chat and assistant answers. Someone who is only a CC participant
    has no contact to keep it on; a language the product does not speak changes
    nothing."""
    contact = contacts.by_email(session, addresses.normalize(address)) if language in LANGUAGES else None
    if contact is not None:
        contact.language = language
