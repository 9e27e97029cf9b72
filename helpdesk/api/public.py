"""The public tracker over the API: no token, rate-limited (docs/web.md)."""

from __future__ import annotations

from dataclasses import asdict

from flask import current_app, jsonify
from flask.typing import ResponseReturnValue

from helpdesk.api import bp
from helpdesk.api.payload import json_object, json_value
from helpdesk.api.serializers import when
from helpdesk.extensions import db
from helpdesk.services import tracking
from helpdesk.tracker.limits import limit_per_ip, limit_per_ticket


@bp.post("/public/track")
@limit_per_ip
@limit_per_ticket(json_value)
def track() -> ResponseReturnValue:
    data = json_object({"ticket_number": (str,), "email": (str,)}, required=("ticket_number", "email"))
    cfg = current_app.config
    found = tracking.find(db.session, data["ticket_number"], data["email"], cfg)
    view = asdict(tracking.customer_view(db.session, found.ticket, cfg, found.address))
    for key in ("created_at", "updated_at"):
        view[key] = when(view[key])
    for item in view["replies"] + view["timeline"]:
        item["created_at"] = when(item["created_at"])
    return jsonify(view)
