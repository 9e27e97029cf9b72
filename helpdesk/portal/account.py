"""Log in and out of the portal."""

from __future__ import annotations

from flask import redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from helpdesk.auth import check_credentials, login_rate_limit
from helpdesk.portal import bp
from helpdesk.portal.session import current_staff, log_in, log_out, safe_next


@bp.get("/")
def home() -> ResponseReturnValue:
    return redirect(url_for("portal.queue" if current_staff() else "portal.login"))


@bp.route("/login", methods=["GET", "POST"])
@login_rate_limit
def login() -> ResponseReturnValue:
    error = None
    if request.method == "POST":
        user = check_credentials(request.form.get("email", "")[:320], request.form.get("password", "")[:1000])
        if user is not None:
            log_in(user)
            return redirect(safe_next(request.args.get("next")))
        error = "Wrong email or password."
    return render_template("portal/login.html", error=error), 401 if error else 200


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    log_out()
    return redirect(url_for("portal.login"))
