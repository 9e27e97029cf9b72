"""A live-chat widget's backend (docs/integrations.md): a conversation becomes a
ticket, and ticket numbers typed in the chat are answered with status cards.

Cards show only the customer's own tickets (as requester or CC participant);
numbers of other tickets, and numbers that do not exist, are left out without a
word, so a chat cannot be used to learn which numbers exist.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from helpdesk import numbering
from helpdesk.clock import iso
from helpdesk.models import Contact, Ticket
from helpdesk.services import contacts

MAX_CARDS = 10  # numbers answered from one message
SUBJECT_FROM_TRANSCRIPT = 80  # characters of the first line, when no subject is given

# One sentence per status, as the customer reads it.
STATUS_SENTENCES = {
    "en": {
        "new": "We have received your ticket and an agent will pick it up soon.",
        "open": "An agent has seen your ticket.",
        "in_progress": "An agent is working on your ticket.",
        "pending_customer": "We are waiting for your answer to continue.",
        "resolved": "We consider your ticket solved; reply if it is not.",
        "closed": "Your ticket is closed.",
        "reopened": "Your ticket was reopened and is back with an agent.",
        "cancelled": "Your ticket was cancelled.",
    },
    "es": {
        "new": "Recibimos tu ticket y un agente lo atenderá pronto.",
        "open": "Un agente ya vio tu ticket.",
        "in_progress": "Un agente está trabajando en tu ticket.",
        "pending_customer": "Esperamos tu respuesta para continuar.",
        "resolved": "Consideramos resuelto tu ticket; responde si no es así.",
        "closed": "Tu ticket está cerrado.",
        "reopened": "Tu ticket fue reabierto y volvió con un agente.",
        "cancelled": "Tu ticket fue cancelado.",
    },
}


def subject_of(transcript: str) -> str:
    """A chat's subject when none is given: its first line that says something."""
    for line in transcript.splitlines():
        if line.strip():
            return " ".join(line.split())[:SUBJECT_FROM_TRANSCRIPT]
    return "Chat conversation"


def card(ticket: Ticket, language: str, config: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "number": numbering.display_number(ticket.number, config),
        "subject": ticket.subject,
        "status": ticket.status,
        "priority": ticket.priority,
        "category": ticket.category,
        "created_at": iso(ticket.created_at),
        "updated_at": iso(ticket.updated_at),
        "sentence": STATUS_SENTENCES[language][ticket.status],
    }


def lookup(
    session: Session, contact: Contact, text: str, language: str, config: Mapping[str, Any]
) -> list[dict]:
    """Cards for the customer's tickets whose numbers `text` mentions, in order."""
    numbers = numbering.find_numbers(text, config["TICKET_PREFIX"])[:MAX_CARDS]
    if not numbers:
        return []
    found = {
        ticket.number: ticket
        for ticket in session.execute(
            select(Ticket).where(Ticket.number.in_(numbers), contacts.tickets_of(contact))
        ).scalars()
    }
    return [card(found[number], language, config) for number in numbers if number in found]
