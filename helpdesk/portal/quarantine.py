"""Quarantine review: held mail, its raw bytes, approve / reject / mark as spam."""

from __future__ import annotations

from typing import Any

from flask import abort, current_app, render_template, request, stream_with_context, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext
from sqlalchemy import func, select

from helpdesk import languages
from helpdesk.errors import NotFound
from helpdesk.extensions import db
from helpdesk.inbound import quarantine as review
from helpdesk.inbound.ingest import never_read
from helpdesk.inputs import page_number
from helpdesk.models import InboundMail, QuarantineItem
from helpdesk.portal import bp
from helpdesk.portal.actions import perform
from helpdesk.portal.session import actor, login_required
from helpdesk.wording import vocabulary_label

NEWEST = "newest"  # `?order=`: the list's one other order; any other value is the oldest first
# How much of a held mail its page shows: the headers and the start of the body. The
# gateway accepts mails of MAX_MESSAGE_BYTES (25 MiB); shown whole, one stranger's
# mail made a page of that size for every reviewer. The whole mail is a download.
RAW_SHOWN_BYTES = 64 * 1024


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
    """The held mail's facts and its first RAW_SHOWN_BYTES, read from the database
    as that much: the rest stays there, for the download (`quarantine_raw`)."""
    item = _item_or_404(item_id)
    start = db.session.execute(
        select(func.substr(InboundMail.raw, 1, RAW_SHOWN_BYTES)).where(InboundMail.id == item.inbound_mail_id)
    ).scalar_one()
    return render_template(
        "portal/quarantine_item.html",
        nav="quarantine",
        item=item,
        raw=bytes(start or b"").decode("utf-8", "replace"),
        cut=item.inbound_mail.size > RAW_SHOWN_BYTES,
        raw_shown_bytes=RAW_SHOWN_BYTES,
        unread=never_read(item.inbound_mail),
    )


@bp.get("/quarantine/<int(max=2147483647):item_id>/raw")
@login_required()
def quarantine_raw(item_id: int) -> ResponseReturnValue:
    """The whole held mail as it came in, always a download (`.eml`), never rendered:
    it is a stranger's content. Streamed (`review.raw_slices`): read whole, a mail of
    MAX_MESSAGE_BYTES was twice its size in the worker's memory."""
    item = _item_or_404(item_id)
    length = review.raw_length(db.session, item)
    db.session.rollback()  # the request's transaction (on SQLite, the write lock) ends here
    response = current_app.response_class(
        stream_with_context(review.raw_slices(db.engine, item.inbound_mail_id, length)),
        mimetype="application/octet-stream",
    )
    response.headers["Content-Length"] = str(length)
    response.headers["Content-Disposition"] = f"attachment; filename=held-mail-{item_id}.eml"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "private, no-store"
    return response


def _item_or_404(item_id: int) -> QuarantineItem:
    """The item if the staff member may see it (`review.get`), else 404."""
    try:
        return review.get(db.session, item_id, actor(), current_app.config["AGENT_VISIBILITY"])
    except NotFound:
        abort(404)


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
