"""The staff portal blueprint: server-rendered pages, one small stylesheet, no
JavaScript needed. Views are thin: read the form, call a service, commit, redirect."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask

from helpdesk.html import sanitized

bp = Blueprint("portal", __name__, template_folder="templates")


def init_app(app: Flask) -> None:
    from helpdesk.portal import (  # noqa: F401  (each registers its routes)
        account,
        admin,
        canned,
        dashboard,
        live,
        quarantine,
        ticket_relations,
        tickets,
    )
    from helpdesk.portal.session import current_staff

    app.register_blueprint(bp)
    app.add_template_filter(sanitized, "sanitize")

    @app.context_processor
    def _staff() -> dict[str, Any]:
        return {"staff": current_staff()}
