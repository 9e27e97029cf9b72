"""The workflow API for `workflow` integrations (docs/isp-operations.md,
"Workflows"): an ISP's onboarding or installation system opens a ticket for a
customer. Thin: the rules live in `helpdesk.services.workflow`, which in-process
workflows call directly."""

from __future__ import annotations

from flask import current_app, g, jsonify
from flask.typing import ResponseReturnValue

from helpdesk.api import bp, idempotency
from helpdesk.api.payload import json_object
from helpdesk.auth import integration_caller, integration_required
from helpdesk.database import commit_or_found
from helpdesk.errors import NotFound
from helpdesk.extensions import db
from helpdesk.models import Ticket
from helpdesk.numbering import parse_number
from helpdesk.services.idempotency import Earlier
from helpdesk.services.tickets import kept_ticket
from helpdesk.services.workflow import open_workflow_ticket, workflow_answer

# Optional fields may be null, as if not given.
FIELDS: dict[str, tuple[type | None, ...]] = {
    "title": (str,),
    "description": (str,),
    "customer_id": (int, str, None),
    "customer_email": (str, None),
    "priority": (str, None),
    "assigned_team": (str, None),
    "ticket_type": (str, None),
    "service_address": (str, None),
}


@bp.post("/workflow/tickets")
@integration_required("workflow")
def workflow_ticket() -> ResponseReturnValue:
    data = json_object(FIELDS, required=("title", "description"))
    claim = idempotency.claim(integration_caller())  # a retry (docs/web.md, "Idempotency keys")
    if isinstance(claim, Earlier):
        ticket = db.session.get(Ticket, claim.ticket_id) if claim.ticket_id is not None else None
        if ticket is None:
            raise NotFound("The ticket this Idempotency-Key opened is gone.")
        return idempotency.replayed(workflow_answer(db.session, current_app.config, ticket))
    answer = open_workflow_ticket(
        db.session,
        current_app.config,
        **data,
        caller=f"{g.integration.name} (workflow)",
        channel="api",
        idempotency_key=claim,
    )
    number = parse_number(answer["ticket_number"], current_app.config["TICKET_PREFIX"])
    commit_or_found(db.session, kept_ticket(answer["ticket_id"], number or 0))  # docs/web.md
    return jsonify(answer), 201
