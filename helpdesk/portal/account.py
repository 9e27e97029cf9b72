"""Log in and out of the portal, and one's own account: the password, and the
language and time zone the portal is read in (docs/languages.md)."""

from __future__ import annotations

from typing import Any

from flask import current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext

from config import LANGUAGES
from helpdesk import languages
from helpdesk.auth import check_credentials, current_password_limit, login_rate_limit, wrong_current_password
from helpdesk.database import commit_or_unknown
from helpdesk.errors import ValidationError
from helpdesk.extensions import db
from helpdesk.languages import time_zones
from helpdesk.portal import bp
from helpdesk.portal.session import (
    current_staff,
    go_on_under,
    log_in,
    log_out,
    login_required,
    safe_next,
    signed_in,
)
from helpdesk.services.preferences import set_preferences
from helpdesk.services.staff import MAX_PASSWORD, StaffService


@bp.get("/")
def home() -> ResponseReturnValue:
    return redirect(url_for("portal.queue" if current_staff() else "portal.login"))


@bp.route("/login", methods=["GET", "POST"])
@login_rate_limit(lambda: request.form)
def login() -> ResponseReturnValue:
    error = None
    if request.method == "POST":
        user = check_credentials(
            request.form.get("email", ""), request.form.get("password", "")[:MAX_PASSWORD]
        )
        if user is not None:
            log_in(user)
            return redirect(safe_next(request.args.get("next")))
        error = gettext("Wrong email or password.")
    return render_template("portal/login.html", error=error), 401 if error else 200


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    log_out()
    return redirect(url_for("portal.login"))


@bp.get("/account")
@login_required()
def account() -> ResponseReturnValue:
    return _account_page()


@bp.post("/account/password")
@login_required()
@current_password_limit(lambda: signed_in().email)
def change_password() -> ResponseReturnValue:
    """The person's own password, proven with the current one. Every other session
    and token of theirs ends; this one goes on under the new session version."""
    user = signed_in()
    form = request.form
    try:
        version = StaffService(db.session).change_password(
            user, form.get("current_password", "")[:MAX_PASSWORD], form.get("new_password", "")[:MAX_PASSWORD]
        )
    except ValidationError as exc:
        db.session.rollback()
        wrong_current_password(exc)
        if current_staff() is None:  # ended meanwhile: a reset the check was judged after
            return redirect(url_for("portal.login"))
        return _account_page(errors=exc.fields), 400
    commit_or_unknown(db.session)
    go_on_under(version)
    flash(gettext("Password changed. Your other sessions and API tokens have ended."))
    return redirect(url_for("portal.account"))


@bp.post("/account/preferences")
@login_required()
def change_preferences() -> ResponseReturnValue:
    """The language and time zone this person reads the portal in ("" for either:
    not chosen). Refused, the page comes back with what was picked and why."""
    user = signed_in()
    language, zone = request.form.get("language", "")[:20], request.form.get("timezone", "")[:100]
    try:
        set_preferences(user, language, zone)
    except ValidationError as exc:
        db.session.rollback()
        return _account_page(
            preference_errors=exc.fields, picked={"language": language, "timezone": zone}
        ), 422
    commit_or_unknown(db.session)
    languages.use(user.language, user.timezone)  # this answer's flash already in the new language
    flash(gettext("Preferences saved."))
    return redirect(url_for("portal.account"))


def _account_page(
    errors: dict[str, str] | None = None,
    preference_errors: dict[str, str] | None = None,
    picked: dict[str, str] | None = None,
) -> str:
    user = signed_in()
    chosen: dict[str, Any] = picked or {"language": user.language, "timezone": user.timezone}
    return render_template(
        "portal/account.html",
        nav="account",
        errors=errors or {},
        preference_errors=preference_errors or {},
        chosen=chosen,
        languages=LANGUAGES,
        zones=sorted(time_zones()),
        business_zone=current_app.config["BUSINESS_TIMEZONE"],
    )
