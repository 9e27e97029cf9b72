"""A live-chat widget's backend (docs/integrations.md): a conversation becomes a
ticket, ticket numbers typed in the chat are answered with status cards, and an
agent gets a ticket's share text to paste to the customer.

Cards show only the customer's own tickets (as requester or CC participant);
numbers of other tickets, and numbers that do not exist, are left out without a
word, so a chat cannot be used to learn which numbers exist.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from helpdesk import addresses, inputs, languages, numbering
from helpdesk.clock import iso
from helpdesk.database import insert_ignoring
from helpdesk.errors import Conflict
from helpdesk.languages import N_, gettext_in
from helpdesk.models import ChatConversation, Contact, Ticket
from helpdesk.services import contacts, notifications
from helpdesk.services.tickets import customer_reaches, reached_by

MAX_CARDS = 10  # numbers answered from one message
SUBJECT_FROM_TRANSCRIPT = 80  # characters of the first line, when no subject is given

# One sentence per status, as the customer reads it (in their language: the catalogs).
STATUS_SENTENCES = {
    "new": N_("We have received your ticket and an agent will pick it up soon."),
    "open": N_("An agent has seen your ticket."),
    "in_progress": N_("An agent is working on your ticket."),
    "pending_customer": N_("We are waiting for your answer to continue."),
    "resolved": N_("We consider your ticket solved; reply if it is not."),
    "closed": N_("Your ticket is closed."),
    "reopened": N_("Your ticket was reopened and is back with an agent."),
    "cancelled": N_("Your ticket was cancelled."),
}

# The share text's words; the follow-up lines say how to reach this ticket again:
# quoting the number always, and for a customer with a real address (not a
# phone-only stand-in) mail with the number in the subject, which threads it
# (docs/mail-gateway.md), and the tracker, which asks for number and address.
SHARE_TEXTS = {
    "reference": N_("Reference"),
    "title": N_("Title"),
    "status": N_("Status"),
    "priority": N_("Priority"),
    "category": N_("Category"),
    "requester": N_("Requester"),
    "quote": N_("Quote %(number)s whenever you contact us about this ticket."),
    "mail": N_("To add anything, reply to our email or write to %(support)s with %(number)s in the subject."),
    "track": N_("Follow it at %(track_url)s with the reference and your email address."),
}


def status_sentence(status: str, language: str) -> str:
    return gettext_in(language, STATUS_SENTENCES[status])


def subject_of(given: str, transcript: str, language: str) -> str:
    """A chat's subject: the one `given` where it says something, else the
    transcript's first line that does, else a title in the customer's language
    (their mail's subject carries it). Each is judged as the ticket stores it,
    one line with something to read (`inputs.readable_line`; docs/integrations.md,
    "Chat"): a line of a lone `ESC`, or a subject of spaces, was taken and then
    refused as empty, and one of zero-width spaces was a subject showing nothing."""
    subject = inputs.readable_line(given)
    if subject:
        return subject
    for line in transcript.splitlines():
        said = inputs.readable_line(line)[:SUBJECT_FROM_TRANSCRIPT]
        if not inputs.nothing_to_read(said):  # judged as cut: what it keeps must show
            return said
    return gettext_in(language, N_("Chat conversation"))


def opened(session: Session, integration_id: int, conversation_id: str, contact: Contact) -> Ticket | None:
    """The ticket this integration's conversation opened, None while it opened none
    (docs/integrations.md, "Chat": a widget retries a post whose answer it lost).

    It is the customer's own (`customer_reaches`); the conversation id naming someone
    else is a Conflict, not their ticket: whoever picks the id picks no one's ticket."""
    ticket = session.execute(
        select(Ticket)
        .join(ChatConversation, ChatConversation.ticket_id == Ticket.id)
        .where(
            ChatConversation.integration_id == integration_id,
            ChatConversation.conversation_id == conversation_id,
        )
    ).scalar_one_or_none()
    if ticket is not None and not customer_reaches(session, contact, ticket.id):
        raise Conflict("This conversation opened a ticket for another customer.")
    return ticket


def claim(session: Session, integration_id: int, conversation_id: str) -> int | None:
    """Claim the conversation for the ticket about to be opened: the claim's id, to
    pass to `open_ticket` (`chat_conversation`), or None where another request
    claimed it first. On PostgreSQL a claim not yet committed makes this wait for
    that transaction: its ticket is then there to read (`opened`), or, rolled back,
    the claim is ours. Taken after the customer's locks and before the number
    counter (docs/lifecycle.md, "Lock order"), so a claim lost takes no number."""
    return session.execute(
        insert_ignoring(session, ChatConversation, ["integration_id", "conversation_id"])
        .values(integration_id=integration_id, conversation_id=conversation_id)
        .returning(ChatConversation.id)
    ).scalar_one_or_none()


def answers_whole(contact: Contact, ticket: Ticket) -> bool:
    """Whether `contact` is answered the whole ticket rather than its card: only its
    requester is. Anyone else who reaches it takes part as a CC participant does (a
    merge of their ticket into it made them one), and the requester's address,
    name, description, service address and devices are not theirs to read. The one
    rule for the chat's repeat of a conversation and the assistant's
    `get_ticket_information` (docs/integrations.md, "Chat")."""
    return ticket.requester_id == contact.id


def card(
    session: Session, ticket: Ticket, reader: Contact, language: str, config: Mapping[str, Any]
) -> dict[str, Any]:
    """What a customer's card shows of `ticket` to `reader`: on a ticket others were
    merged into, the subject of the reader's own conversation
    (`notifications.own_subject`), as their mail and the tracker show it; the
    survivor's gave a merged-in customer another customer's words (docs/integrations.md)."""
    return {
        "number": numbering.display_number(ticket.number, config),
        "subject": notifications.own_subject(session, ticket, reader.email),
        "status": ticket.status,
        "priority": ticket.priority,
        "category": ticket.category,
        "created_at": iso(ticket.created_at),
        "updated_at": iso(ticket.updated_at),
        "sentence": status_sentence(ticket.status, language),
    }


def lookup(
    session: Session, contact: Contact, text: str, language: str, config: Mapping[str, Any]
) -> list[dict]:
    """Cards for the customer's tickets whose numbers `text` mentions, in order.

    A merged number is answered with its survivor's card, naming the number asked
    (`merged_from`), under the assistant's rule (`tickets.reached_by`): only where
    the customer takes part in the survivor. Its closed card alone told them nothing
    of where their ticket went on. Each ticket is shown once."""
    numbers = numbering.find_numbers(text, config["TICKET_PREFIX"], limit=MAX_CARDS)
    if not numbers:
        return []
    found = {
        ticket.number: ticket
        for ticket in session.execute(
            select(Ticket).where(Ticket.number.in_(numbers), contacts.tickets_of(contact))
        ).scalars()
    }
    cards: dict[int, dict[str, Any]] = {}
    for asked in (found[number] for number in numbers if number in found):
        reached = reached_by(session, contact, asked)
        if reached is None or reached.id in cards:
            continue
        cards[reached.id] = card(session, reached, contact, language, config)
        if reached.id != asked.id:
            cards[reached.id]["merged_from"] = numbering.display_number(asked.number, config)
    return list(cards.values())


def share_text(ticket: Ticket, config: Mapping[str, Any]) -> str:
    """The message an agent pastes to the ticket's requester, in their language.

    It names the requester only, never a CC participant: it is for one person.
    Subject and name are folded to one line each (control characters and line
    breaks become spaces), so a subject cannot add lines that pass for ours.
    """
    requester = ticket.requester
    language = languages.of_contact(requester, config)
    number = numbering.display_number(ticket.number, config)

    def words(key: str, **values: str) -> str:
        return gettext_in(language, SHARE_TEXTS[key], **values)

    def field(key: str, value: str) -> str:
        return f"{words(key)}: {value}"

    lines = [
        status_sentence(ticket.status, language),
        "",
        field("reference", number),
        field("title", addresses.display_name(ticket.subject)),
        field("status", languages.label(languages.STATUS_LABELS[ticket.status], language)),
        field("priority", languages.label(languages.PRIORITY_LABELS[ticket.priority], language)),
        field("category", languages.label(languages.CATEGORY_LABELS[ticket.category], language)),
        field("requester", _requester(requester)),
        "",
        words("quote", number=number),
    ]
    if not addresses.is_reserved_invalid(requester.email):
        lines.append(words("mail", support=config["SUPPORT_ADDRESSES"][0], number=number))
        lines.append(words("track", track_url=f"{config['PORTAL_URL']}/track"))
    return "\n".join(lines)


def _requester(contact: Contact) -> str:
    """`Name <address>`, or for someone known by phone only `Name (+52…)`: their
    stand-in address is nothing to show them."""
    name = addresses.display_name(contact.name)
    if addresses.is_reserved_invalid(contact.email):
        phone = contact.phone or ""
        return f"{name} ({phone})" if name and phone else name or phone
    return f"{name} <{contact.email}>" if name else contact.email
