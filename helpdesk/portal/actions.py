"""How every portal form ends: run one service call, commit, say what happened,
and go back to the page it came from (post/redirect/get). A domain error (bad
input, a refused transition) rolls back and is shown instead, and so is the
database failing to do the work now (`helpdesk.database.is_transient`: a deadlock,
a serialization failure, a restart), as "try again", where the API answers 503, and
input larger than the database can store (`is_program_limit`), where it answers 422;
a COMMIT whose answer was lost (`database.commit_or_unknown`) is said to have an
unknown outcome; nothing else is caught, so a bug is a bug. Messages are in the
reader's language: the success message comes translated from `change`, a domain
error is read by `helpdesk.wording`."""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import flash, redirect
from flask_babel import gettext
from sqlalchemy.exc import DBAPIError
from werkzeug.wrappers import Response

from helpdesk.database import OutcomeUnknown, commit_or_unknown, is_program_limit, is_transient
from helpdesk.errors import DomainError, ValidationError
from helpdesk.extensions import db
from helpdesk.http_errors import OUTCOME_UNKNOWN
from helpdesk.inputs import positive_int
from helpdesk.languages import label
from helpdesk.wording import error_text

log = logging.getLogger("helpdesk.portal")


def perform(change: Callable[[], str], back: str, *, onward: Callable[[], str] | None = None) -> Response:
    """`change` does the work and returns the message to show on success; `onward`,
    when given, is where a kept change goes instead of `back`, asked after the commit
    (a change can take away the page it came from: `portal.tickets._page_or_queue`).

    A transient database error was a 500 page, though nothing of the change was
    kept and the same form sent again would do it (docs/lifecycle.md, "Concurrent
    changes"); so was input larger than the database can store (a held mail's text
    before migration 0027), which is refused like bad input; any other database
    error still is one.

    A COMMIT whose answer was lost (the connection dropped as it went) may have been
    kept: that form said "nothing was changed. Try again." of a status change the
    database had made, and the form was sent again. It now says the outcome
    is unknown and to look first (docs/web.md, "A lost answer")."""
    try:
        done = change()
        commit_or_unknown(db.session)  # the change's own failures first, then the COMMIT
        flash(done)
    except DomainError as exc:
        db.session.rollback()
        flash(error_text(exc), "error")
    except OutcomeUnknown as exc:
        log.warning(
            "the answer to a portal change's COMMIT was lost; it may or may not be kept: %s", exc.__cause__
        )
        flash(outcome_unknown(), "error")
    except DBAPIError as exc:
        if not (is_program_limit(exc) or is_transient(exc)):
            raise
        db.session.rollback()
        if is_program_limit(exc):
            log.warning("database refused a portal change as too large: %s", exc.orig)
            flash(too_large(), "error")
            return redirect(back)
        log.warning("database failed a portal change, the user is asked to retry: %s", exc.orig)
        flash(try_again(), "error")
    else:
        if onward is not None:  # outside the `try`: the change is kept whatever this does
            return redirect(onward())
    return redirect(back)


def refused(exc: DBAPIError) -> int:
    """For a form that shows itself again with what was typed (a new ticket, a
    reply), not through `perform`: the database refused its change `exc` as input
    too large to store (422) or failed to do it now (503, docs/lifecycle.md,
    "Concurrent changes"). Rolled back and said on the page; any other database
    error is raised again, a bug."""
    if not (is_program_limit(exc) or is_transient(exc)):
        raise exc
    db.session.rollback()
    if is_program_limit(exc):
        log.warning("database refused a portal change as too large: %s", exc.orig)
        flash(too_large(), "error")
        return 422
    log.warning("database failed a portal change, the user is asked to retry: %s", exc.orig)
    flash(try_again(), "error")
    return 503


def too_large() -> str:
    """What a form says when the database refused its input as too large to store."""
    return gettext("This is larger than the database can store; nothing was changed.")


def try_again() -> str:
    """What a form says when the database failed to do its change now."""
    return gettext("The database could not do this just now; nothing was changed. Try again.")


def outcome_unknown() -> str:
    """What a form says when the answer to its COMMIT was lost: kept or not, nobody knows."""
    return label(OUTCOME_UNKNOWN)  # the words of the page a form outside `perform` shows


def form_assignee(value: str) -> int | None:
    """A form's assignee: the empty choice is nobody, anything else must be a staff id.

    Read with `positive_int` alone, a value that is not an id (`abc`, an id past the
    column's range) became None, which means "nobody": a bulk assign unassigned every
    selected ticket. Refused as the API refuses it (docs/web.md)."""
    if value == "":
        return None
    number = positive_int(value)
    if number is None:
        raise ValidationError({"assignee": "is not a staff member"})
    return number
