"""Administration, admins only: authorized senders, staff accounts, teams, integrations."""

from __future__ import annotations

from flask import abort, flash, make_response, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext
from sqlalchemy import select

from helpdesk import languages
from helpdesk import vocabulary as v
from helpdesk.database import commit_or_unknown
from helpdesk.errors import DomainError, ValidationError
from helpdesk.extensions import db
from helpdesk.inputs import positive_int
from helpdesk.models import Integration, StaffUser
from helpdesk.portal import bp
from helpdesk.portal.actions import perform
from helpdesk.portal.session import actor, login_required
from helpdesk.services import contacts
from helpdesk.services.integrations import IntegrationsService
from helpdesk.services.mailflow import unmailed_staff
from helpdesk.services.senders import SendersService
from helpdesk.services.staff import StaffService
from helpdesk.services.teams import TeamsService
from helpdesk.wording import error_text, vocabulary_label


@bp.get("/admin/senders")
@login_required("admin")
def senders() -> ResponseReturnValue:
    return render_template("portal/senders.html", nav="senders", rules=SendersService(db.session).list())


@bp.post("/admin/senders")
@login_required("admin")
def add_sender() -> ResponseReturnValue:
    def add() -> str:
        rule = SendersService(db.session).add(
            request.form.get("pattern", ""), request.form.get("organization", "")
        )
        return gettext(
            "Authorized %(pattern)s for %(organization)s.",
            pattern=rule.pattern,
            organization=rule.organization.name,
        )

    return perform(add, url_for("portal.senders"))


@bp.post("/admin/senders/remove")
@login_required("admin")
def remove_sender() -> ResponseReturnValue:
    def remove() -> str:
        SendersService(db.session).remove(request.form.get("pattern", ""))
        return gettext("Removed.")

    return perform(remove, url_for("portal.senders"))


@bp.get("/admin/staff")
@login_required("admin")
def staff() -> ResponseReturnValue:
    users = db.session.execute(select(StaffUser).order_by(StaffUser.name)).scalars().all()
    return render_template(
        "portal/staff.html",
        nav="staff",
        users=users,
        roles=v.ROLES,
        undeliverable={member.email: member.since for member in unmailed_staff(db.session)},
    )


@bp.post("/admin/staff")
@login_required("admin")
def add_staff() -> ResponseReturnValue:
    form = request.form
    try:
        user, generated = StaffService(db.session).create(
            email=form.get("email", ""),
            name=form.get("name", ""),
            role=form.get("role", ""),
            password=form.get("password") or None,
        )
    except DomainError as exc:
        db.session.rollback()
        flash(error_text(exc), "error")
        return redirect(url_for("portal.staff"))
    commit_or_unknown(db.session)
    if generated:
        return _show_password(gettext("Account created"), user, generated)
    flash(gettext("Created %(role)s %(email)s.", role=_role(user.role), email=user.email))
    return redirect(url_for("portal.staff"))


@bp.post("/admin/staff/<int(max=2147483647):user_id>/active")
@login_required("admin")
def set_staff_active(user_id: int) -> ResponseReturnValue:
    user = _staff_member(user_id)
    active = request.form.get("active") == "1"
    if user.id == actor().staff_id and not active:
        flash(gettext("You cannot deactivate yourself."), "error")
        return redirect(url_for("portal.staff"))

    def change() -> str:
        StaffService(db.session).set_active(user, active)
        if active:
            return gettext("%(email)s is now active.", email=user.email)
        return gettext("%(email)s is now deactivated.", email=user.email)

    return perform(change, url_for("portal.staff"))


@bp.post("/admin/staff/<int(max=2147483647):user_id>/role")
@login_required("admin")
def set_staff_role(user_id: int) -> ResponseReturnValue:
    user = _staff_member(user_id)

    def change() -> str:
        StaffService(db.session).set_role(user, request.form.get("role", ""))
        return gettext(
            "%(email)s is now %(role)s; their sessions have ended.", email=user.email, role=_role(user.role)
        )

    return perform(change, url_for("portal.staff"))


@bp.post("/admin/staff/<int(max=2147483647):user_id>/password")
@login_required("admin")
def reset_staff_password(user_id: int) -> ResponseReturnValue:
    user = _staff_member(user_id)
    password = StaffService(db.session).reset_password(user)
    commit_or_unknown(db.session)
    return _show_password(gettext("Password reset"), user, password)


