from __future__ import annotations

from flask import jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from helpdesk.api import bp
from helpdesk.extensions import db
from helpdesk.http_errors import error_response


@bp.get("/health")
def health() -> ResponseReturnValue:
    """Liveness plus a database round trip, for load balancers and `make run`."""
    try:
        db.session.execute(text("SELECT 1"))
    except OperationalError:
        return error_response(503, "database_unavailable", "The database cannot be reached.")
    return jsonify({"status": "ok", "database": "ok"})
