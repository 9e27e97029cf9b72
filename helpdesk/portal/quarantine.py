"""Quarantine review: held mail, its raw bytes, approve / reject / mark as spam."""

from __future__ import annotations

from flask import abort, current_app, render_template, url_for
from flask.typing import ResponseReturnValue

from helpdesk import vocabulary as v
from helpdesk.errors import NotFound
from helpdesk.extensions import db
from helpdesk.inbound import quarantine as review
from helpdesk.portal import bp
from helpdesk.portal.actions import perform
from helpdesk.portal.session import actor, login_required


@bp.get("/quarantine")
@login_required()
def quarantine() -> ResponseReturnValue:
    return render_template("portal/quarantine.html", nav="quarantine", items=review.pending(db.session))


@bp.get("/quarantine/<int(max=2147483647):item_id>")
@login_required()
def quarantine_item(item_id: int) -> ResponseReturnValue:
    try:
        item = review.get(db.session, item_id)
    except NotFound:
        abort(404)
    raw = item.inbound_mail.raw.decode("utf-8", "replace")
    return render_template(
        "portal/quarantine_item.html", nav="quarantine", item=item, raw=raw, sender_sources=v.SENDER_SOURCES
    )


@bp.post("/quarantine/<int(max=2147483647):item_id>/<decision>")
@login_required()
def decide(item_id: int, decision: str) -> ResponseReturnValue:
    if decision not in ("approve", "reject", "spam"):
        abort(404)
    try:
        review.get(db.session, item_id)
    except NotFound:
        abort(404)

    def decide_item() -> str:
        if decision == "approve":
            result = review.approve(db.session, item_id, actor(), current_app.config)
            return f"Approved: {result.outcome.value} {result.ticket_number or ''}".strip()
        review.reject(db.session, item_id, actor(), spam=decision == "spam")
        return "Marked as spam." if decision == "spam" else "Rejected."

    return perform(decide_item, url_for("portal.quarantine"))
