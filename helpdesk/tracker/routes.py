from __future__ import annotations

from flask import current_app, render_template, request
from flask.typing import ResponseReturnValue

from helpdesk.errors import NotFound
from helpdesk.extensions import db
from helpdesk.services import tracking
from helpdesk.tracker import bp
from helpdesk.tracker.limits import limit_per_ip, limit_per_ticket


@bp.get("/track")
def form() -> ResponseReturnValue:
    return render_template("tracker/track.html", view=None, error=None, number="", email="")


@bp.post("/track")
@limit_per_ip
@limit_per_ticket
def lookup() -> ResponseReturnValue:
    number = request.form.get("ticket_number", "")
    email = request.form.get("email", "")[:320]
    cfg = current_app.config
    try:
        ticket = tracking.find(db.session, number, email, cfg["TICKET_PREFIX"])
    except NotFound as exc:
        shown = number[: tracking.MAX_NUMBER_TEXT]
        return render_template(
            "tracker/track.html", view=None, error=str(exc), number=shown, email=email
        ), 404
    view = tracking.customer_view(ticket, cfg)
    return render_template("tracker/track.html", view=view, error=None, number=number, email=email)
