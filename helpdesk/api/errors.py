"""Every API error is the JSON error envelope of docs/web.md: never an HTML page, never a 500 for input."""
from __future__ import annotations

import logging
from typing import Any

from flask import Response, jsonify, request
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException, InternalServerError

from helpdesk.api import bp
from helpdesk.errors import (
    Conflict,
    DomainError,
    InvalidTransition,
    NotFound,
    ValidationError,
)
from helpdesk.extensions import db

log = logging.getLogger("helpdesk.api")


def error_response(
    status: int, code: str, message: str, fields: dict[str, Any] | None = None
) -> tuple[Response, int]:
    body: dict[str, Any] = {"code": code, "message": message}
    if fields:
        body["fields"] = fields
    return jsonify({"error": body}), status


def http_error(exc: HTTPException) -> tuple[Response, int] | HTTPException:
    """Registered on the app, not the blueprint: an unknown `/api/v1/...` URL never
    reaches the blueprint, yet must still answer in JSON."""
    if not request.path.startswith(bp.url_prefix or "/api"):
        return exc
    name = (exc.name or "error").lower().replace(" ", "_")
    return error_response(exc.code or 500, name, exc.description or exc.name)


@bp.errorhandler(DomainError)
def _domain_error(exc: DomainError) -> tuple[Response, int]:
    if isinstance(exc, ValidationError):
        return error_response(422, exc.code, exc.message, exc.fields)
    if isinstance(exc, InvalidTransition):
        return error_response(
            409, exc.code, str(exc), {"status": str(exc), "allowed": list(exc.allowed)}
        )
    if isinstance(exc, NotFound):
        return error_response(404, exc.code, str(exc))
    if isinstance(exc, Conflict):
        return error_response(409, exc.code, str(exc))
    return error_response(400, exc.code, str(exc))


@bp.errorhandler(OperationalError)
def _database_unavailable(exc: OperationalError) -> tuple[Response, int]:
    db.session.rollback()
    log.warning("database unavailable: %s", exc.orig)
    return error_response(503, "database_unavailable", "The database cannot be reached; retry.")


def internal_error(exc: InternalServerError) -> tuple[Response, int] | InternalServerError:
    """An unhandled exception on an API path: a bug, not bad input. Still the JSON
    envelope, with the traceback in the log. (Registered for 500 on the app, so every
    more specific handler, flask-jwt-extended's included, runs first.)"""
    if not request.path.startswith(bp.url_prefix or "/api"):
        return exc
    db.session.rollback()
    log.error("unexpected error on %s %s", request.method, request.path,
              exc_info=exc.original_exception)
    return error_response(500, "internal_error", "Something went wrong on our side.")
