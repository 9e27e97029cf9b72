"""Tags, related-ticket links, merging and bulk actions over the API
(docs/isp-operations.md). Thin, like helpdesk.api.tickets: the rules live in the
services. Every ticket named must be one the caller may see."""

from __future__ import annotations

from flask import current_app, jsonify
from flask.typing import ResponseReturnValue

from helpdesk.api import bp
from helpdesk.api.payload import json_object
from helpdesk.api.serializers import ticket_json
from helpdesk.api.tickets import _assignee_id, _service, _ticket
from helpdesk.auth import current_actor, staff_required
from helpdesk.database import commit_or_unknown
from helpdesk.extensions import db
from helpdesk.services import bulk, links, tags


@bp.put("/tickets/<number>/tags")
@staff_required()
def set_tags(number: str) -> ResponseReturnValue:
    data = json_object({"tags": (list,)}, required=("tags",))
    ticket = _ticket(number)
    tags.set_tags(_service(), ticket, data["tags"], current_actor())
    commit_or_unknown(db.session)
    return jsonify(ticket_json(ticket, detail=True))


@bp.post("/tickets/<number>/links")
@staff_required()
def add_link(number: str) -> ResponseReturnValue:
    data = json_object({"ticket": (str, int)}, required=("ticket",))
    ticket, other = _ticket(number), _ticket(str(data["ticket"]))
    links.link(db.session, ticket, other, current_actor(), current_app.config)
    commit_or_unknown(db.session)
    return jsonify(ticket_json(ticket, detail=True))


@bp.delete("/tickets/<number>/links/<other>")
@staff_required()
def remove_link(number: str, other: str) -> ResponseReturnValue:
    ticket = _ticket(number)
    links.unlink(db.session, ticket, _ticket(other), current_actor(), current_app.config)
    commit_or_unknown(db.session)
    return jsonify(ticket_json(ticket, detail=True))


@bp.post("/tickets/<number>/merge")
@staff_required()
def merge(number: str) -> ResponseReturnValue:
    data = json_object({"into": (str, int), "reason": (str, None)}, required=("into",))
    source, target = _ticket(number), _ticket(str(data["into"]))
    survivor = _service().merge(source, target, actor=current_actor(), reason=data.get("reason") or "")
    commit_or_unknown(db.session)
    return jsonify(ticket_json(survivor, detail=True))


@bp.post("/tickets/bulk")
@staff_required()
def bulk_action() -> ResponseReturnValue:
    """`{tickets, action: assign|status|tag, assignee?, status?, reason?, tags?}` →
    what was done and what was refused, ticket by ticket."""
    data = json_object(
        {
            "tickets": (list,),
            "action": (str,),
            "assignee": (int, str, None),
            "status": (str,),
            "reason": (str, None),
            "tags": (list,),
        },
        required=("tickets", "action"),
    )
    result = bulk.apply(
        db.session,
        _service(),
        data["tickets"],
        data["action"],
        current_actor(),
        assignee_id=_assignee_id(data.get("assignee")),
        status=data.get("status"),
        reason=data.get("reason") or "",
        tag_names=data.get("tags"),
    )
    commit_or_unknown(db.session)
    return jsonify(
        {"done": result.done, "refused": [{"ticket": n, "error": why} for n, why in result.refused]}
    )
