"""Every API error is the SPEC §6 envelope: never an HTML page, never a 500 for input."""
from __future__ import annotations

from typing import Any

from flask import Response, jsonify, request
from werkzeug.exceptions import HTTPException

from helpdesk.api import bp
from helpdesk.errors import Conflict, DomainError, InvalidTransition, NotFound, ValidationError


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
