"""`gunicorn bench.http_floor:app`: the helpdesk app with one more route, for the web
benchmark only, never deployed.

`POST /bench/tickets` runs the body of `POST /api/v1/tickets` (the same view function,
unwrapped from `staff_required`) without authentication, as one staff member read
once per worker. Between the service ceiling and the API, its rate shows what
gunicorn, Flask and JSON cost and what the token check costs on top, so a missed
goal can be blamed on the right layer.
"""

from __future__ import annotations

from sqlalchemy import select

from helpdesk import create_app
from helpdesk.api import tickets as tickets_api
from helpdesk.extensions import csrf, db
from helpdesk.models import StaffUser
from helpdesk.services import Actor

app = create_app()

with app.app_context():
    _staff = (
        db.session.execute(select(StaffUser).where(StaffUser.role == "admin").order_by(StaffUser.id))
        .scalars()
        .first()
    )
    if _staff is None:
        raise RuntimeError("the HTTP floor needs an admin in the database")
    _ACTOR = Actor.staff(_staff)  # the actor keeps copies of the fields, not the row
    db.session.remove()
    db.engine.dispose()

# The view reads its actor, and the caller its idempotency keys belong to, through
# these module-level names; here they are the fixed staff member's.
tickets_api.current_actor = lambda: _ACTOR
tickets_api.staff_caller = lambda: f"staff:{_ACTOR.staff_id}"
_view = csrf.exempt(tickets_api.create_ticket.__wrapped__)  # type: ignore[attr-defined]
app.add_url_rule("/bench/tickets", "bench_tickets", _view, methods=["POST"])
