"""The dashboard (counts by status and priority, SLA state, response times) and the
mail-flow page."""

from __future__ import annotations

from flask import current_app, render_template
from flask.typing import ResponseReturnValue

from helpdesk.extensions import db
from helpdesk.portal import bp
from helpdesk.portal.session import actor, login_required
from helpdesk.services import visibility
from helpdesk.services.mailflow import mail_flow
from helpdesk.services.stats import ticket_stats
from helpdesk.vocabulary import INBOUND_OUTCOMES


@bp.get("/dashboard")
@login_required()
def dashboard() -> ResponseReturnValue:
    scope = visibility.clause(db.session, actor(), current_app.config["AGENT_VISIBILITY"])
    return render_template(
        "portal/dashboard.html", nav="dashboard", stats=ticket_stats(db.session, scope=scope)
    )


@bp.get("/mail")
@login_required()
def mail() -> ResponseReturnValue:
    """Mail flow at a glance: intake per channel, mailboxes, the outbox (docs/web.md)."""
    cfg = current_app.config
    flow = mail_flow(
        db.session, stuck_after=cfg["IMAP_STUCK_AFTER"], backlog_after=cfg["OUTBOX_BACKLOG_AFTER"]
    )
    return render_template("portal/mail.html", nav="mail", flow=flow, outcomes=INBOUND_OUTCOMES)
