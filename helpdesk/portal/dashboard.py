"""The dashboard: counts by status and priority, SLA state, response times."""
from __future__ import annotations

from flask import render_template
from flask.typing import ResponseReturnValue

from helpdesk.extensions import db
from helpdesk.portal import bp
from helpdesk.portal.session import login_required
from helpdesk.services.stats import ticket_stats


@bp.get("/dashboard")
@login_required()
def dashboard() -> ResponseReturnValue:
    return render_template("portal/dashboard.html", nav="dashboard",
                           stats=ticket_stats(db.session))
