"""Tags, related-ticket links and merging over the API (docs/isp-operations.md,
"Merge and links", "Tags"). Thin, like helpdesk.api.tickets: the rules live in
the services. Both tickets of a link or a merge must be ones the caller may see."""

from __future__ import annotations

from flask import current_app, jsonify
from flask.typing import ResponseReturnValue

from helpdesk.api import bp
from helpdesk.api.payload import json_object
from helpdesk.api.serializers import ticket_json
from helpdesk.api.tickets import _service, _ticket
from helpdesk.auth import current_actor, staff_required
from helpdesk.extensions import db
from helpdesk.services import links, tags


@bp.put("/tickets/<number>/tags")
@staff_required()
def set_tags(number: str) -> ResponseReturnValue:
    data = json_object({"tags": (list,)}, required=("tags",))
    ticket = _ticket(number)
    tags.set_tags(db.session, ticket, data["tags"], current_actor())
    db.session.commit()
    return jsonify(ticket_json(ticket, detail=True))


@bp.post("/tickets/<number>/links")
@staff_required()
def add_link(number: str) -> ResponseReturnValue:
    data = json_object({"ticket": (str, int)}, required=("ticket",))
    ticket, other = _ticket(number), _ticket(str(data["ticket"]))
    links.link(db.session, ticket, other, current_actor(), current_app.config)
    db.session.commit()
    return jsonify(ticket_json(ticket, detail=True))


@bp.delete("/tickets/<number>/links/<other>")
@staff_required()
def remove_link(number: str, other: str) -> ResponseReturnValue:
    ticket = _ticket(number)
    links.unlink(db.session, ticket, _ticket(other), current_actor(), current_app.config)
    db.session.commit()
    return jsonify(ticket_json(ticket, detail=True))


@bp.post("/tickets/<number>/merge")
@staff_required()
def merge(number: str) -> ResponseReturnValue:
    data = json_object({"into": (str, int), "reason": (str, None)}, required=("into",))
    source, target = _ticket(number), _ticket(str(data["into"]))
    survivor = _service().merge(source, target, actor=current_actor(), reason=data.get("reason") or "")
    db.session.commit()
    return jsonify(ticket_json(survivor, detail=True))
