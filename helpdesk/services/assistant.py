"""Tools an assistant's language model calls for a customer (docs/integrations.md).

The definitions below are the one source: `GET /api/v1/assistant/tools` returns
them, and every call's arguments are validated against the same JSON Schema
(jsonschema-rs) before a handler sees them. A call never fails as HTTP: whatever
goes wrong is an output `{"success": false, "error", "userMessage"}` that the
runtime passes back to the model, with `error` one of the fixed strings below and
`userMessage` a sentence for the customer in their language.

A customer only ever reaches their own tickets (as requester or CC participant);
an unknown number and someone else's ticket get the same output.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import jsonschema_rs
from sqlalchemy import delete, func, inspect, select
from sqlalchemy.orm import Session

from helpdesk import addresses, languages, numbering, sla, wording
from helpdesk import vocabulary as v
from helpdesk.clock import iso, now
from helpdesk.database import commit_or_unknown, insert_ignoring
from helpdesk.errors import DomainError, TicketCancelled
from helpdesk.inbound import automail
from helpdesk.inputs import echoed, nothing_to_read, strict_json, unstorable_json, without_tags
from helpdesk.languages import N_, format_remaining, gettext_in
from helpdesk.models import AssistantCall, Contact, Message, Ticket
from helpdesk.services import chat, contacts, customer_limits, email_proofs, notifications, satisfaction
from helpdesk.services.actors import Actor
from helpdesk.services.sweeps import SweepResult
from helpdesk.services.tickets import (
    MAX_SUBJECT,
    TicketsService,
    customer_reaches,
    lock_for_change,
    lock_with_survivor,
    reached_by,
    survivor,
)

MAX_TEXT = 20_000  # a description or a comment
# How much of a description an integration acting for a customer is answered
# (`answered_description`: `get_ticket_information`, the chat's ticket): as much as
# the tool lets a customer write, but a mail's may be 25 MB, and was all given to
# the model and to the chat's widget.
ANSWERED_DESCRIPTION_CHARS = MAX_TEXT
LISTED = 20  # tickets `list_my_tickets` returns, newest first
# How long a `create_ticket_report` submitted again is answered the ticket it opened.
REPEAT_WINDOW = timedelta(days=1)
SWEEP_BATCH = 500  # spent `assistant_calls` rows deleted per transaction (`sweep_calls`)

ASSISTANT_CATEGORIES = ("support", "technical", "billing", "sales", "complaint")


def _function(
    name: str, description: str, properties: dict[str, Any], required: Sequence[str]
) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": properties,
                "required": list(required),
                "additionalProperties": False,
            },
        },
    }


_TICKET_ID = {
    "type": "string",
    "minLength": 1,
    "maxLength": 64,
    "description": "The ticket number, e.g. TKT-000123",
}

TOOLS: list[dict[str, Any]] = [
    _function(
        "create_ticket_report",
        "Open a support ticket for the customer about a problem they describe.",
        {
            "title": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_SUBJECT,
                "description": "A short summary",
            },
            "description": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT},
            "category": {"type": "string", "enum": list(ASSISTANT_CATEGORIES)},
            "priority": {"type": "string", "enum": list(v.PRIORITIES)},
        },
        ["title", "description"],
    ),
    _function(
        "get_ticket_information",
        "Look up one of the customer's tickets: status, priority, assigned agent, SLA.",
        {"ticketId": _TICKET_ID},
        ["ticketId"],
    ),
    _function("list_my_tickets", "List the customer's most recent tickets.", {}, []),
    _function(
        "add_ticket_comment",
        "Add the customer's comment to one of their tickets.",
        {"ticketId": _TICKET_ID, "text": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT}},
        ["ticketId", "text"],
    ),
    _function(
        "rate_ticket",
        "Record how satisfied the customer is with one of their resolved tickets: 1 (poor) to 5 (excellent).",
        {
            "ticketId": _TICKET_ID,
            "rating": {"type": "integer", "minimum": 1, "maximum": 5},
            "comment": {"type": "string", "maxLength": satisfaction.MAX_COMMENT},
        },
        ["ticketId", "rating"],
    ),
    _function(
        "verify_email",
        "Link the customer's email address to this WhatsApp number, which lets them see the tickets "
        "of that address. Call it with `email` alone to mail them a 6-digit code, then again with the "
        "code they read in that mail. Until then an email they type is not believed.",
        {
            "email": {"type": "string", "minLength": 3, "maxLength": addresses.MAX_LENGTH},
            "code": {"type": "string", "minLength": 1, "maxLength": email_proofs.MAX_CODE_TEXT},
        },
        ["email"],
    ),
]

# JSON text of a value, in the worst encoding a valid call may come in: every
# character escaped, one outside the BMP as two `\uXXXX` escapes (12 characters;
# Python's json.dumps and many runtimes escape all non-ASCII), a number as long as
# a double's shortest text (24), and room for an encoder's punctuation and
# indentation around each member.
_ESCAPED_CHARACTER = 12
_NUMBER = 24
_MEMBER = 32


def _longest_arguments(parameters: Mapping[str, Any]) -> int:
    """The longest JSON text of arguments `parameters` takes, in characters. A
    property without a bound (a string with no maxLength, a type not known here)
    fails the import: the cap on arguments must follow from the schema."""
    total = 2  # the braces
    for key, schema in parameters["properties"].items():
        total += _MEMBER + len(key) * _ESCAPED_CHARACTER + 2
        if "enum" in schema:
            longest = max(len(str(choice)) for choice in schema["enum"])
            total += longest * _ESCAPED_CHARACTER + 2
        elif schema["type"] == "string":
            total += schema["maxLength"] * _ESCAPED_CHARACTER + 2
        elif schema["type"] == "integer":
            total += _NUMBER
        else:
            raise ValueError(f"no bound for {key!r} of type {schema['type']!r}")
    return total


# The cap on a call's arguments (the JSON text, in characters; checked before it is
# parsed): the longest arguments any tool takes, each string at its maxLength in
# the worst escapes (about 240,000 for a 20,000-character description), so whether
# valid arguments pass never depends on the caller's JSON encoder; bounded by the
# schema's limits, and a request by MAX_REQUEST_BYTES anyway.
MAX_ARGUMENTS = max(_longest_arguments(tool["function"]["parameters"]) for tool in TOOLS)

INVALID_ARGUMENTS = "Invalid arguments format"
TOO_MANY = "Too many tickets created. Please try again later."
# A call over the customer's call limit (`INTEGRATION_CUSTOMER_RATE_LIMIT`, `over_limit`).
TOO_MANY_CALLS = "Too many calls for this customer. Please try again later."
# `verify_email`'s failures (docs/integrations.md, "The assistant's tools").
TOO_MANY_CODES = "Too many verification codes requested. Please try again later."
TOO_MANY_WRONG = "Too many wrong verification codes. Please try again tomorrow."
WRONG_CODE = "Invalid or expired verification code"
LINKED_ELSEWHERE = "Already linked to another number or email address"
NOT_ON_CHAT = "Email verification is only for WhatsApp"

# What the customer reads when a call fails (in their language: the catalogs).
_USER_MESSAGES = {
    "invalid": N_("Sorry, I could not understand that request. Could you rephrase it?"),
    "unknown": N_("Sorry, I cannot do that yet."),
    "not_found": N_("The requested ticket was not found."),
    "too_many": N_("You have opened many tickets recently. Please try again later."),
    "too_many_calls": N_("You have made many requests in a short time. Please try again in a moment."),
    "refused": N_("Sorry, that could not be done: %(reason)s"),
    "cancelled": N_(
        "This ticket was cancelled, so it takes no more comments. "
        "If you still need help, I can open a new ticket."
    ),
    "too_many_codes": N_(
        "Too many codes were requested for this number or this address. Please try again later."
    ),
    "too_many_wrong": N_("Too many wrong codes were given for this address. Please try again tomorrow."),
    "wrong_code": N_("That code is not valid or has expired. I can send you a new one."),
    "taken": N_("This number or this email address is already linked to another one."),
    "not_on_chat": N_("Your email address is already known in this chat."),
}

_VALIDATORS = {
    tool["function"]["name"]: jsonschema_rs.validator_for(tool["function"]["parameters"]) for tool in TOOLS
}
# Required text that must hold something to read (`nothing_to_read`: not only
# spaces, control characters, bidirectional controls or characters that show
# nothing, such as a zero-width space), which the schema's `minLength` cannot say
# (a `pattern` would not see control characters).
# Such text passed the schema and the service's refusal was the output, "Invalid
# input. subject: is required", naming a field the model never sent
# (docs/integrations.md).
_READABLE = {"create_ticket_report": ("title", "description"), "add_ticket_comment": ("text",)}
# Each tool's `integer` arguments. JSON Schema's integer is any number without a
# fraction, so `5.0` passes the schema (and the runtimes checking against it): it
# is read as the int it equals, for the handlers and the database.
_INTEGERS = {
    tool["function"]["name"]: tuple(
        key
        for key, schema in tool["function"]["parameters"]["properties"].items()
        if schema.get("type") == "integer"
    )
    for tool in TOOLS
}


@dataclass(frozen=True)
class Customer:
    """Who the integration acts for in this request."""

    contact: Contact
    language: str  # one of the languages the product speaks
    phone: str | None = None  # the number the channel proved (WhatsApp's sender), else None

    @property
    def actor(self) -> Actor:
        return Actor.customer(self.contact.email, self.contact.name)


class Failure(Exception):
    """A call that fails as an output: the error string and the user message's key."""

    def __init__(self, error: str, message: str, **values: str) -> None:
        super().__init__(error)
        self.error = error
        self.message = message
        self.values = values


