"""How every portal form ends: run one service call, commit, say what happened,
and go back to the page it came from (post/redirect/get). A domain error (bad
input, a refused transition) rolls back and is shown instead; nothing else is
caught, so a bug is a bug. Messages are in the reader's language: the success
message comes translated from `change`, a domain error is read by
`helpdesk.wording`."""

from __future__ import annotations

from collections.abc import Callable

from flask import flash, redirect
from werkzeug.wrappers import Response

from helpdesk.errors import DomainError, ValidationError
from helpdesk.extensions import db
from helpdesk.inputs import positive_int
from helpdesk.wording import error_text


def perform(change: Callable[[], str], back: str) -> Response:
    """`change` does the work and returns the message to show on success."""
    try:
        done = change()
        db.session.commit()
        flash(done)
    except DomainError as exc:
        db.session.rollback()
        flash(error_text(exc), "error")
    return redirect(back)


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
