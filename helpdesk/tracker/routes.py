"""The tracker's pages: the lookup form, the status and rating links of customer
mail, and the language switch (docs/web.md, docs/languages.md).

A visitor reads the language they chose with the switch (kept in the session),
else on a mail's link the ticket's language (the mail's), else their browser's
`Accept-Language`, else — once they proved who they are (a lookup, a link) —
their contact's, else `DEFAULT_LANGUAGE`; times in `BUSINESS_TIMEZONE`. A
customer who switches on a mail's link also sets their contact's language; the
ticket's stays, so its mail thread keeps one language. A lookup's answer proves
less than the mail (`customer_links.MAILED`): its switch shows the ticket again
in the chosen language, and neither rates nor sets the contact's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import (
    Response,
    abort,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import format_number, gettext

from config import LANGUAGES
from helpdesk import customer_links, languages, numbering
from helpdesk.database import commit_or_unknown
from helpdesk.errors import Conflict, NotFound, ValidationError
from helpdesk.extensions import db
from helpdesk.inputs import positive_int
from helpdesk.services import notifications, satisfaction, tracking
from helpdesk.tracker import bp
from helpdesk.tracker.limits import limit_per_ip, limit_per_ticket

CHOSEN = "tracker_language"  # the session key of the switch's choice
_PAGES = {"status": "tracker.status_link", "rating": "tracker.rating_form", "lookup": "tracker.found"}


@bp.before_request
def _language() -> None:
    languages.use(session.get(CHOSEN))


@bp.after_request
def _private(response: Response) -> Response:
    """The pages show a customer's thread, rating and address: no shared cache
    keeps them, nor does the browser's history after the tab is gone."""
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.context_processor
def _words() -> dict[str, Any]:
    return {
        "STATUS_LABELS": languages.STATUS_LABELS,
        "PRIORITY_LABELS": languages.PRIORITY_LABELS,
        "CATEGORY_LABELS": languages.CATEGORY_LABELS,
        "author_of": _author_of,
        "example_number": numbering.display_number(78, current_app.config),
    }


@bp.get("/track")
def form() -> ResponseReturnValue:
    return render_template("tracker/track.html", view=None, error=None, number="", email="")


@bp.post("/track")
@limit_per_ip
@limit_per_ticket(lambda: request.form)
def lookup() -> ResponseReturnValue:
    number = request.form.get("ticket_number", "")
    email = request.form.get("email", "")[:320]
    cfg = current_app.config
    try:
        found = tracking.find(db.session, number, email, cfg)
    except NotFound as exc:
        shown = number[: tracking.MAX_NUMBER_TEXT]
        return render_template(
            "tracker/track.html", view=None, error=languages.label(str(exc)), number=shown, email=email
        ), 404
    # The address as stored (`tracking.Found`): the typed spelling may be the other.
    _read_as_contact(found.address)
    view = tracking.customer_view(db.session, found.ticket, cfg, found.address)
    # A token of its own purpose, so the language switch can show the ticket again:
    # a status token's page offered the rating (customer_links.MAILED).
    link = ("lookup", customer_links.token(cfg, "lookup", found.ticket.id, found.address))
    return render_template("tracker/track.html", view=view, error=None, number=number, email=email, link=link)


@bp.get("/track/lookup/<token>")
def found(token: str) -> ResponseReturnValue:
    """A lookup's answer again, where its language switch leads: the view only."""
    opened = _open(current_app.config, "lookup", token)
    view = tracking.customer_view(db.session, opened.ticket, current_app.config, opened.address)
    return render_template(
        "tracker/track.html", view=view, error=None, number="", email="", link=("lookup", token)
    )


@bp.get("/track/<token>")
def status_link(token: str) -> ResponseReturnValue:
    """The status link of customer mail: the tracker view without typing anything."""
    cfg = current_app.config
    opened = _open(cfg, "status", token)
    ticket = opened.ticket
    _read_as_mailed(opened)
    existing = satisfaction.rating_of(db.session, ticket)
    rating_url = (
        url_for("tracker.rating_form", token=opened.token(cfg, "rating"))
        if satisfaction.may_rate(ticket, existing, opened.address)
        else None
    )
    view = tracking.customer_view(db.session, ticket, cfg, opened.address)
    return render_template(
        "tracker/track.html",
        view=view,
        error=None,
        number="",
        email="",
        rating_url=rating_url,
        link=("status", token),
    )


@bp.get("/rate/<token>")
def rating_form(token: str) -> ResponseReturnValue:
    """The rating page of the resolution mail. Showing it changes nothing: mail
    scanners open every link in a mail, so only the form's POST rates. The form
    comes filled with the rating its recipient gave, never with someone else's."""
    cfg = current_app.config
    opened = _open(cfg, "rating", token)
    _read_as_mailed(opened)
    existing = satisfaction.rating_of(db.session, opened.ticket)
    own = existing if satisfaction.is_theirs(opened.ticket, existing, opened.address) else None
    chosen = positive_int(request.args.get("rating", ""), maximum=5) or (own.rating if own else None)
    return _rating_page(opened, token, chosen, own.comment if own else "")


