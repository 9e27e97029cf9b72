"""Quarantine review: held mail, its raw bytes, approve / reject / mark as spam."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any, cast

from flask import abort, current_app, render_template, request, stream_with_context, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext
from sqlalchemy import Connection, func, select

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
# What the download reads from the database at a time (`_raw_chunks`).
RAW_CHUNK_BYTES = 1024 * 1024


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
    it is a stranger's content. Streamed (`_raw_chunks`): read whole, a mail of
    MAX_MESSAGE_BYTES was twice its size in the worker's memory."""
    item = _item_or_404(item_id)
    mail_id = item.inbound_mail_id
    length = db.session.execute(
        select(func.length(InboundMail.raw)).where(InboundMail.id == mail_id)
    ).scalar()
    db.session.rollback()  # the request's transaction (on SQLite, the write lock) ends here
    response = current_app.response_class(
        stream_with_context(_raw_chunks(mail_id, length or 0)), mimetype="application/octet-stream"
    )
    response.headers["Content-Length"] = str(length or 0)
    response.headers["Content-Disposition"] = f"attachment; filename=held-mail-{item_id}.eml"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "private, no-store"
    return response


def _raw_chunks(mail_id: int, length: int) -> Iterator[bytes]:
    """The mail's bytes, RAW_CHUNK_BYTES at a time, each read on a connection taken
    from the pool for that read alone: none is held while a slow client reads (the
    mail never changes)."""
    for start in range(0, length, RAW_CHUNK_BYTES):
        with db.engine.connect() as connection:
            chunk = _raw_chunk(connection, mail_id, start)
        if not chunk:
            return
        yield chunk


def _raw_chunk(connection: Connection, mail_id: int, start: int) -> bytes:
    """RAW_CHUNK_BYTES of the mail from `start` (0-based). SQLite's `substr` reads the
    whole value for every slice (a 20 MiB mail took three times as long in 1 MiB
    slices as read whole); its incremental blob reading reads only the slice, in no
    transaction (every `BEGIN IMMEDIATE` takes the write lock)."""
    if connection.dialect.name == "sqlite":
        sqlite = cast(sqlite3.Connection, connection.connection.driver_connection)
        with sqlite.blobopen(InboundMail.__tablename__, "raw", mail_id, readonly=True) as blob:
            blob.seek(start)
            return bytes(blob.read(RAW_CHUNK_BYTES))
    slice_ = select(func.substr(InboundMail.raw, start + 1, RAW_CHUNK_BYTES)).where(InboundMail.id == mail_id)
    return bytes(connection.execute(slice_).scalar() or b"")


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
