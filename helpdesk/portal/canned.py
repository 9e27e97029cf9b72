"""Canned replies in the portal (docs/isp-operations.md, "Canned replies"): each
staff member's own on `/account/canned`, the shared ones on `/admin/canned`
(admins), and the reply box of the ticket page, which inserts one without any
script: a GET form asks for the ticket page again with `?canned=<id>`, and the
page comes back with that reply filled in for the ticket."""

from __future__ import annotations

from typing import Any

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext

from helpdesk.database import commit_or_unknown
from helpdesk.errors import Forbidden, NotFound, ValidationError
from helpdesk.extensions import db
from helpdesk.models import CannedReply, Ticket
from helpdesk.portal import bp
from helpdesk.portal.session import actor, login_required, signed_in
from helpdesk.services.canned import MAX_BODY, MAX_TITLE, PLACEHOLDERS, CannedRepliesService


def _service() -> CannedRepliesService:
    return CannedRepliesService.from_config(db.session, current_app.config)


def reply_box(record: Ticket, typed: str | None = None) -> dict[str, Any]:
    """The ticket page's reply box: the canned replies on offer and its text — what
    was typed (a reply that was refused), else the canned reply `?canned=` picks,
    filled in for this ticket (404 when it is not one the staff member may use)."""
    service = _service()
    me = actor()
    text = typed
    if text is None and request.args.get("canned"):
        try:
            chosen = service.get_usable(request.args["canned"], me)
        except NotFound:
            abort(404)
        text = service.render(chosen, record, signed_in())
    return {"canned_replies": service.choices(me), "reply_body": text or ""}


@bp.get("/account/canned")
@login_required()
def personal_canned() -> ResponseReturnValue:
    return _list_page(shared=False)


@bp.post("/account/canned")
@login_required()
def add_personal_canned() -> ResponseReturnValue:
    return _add(shared=False)


@bp.get("/admin/canned")
@login_required("admin")
def shared_canned() -> ResponseReturnValue:
    return _list_page(shared=True)


@bp.post("/admin/canned")
@login_required("admin")
def add_shared_canned() -> ResponseReturnValue:
    return _add(shared=True)


@bp.route("/canned/<int(max=2147483647):reply_id>/edit", methods=["GET", "POST"])
@login_required()
def edit_canned(reply_id: int) -> ResponseReturnValue:
    """One's own reply, or (admins) a shared one; anyone else's personal reply is
    not found, and an agent asking for a shared one is refused."""
    service = _service()
    reply = _editable(service, reply_id)
    if request.method == "GET":
        return _edit_page(reply, reply.title, reply.body, {})
    form = request.form
    try:
        service.edit(reply_id, actor(), form.get("title", ""), form.get("body", ""))
    except ValidationError as exc:
        db.session.rollback()
        return _edit_page(reply, form.get("title", ""), form.get("body", ""), exc.fields), 422
    commit_or_unknown(db.session)
    flash(gettext("Canned reply saved."))
    return redirect(_list_url(reply))


@bp.post("/canned/<int(max=2147483647):reply_id>/delete")
@login_required()
def delete_canned(reply_id: int) -> ResponseReturnValue:
    service = _service()
    reply = _editable(service, reply_id)
    back, title = _list_url(reply), reply.title
    service.delete(reply_id, actor())
    commit_or_unknown(db.session)
    flash(gettext("Canned reply “%(title)s” deleted.", title=title))
    return redirect(back)


def _editable(service: CannedRepliesService, reply_id: int) -> CannedReply:
    try:
        return service.get_editable(reply_id, actor())
    except NotFound:
        abort(404)
    except Forbidden:
        abort(403)


def _add(*, shared: bool) -> ResponseReturnValue:
    form = request.form
    try:
        _service().add(actor(), form.get("title", ""), form.get("body", ""), shared=shared)
    except ValidationError as exc:
        db.session.rollback()
        return _list_page(shared=shared, errors=exc.fields, form=form), 422
    commit_or_unknown(db.session)
    flash(gettext("Canned reply added."))
    return redirect(url_for("portal.shared_canned" if shared else "portal.personal_canned"))


def _list_page(*, shared: bool, errors: dict[str, str] | None = None, form: Any = None) -> str:
    service = _service()
    return render_template(
        "portal/canned.html",
        nav="canned" if shared else "account",
        shared=shared,
        replies=service.shared() if shared else service.personal(actor()),
        errors=errors or {},
        form=form or {},
        **_limits(),
    )


def _edit_page(reply: CannedReply, title: str, body: str, errors: dict[str, str]) -> str:
    return render_template(
        "portal/canned_edit.html",
        nav="canned" if reply.owner_id is None else "account",
        reply=reply,
        title=title,
        body=body,
        errors=errors,
        **_limits(),
    )


def _limits() -> dict[str, Any]:
    return {"max_title": MAX_TITLE, "max_body": MAX_BODY, "placeholders": PLACEHOLDERS}


def _list_url(reply: CannedReply) -> str:
    return url_for("portal.shared_canned" if reply.owner_id is None else "portal.personal_canned")
