"""Login, refresh and logout for API clients (docs/web.md)."""

from __future__ import annotations

from flask import jsonify
from flask.typing import ResponseReturnValue
from flask_jwt_extended import create_access_token, current_user, decode_token
from flask_jwt_extended.exceptions import JWTExtendedException
from jwt.exceptions import PyJWTError

from helpdesk.api import bp
from helpdesk.api.payload import json_object
from helpdesk.auth import (
    check_credentials,
    issue_tokens,
    login_rate_limit,
    revoke,
    staff_required,
)
from helpdesk.errors import ValidationError
from helpdesk.extensions import db
from helpdesk.http_errors import error_response


@bp.post("/auth/login")
@login_rate_limit
def login() -> ResponseReturnValue:
    data = json_object({"email": (str,), "password": (str,)}, required=("email", "password"))
    user = check_credentials(data["email"], data["password"])
    if user is None:
        return error_response(401, "invalid_credentials", "Wrong email or password.")
    return jsonify(issue_tokens(user))


@bp.post("/auth/refresh")
@staff_required(refresh=True)
def refresh() -> ResponseReturnValue:
    return jsonify(
        {
            "access_token": create_access_token(
                identity=current_user, additional_claims={"role": current_user.role}
            )
        }
    )


@bp.post("/auth/logout")
@staff_required()
def logout() -> ResponseReturnValue:
    """Revoke the access token presented and, when given, the refresh token."""
    data = json_object({"refresh_token": (str,)})
    revoke(None)
    if "refresh_token" in data:
        try:
            claims = decode_token(data["refresh_token"])
        except (JWTExtendedException, PyJWTError):
            raise ValidationError({"refresh_token": "is not a valid token"}) from None
        if claims.get("type") != "refresh" or claims.get("sub") != str(current_user.id):
            raise ValidationError({"refresh_token": "is not this user's refresh token"})
        revoke(claims)
    db.session.commit()
    return jsonify({"revoked": True})
