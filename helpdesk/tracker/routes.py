from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import abort, current_app, flash, make_response, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from helpdesk import customer_links
from helpdesk.errors import Conflict, NotFound, ValidationError
from helpdesk.extensions import db
from helpdesk.inputs import positive_int
from helpdesk.services import satisfaction, tracking
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
    view = tracking.customer_view(db.session, ticket, cfg)
    return render_template("tracker/track.html", view=view, error=None, number=number, email=email)


@bp.get("/track/<token>")
def status_link(token: str) -> ResponseReturnValue:
    """The status link of customer mail: the tracker view without typing anything."""
    cfg = current_app.config
    opened = _open(cfg, "status", token)
    ticket = opened.ticket
    existing = satisfaction.rating_of(db.session, ticket)
    rating_url = (
        url_for("tracker.rating_form", token=opened.token(cfg, "rating"))
        if satisfaction.may_rate(ticket, existing)
        else None
    )
    view = tracking.customer_view(db.session, ticket, cfg)
    return render_template(
        "tracker/track.html", view=view, error=None, number="", email="", rating_url=rating_url
    )


@bp.get("/rate/<token>")
def rating_form(token: str) -> ResponseReturnValue:
    """The rating page of the resolution mail. Showing it changes nothing: mail
    scanners open every link in a mail, so only the form's POST rates."""
    cfg = current_app.config
    opened = _open(cfg, "rating", token)
    existing = satisfaction.rating_of(db.session, opened.ticket)
    chosen = positive_int(request.args.get("rating", ""), maximum=5) or (
        existing.rating if existing else None
    )
    return _rating_page(opened, chosen, existing.comment if existing else "")


@bp.post("/rate/<token>")
@limit_per_ip
def rate(token: str) -> ResponseReturnValue:
    cfg = current_app.config
    opened = _open(cfg, "rating", token)
    rating = positive_int(request.form.get("rating", ""), maximum=5)
    comment = request.form.get("comment", "")
    try:
        satisfaction.rate(db.session, opened.ticket, rating, comment, via="link")
    except (ValidationError, Conflict) as exc:
        db.session.rollback()
        status = 409 if isinstance(exc, Conflict) else 422
        return _rating_page(opened, rating, comment[: satisfaction.MAX_COMMENT], error=_explain(exc)), status
    db.session.commit()
    flash("Thank you for your rating.", "success")
    return redirect(url_for("tracker.status_link", token=opened.token(cfg, "status")), code=303)


def _open(cfg: Mapping[str, Any], purpose: str, token: str) -> customer_links.Opened:
    """The link's ticket, or the tracker page with the link's error as a 404."""
    try:
        return customer_links.open_link(db.session, cfg, purpose, token)
    except NotFound as exc:
        page = render_template("tracker/track.html", view=None, error=str(exc), number="", email="")
        abort(make_response(page, 404))


def _rating_page(
    opened: customer_links.Opened, chosen: int | None, comment: str, error: str | None = None
) -> str:
    ticket = opened.ticket
    cfg = current_app.config
    existing = satisfaction.rating_of(db.session, ticket)
    return render_template(
        "tracker/rate.html",
        view=tracking.customer_view(db.session, ticket, cfg),
        open=satisfaction.may_rate(ticket, existing),
        chosen=chosen,
        comment=comment,
        error=error,
        status_url=url_for("tracker.status_link", token=opened.token(cfg, "status")),
        choices=satisfaction.RATINGS,
        max_comment=satisfaction.MAX_COMMENT,
    )


def _explain(exc: ValidationError | Conflict) -> str:
    if isinstance(exc, ValidationError):
        return (
            f"Choose a rating from 1 to 5; the comment may be up to {satisfaction.MAX_COMMENT:,} characters."
        )
    return str(exc)
