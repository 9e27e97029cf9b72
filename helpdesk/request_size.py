"""How large a request's body may be (docs/security.md, "Request size").

Every request gets `MAX_REQUEST_BYTES` (Flask's `MAX_CONTENT_LENGTH`): a larger body
is answered 413 before anything reads it. A reply with files is the one request that
needs more, so where staff attach files (the portal's reply box, the API's replies)
the body may also hold the attachments' own limit, `MAX_ATTACHMENTS_TOTAL_BYTES` —
once the sender has proved to be staff, by the session or the token the route itself
checks. Nobody else makes the helpdesk read more than `MAX_REQUEST_BYTES`.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, current_app, request
from flask_jwt_extended import verify_jwt_in_request
from flask_jwt_extended.exceptions import JWTExtendedException
from jwt import PyJWTError


def _signed_in() -> bool:
    from helpdesk.portal.session import current_staff

    return current_staff() is not None


def _token() -> bool:
    try:
        verify_jwt_in_request()
    except (JWTExtendedException, PyJWTError):
        return False  # the route's own check gives the answer
    return True


# The endpoints that take files, and how each proves its sender is staff.
_UPLOADS: dict[str, Callable[[], bool]] = {"portal.reply": _signed_in, "api.add_reply": _token}


def init_app(app: Flask) -> None:
    """Called before CSRF protection is set up: its check reads the form, so the
    limit has to be chosen first (before-request functions run in order)."""
    app.before_request(_room_for_files)


def _room_for_files() -> None:
    proof = _UPLOADS.get(request.endpoint or "")
    if proof is not None and proof():
        config = current_app.config
        request.max_content_length = config["MAX_CONTENT_LENGTH"] + config["MAX_ATTACHMENTS_TOTAL_BYTES"]
