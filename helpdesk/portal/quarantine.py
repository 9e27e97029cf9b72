"""Quarantine review: held mail, its raw bytes, approve / reject / mark as spam."""

from __future__ import annotations

from typing import Any

from flask import abort, current_app, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext

from helpdesk import languages
from helpdesk.errors import NotFound
from helpdesk.extensions import db
from helpdesk.inbound import quarantine as review
from helpdesk.inbound.ingest import never_read
from helpdesk.inputs import page_number
from helpdesk.portal import bp
from helpdesk.portal.actions import perform
from helpdesk.portal.session import actor, login_required
from helpdesk.wording import vocabulary_label

NEWEST = "newest"  # `?order=`: the list's one other order; any other value is the oldest first


def _order() -> dict[str, Any]:
    """The list's order as its links carry it: `{"order": "newest"}`, or nothing."""
    return {"order": NEWEST} if request.args.get("order") == NEWEST else {}


@bp.get("/quarantine")
@login_required()
def quarantine() -> ResponseReturnValue:
    """One page of the held mail (`review.pending`); a page number that is not one is the first."""
    mode = current_app.config["AGENT_VISIBILITY"]
    order = _order()
    page = review.pending(
        db.session, actor(), mode, page=page_number(request.args.get("page")), newest=bool(order)
    )
    return render_template("portal/quarantine.html", nav="quarantine", page=page, order=order)


@bp.get("/quarantine/<int(max=2147483647):item_id>")
@login_required()
def quarantine_item(item_id: int) -> ResponseReturnValue:
    try:
        item = review.get(db.session, item_id, actor(), current_app.config["AGENT_VISIBILITY"])
    except NotFound:
        abort(404)
    raw = item.inbound_mail.raw.decode("utf-8", "replace")
    return render_template(
        "portal/quarantine_item.html",
        nav="quarantine",
        item=item,
        raw=raw,
        unread=never_read(item.inbound_mail),
    )


@bp.post("/quarantine/<int(max=2147483647):item_id>/<decision>")
@login_required()
def decide(item_id: int, decision: str) -> ResponseReturnValue:
    if decision not in ("approve", "reject", "spam"):
        abort(404)
    mode = current_app.config["AGENT_VISIBILITY"]
    try:
        review.get(db.session, item_id, actor(), mode)
    except NotFound:
        abort(404)

    def decide_item() -> str:
        if decision == "approve":
            try:
                result = review.approve(db.session, item_id, actor(), current_app.config)
            except NotFound:  # it would land in a ticket hidden from the reviewer
                db.session.rollback()
                abort(404)
            number = result.ticket_number or ""
            if result.outcome.value == "created":
                return gettext("Approved: created %(number)s", number=number)
            if result.outcome.value == "appended":
                return gettext("Approved: added to %(number)s", number=number)
            outcome = vocabulary_label(languages.INBOUND_OUTCOME_LABELS, result.outcome.value)
            return gettext("Approved: %(outcome)s", outcome=outcome)
        review.reject(db.session, item_id, actor(), mode, spam=decision == "spam")
        return gettext("Marked as spam.") if decision == "spam" else gettext("Rejected.")

    return perform(decide_item, url_for("portal.quarantine", **_order()))
