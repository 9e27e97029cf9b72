"""Login, refresh, logout and password change for API clients (docs/web.md)."""

from __future__ import annotations

from flask import jsonify
from flask.typing import ResponseReturnValue
from flask_jwt_extended import current_user, get_jwt

from helpdesk.api import bp
from helpdesk.api.payload import json_object, json_value
from helpdesk.auth import (
    check_credentials,
    current_password_limit,
    issue_tokens,
    login_rate_limit,
    reused_answer,
    revoke_token,
    staff_required,
    wrong_current_password,
)
from helpdesk.database import commit_or_unknown
from helpdesk.errors import ValidationError
from helpdesk.extensions import db
from helpdesk.http_errors import error_response
from helpdesk.models import StaffUser
from helpdesk.services.staff import MAX_PASSWORD, StaffService


@bp.post("/auth/login")
@login_rate_limit(json_value)
def login() -> ResponseReturnValue:
    data = json_object({"email": (str,), "password": (str,)}, required=("email", "password"))
    user = check_credentials(data["email"], data["password"][:MAX_PASSWORD])
    if user is None:
        return error_response(401, "invalid_credentials", "Wrong email or password.")
    return jsonify(issue_tokens(user))


@bp.post("/auth/refresh")
@staff_required(refresh=True)
def refresh() -> ResponseReturnValue:
    """A new pair for a refresh token, which is used up: presented again, it ends
    its family (helpdesk.auth)."""
    claims = get_jwt()
    if not revoke_token(claims):  # used at the same moment by another request
        return reused_answer(claims)
    tokens = issue_tokens(current_user, used=claims)
    commit_or_unknown(db.session)
    return jsonify(tokens)


@bp.post("/auth/logout")
@staff_required()
def logout() -> ResponseReturnValue:
    """End every token and portal session of the caller. A `refresh_token` in the
    body, which older clients send, is accepted and not needed."""
    json_object({"refresh_token": (str,)})
    StaffService(db.session).end_sessions(_caller())
    commit_or_unknown(db.session)
    return jsonify({"revoked": True})


@bp.post("/auth/password")
@staff_required()
@current_password_limit(lambda: _caller().email)
def change_password() -> ResponseReturnValue:
    """The caller's own password; every earlier token and session ends, and the
    answer carries a fresh pair."""
    data = json_object(
        {"current_password": (str,), "new_password": (str,)}, required=("current_password", "new_password")
    )
    user = _caller()
    try:
        StaffService(db.session).change_password(
            user, data["current_password"][:MAX_PASSWORD], data["new_password"][:MAX_PASSWORD]
        )
    except ValidationError as exc:
        wrong_current_password(exc)
        raise
    # Issued before the commit, under the row's lock, with the version this change
    # wrote: read after it, the version may already be a later reset's, and the
    # tokens would outlive that reset (docs/security.md, "Sessions and tokens").
    tokens = issue_tokens(user)
    commit_or_unknown(db.session)
    return jsonify(tokens)


def _caller() -> StaffUser:
    user = db.session.get(StaffUser, current_user.id)
    assert user is not None, "the token's staff member was read by the revocation check"
    return user
