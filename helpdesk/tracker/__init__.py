"""The public tracker page, `/track` (docs/web.md): no account, number + email."""

from __future__ import annotations

from flask import Blueprint, Flask

bp = Blueprint("tracker", __name__, template_folder="templates")


def init_app(app: Flask) -> None:
    from helpdesk.tracker import routes  # noqa: F401  (registers routes)

    app.register_blueprint(bp)
