"""The API blueprint's answers to domain errors and the database's errors, in the
JSON envelope of `helpdesk.http_errors` (docs/web.md): never an HTML page, never a
500 for input, and "retry" (503) only when the database failed to do the work now."""

from __future__ import annotations

import logging

from flask import Response, request
from sqlalchemy.exc import DBAPIError, IntegrityError

from helpdesk.api import bp
from helpdesk.database import is_program_limit, is_transient
from helpdesk.errors import (
    Conflict,
    DomainError,
    Forbidden,
    InvalidTransition,
    NotFound,
    ValidationError,
)
from helpdesk.extensions import db
from helpdesk.http_errors import error_response, retry_later

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


@bp.errorhandler(DBAPIError)
def _database_error(exc: DBAPIError) -> tuple[Response, int]:
    """What the database's refusal tells the client (docs/web.md, "Database errors"):
    503 "retry" only for the database failing to do the work now (`is_transient`),
    with `Retry-After`;
    422 for input larger than it can store (`is_program_limit`); 409 "try again"
    for a constraint the services did not settle themselves (a race they do not
    foresee: the next try reads the row that won); 500 for the rest, a bug or a schema
    behind the code (SQLite reports a missing table as an OperationalError, which was
    answered 503 "retry"). Every answer but the first two is logged with its
    traceback."""
    db.session.rollback()
    if is_program_limit(exc):
        log.warning("database refused the input as too large: %s", exc.orig)
        return error_response(422, "too_large", "The input is larger than the database can store.")
    if is_transient(exc):
        log.warning("database unavailable: %s", exc.orig)
        response, status = error_response(
            503, "database_unavailable", "The database cannot be reached; retry."
        )
        return retry_later(response), status
    if isinstance(exc, IntegrityError):
        log.error("a constraint refused %s %s", request.method, request.path, exc_info=exc)
        return error_response(
            409, "conflict", "The change clashed with another one made at the same time; try again."
        )
    log.error("unexpected database error on %s %s", request.method, request.path, exc_info=exc)
    return error_response(500, "internal_error", "Something went wrong on our side.")
