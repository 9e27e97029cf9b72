"""How the web answers an error, in one place: the JSON envelope on the API (every
path under `/api/`, unknown ones included), an HTML page on the portal and the
tracker (docs/web.md). Registered on the app, not on a blueprint: a URL that
matches no route never reaches a blueprint, yet must still answer in its kind.

Domain errors raised by the services (`helpdesk.errors`) are mapped to statuses
by the API blueprint (`helpdesk.api.errors`) and by the portal's form actions;
this module answers what Flask and its extensions raise.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, g, jsonify, make_response, render_template, request
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException, InternalServerError

from helpdesk.database import OutcomeUnknown, is_transient
from helpdesk.extensions import db
from helpdesk.form_data import UnreadableForm, UnreadableQuery
from helpdesk.languages import N_

log = logging.getLogger("helpdesk.api")

API_PREFIX = "/api/"
# What a person reads on an error page, per status; other statuses get Flask's own.
# The page shows them in the reader's language (portal/error.html).
PAGES = {
    403: N_("You do not have access to this page."),
    404: N_("There is nothing here."),
    413: N_("That was too large."),
    429: N_("Too many attempts. Wait a minute and try again."),
    503: N_("The helpdesk cannot reach its database just now. Try again in a minute."),
}
# What a person reads when the answer to a change's COMMIT was lost: a form of the
# portal (`portal.actions.perform` flashes it) or the tracker (docs/web.md, "A lost answer").
OUTCOME_UNKNOWN = N_(
    "The connection to the database broke as this change was saved: it may or may not have been "
    "saved. Check before doing it again."
)
# How long a client is asked to wait (`Retry-After`) when the database cannot do the
# work now (docs/web.md, "Database errors").
RETRY_AFTER_SECONDS = 30


def init_app(app: Flask) -> None:
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(InternalServerError, _internal_error)
    app.register_error_handler(CSRFError, _csrf_error)
    app.register_error_handler(UnreadableForm, _unreadable_form)
    app.register_error_handler(UnreadableQuery, _unreadable_query)
    app.register_error_handler(DBAPIError, answer_database_error)
    app.register_error_handler(PoolTimeout, answer_database_error)
    app.register_error_handler(OutcomeUnknown, answer_outcome_unknown)


def retry_later(response: Response) -> Response:
    """`response` (a 503 for a database that cannot do the work now) with the time
    to wait before trying again."""
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def error_response(
    status: int, code: str, message: str, fields: dict[str, Any] | None = None
) -> tuple[Response, int]:
    """The API's JSON error envelope, always with its three keys (SPEC §6): `fields`
    is `{}` when no field is at fault, so a client reads it without checking."""
    return jsonify({"error": {"code": code, "message": message, "fields": fields or {}}}), status


def _on_api() -> bool:
    return request.path.startswith(API_PREFIX)


def _http_error(exc: HTTPException) -> Any:
    if _on_api():
        name = (exc.name or "error").lower().replace(" ", "_")
        response, status = error_response(exc.code or 500, name, exc.description or exc.name)
        # The error's own headers but its HTML body's type: a 405's `Allow`, which
        # RFC 9110 requires (docs/web.md, the JSON API's errors).
        for key, value in exc.get_headers():
            if key.lower() != "content-type":
                response.headers[key] = value
        return response, status
    message = PAGES.get(exc.code or 0)
    if message is None:
        return exc
    return render_template("portal/error.html", code=exc.code, message=message), exc.code


def _internal_error(exc: InternalServerError) -> Any:
    """An unhandled exception: a bug, not bad input. On the API still the JSON
    envelope, with the traceback in the log. (Registered for 500, so every more
    specific handler, flask-jwt-extended's included, runs first.)"""
    if not _on_api():
        return exc
    db.session.rollback()
    log.error("unexpected error on %s %s", request.method, request.path, exc_info=exc.original_exception)
    return error_response(500, "internal_error", "Something went wrong on our side.")


def answer_database_error(exc: DBAPIError | PoolTimeout) -> Any:
    """A database error no view handled. The database failing to do the work now
    (`is_transient`: unreachable, restarting, out of connections, no pooled connection
    free in time) is 503 with
    `Retry-After`, the error page on the portal and the tracker, the JSON envelope on
    the API (whose blueprint answers its own views' errors first): it was Flask's
    bare 500 page. Any other one is a bug, raised again to be the logged 500 it was.
    The page is rendered without its staff member (`g.database_unavailable`): reading
    them needs the database. Called too by code that answers from inside another
    error handler, where what it raises is handled no more (`auth.reused_answer`)."""
    if not is_transient(exc):
        raise exc
    db.session.rollback()
    g.database_unavailable = True
    log.warning("database unavailable on %s %s: %s", request.method, request.path, getattr(exc, "orig", exc))
    if _on_api():
        response, _ = error_response(503, "database_unavailable", "The database cannot be reached; retry.")
        return retry_later(response), 503
    page = render_template("portal/error.html", code=503, message=PAGES[503])
    return retry_later(make_response(page, 503))


def answer_outcome_unknown(exc: OutcomeUnknown) -> Any:
    """A change whose COMMIT's answer was lost (`database.commit_or_unknown`): the
    database may have kept it. It was answered as the database being away, 503
    "retry" on the API, "try again in a minute" on a page, and the change was made
    twice. Still 503 with `Retry-After` (the database's connection did drop), but
    `outcome_unknown` on the API and a page saying it may or may not be saved,
    check first (docs/web.md, "A lost answer"). Rendered without the staff member,
    as the outage page is. Called too from inside another error handler
    (`auth.reused_answer`), as `answer_database_error` is."""
    g.database_unavailable = True
    log.warning(
        "the answer to the COMMIT of %s %s was lost; it may or may not be kept: %s",
        request.method,
        request.path,
        exc.__cause__,
    )
    if _on_api():
        response, _ = error_response(
            503,
            "outcome_unknown",
            "The connection to the database broke as the change was saved: it may have been saved "
            "or not. Read what it changes before retrying.",
        )
        return retry_later(response), 503
    page = render_template("portal/error.html", code=503, message=OUTCOME_UNKNOWN)
    return retry_later(make_response(page, 503))


def _csrf_error(exc: CSRFError) -> Any:
    """A portal form without its token (the API takes no cookies and is exempt)."""
    return render_template(
        "portal/error.html",
        code=400,
        message=N_(
            "The form expired or did not come from this site. Go back, reload the page and try again."
        ),
    ), 400


def _unreadable_form(exc: UnreadableForm) -> Any:
    """A form body not exactly readable (`helpdesk.form_data`): on the API a 400 as
    malformed JSON is, on the portal a page; nothing of it was read."""
    if _on_api():
        return error_response(400, "invalid_form", exc.description or "")
    message = N_("The form could not be read. Go back, reload the page and try again.")
    return render_template("portal/error.html", code=400, message=message), 400


def _unreadable_query(exc: UnreadableQuery) -> Any:
    """A query string not exactly readable (`helpdesk.form_data`): on the API a 400
    `invalid_query`, as an unreadable body is; elsewhere a page in the reader's
    language. The view did not run."""
    if _on_api():
        return error_response(400, "invalid_query", exc.description or "")
    message = N_("The address could not be read: part of it is not UTF-8 text. Check the link and try again.")
    return render_template("portal/error.html", code=400, message=message), 400
