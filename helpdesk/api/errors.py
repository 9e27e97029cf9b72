"""The API blueprint's answers to domain errors and an unreachable database, in the
JSON envelope of `helpdesk.http_errors` (docs/web.md): never an HTML page, never a
500 for input."""

from __future__ import annotations

import logging

from flask import Response
from sqlalchemy.exc import OperationalError

from helpdesk.api import bp
from helpdesk.database import is_program_limit
from helpdesk.errors import (
    Conflict,
    DomainError,
    Forbidden,
    InvalidTransition,
    NotFound,
    ValidationError,
)
from helpdesk.extensions import db
from helpdesk.http_errors import error_response

log = logging.getLogger("helpdesk.api")


@bp.errorhandler(DomainError)
def _domain_error(exc: DomainError) -> tuple[Response, int]:
    if isinstance(exc, ValidationError):
        return error_response(422, exc.code, exc.message, exc.fields)
    if isinstance(exc, InvalidTransition):
        return error_response(409, exc.code, str(exc), {"status": str(exc), "allowed": list(exc.allowed)})
    if isinstance(exc, NotFound):
        return error_response(404, exc.code, str(exc))
    if isinstance(exc, Forbidden):
        return error_response(403, exc.code, str(exc))
    if isinstance(exc, Conflict):
        return error_response(409, exc.code, str(exc))
    return error_response(400, exc.code, str(exc))


@bp.errorhandler(OperationalError)
def _database_unavailable(exc: OperationalError) -> tuple[Response, int]:
    """503 "retry" for the database failing; 422 for input larger than it can store
    (`is_program_limit`), which would fail again however often the client retried."""
    db.session.rollback()
    if is_program_limit(exc):
        log.warning("database refused the input as too large: %s", exc.orig)
        return error_response(422, "too_large", "The input is larger than the database can store.")
    log.warning("database unavailable: %s", exc.orig)
    return error_response(503, "database_unavailable", "The database cannot be reached; retry.")
