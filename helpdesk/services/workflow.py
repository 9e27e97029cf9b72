"""Tickets other systems open for a customer: an ISP's onboarding and installation
workflows (docs/isp-operations.md, "Workflows").

One function serves both ways in: `POST /api/v1/workflow/tickets` for a
`workflow` integration, and a direct call for workflows that run in-process. It
answers the workflow's own dictionary, in the workflow's vocabulary (`title`,
`customer_id`, priority `normal`), not the staff API's ticket JSON.

The workflow is the provider's own system, so the per-customer limits do not
apply (as for staff), and, like every ticket the system opens, the customer gets
no acknowledgment: the workflow is the one talking to the customer at that
moment and passes the number on; the helpdesk's first mail is staff's first
public reply.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from helpdesk import addresses, inputs, numbering, service_fields
from helpdesk import vocabulary as v
from helpdesk.clock import iso
from helpdesk.errors import NotFound, ValidationError
from helpdesk.inbound import automail
from helpdesk.inputs import positive_int
from helpdesk.models import Contact, Team, Ticket
from helpdesk.services import contacts, teams
from helpdesk.services.actors import Actor
from helpdesk.services.teams import TeamsService
from helpdesk.services.tickets import TicketsService

# The workflow's priorities (docs/isp-operations.md, "Workflows"): `normal` is the ticket's `medium`.
PRIORITIES = ("low", "normal", "high", "urgent")
_STORED_PRIORITY = {name: v.PRIORITY_ALIASES.get(name, name) for name in PRIORITIES}
_WORKFLOW_PRIORITY = {stored: name for name, stored in _STORED_PRIORITY.items()}
# TicketsService's field names for what the workflow calls otherwise, so a refusal
# names the field the workflow sent.
_FIELD_NAMES = {"subject": "title", "requester_email": "customer_email", "team": "assigned_team"}


def open_workflow_ticket(
    session: Session,
    config: Mapping[str, Any],
    *,
    title: str,
    description: str,
    customer_id: int | str | None = None,
    customer_email: str | None = None,
    priority: str | None = None,
    assigned_team: str | None = None,
    ticket_type: str | None = None,
    service_address: str | None = None,
    caller: str = "workflow",
    channel: str = "system",
    idempotency_key: int | None = None,
) -> dict[str, Any]:
    """Open a ticket for the customer named by `customer_id` (a contact's id) or
    `customer_email` (found or created), exactly one of them, and answer the
    workflow's dictionary (docs/isp-operations.md has an example).

    The ticket goes to `assigned_team`, else to the team its type routes to. The
    source is `system`; `channel` is how the request came (`api` over HTTP,
    `system` in-process) and `caller` who sent it, as the history shows it. An
    unknown customer, team, type or priority is a `ValidationError` naming the
    workflow's field; nothing is stored then. Like every service it does not
    commit: commit right after, because the ticket's number keeps the counter
    locked until then (docs/numbering.md). `idempotency_key` is the claim of an API
    call's key (`services.idempotency`), pointed at the ticket as it is opened.
    """
    errors: dict[str, str] = {}
    if isinstance(description, str) and inputs.nothing_to_read(description):
        # The ticket's first message: staff work from it (docs/isp-operations.md).
        errors["description"] = "is required"
    stored_priority = _STORED_PRIORITY.get(priority or "normal")
    if stored_priority is None:
        errors["priority"] = f"must be one of {', '.join(PRIORITIES)}"
    kind = service_fields.ticket_type(ticket_type or v.DEFAULT_TICKET_TYPE, errors)
    team = _team(session, assigned_team, errors) if assigned_team else None
    contact = _customer(session, config, customer_id, customer_email or None, errors)
    if errors:
        raise ValidationError(errors)
    routed = _routed_team(session, kind)
    team = team or routed
    email, name = (contact.email, contact.name) if contact is not None else (customer_email or "", "")
    try:
        ticket = TicketsService.from_config(session, config).open_ticket(
            subject=title,
            description=description,
            requester_email=email,
            requester_is_contact=contact is not None,  # named by id: that contact as stored
            requester_name=name,
            priority=stored_priority,
            channel=channel,
            actor=Actor.system(caller),
            source="system",
            ticket_type=kind,
            service_address=service_address or "",
            team=team.name if team is not None else None,
            idempotency_key=idempotency_key,
        )
    except ValidationError as exc:
        fields = {_FIELD_NAMES.get(field, field): text for field, text in exc.fields.items()}
        raise ValidationError(fields, exc.message) from None
    return _answer(config, ticket, team.name if team is not None else None, routed)


def workflow_answer(session: Session, config: Mapping[str, Any], ticket: Ticket) -> dict[str, Any]:
    """The workflow's dictionary for a ticket opened earlier, as it is now: a call
    sent again under its `Idempotency-Key` is answered so (docs/web.md)."""
    team = session.get(Team, ticket.team_id) if ticket.team_id is not None else None
    routed = _routed_team(session, ticket.ticket_type)
    return _answer(config, ticket, team.name if team is not None else None, routed)


def _answer(
    config: Mapping[str, Any], ticket: Ticket, team_name: str | None, routed: Team | None
) -> dict[str, Any]:
    return {
        "ticket_id": ticket.id,
        "ticket_number": numbering.display_number(ticket.number, config),
        "title": ticket.subject,
        "description": ticket.description,
        "customer_id": ticket.requester_id,
        "origin_type": "customer",
        "target_type": "tenant",
        "priority": _WORKFLOW_PRIORITY[ticket.priority],
        "ticket_type": ticket.ticket_type,
        "status": ticket.status,
        "assigned_team": team_name,
        "service_address": ticket.service_address or None,
        "sla_due_date": iso(ticket.resolution_due_at),
        "context": {
            "assigned_team": team_name,
            "routing": {"team": routed.name if routed is not None else None},
        },
        "created_at": iso(ticket.created_at),
    }


def _customer(
    session: Session,
    config: Mapping[str, Any],
    customer_id: int | str | None,
    customer_email: str | None,
    errors: dict[str, str],
) -> Contact | None:
    """The contact `customer_id` names; None when the customer is named by email
    (TicketsService finds or creates that contact and checks the address). An
    unknown id is refused at once, with every error found so far, in the words
    workflows match on (`Invalid customer_id: X`); a known one is the person as
    they are now (`contacts.current`: a contact merged away is its survivor). A
    staff or helpdesk address is no customer's however it is named
    (`contacts.is_ours`), nor a machine's mailbox (`automail.is_machine_address`)."""
    if customer_id is None or customer_id == "":
        if customer_email is None:
            errors["customer_id"] = "is required (or customer_email)"
        elif addresses.is_reserved_invalid(addresses.normalize(customer_email)):
            # The stand-in of someone known by phone only (docs/integrations.md).
            errors["customer_email"] = addresses.INVALID
        elif addresses.is_valid(addresses.normalize(customer_email)) and contacts.is_ours(
            session, customer_email, config
        ):
            errors["customer_email"] = contacts.NOT_A_CUSTOMER
        elif automail.is_machine_address(addresses.normalize(customer_email)):
            errors["customer_email"] = contacts.MACHINE_ADDRESS
        return None
    if customer_email is not None:
        errors["customer_email"] = "must not be given with customer_id"
        return None
    valid_id = positive_int(customer_id)
    contact = session.get(Contact, valid_id) if valid_id is not None else None
    if contact is None:
        errors["customer_id"] = "is not a known customer"
        raise ValidationError(
            errors, f"Invalid customer_id: {inputs.echoed(inputs.one_line(str(customer_id)))}"
        )
    # The id may be of a WhatsApp customer's phone-only contact merged since into
    # the address they proved: the ticket is the person's as they are now, locked
    # until it is opened (docs/isp-operations.md, "Workflows").
    contact = contacts.current(session, contact)
    if contacts.is_ours(session, contact.email, config):
        # A colleague's or the helpdesk's own contact row, named by id: as for an email.
        errors["customer_id"] = contacts.NOT_A_CUSTOMER
        return None
    if automail.is_machine_address(contact.email):  # a contact mail from noreply@ once made
        errors["customer_id"] = contacts.MACHINE_ADDRESS
        return None
    return contact


def _team(session: Session, name: str, errors: dict[str, str]) -> Team | None:
    try:
        return TeamsService(session).get(name)
    except NotFound:
        errors["assigned_team"] = "is not a team"
        return None


def _routed_team(session: Session, ticket_type: str) -> Team | None:
    """The team the routing table sends this type to, looked up before the ticket
    takes its number (nothing should hold the counter's lock longer)."""
    team_id = teams.route(session, ticket_type)
    return session.get(Team, team_id) if team_id is not None else None
