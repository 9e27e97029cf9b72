"""The JSON API blueprint, `/api/v1` (docs/web.md).

Bearer tokens, not cookies, so it is exempt from the portal's CSRF protection;
every error is the JSON envelope of `helpdesk.http_errors`.
"""

from __future__ import annotations

from flask import Blueprint, Flask

bp = Blueprint("api", __name__, url_prefix="/api/v1")


def init_app(app: Flask) -> None:
    from helpdesk.api import (  # noqa: F401  (each registers its routes)
        assistant,
        canned,
        chat,
        errors,
        health,
        openapi,
        public,
        ticket_relations,
        tickets,
        tokens,
        workflow,
    )
    from helpdesk.extensions import csrf

    csrf.exempt(bp)
    app.register_blueprint(bp)
