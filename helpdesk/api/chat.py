"""A live-chat widget's backend, for `chat` integrations (docs/integrations.md): a
conversation becomes a ticket (answered as the API's ticket, with its status
card's fields), and numbers typed in the chat get status cards."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from flask import current_app, g, jsonify
from flask.typing import ResponseReturnValue

from helpdesk import numbering
from helpdesk.api import bp, customer_calls
from helpdesk.api.customers import conversation_id, looked_up_customer, named, named_customer
from helpdesk.api.payload import json_object
from helpdesk.api.serializers import ticket_json
from helpdesk.auth import integration_required
from helpdesk.database import commit_or_unknown
from helpdesk.errors import ValidationError
from helpdesk.extensions import db
from helpdesk.http_errors import error_response
from helpdesk.models import Contact, Ticket
from helpdesk.services import chat, contacts, customer_limits
from helpdesk.services.assistant import answered_description
from helpdesk.services.tickets import TicketsService, reached_by

MAX_LOOKUP_TEXT = 10_000


# The staff API's ticket fields a customer's chat is not answered with: the team,
# level and tags are the helpdesk's own sorting, the moves are staff's to make.
STAFF_ONLY = frozenset({"team", "tags", "escalation_level", "escalated_at", "allowed_transitions"})


@bp.post("/chat/tickets")
@integration_required("chat")
def chat_ticket() -> ResponseReturnValue:
    data = json_object(
        {"conversation_id": (str,), "customer": (dict,), "subject": (str,), "transcript": (str,)},
        required=("conversation_id", "customer", "transcript"),
    )
    errors: dict[str, str] = {}
    conversation = conversation_id(data["conversation_id"], errors)
    if errors:
        raise ValidationError(errors)
    who = named(data["customer"], phone_vouched=False)
    refused = customer_calls.refused_call(who)
    if refused is not None:
        return refused
    # The contact is committed with the ticket (or the repeat's answer), and goes
    # with a refusal (429, 409, 422): kept whatever happened, each refused post
    # naming a new address stored a contact for good (docs/integrations.md, "Chat").
    customer = named_customer(who)
    contact = contacts.current(db.session, customer.contact)  # as for the assistant's tickets
    customer = replace(customer, contact=contact)
    allowed = customer_limits.may_open(db.session, contact, current_app.config)
    # A conversation posted again (a widget retrying after a lost answer or a 503)
    # is answered its ticket, 200, and opens and mails nothing, whatever the limits
    # say now (docs/integrations.md, "Chat"). Read after the customer's locks: a
    # repeat of theirs committed meanwhile is seen.
    integration = g.integration.id
    ticket = chat.opened(db.session, integration, conversation, contact)
    claimed = None
    if ticket is None and allowed:
        claimed = chat.claim(db.session, integration, conversation)
        if claimed is None:  # posted at once under another customer's locks, committed first
            ticket = chat.opened(db.session, integration, conversation, contact)
    if ticket is not None:
        reached = reached_by(db.session, contact, ticket) or ticket
        if chat.answers_whole(contact, reached):
            body = _answer(reached, ticket, contact, customer.language)
        else:
            body = _card(reached, ticket, contact, customer.language)
        commit_or_unknown(db.session)
        return jsonify(body), 200
    if not allowed:
        db.session.rollback()
        return error_response(429, "too_many_tickets", "Too many tickets created. Please try again later.")
    ticket = TicketsService.from_config(db.session, current_app.config).open_ticket(
        subject=chat.subject_of(data.get("subject", ""), data["transcript"], customer.language),
        description=data["transcript"],
        requester_email=contact.email,
        requester_is_contact=True,
        requester_name=contact.name,
        channel="chat",
        actor=customer.actor,
        conversation_id=conversation,
        chat_conversation=claimed,
        description_required=False,  # a transcript may say nothing: the subject stands in
    )
    body = _answer(ticket, ticket, contact, customer.language)
    commit_or_unknown(db.session)
    return jsonify(body), 201


def _answer(ticket: Ticket, asked: Ticket, reader: Contact, language: str) -> dict[str, Any]:
    """The customer's own ticket (they are its requester) as the API gives it (SPEC
    §6), with the card's fields, which widgets read since it answered the card alone
    (the same values, plus `sentence`), but not what only staff work with: an
    integration acts for a customer. A repeat of a conversation whose ticket was
    merged since gets the survivor, naming the ticket it opened (`merged_from`), as
    a lookup does. Its description is cut as the assistant's is: a mail-opened
    ticket of the customer's, which their conversation's ticket was merged into,
    holds up to 25 MB, and the repeat answered it all (docs/integrations.md, "Chat")."""
    whole = ticket_json(ticket, description=answered_description(db.session, ticket))
    shown = {key: value for key, value in whole.items() if key not in STAFF_ONLY}
    return {**_card(ticket, asked, reader, language), **shown}


def _card(ticket: Ticket, asked: Ticket, reader: Contact, language: str) -> dict[str, Any]:
    """The card a lookup shows of `ticket`, reached by the number of `asked`. A repeat
    whose ticket was merged into someone else's, where the customer takes part as a
    CC does, is answered this and no more: the requester's address, name,
    description, service address and devices are not theirs to read
    (docs/integrations.md, "Chat")."""
    body = chat.card(db.session, ticket, reader, language, current_app.config)
    if asked.id != ticket.id:
        body["merged_from"] = numbering.display_number(asked.number, current_app.config)
    return body


@bp.post("/chat/lookup")
@integration_required("chat")
def chat_lookup() -> ResponseReturnValue:
    data = json_object({"customer": (dict,), "text": (str,)}, required=("customer", "text"))
    if len(data["text"]) > MAX_LOOKUP_TEXT:
        raise ValidationError({"text": f"must be at most {MAX_LOOKUP_TEXT} characters"})
    who = named(data["customer"], phone_vouched=False)
    refused = customer_calls.refused_call(who)
    if refused is not None:
        return refused
    customer = looked_up_customer(who)
    commit_or_unknown(db.session)
    cards = chat.lookup(db.session, customer.contact, data["text"], customer.language, current_app.config)
    return jsonify({"tickets": cards})
