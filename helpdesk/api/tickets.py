"""Tickets over the API (docs/web.md): thin — read the input, call TicketsService,
commit, answer. Every rule lives in the service."""

from __future__ import annotations

from typing import Any

from flask import current_app, jsonify, request
from flask.typing import ResponseReturnValue

from helpdesk import vocabulary as v
from helpdesk.api import bp, idempotency
from helpdesk.api.payload import Spec, form_object, json_object
from helpdesk.api.serializers import LISTED_DESCRIPTION_CHARS, message_json, ticket_json
from helpdesk.auth import current_actor, staff_caller, staff_required
from helpdesk.database import commit_or_found, commit_or_unknown
from helpdesk.errors import NotFound, ValidationError
from helpdesk.extensions import db
from helpdesk.inbound.limits import MailLimits
from helpdesk.inputs import positive_int, unstorable
from helpdesk.models import Message, Ticket
from helpdesk.services import QueueService, TicketFilters, TicketsService, thread, uploads, visibility
from helpdesk.services.chat import share_text
from helpdesk.services.idempotency import Earlier, made
from helpdesk.services.queue import CHOICE_FILTERS, MAX_SEARCH_CHARS
from helpdesk.services.staff import StaffService
from helpdesk.services.stats import ticket_stats
from helpdesk.services.tickets import kept_message, kept_ticket

LIST_PARAMETERS = (*CHOICE_FILTERS, "assignee", "team", "tag", "q", "sla", "page", "per_page", "sort")
MAX_PAGE = 1_000_000
# The ISP's service fields, as JSON gives them (read by helpdesk.service_fields).
SERVICE_FIELD_TYPES: dict[str, tuple[type | None, ...]] = {
    "ticket_type": (str,),
    "service_address": (str,),
    "affected_services": (list,),
    "device_serials": (list,),
}


def _service() -> TicketsService:
    return TicketsService.from_config(db.session, current_app.config)


def _ticket(number: str) -> Ticket:
    return _service().get(number, viewer=current_actor())


@bp.get("/tickets")
@staff_required()
def list_tickets() -> ResponseReturnValue:
    args = request.args
    errors = {name: "is not a known parameter" for name in set(args) - set(LIST_PARAMETERS)}
    errors.update(
        {
            name: "must not contain NUL characters or lone surrogates"
            for name in args
            if unstorable(args.getlist(name))
        }
    )
    if len(args.get("q") or "") > MAX_SEARCH_CHARS:
        errors["q"] = f"must be at most {MAX_SEARCH_CHARS} characters"
    if errors:
        raise ValidationError(errors)
    page = _integer("page", 1)
    per_page = _integer("per_page", 25)
    chosen: dict[str, Any] = {name: _list(name) for name in CHOICE_FILTERS}
    filters = TicketFilters(
        **chosen,
        assignee=_assignee_filter(args.get("assignee")),
        team=args.get("team") or None,
        tag=args.get("tag") or None,
        q=args.get("q") or None,
        sla=args.get("sla") or None,
    )
    result = QueueService.from_config(db.session, current_app.config).list_tickets(
        filters,
        page=page,
        per_page=per_page,
        sort=args.get("sort") or "-created_at",
        viewer=current_actor(),
        description_chars=LISTED_DESCRIPTION_CHARS,
    )
    return jsonify(
        {
            "items": [ticket_json(t, listed=True) for t in result.items],
            "page": result.page,
            "per_page": result.per_page,
            "total": result.total,
        }
    )