@bp.post("/rate/<token>")
@limit_per_ip
def rate(token: str) -> ResponseReturnValue:
    cfg = current_app.config
    opened = _open(cfg, "rating", token)
    _read_as_mailed(opened)
    rating = positive_int(request.form.get("rating", ""), maximum=5)
    comment = request.form.get("comment", "")
    try:
        satisfaction.rate(db.session, opened.ticket, rating, comment, via="link", by=opened.address)
    except (ValidationError, Conflict) as exc:
        db.session.rollback()
        status = 409 if isinstance(exc, Conflict) else 422
        page = _rating_page(opened, token, rating, comment[: satisfaction.MAX_COMMENT], error=_explain(exc))
        return page, status
    commit_or_unknown(db.session)
    flash(gettext("Thank you for your rating."), "success")
    return redirect(url_for("tracker.status_link", token=opened.token(cfg, "status")), code=303)


@bp.post("/track/language")
def choose_language() -> ResponseReturnValue:
    """The language switch: the visitor's choice for every tracker page from now on;
    from a mailed link's page (its token in the form) their contact's language too.
    Back to the page it was used on; an unknown language changes nothing. The
    visitor's choice is kept in their session whatever the database does; a COMMIT
    of the contact's whose answer was lost says the change may or may not be saved,
    as every form does, not that the database is away."""
    language = request.form.get("language", "")
    purpose = request.form.get("purpose", "")
    token = request.form.get("token", "")
    if language in LANGUAGES:
        session[CHOSEN] = language
        languages.use(language)
    if purpose not in _PAGES or not token:
        return redirect(url_for("tracker.form"), code=303)
    opened = _open(current_app.config, purpose, token)
    if language in LANGUAGES and purpose in customer_links.MAILED:
        tracking.set_language(db.session, opened.address, language)
        commit_or_unknown(db.session)  # docs/web.md, "A lost answer"
    return redirect(url_for(_PAGES[purpose], token=token), code=303)


def _read_as_mailed(opened: customer_links.Opened) -> None:
    """A mail's link opens in the mail's language unless the visitor chose one; a
    ticket with no mail language yet as for a lookup (`_read_as_contact`)."""
    if session.get(CHOSEN):
        return
    # A customer whose ticket was merged into this one was mailed in their own
    # thread's language (`notifications.own_thread`).
    mailed = notifications.own_thread(db.session, opened.ticket, opened.address)[1] or opened.ticket.language
    if mailed:
        languages.use(mailed)
    else:
        _read_as_contact(opened.address)


def _read_as_contact(address: str) -> None:
    """Someone who proved they are `address` (a lookup, a link) and chose no language
    with the switch reads their browser's, else their contact's (SPEC §13), before
    DEFAULT_LANGUAGE: Lucía, whose contact reads Spanish, got English pages from a
    browser asking for Portuguese only."""
    if not session.get(CHOSEN) and languages.browser_language() is None:
        languages.use(tracking.language_of(db.session, address))


def _open(cfg: Mapping[str, Any], purpose: str, token: str) -> customer_links.Opened:
    """The link's ticket, or the tracker page with the link's error as a 404."""
    try:
        return customer_links.open_link(db.session, cfg, purpose, token)
    except NotFound as exc:
        page = render_template(
            "tracker/track.html", view=None, error=languages.label(str(exc)), number="", email=""
        )
        abort(make_response(page, 404))


def _rating_page(
    opened: customer_links.Opened, token: str, chosen: int | None, comment: str, error: str | None = None
) -> str:
    ticket = opened.ticket
    cfg = current_app.config
    existing = satisfaction.rating_of(db.session, ticket)
    return render_template(
        "tracker/rate.html",
        view=tracking.customer_view(db.session, ticket, cfg, opened.address),
        open=satisfaction.may_rate(ticket, existing, opened.address),
        chosen=chosen,
        comment=comment,
        error=error,
        status_url=url_for("tracker.status_link", token=opened.token(cfg, "status")),
        choices=satisfaction.RATINGS,
        max_comment=satisfaction.MAX_COMMENT,
        link=("rating", token),
    )


def _explain(exc: ValidationError | Conflict) -> str:
    if isinstance(exc, ValidationError):
        return gettext(
            "Choose a rating from 1 to 5; the comment may be up to %(limit)s characters.",
            limit=format_number(satisfaction.MAX_COMMENT),
        )
    return languages.label(str(exc))


def _author_of(reply: tracking.PublicReply) -> str:
    """A reply's author: their name, or "Support"/"Customer" in the reader's language."""
    return languages.label(reply.author) if reply.author in tracking.UNNAMED_AUTHORS else reply.author
