"""Live updates of the queue and the ticket page (docs/web.md, "Live updates").

Short polling, no new server process: the pages' small script
(`helpdesk/static/live.js`) asks every `LIVE_POLL_SECONDS` whether anything the
staff member may see changed since the time the server gave it last, and only
then fetches the page again and swaps the changed parts in. One indexed query per
poll (`tickets.updated_at`, every change of a ticket moves it), narrowed by
`AGENT_VISIBILITY` like every other read.

`updated_at` is the time a transaction wrote the row, not the time it committed:
a mail's transaction can wait seconds for the numbering row, and the writer may be
another host with its own clock. So the cursor handed out stays `LIVE_LAG_SECONDS`
behind the clock: a change written before a poll and committed after it is still
newer than the next cursor. The price is that a change is reported for that long,
and the page fetched again a few times, with nothing different to swap in.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import current_app, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from helpdesk.clock import iso, now
from helpdesk.extensions import db
from helpdesk.models import Ticket
from helpdesk.portal import bp
from helpdesk.portal.session import actor, login_required
from helpdesk.portal.tickets import _ticket_or_404
from helpdesk.services import visibility


@bp.app_template_global("live_cursor")
def live_cursor() -> str | None:
    """Where a page's script starts polling from: the time it is rendered at, less
    the lag (a transaction still running may have written a change before it)."""
    return iso(_cursor())


@bp.get("/live/queue")
@login_required()
def live_queue() -> ResponseReturnValue:
    """`{changed, now}`: whether any ticket the staff member sees changed since `since`."""
    since, moment = _since(), _cursor()
    query = visibility.restrict(
        db.session,
        select(Ticket.id).where(Ticket.updated_at > since).limit(1),
        actor(),
        current_app.config["AGENT_VISIBILITY"],
    )
    return _answer(db.session.execute(query).first() is not None, moment)


@bp.get("/live/tickets/<number>")
@login_required()
def live_ticket(number: str) -> ResponseReturnValue:
    """`{changed, now}` for one ticket; 404 like its page when it is not visible."""
    since, moment = _since(), _cursor()
    return _answer(_ticket_or_404(number).updated_at > since, moment)


def _cursor() -> datetime:
    """The cursor a poll answers with: now, less the time a change may wait to commit."""
    return now() - timedelta(seconds=current_app.config["LIVE_LAG_SECONDS"])


def _since() -> datetime:
    """The client's cursor (what this endpoint answered as `now` last time). Unreadable
    or missing: the epoch, so the first poll says "changed" and the page refreshes."""
    text = request.args.get("since", "")[:40].removesuffix("Z")
    try:
        return datetime.fromisoformat(text).replace(tzinfo=None)
    except ValueError:
        return datetime(1970, 1, 1)


def _answer(changed: bool, moment: datetime) -> ResponseReturnValue:
    response = jsonify({"changed": changed, "now": iso(moment)})
    response.headers["Cache-Control"] = "no-store"
    return response
