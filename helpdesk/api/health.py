from __future__ import annotations

import logging

from flask import current_app, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import OperationalError

from helpdesk import schema
from helpdesk.api import bp
from helpdesk.extensions import db
from helpdesk.http_errors import error_response
from helpdesk.metrics import scraper_token_offered

log = logging.getLogger("helpdesk.api")

# What this worker last logged of the schema, so a probe every few seconds logs a
# change once, not each time.
_logged: list[str] = [""]

BEHIND = "The database's schema is behind this code: run `flask --app wsgi db upgrade`."


@bp.get("/health")
def health() -> ResponseReturnValue:
    """Liveness plus a database round trip, for load balancers and `make run`: the
    round trip reads the schema's revision, and a schema behind this code is a 503
    (docs/operations.md, "Upgrades and the schema revision"). Its status and code
    are public, as load balancers read them; the revisions are named in the log and
    to a caller with the metrics token."""
    try:
        revisions = schema.read(current_app, db.session)
    except OperationalError:
        return error_response(503, "database_unavailable", "The database cannot be reached.")
    state = revisions.state
    if state != _logged[0]:
        _logged[0] = state
        if state != "ok":
            log.warning("health: %s", revisions.describe())
    if revisions.behind:
        if not scraper_token_offered():
            # The revisions say which release the host runs: for the operator only.
            return error_response(503, "schema_behind", BEHIND)
        message = revisions.describe()
        named = {"database_revision": list(revisions.database), "code_revision": list(revisions.head)}
        return error_response(503, "schema_behind", message[0].upper() + message[1:] + ".", named)
    return jsonify({"status": "ok", "database": "ok", "schema": state})
