"""The staff portal blueprint: server-rendered pages, one small stylesheet, no
JavaScript needed. Views are thin: read the form, call a service, commit, redirect."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, render_template
from flask_wtf.csrf import CSRFError

from helpdesk.html import sanitized

bp = Blueprint("portal", __name__, template_folder="templates")


def init_app(app: Flask) -> None:
    from helpdesk.portal import account, admin, dashboard, quarantine, tickets  # noqa: F401
    from helpdesk.portal.session import current_staff

    app.register_blueprint(bp)
    app.add_template_filter(sanitized, "sanitize")

    @app.context_processor
    def _staff() -> dict[str, Any]:
        return {"staff": current_staff()}

    @app.errorhandler(CSRFError)
    def _csrf(exc: CSRFError) -> tuple[str, int]:
        return render_template("portal/error.html", code=400,
                               message="The form expired or did not come from this site. "
                                       "Go back, reload the page and try again."), 400

    for code, text in ((403, "You do not have access to this page."),
                       (404, "There is nothing here."),
                       (413, "That was too large."),
                       (429, "Too many attempts. Wait a minute and try again.")):
        app.register_error_handler(code, _page(code, text))


def _page(code: int, message: str) -> Any:
    from flask import request

    def handler(exc: Exception) -> Any:
        if request.path.startswith("/api/"):
            from helpdesk.api.errors import http_error

            return http_error(exc)  # type: ignore[arg-type]
        return render_template("portal/error.html", code=code, message=message), code

    return handler
