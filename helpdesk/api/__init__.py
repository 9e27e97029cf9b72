"""The JSON API blueprint, `/api/v1` (SPEC §6)."""
from __future__ import annotations

from flask import Blueprint, Flask
from werkzeug.exceptions import HTTPException

bp = Blueprint("api", __name__, url_prefix="/api/v1")


def init_app(app: Flask) -> None:
    from helpdesk.api import errors, routes  # noqa: F401  (registers handlers and routes)

    app.register_blueprint(bp)
    app.register_error_handler(HTTPException, errors.http_error)
