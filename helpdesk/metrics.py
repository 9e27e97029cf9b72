"""`GET /metrics`: the mail flow and the ticket counts in Prometheus' text format.

Off unless `METRICS_TOKEN` is set; then the scraper sends it as a bearer token
(Prometheus: `authorization: {credentials: …}`). Compared in constant time.
"""

from __future__ import annotations

import hmac
from datetime import datetime, timezone

from flask import Blueprint, Flask, Response, abort, current_app, request
from sqlalchemy import func, select

from helpdesk.extensions import db
from helpdesk.models import Ticket
from helpdesk.services.mailflow import mail_flow

bp = Blueprint("metrics", __name__)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


@bp.get("/metrics")
def metrics() -> Response:
    token = current_app.config["METRICS_TOKEN"]
    if not token:
        abort(404)
    offered = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not hmac.compare_digest(offered.encode(), token.encode()):
        abort(401)
    cfg = current_app.config
    flow = mail_flow(
        db.session, stuck_after=cfg["IMAP_STUCK_AFTER"], backlog_after=cfg["OUTBOX_BACKLOG_AFTER"]
    )
    lines = [
        "# HELP helpdesk_inbound_mails_total Mail recorded by the gateway, by channel and outcome.",
        "# TYPE helpdesk_inbound_mails_total counter",
    ]
    for channel, outcomes in flow.inbound.items():
        for outcome, count in outcomes.items():
            lines.append(f'helpdesk_inbound_mails_total{{channel="{channel}",outcome="{outcome}"}} {count}')
    lines += [
        "# HELP helpdesk_imap_last_success_timestamp_seconds Last good poll per mailbox.",
        "# TYPE helpdesk_imap_last_success_timestamp_seconds gauge",
        "# HELP helpdesk_imap_stuck 1 when a mailbox had no good poll for IMAP_STUCK_AFTER.",
        "# TYPE helpdesk_imap_stuck gauge",
    ]
    for box in flow.mailboxes:
        label = box.key.replace("\\", "\\\\").replace('"', '\\"')
        seconds = _utc_seconds(box.last_success_at) if box.last_success_at else 0
        lines.append(f'helpdesk_imap_last_success_timestamp_seconds{{mailbox="{label}"}} {seconds:.0f}')
        lines.append(f'helpdesk_imap_stuck{{mailbox="{label}"}} {int(box.stuck)}')
    lines += [
        "# HELP helpdesk_outbox_messages Outbox rows by state.",
        "# TYPE helpdesk_outbox_messages gauge",
    ]
    lines += [f'helpdesk_outbox_messages{{state="{state}"}} {count}' for state, count in flow.outbox.items()]
    oldest = (flow.moment - flow.oldest_pending_at).total_seconds() if flow.oldest_pending_at else 0
    lines += [
        "# HELP helpdesk_outbox_oldest_pending_seconds Age of the oldest unsent mail.",
        "# TYPE helpdesk_outbox_oldest_pending_seconds gauge",
        f"helpdesk_outbox_oldest_pending_seconds {oldest:.0f}",
        "# HELP helpdesk_tickets Tickets by status.",
        "# TYPE helpdesk_tickets gauge",
    ]
    for status, count in db.session.execute(
        select(Ticket.status, func.count(Ticket.id)).group_by(Ticket.status)
    ):
        lines.append(f'helpdesk_tickets{{status="{status}"}} {count}')
    return Response("\n".join(lines) + "\n", mimetype="text/plain; version=0.0.4")


def _utc_seconds(moment: datetime) -> float:
    """Stored times are naive UTC (helpdesk.clock)."""
    return moment.replace(tzinfo=timezone.utc).timestamp()