@bp.post("/tickets")
@staff_required()
def create_ticket() -> ResponseReturnValue:
    data = json_object(
        {
            "subject": (str,),
            "description": (str,),
            "requester_email": (str,),
            "requester_name": (str, None),
            "priority": (str, None),
            "category": (str, None),
            "cc": (list, None),
            "team": (str, None),
            **SERVICE_FIELD_TYPES,
        },
        required=("subject", "description", "requester_email"),
    )
    cc = data.get("cc") or []
    if not all(isinstance(address, str) for address in cc):
        raise ValidationError({"cc": "must be a list of email addresses"})
    claim = idempotency.claim(staff_caller())  # a retry (docs/web.md, "Idempotency keys")
    if isinstance(claim, Earlier):
        return idempotency.replayed(ticket_json(_made_ticket(claim)))
    ticket = _service().open_ticket(
        subject=data["subject"],
        description=data["description"],
        requester_email=data["requester_email"],
        requester_name=data.get("requester_name") or "",
        priority=data.get("priority"),
        category=data.get("category"),
        channel="api",
        actor=current_actor(),
        cc=[(address, "") for address in cc],
        ticket_type=data.get("ticket_type"),
        service_address=data.get("service_address") or "",
        affected_services=data.get("affected_services") or (),
        device_serials=data.get("device_serials") or (),
        team=data.get("team"),
        idempotency_key=claim,
    )
    body = ticket_json(ticket)  # before the commit expires it: no reload afterwards
    commit_or_found(db.session, kept_ticket(ticket.id, ticket.number))
    return jsonify(body), 201


@bp.get("/tickets/<number>")
@staff_required()
def get_ticket(number: str) -> ResponseReturnValue:
    """`?before=<message id>`: the messages older than that one (docs/web.md, "Long threads")."""
    before = request.args.get("before")
    if before is not None and positive_int(before) is None:
        raise ValidationError({"before": "must be a message id"})
    return jsonify(ticket_json(_ticket(number), detail=True, before=positive_int(before)))


@bp.get("/tickets/<number>/messages/<message_id>")
@staff_required()
def get_message(number: str, message_id: str) -> ResponseReturnValue:
    """One message of the ticket whole, text and HTML: the ticket's answer cuts each
    (`body_truncated`; docs/web.md, "Long threads"). 404 as for the ticket."""
    ticket = _ticket(number)
    wanted = positive_int(message_id)
    found = thread.message(db.session, ticket, wanted) if wanted is not None else None
    if found is None:
        raise NotFound("No such message on this ticket.")
    return jsonify(message_json(thread.Shown.whole(found)))


@bp.patch("/tickets/<number>")
@staff_required()
def update_ticket(number: str) -> ResponseReturnValue:
    data = json_object(
        {
            "priority": (str,),
            "category": (str,),
            "assignee": (int, str, None),
            "team": (str, None),
            "language": (str,),
            **SERVICE_FIELD_TYPES,
        }
    )
    ticket = _ticket(number)
    changes: dict[str, Any] = {
        name: data.get(name) for name in ("priority", "category", *SERVICE_FIELD_TYPES)
    }
    if "assignee" in data:
        changes["assignee_id"] = _assignee_id(data["assignee"])
    if "team" in data:
        changes["team"] = data["team"] or ""  # null: no team
    # The language first: the update can take the ticket out of the caller's sight
    # (another team; a colleague under `own`), and each change is held to it.
    if "language" in data:  # the customer's, for this ticket's mail and their contact
        _service().set_language(ticket, data["language"], actor=current_actor())
    _service().update(ticket, actor=current_actor(), **changes)
    commit_or_unknown(db.session)
    return jsonify(ticket_json(ticket, detail=True))


@bp.post("/tickets/<number>/status")
@staff_required()
def change_status(number: str) -> ResponseReturnValue:
    data = json_object({"status": (str,), "reason": (str, None)}, required=("status",))
    ticket = _ticket(number)
    _service().change_status(ticket, data["status"], actor=current_actor(), reason=data.get("reason") or "")
    commit_or_unknown(db.session)
    return jsonify(ticket_json(ticket, detail=True))


@bp.post("/tickets/<number>/escalate")
@staff_required()
def escalate(number: str) -> ResponseReturnValue:
    """Raise the support level, optionally to someone at it (docs/isp-operations.md)."""
    data = json_object(
        {"level": (str,), "assignee": (int, str, None), "reason": (str,)}, required=("level", "reason")
    )
    ticket = _ticket(number)
    assignee: int | None | str = "unchanged"
    if data.get("assignee") is not None:
        assignee = _assignee_id(data["assignee"])
    _service().escalate(
        ticket, data["level"], actor=current_actor(), reason=data["reason"], assignee_id=assignee
    )
    commit_or_unknown(db.session)
    return jsonify(ticket_json(ticket, detail=True))


