"""Canned replies over the API (docs/isp-operations.md, "Canned replies"): the ones
the caller may use, and one filled in for a ticket, for clients that build their own
reply box. Thin, like helpdesk.api.tickets: the rules live in helpdesk.services.canned."""

from __future__ import annotations

from typing import Any

from flask import current_app, jsonify
from flask.typing import ResponseReturnValue
from flask_jwt_extended import current_user

from helpdesk.api import bp
from helpdesk.api.tickets import _ticket
from helpdesk.auth import current_actor, staff_required
from helpdesk.clock import iso
from helpdesk.extensions import db
from helpdesk.models import CannedReply
from helpdesk.services.canned import CannedRepliesService


def _service() -> CannedRepliesService:
    return CannedRepliesService.from_config(db.session, current_app.config)


def canned_json(reply: CannedReply) -> dict[str, Any]:
    return {
        "id": reply.id,
        "title": reply.title,
        "body": reply.body,
        "shared": reply.owner_id is None,
        "updated_at": iso(reply.updated_at),
    }


@bp.get("/canned-replies")
@staff_required()
def list_canned_replies() -> ResponseReturnValue:
    """The shared ones and the caller's own, as written (placeholders unfilled)."""
    return jsonify({"items": [canned_json(reply) for reply in _service().usable(current_actor())]})


@bp.get("/tickets/<number>/canned-replies/<reply_id>")
@staff_required()
def render_canned_reply(number: str, reply_id: str) -> ResponseReturnValue:
    """`{text}`: the reply filled in for the ticket, written by the caller; 404 for
    a ticket or a reply the caller may not see."""
    ticket = _ticket(number)
    service = _service()
    reply = service.get_usable(reply_id, current_actor())
    return jsonify({"text": service.render(reply, ticket, current_user)})
