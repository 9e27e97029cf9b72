"""Who is logged in to the portal: a signed session cookie holding the staff id
and the session version it was issued under.

The user is re-read on every request and the version compared, so logging out,
changing a password or a role, and deactivation end every session of that person
at the next click, copied cookies included (the cookie itself cannot be recalled).
A login lasts STAFF_SESSION_LIFETIME from the moment it was made, however often it
is used: every response signs the cookie afresh, so the cookie's own expiry only
ends an idle one (docs/security.md, "Sessions").
Every staff view is wrapped in `login_required`; admin views ask for
`role="admin"` (agents get 403).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timezone
from functools import wraps
from typing import Any, TypeVar, cast

from flask import abort, current_app, redirect, request, session, url_for

from helpdesk.auth import ROLE_RANK
from helpdesk.clock import now
from helpdesk.database import commit_or_unknown
from helpdesk.extensions import db
from helpdesk.models import StaffUser
from helpdesk.services import Actor
from helpdesk.services.staff import StaffService

F = TypeVar("F", bound=Callable[..., Any])


def log_in(user: StaffUser) -> None:
    session.clear()  # a fresh session: no fixation of a pre-login cookie
    session["staff_id"] = user.id
    session["version"] = user.session_version
    session["since"] = _moment()
    session.permanent = True


def go_on_under(version: int) -> None:
    """Keep this login going under the session version its own request moved to (a
    password change), which the request took from its change, not from the row
    after the commit: by then a reset may have moved it again, and this session
    would have outlived the reset. The login keeps its time: a new one restarted
    STAFF_SESSION_LIFETIME at every change (docs/security.md, "Sessions and tokens")."""
    session["version"] = version


def log_out() -> None:
    """End this session and every other one of the same person, committed, and only
    then forget this browser's cookie. Forgotten first, a COMMIT that failed or
    whose answer was lost left the other sessions open while this browser, signed
    out, could no longer send the logout again. Kept, a failure leaves it signed in
    until the logout is done; a lost answer (`OutcomeUnknown`) shows at the next
    page, signed out if the database kept it (docs/web.md, "A lost answer")."""
    user = current_staff()
    if user is not None:
        StaffService(db.session).end_sessions(user)
        commit_or_unknown(db.session)
    session.clear()


def current_staff() -> StaffUser | None:
    """Asked several times per request; after the first, the session's identity map
    answers without a query."""
    staff_id = session.get("staff_id")
    if not isinstance(staff_id, int):
        return None
    since = session.get("since")
    lifetime = current_app.config["PERMANENT_SESSION_LIFETIME"].total_seconds()
    if not isinstance(since, int) or _moment() - since > lifetime:
        return None
    user = db.session.get(StaffUser, staff_id)
    if user is None or not user.is_active or session.get("version") != user.session_version:
        return None
    return user


def _moment() -> int:
    """Now, in whole seconds since the epoch (the session is JSON)."""
    return int(now().replace(tzinfo=timezone.utc).timestamp())


def signed_in() -> StaffUser:
    """The staff member of a request `login_required` let in. Their session may
    have ended during the request (a reset or a logout elsewhere committed, and a
    rollback made the account be read again): then the login page, as their next
    request would get, not a 500."""
    user = current_staff()
    if user is None:
        abort(redirect(url_for("portal.login")))
    return user


def actor() -> Actor:
    return Actor.staff(signed_in())


def login_required(role: str = "agent") -> Callable[[F], F]:
    def decorator(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            user = current_staff()
            if user is None:
                return redirect(url_for("portal.login", next=request.full_path))
            if ROLE_RANK[user.role] < ROLE_RANK[role]:
                abort(403)
            return view(*args, **kwargs)

        return cast(F, wrapper)

    return decorator


def safe_next(target: str | None) -> str:
    """Only a path on this site: `?next=` must not become an open redirect.

    Browsers drop tabs and line breaks from a URL and read a backslash as a slash
    before resolving it, so `/\t/evil.example` lands on `//evil.example`: a target with
    any of them, or any other character that is not printable, is refused whole,
    never cleaned into something else.
    """
    if (
        target
        and target.startswith("/")
        and not target.startswith("//")
        and "\\" not in target
        and target.isprintable()
    ):
        return target
    return url_for("portal.queue")