class AssistantService:
    def __init__(
        self,
        session: Session,
        config: Mapping[str, Any],
        *,
        conversation_id: str | None = None,
        integration_id: int | None = None,
    ) -> None:
        """`conversation_id`: the runtime's conversation the calls come from, kept on
        the tickets they open (shown on the ticket page). `integration_id`: the
        integration calling, whose call ids a repeated `create_ticket_report` is
        known by (`_create`); None remembers none."""
        self.session = session
        self.config = config
        self.conversation_id = conversation_id
        self.integration_id = integration_id
        self.call_id: str | None = None  # the id of the call running
        self.tickets = TicketsService.from_config(session, config)
        self.handlers: dict[str, Callable[[Customer, dict[str, Any], str], dict[str, Any]]] = {
            "create_ticket_report": self._create,
            "get_ticket_information": self._information,
            "list_my_tickets": self._list,
            "add_ticket_comment": self._comment,
            "rate_ticket": self._rate,
            "verify_email": self._verify_email,
        }
        # The contact later calls of this batch act for: the one a proof bound the
        # number to, or the one a write stored for a customer who had none
        # (`_stored`), once the call that did it committed (`acting` until then: a
        # call rolled back stored and bound no one).
        self.bound: Contact | None = None
        self.acting: Contact | None = None

    def call(
        self, customer: Customer, name: object, arguments: object, channel: str, call_id: str | None = None
    ) -> dict[str, Any]:
        """One tool call's output. Each call commits or rolls back on its own, so one
        failing call in a batch does not undo another. `call_id`: the runtime's id of
        the call, the same when it submits the call again."""
        if self.bound is not None:
            customer = replace(customer, contact=self.bound)
        self.call_id = call_id
        self.acting = None
        try:
            if not isinstance(name, str) or name not in self.handlers:
                raise Failure(f"Unknown function: {echoed(name)}", "unknown")
            output = self.handlers[name](customer, _arguments(name, arguments), channel)
            commit_or_unknown(self.session)
            if self.acting is not None:
                self.bound = self.acting
            return output
        except Failure as failure:
            self.session.rollback()
            return self._failed(customer, failure)
        except DomainError as exc:  # the service refused (a cancelled ticket, a closed one…)
            self.session.rollback()
            # `error` as the API gives it; the customer reads the reason in their
            # language, as staff read the same refusal in the portal.
            with languages.reading(customer.language, self.config["BUSINESS_TIMEZONE"]):
                reason = wording.error_text(exc)
            return self._failed(customer, Failure(str(exc), "refused", reason=reason))

    def over_limit(self, customer: Customer) -> dict[str, Any]:
        """The output of a call the customer's call limit refused, run by no handler:
        the runtime passes it to the model like any failure (docs/integrations.md,
        "Calls per customer")."""
        return self._failed(customer, Failure(TOO_MANY_CALLS, "too_many_calls"))

    def _failed(self, customer: Customer, failure: Failure) -> dict[str, Any]:
        message = gettext_in(customer.language, _USER_MESSAGES[failure.message], **failure.values)
        return {"success": False, "error": failure.error, "userMessage": message}

    # -- the tools ----------------------------------------------------------------

    def _create(self, customer: Customer, arguments: dict[str, Any], channel: str) -> dict[str, Any]:
        # The customer was found in an earlier transaction: a merge since then moved
        # them to another contact, which is the one to count and to open under.
        contact = contacts.current(self.session, self._stored(customer).contact)
        customer = replace(customer, contact=contact)
        allowed = customer_limits.may_open(self.session, contact, self.config)
        # A call submitted again (a runtime retrying a batch after a lost answer or a
        # 503, or one id twice in a batch) is answered the ticket it opened, and
        # opens and mails nothing, whatever the limits say now (docs/integrations.md,
        # "The assistant's tools"). Read after the customer's locks, claimed before
        # the number is taken, as a chat's conversation is (`services.chat`).
        digest = _digest(arguments)
        repeated = self._opened(contact, digest)
        claimed = None
        if repeated is None and allowed and self.integration_id is not None and self.call_id is not None:
            claimed = self._claim(self.integration_id, self.call_id, digest)
            if claimed is None:  # submitted at once under another customer's locks, committed first
                repeated = self._opened(contact, digest)
        if repeated is not None:
            return self._repeated(*repeated)
        if not allowed:
            raise Failure(TOO_MANY, "too_many")
        ticket = self.tickets.open_ticket(
            subject=arguments["title"],
            description=arguments["description"],
            requester_email=contact.email,
            requester_is_contact=True,
            requester_name=contact.name,
            channel=channel,
            actor=customer.actor,
            source="ai",
            conversation_id=self.conversation_id,
            priority=arguments.get("priority"),
            category=arguments.get("category"),
            assistant_call=claimed,
        )
        return self._created(ticket)

    def _opened(self, contact: Contact, digest: str) -> tuple[Ticket, Ticket] | None:
        """The ticket this call id of this integration opened with these arguments
        (`digest`) within `REPEAT_WINDOW`, and the one the customer reaches by it now
        (a merged one's survivor, else itself), or None. A call id used before for
        other arguments, long ago, or for someone else (whose ticket a call id picks
        for no one) is no repeat: the call opens a ticket, unremembered."""
        call = self._remembered(digest)
        ticket = None if call is None or call.ticket_id is None else self.session.get(Ticket, call.ticket_id)
        if ticket is None or not customer_reaches(self.session, contact, ticket.id):
            return None
        return ticket, reached_by(self.session, contact, ticket) or ticket

    def _claim(
        self, integration_id: int, call_id: str, digest: str, ticket_id: int | None = None
    ) -> int | None:
        """Claim the call id for the ticket about to be opened (`chat.claim`'s rule),
        or for what another tool's call did (`_remember`): the claim's id, or None
        where another request claimed it first; on PostgreSQL a claim not yet
        committed is waited for."""
        return self.session.execute(
            insert_ignoring(self.session, AssistantCall, ["integration_id", "call_id"])
            .values(
                integration_id=integration_id,
                call_id=call_id,
                digest=digest,
                created_at=now(),
                ticket_id=ticket_id,
            )
            .returning(AssistantCall.id)
        ).scalar_one_or_none()

    def _remembered(self, digest: str) -> AssistantCall | None:
        """This integration's record of the call running, with `digest`, within
        `REPEAT_WINDOW`: what makes a call submitted again a repeat. None without
        an integration or a call id."""
        if self.integration_id is None or self.call_id is None:
            return None
        return self.session.execute(
            select(AssistantCall).where(
                AssistantCall.integration_id == self.integration_id,
                AssistantCall.call_id == self.call_id,
                AssistantCall.digest == digest,
                AssistantCall.created_at >= now() - REPEAT_WINDOW,
            )
        ).scalar_one_or_none()

    def _remember(self, digest: str, ticket_id: int | None = None) -> None:
        """Record the call running by its id and `digest`, so a repeat finds it
        (`_remembered`). An id this integration used before (a runtime numbering
        its calls afresh each turn) stays the earlier call's: this one is done,
        unremembered, as a create is."""
        if self.integration_id is not None and self.call_id is not None:
            self._claim(self.integration_id, self.call_id, digest, ticket_id)

    def _repeated(self, opened: Ticket, reached: Ticket) -> dict[str, Any]:
        """A repeat's answer: the first one's while the ticket is as it was opened,
        else what became of it, so the model does not announce a new ticket that was
        merged away or cancelled since (docs/integrations.md, "A batch submitted
        again"): merged, the survivor's number with `mergedFrom`, as a lookup
        answers it; finished, its status."""
        answer = self._created(reached)
        number = self._number(opened.number)
        if reached.id != opened.id:
            answer["mergedFrom"] = number
            answer["message"] = f"Ticket {number} was created earlier and merged into {answer['ticketId']}"
            if reached.status in sla.FINISHED:
                answer["message"] += f", which is now {reached.status}"
        elif reached.status in sla.FINISHED:
            answer["message"] = f"Ticket {number} was created earlier and is now {reached.status}"
        return answer

    def _created(self, ticket: Ticket) -> dict[str, Any]:
        number = self._number(ticket.number)
        return {
            "success": True,
            "ticketId": number,
            "message": f"Ticket {number} created successfully",
            "status": ticket.status,
            "priority": ticket.priority,
        }

    def _information(self, customer: Customer, arguments: dict[str, Any], channel: str) -> dict[str, Any]:
        ticket = self._own_ticket(customer, arguments["ticketId"])
        agent = ticket.assignee
        # The requester's own text only to the requester, as the chat answers a
        # merged-in customer its card (docs/integrations.md, "The assistant's tools").
        description, cut = (
            answered_description(self.session, ticket)
            if chat.answers_whole(customer.contact, ticket)
            else (None, False)
        )
        # Text stored before tag characters were dropped (`inputs.without_tags`) may
        # hold them still: the model reads them, staff never saw them (docs/security.md).
        return {
            "success": True,
            "ticketId": self._number(ticket.number),
            "status": ticket.status,
            "priority": ticket.priority,
            "category": ticket.category,
            # Their own conversation's subject: a merged-in customer's words, not
            # the survivor's customer's (`notifications.own_subject`).
            "title": without_tags(notifications.own_subject(self.session, ticket, customer.contact.email)),
            "description": without_tags(description) if description is not None else None,
            "descriptionTruncated": cut,
            "createdAt": iso(ticket.created_at),
            "updatedAt": iso(ticket.updated_at),
            "assignedAgent": {"name": agent.name, "email": agent.email} if agent is not None else None,
            "sla": _sla(ticket, customer.language),
        }

    def _list(self, customer: Customer, arguments: dict[str, Any], channel: str) -> dict[str, Any]:
        tickets = self.session.execute(
            select(Ticket)
            .where(contacts.tickets_of(customer.contact))
            .order_by(Ticket.number.desc())
            .limit(LISTED)
        ).scalars()
        return {
            "success": True,
            "tickets": [
                {
                    "ticketId": self._number(ticket.number),
                    "title": without_tags(
                        notifications.own_subject(self.session, ticket, customer.contact.email)
                    ),
                    "status": ticket.status,
                    "priority": ticket.priority,
                    "updatedAt": iso(ticket.updated_at),
                }
                for ticket in tickets
            ],
        }

    def _comment(self, customer: Customer, arguments: dict[str, Any], channel: str) -> dict[str, Any]:
        ticket = self._own_ticket(customer, arguments["ticketId"])
        # A merge committed since `_own_ticket` read the ticket sends the comment to
        # the survivor (`add_message`), judged as `_own_ticket` judges a survivor (one
        # a merge from before phone-only customers became participants left them out
        # of): if it is not theirs, neither the comment (rolled back) nor a refusal
        # telling its state (a cancelled survivor) is theirs. The ticket is locked
        # before the comment is written, so a proof of the customer's email merging
        # them meanwhile is waited for, and the comment is the merged contact's
        # (`_as_now`), not the stand-in's under messages that moved before it.
        try:
            target = lock_with_survivor(self.session, ticket)
            customer = self._as_now(self._stored(customer))
            # A call submitted again (a batch retried) while the comment it wrote is
            # still the newest message of the ticket it went to is answered as it
            # was, and writes nothing; the message is in the digest, so anything
            # written since ends the memory (docs/integrations.md).
            newest = self.session.execute(
                select(Message.id).where(Message.ticket_id == target.id).order_by(Message.id.desc()).limit(1)
            ).scalar_one_or_none()
            if (
                newest is not None
                and self._remembered(_digest(arguments, ("message", newest))) is not None
                and customer_reaches(self.session, customer.contact, target.id)
            ):
                return self._commented(target)
            message = self.tickets.add_message(
                ticket, body=arguments["text"], actor=customer.actor, channel=channel
            )
        except DomainError as exc:
            self.session.refresh(ticket)
            if not customer_reaches(self.session, customer.contact, survivor(self.session, ticket).id):
                raise _not_theirs(arguments["ticketId"]) from None
            if isinstance(exc, TicketCancelled):  # theirs, and final: say so, not the validation text
                raise Failure(f"Ticket {echoed(arguments['ticketId'])} is cancelled", "cancelled") from None
            raise
        if message.ticket_id != ticket.id and not customer_reaches(
            self.session, customer.contact, message.ticket_id
        ):
            raise _not_theirs(arguments["ticketId"])
        self._remember(_digest(arguments, ("message", message.id)), message.ticket_id)
        return self._commented(message.ticket)

    def _commented(self, ticket: Ticket) -> dict[str, Any]:
        number = self._number(ticket.number)
        return {"success": True, "ticketId": number, "message": f"Comment added to ticket {number}"}

    def _rate(self, customer: Customer, arguments: dict[str, Any], channel: str) -> dict[str, Any]:
        ticket = self._own_ticket(customer, arguments["ticketId"])
        # Locked first (`satisfaction.rate` locks it again, waiting for nothing): a
        # proof merging the customer meanwhile is waited for, and the rating is the
        # merged contact's, if it still reaches the ticket, not one under the
        # stand-in address, written after the merge moved its ratings (which its
        # owner could never change again).
        lock_for_change(self.session, ticket)
        customer = self._as_now(self._stored(customer))
        if not customer_reaches(self.session, customer.contact, ticket.id):
            raise _not_theirs(arguments["ticketId"])
        rated = satisfaction.rate(
            self.session,
            ticket,
            arguments["rating"],
            arguments.get("comment", ""),
            via="assistant",
            by=customer.contact.email,
        )
        number = self._number(ticket.number)
        return {
            "success": True,
            "ticketId": number,
            "rating": rated.rating,
            "message": f"Rating {rated.rating} recorded for ticket {number}",
        }

    def _verify_email(self, customer: Customer, arguments: dict[str, Any], channel: str) -> dict[str, Any]:
        """Prove the WhatsApp customer reads the mailbox they name, then bind their
        number to it (helpdesk.services.email_proofs). Without `code`, mail one; with
        it, check it. A number already bound to a real address is that person: no
        other address is proven for it."""
        if customer.phone is None:
            raise Failure(NOT_ON_CHAT, "not_on_chat")
        # As api.customers takes it (no address literal), in a stored contact's spelling.
        email = contacts.named_address(self.session, arguments["email"])
        if (
            email is None
            or addresses.is_reserved_invalid(email)
            or contacts.is_ours(self.session, email, self.config)
            or automail.is_machine_address(email)  # the outbox never mails one
            or addresses.on_the_wire(email) is None  # nor one no relay could take (no IDNA form)
        ):
            raise Failure(INVALID_ARGUMENTS, "invalid")
        # Under the number's lock, whoever has the number stays who it is: every
        # binding takes that lock first (contacts.lock_number), before any row.
        contacts.lock_number(self.session, customer.phone)
        contact = contacts.holder(self.session, customer.phone) or customer.contact
        if not addresses.is_reserved_invalid(contact.email):
            # The number's address in either spelling of an internationalised domain
            # is the same mailbox, as `contacts.bind_proven` takes it: not "elsewhere".
            if contact.email not in addresses.either_form(email):
                raise Failure(LINKED_ELSEWHERE, "taken")
            return self._verified(contact, f"{email} is already linked to this number")
        try:
            if "code" not in arguments:
                minutes = int(email_proofs.CODE_LIFETIME.total_seconds() // 60)
                answer = {
                    "success": True,
                    "verified": False,
                    "email": email,
                    "expiresInMinutes": minutes,
                    "message": f"A verification code was mailed to {email}; ask the customer for it",
                }
                # A call submitted again (a batch retried) while the code it mailed
                # waits untouched is answered as it was and mails nothing: a second
                # code would spend the first and one of the number's requests. The
                # code's row is in the digest, so a code since asked, given or expired
                # ends the memory (docs/integrations.md, "The assistant's tools").
                waiting = email_proofs.waiting_code(self.session, customer.phone, email)
                if (
                    waiting is not None
                    and self._remembered(_digest(arguments, ("proof", waiting.id))) is not None
                ):
                    return answer
                proof = email_proofs.request_code(
                    self.session, self.config, customer.phone, email, customer.language
                )
                self._remember(_digest(arguments, ("proof", proof.id)))
                return answer
            bound = email_proofs.confirm(
                self.session, self.config, customer.phone, email, arguments["code"], contact.name
            )
        except email_proofs.ProofRefused as refused:
            if refused.reason == "wrong_code":
                commit_or_unknown(self.session)  # the wrong try counts
                raise Failure(WRONG_CODE, "wrong_code") from None
            if refused.reason == "too_many":
                raise Failure(TOO_MANY_CODES, "too_many_codes") from None
            if refused.reason == "too_many_wrong":
                raise Failure(TOO_MANY_WRONG, "too_many_wrong") from None
            raise Failure(LINKED_ELSEWHERE, "taken") from None
        self.acting = bound
        return self._verified(bound, f"{email} is verified and linked to this number")

    @staticmethod
    def _verified(contact: Contact, message: str) -> dict[str, Any]:
        return {"success": True, "verified": True, "email": contact.email, "message": message}

    # -- helpers ------------------------------------------------------------------

    def _stored(self, customer: Customer) -> Customer:
        """`customer` with their contact stored, for a call about to write for them
        (its checks passed: the arguments, the ticket theirs). Someone no contact had
        comes as an unsaved stand-in (`api.customers.looked_up_customer`) and gets
        their contact here, in the write's transaction: a call that fails rolls it
        back with the rest, so neither reads nor failures store anyone, and an
        address or number invented per request grows nothing (docs/integrations.md,
        "Chat"). Found as `contacts.for_customer` finds it (made meanwhile by another
        request, it is that one); later calls of the batch act for it (`bound`).
        A call writing on a ticket stores it after the ticket's lock, in the lock
        order (tickets before contacts): a reply of the same new address's mail,
        holding that ticket, waits on the contact's insert."""
        if not inspect(customer.contact).transient:
            return customer
        contact = contacts.for_customer(
            self.session,
            email=customer.contact.email,
            phone=customer.phone,
            phone_vouched=customer.phone is not None,
            name=customer.contact.name,
            language=customer.contact.language,
        )
        self.acting = contact
        return replace(customer, contact=contact)

    def _as_now(self, customer: Customer) -> Customer:
        """The customer as they are once the call holds its ticket's lock: someone
        known by number only, found before a proof of their email merged them into
        that address's contact, is that contact now (`contacts.current`). The merge
        locks the tickets the stand-in has or takes part in before any contact, so by
        now it has committed or waits for this call; the contacts are locked after
        the ticket, in the lock order (docs/lifecycle.md, "Concurrent changes")."""
        if not addresses.is_reserved_invalid(customer.contact.email):
            return customer  # only a stand-in is ever merged away
        return replace(customer, contact=contacts.current(self.session, customer.contact))

    def _own_ticket(self, customer: Customer, ticket_id: str) -> Ticket:
        """The customer's ticket by the number they gave; a merged one's survivor, as
        for their mail and the tracker (docs/isp-operations.md, "Merge and links"),
        where the merge made them a participant — else it is not theirs to reach."""
        number = numbering.parse_number(ticket_id, self.config["TICKET_PREFIX"])
        ticket = None
        if number is not None:
            ticket = self.session.execute(
                select(Ticket).where(Ticket.number == number, contacts.tickets_of(customer.contact))
            ).scalar_one_or_none()
        if ticket is not None:
            ticket = reached_by(self.session, customer.contact, ticket)
        if ticket is None:
            raise _not_theirs(ticket_id)
        return ticket

    def _number(self, number: int) -> str:
        return numbering.display_number(number, self.config)


def answered_description(session: Session, ticket: Ticket) -> tuple[str, bool]:
    """The description's first ANSWERED_DESCRIPTION_CHARS characters, and whether
    there were more: what an integration acting for a customer is answered of it,
    `get_ticket_information` and the chat's ticket alike (docs/integrations.md).
    Cut in SQL, as the API's list cuts its own, so a 25 MB mail is neither read
    nor handed to the language model or the widget whole."""
    start = session.execute(
        select(func.substr(Ticket.description, 1, ANSWERED_DESCRIPTION_CHARS + 1)).where(
            Ticket.id == ticket.id
        )
    ).scalar_one()
    return start[:ANSWERED_DESCRIPTION_CHARS], len(start) > ANSWERED_DESCRIPTION_CHARS


def sweep_calls(session: Session, batch: int = SWEEP_BATCH) -> SweepResult:
    """Delete the remembered calls older than `REPEAT_WINDOW`, which no call reads
    again (`_remembered`), so the table holds about a window's calls, not every call
    ever (the gateway's lifecycle jobs, or `flask assistant-calls-sweep`;
    docs/integrations.md, "A batch submitted again").

    Oldest first by id, `batch` rows a transaction: each full batch is committed
    here, so a first sweep of a large table never holds its rows (and a call
    claiming one of their ids) in one long transaction; the last is the caller's
    to commit. Ids are taken in the order calls are claimed, so the walk stops at
    the first batch that meets a call still inside the window: no index on the
    time is needed. A row claimed a moment out of order goes at the next sweep.
    Nothing points at these rows; safe from several processes at once."""
    oldest = now() - REPEAT_WINDOW
    deleted, after = 0, 0
    while True:
        rows = session.execute(
            select(AssistantCall.id, AssistantCall.created_at)
            .where(AssistantCall.id > after)
            .order_by(AssistantCall.id)
            .limit(batch)
        ).all()
        spent = [call_id for call_id, created_at in rows if created_at < oldest]
        if spent:
            session.execute(
                delete(AssistantCall).where(AssistantCall.id.in_(spent), AssistantCall.created_at < oldest)
            )
            deleted += len(spent)
        if len(spent) < batch:
            return SweepResult("assistant-calls", "spent calls", deleted)
        session.commit()
        after = rows[-1][0]


def _arguments(name: str, arguments: object) -> dict[str, Any]:
    """The call's arguments: JSON text of an object that passes the tool's schema."""
    if not isinstance(arguments, str) or len(arguments) > MAX_ARGUMENTS:
        raise Failure(INVALID_ARGUMENTS, "invalid")
    try:
        parsed = strict_json(arguments or "{}")  # a member named twice is no arguments (RFC 8259)
    except (ValueError, RecursionError):  # the parser recurses per level: 240,000 `[` are too deep
        raise Failure(INVALID_ARGUMENTS, "invalid") from None
    # Unstorable text anywhere, keys included, before the validator sees it: it
    # encodes every key, and a lone surrogate in one raised (docs/security.md).
    if not isinstance(parsed, dict) or unstorable_json(parsed) or not _VALIDATORS[name].is_valid(parsed):
        raise Failure(INVALID_ARGUMENTS, "invalid")
    if any(nothing_to_read(parsed[key]) for key in _READABLE.get(name, ())):
        raise Failure(INVALID_ARGUMENTS, "invalid")
    for key in _INTEGERS[name]:
        if isinstance(parsed.get(key), float):  # whole and in range: the schema said so
            parsed[key] = int(parsed[key])
    return parsed


def _digest(arguments: dict[str, Any], made: tuple[str, int] | None = None) -> str:
    """What a call is remembered by besides its id (`assistant_calls.digest`): the
    SHA-256 of its arguments' JSON, keys sorted, and for a call whose repeat holds
    only while what it made is unchanged, that thing (`made`: its kind and id)."""
    text = json.dumps(arguments if made is None else [made[0], made[1], arguments], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _sla(ticket: Ticket, language: str) -> dict[str, Any] | None:
    """`timeRemaining` until the resolution target, in words in the customer's
    language, rounded ("3 hours", "1 día"), "overdue" (a fixed value the model can
    test for), or None once finished (resolved, closed, cancelled); None without
    targets: a ticket cancelled in time, whose SLA staff see as `void`
    (`sla.state`). A cancelled ticket keeps its due times, so the countdown ran on
    for it ("4 horas", later "overdue"). While the ticket waits for the customer the
    resolution clock stands still (helpdesk.sla), so the time left is what it was
    when the wait began."""
    moment = now()
    if ticket.resolution_due_at is None or sla.state(ticket, moment) == "void":
        return None
    first_met = None if ticket.first_response_breached is None else not ticket.first_response_breached
    stopped = ticket.pending_since if ticket.status == sla.WAITING else None
    remaining = ticket.resolution_due_at - (stopped or moment)
    if ticket.resolved_at is not None or ticket.status in sla.FINISHED:
        left = None
    else:
        left = format_remaining(remaining, language) if remaining.total_seconds() > 0 else "overdue"
    return {
        "firstResponseMet": first_met,
        "resolutionTarget": iso(ticket.resolution_due_at),
        "timeRemaining": left,
    }


def _not_theirs(ticket_id: str) -> Failure:
    """The one answer for a ticket the customer may not reach, found or not."""
    return Failure(f"Ticket {echoed(ticket_id)} not found or does not belong to this customer", "not_found")