@bp.post("/admin/staff/<int(max=2147483647):user_id>/deliverable")
@login_required("admin")
def clear_staff_undeliverable(user_id: int) -> ResponseReturnValue:
    """Mail to this staff member works again: their alerts are mailed from now on
    (docs/outbound-mail.md, "Loop rules"), cleared in every spelling of their mailbox
    as the command line and the ticket page clear a customer's."""
    user = _staff_member(user_id)

    def clear() -> str:
        if contacts.clear_undeliverable(db.session, user.email, actor()):
            return gettext("Alerts to %(email)s are mailed again.", email=user.email)
        return gettext("%(email)s was not marked undeliverable.", email=user.email)

    return perform(clear, url_for("portal.staff"))


def _role(role: str) -> str:
    """A role as a sentence names it: "agent", "agente"."""
    return vocabulary_label(languages.ROLE_LABELS, role).lower()


def _staff_member(user_id: int) -> StaffUser:
    user = db.session.get(StaffUser, user_id)
    if user is None:
        abort(404)
    return user


def _show_password(heading: str, user: StaffUser, password: str) -> ResponseReturnValue:
    return _shown_once(
        render_template(
            "portal/password_shown.html", nav="staff", heading=heading, user=user, password=password
        )
    )


def _shown_once(page: str) -> ResponseReturnValue:
    """A secret (a generated password, an integration's token), in this response
    only: never in the flash cookie (a signed cookie is readable, not encrypted) and
    never cached."""
    response = make_response(page)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/admin/teams")
@login_required("admin")
def teams() -> ResponseReturnValue:
    service = TeamsService(db.session)
    users = db.session.execute(select(StaffUser).where(StaffUser.is_active).order_by(StaffUser.name))
    return render_template(
        "portal/teams.html",
        nav="teams",
        teams=service.teams(),
        routes=service.routes(),
        staff_list=users.scalars().all(),
    )


@bp.post("/admin/teams")
@login_required("admin")
def add_team() -> ResponseReturnValue:
    def add() -> str:
        team = TeamsService(db.session).add(request.form.get("name", ""))
        return gettext("Team %(name)s added.", name=team.name)

    return perform(add, url_for("portal.teams"))


@bp.post("/admin/teams/remove")
@login_required("admin")
def remove_team() -> ResponseReturnValue:
    def remove() -> str:
        TeamsService(db.session).remove(request.form.get("name", ""))
        return gettext("Team removed.")

    return perform(remove, url_for("portal.teams"))


@bp.post("/admin/teams/members")
@login_required("admin")
def team_member() -> ResponseReturnValue:
    form = request.form
    staff_id = positive_int(form.get("staff_id", ""))

    def change() -> str:
        service = TeamsService(db.session)
        if staff_id is None:
            raise ValidationError({"staff_id": "is not a staff member"})
        if form.get("action") == "remove":
            service.remove_member(form.get("team", ""), staff_id)
            return gettext("Removed from the team.")
        service.add_member(form.get("team", ""), staff_id)
        return gettext("Added to the team.")

    return perform(change, url_for("portal.teams"))


@bp.post("/admin/teams/routes")
@login_required("admin")
def team_routes() -> ResponseReturnValue:
    def save() -> str:
        service = TeamsService(db.session)
        for ticket_type in v.TICKET_TYPES:
            service.set_route(ticket_type, request.form.get(ticket_type) or None)
        return gettext("Routing saved.")

    return perform(save, url_for("portal.teams"))


@bp.get("/admin/integrations")
@login_required("admin")
def integrations() -> ResponseReturnValue:
    return render_template(
        "portal/integrations.html",
        nav="integrations",
        integrations=IntegrationsService(db.session).list(),
        kinds=v.INTEGRATION_KINDS,
    )


@bp.post("/admin/integrations")
@login_required("admin")
def add_integration() -> ResponseReturnValue:
    try:
        integration, token = IntegrationsService(db.session).add(
            request.form.get("name", ""), request.form.get("kind", "")
        )
    except DomainError as exc:
        db.session.rollback()
        flash(error_text(exc), "error")
        return redirect(url_for("portal.integrations"))
    commit_or_unknown(db.session)
    return _shown_once(
        render_template("portal/token_shown.html", nav="integrations", integration=integration, token=token)
    )


@bp.post("/admin/integrations/<int(max=2147483647):integration_id>/revoke")
@login_required("admin")
def revoke_integration(integration_id: int) -> ResponseReturnValue:
    integration = db.session.get(Integration, integration_id)
    if integration is None:
        abort(404)

    def revoke() -> str:
        IntegrationsService(db.session).revoke(integration.name)
        return gettext("Integration %(name)s revoked: its token no longer works.", name=integration.name)

    return perform(revoke, url_for("portal.integrations"))
