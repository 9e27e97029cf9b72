"""The staff portal blueprint (server-rendered)."""
from __future__ import annotations

from flask import Blueprint, Flask

bp = Blueprint("portal", __name__, template_folder="templates")


def init_app(app: Flask) -> None:
    from helpdesk.portal import routes  # noqa: F401  (registers routes)

    app.register_blueprint(bp)
