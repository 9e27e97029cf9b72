from __future__ import annotations

from flask import current_app, render_template
from flask.typing import ResponseReturnValue
from sqlalchemy import func, select

from helpdesk.extensions import db
from helpdesk.models import Ticket
from helpdesk.numbering import format_number, peek_next
from helpdesk.portal import bp


@bp.get("/")
def index() -> ResponseReturnValue:
    """A plain health page until the portal proper lands."""
    counts = db.session.execute(
        select(Ticket.status, func.count(Ticket.id)).group_by(Ticket.status)
    ).all()
    cfg = current_app.config
    next_number = format_number(
        peek_next(db.session), cfg["TICKET_PREFIX"], cfg["TICKET_NUMBER_WIDTH"]
    )
    return render_template(
        "portal/index.html", counts=dict(counts), next_number=next_number,
        support_addresses=cfg["SUPPORT_ADDRESSES"],
    )