@bp.post("/tickets/<number>/replies")
@staff_required()
def add_reply(number: str) -> ResponseReturnValue:
    """JSON `{body, internal?}`, or the same fields as multipart/form-data with files
    under `attachments` (helpdesk.services.uploads; docs/web.md)."""
    spec: Spec = {"body": (str,), "internal": (bool,)}
    if request.mimetype == "multipart/form-data":
        data = form_object(spec, required=("body",), files=(uploads.FIELD,))
    else:
        data = json_object(spec, required=("body",))
    limits = MailLimits.from_config(current_app.config)
    files = uploads.attachments(request.files.getlist(uploads.FIELD), limits)
    ticket = _ticket(number)
    claim = idempotency.claim(staff_caller())  # a retry (docs/web.md, "Idempotency keys")
    if isinstance(claim, Earlier):
        return idempotency.replayed(message_json(thread.Shown.whole(_made_message(claim))))
    message = _service().add_message(
        ticket,
        body=data["body"],
        actor=current_actor(),
        channel="api",
        internal=data.get("internal", False),
        attachments=files,
    )
    if claim is not None:
        made(db.session, claim, ticket_id=message.ticket_id, message_id=message.id)
    body = message_json(thread.Shown.whole(message))  # before the commit expires it, as for a new ticket
    commit_or_found(db.session, kept_message(message))  # a lost commit answer (docs/web.md)
    return jsonify(body), 201


@bp.get("/tickets/<number>/share")
@staff_required()
def share_ticket(number: str) -> ResponseReturnValue:
    """The text an agent pastes to the customer (docs/integrations.md, "Chat")."""
    return jsonify({"text": share_text(_ticket(number), current_app.config)})


@bp.get("/stats")
@staff_required()
def stats() -> ResponseReturnValue:
    scope = visibility.clause(db.session, current_actor(), current_app.config["AGENT_VISIBILITY"])
    return jsonify(ticket_stats(db.session, scope=scope))


def _made_ticket(earlier: Earlier) -> Ticket:
    """The ticket an earlier call under the key opened, as it is now, if the caller
    may still see it (`visibility`), else NotFound as for `GET /tickets/<number>`."""
    ticket = db.session.get(Ticket, earlier.ticket_id) if earlier.ticket_id is not None else None
    if ticket is None:
        raise NotFound("The ticket this Idempotency-Key opened is gone.")
    return _service().get(ticket.number, viewer=current_actor())


def _made_message(earlier: Earlier) -> Message:
    message = db.session.get(Message, earlier.message_id) if earlier.message_id is not None else None
    if message is None:
        raise NotFound("The reply this Idempotency-Key added is gone.")
    return message


def _integer(name: str, default: int) -> int:
    value = request.args.get(name)
    if value is None:
        return default
    number = positive_int(value, maximum=MAX_PAGE)
    if number is None:
        raise ValidationError({name: f"must be a whole number from 1 to {MAX_PAGE}"})
    return number


def _list(name: str) -> list[str]:
    """`?status=new,open` or `?status=new&status=open`; `priority=normal` is medium."""
    return [
        v.unalias(name, part.strip().lower())
        for value in request.args.getlist(name)
        for part in value.split(",")
        if part.strip()
    ]


def _assignee_filter(value: str | None) -> int | str | None:
    """`me`, `none`, a staff id or a staff email."""
    if value is None or value == "":
        return None
    if value == "me":
        return current_actor().staff_id
    if value == "none":
        return "none"
    return _assignee_id(value)


def _assignee_id(value: int | str | None) -> int | None:
    """A staff member named by id or email (`StaffService.by_email`: either spelling
    of an internationalised domain); None (JSON null) unassigns."""
    if value is None:
        return None
    if isinstance(value, int) or (isinstance(value, str) and value.isascii() and value.isdigit()):
        number = positive_int(value)
        if number is None:
            raise ValidationError({"assignee": "is not a staff member"})
        return number
    # In either spelling of an internationalised domain, as she signs in.
    user = StaffService(db.session).by_email(value)
    if user is None:
        raise ValidationError({"assignee": "is not a staff member"})
    return user.id
