"""Log in and out of the portal, and one's own account (the password)."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from helpdesk.auth import check_credentials, login_rate_limit
from helpdesk.errors import ValidationError
from helpdesk.extensions import db
from helpdesk.portal import bp
from helpdesk.portal.session import current_staff, log_in, log_out, login_required, safe_next
from helpdesk.services.staff import MAX_PASSWORD, StaffService


@bp.get("/")
def home() -> ResponseReturnValue:
    return redirect(url_for("portal.queue" if current_staff() else "portal.login"))


@bp.route("/login", methods=["GET", "POST"])
@login_rate_limit
def login() -> ResponseReturnValue:
    error = None
    if request.method == "POST":
        user = check_credentials(
            request.form.get("email", "")[:320], request.form.get("password", "")[:MAX_PASSWORD]
        )
        if user is not None:
            log_in(user)
            return redirect(safe_next(request.args.get("next")))
        error = "Wrong email or password."
    return render_template("portal/login.html", error=error), 401 if error else 200


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    log_out()
    db.session.commit()
    return redirect(url_for("portal.login"))


@bp.get("/account")
@login_required()
def account() -> ResponseReturnValue:
    return render_template("portal/account.html", nav="account", errors={})


@bp.post("/account/password")
@login_required()
def change_password() -> ResponseReturnValue:
    """The person's own password, proven with the current one. Every other session
    and token of theirs ends; this one goes on under the new session version."""
    user = current_staff()
    assert user is not None
    form = request.form
    try:
        StaffService(db.session).change_password(
            user, form.get("current_password", "")[:MAX_PASSWORD], form.get("new_password", "")[:MAX_PASSWORD]
        )
    except ValidationError as exc:
        db.session.rollback()
        return render_template("portal/account.html", nav="account", errors=exc.fields), 400
    db.session.commit()
    log_in(user)
    flash("Password changed. Your other sessions and API tokens have ended.")
    return redirect(url_for("portal.account"))
