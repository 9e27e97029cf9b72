"""Rate limits of the public tracker, shared by the page and the API.

Per client IP and per ticket number, so neither one client trying many numbers nor
many clients trying one number's e-mail addresses get far. Limits come from
`TRACK_RATE_LIMIT_PER_IP` and `TRACK_RATE_LIMIT_PER_TICKET`; the counters live in
`RATELIMIT_STORAGE_URI` (the database with PostgreSQL, shared by every web worker;
see `helpdesk.limit_storage`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from flask import current_app
from flask_limiter import RouteLimit

from helpdesk.extensions import limiter
from helpdesk.services import tracking


def _per_ip() -> str:
    return str(current_app.config["TRACK_RATE_LIMIT_PER_IP"])


def _per_ticket() -> str:
    return str(current_app.config["TRACK_RATE_LIMIT_PER_TICKET"])


def ticket_key(body: Any) -> str:
    """The ticket number asked about, normalized, from the body as the view reads it."""
    text = body.get("ticket_number") if isinstance(body, Mapping) else None
    number = tracking.requested_number(text, current_app.config["TICKET_PREFIX"])
    return f"ticket:{number if number is not None else '?'}"


# Shared limits: the page and the API draw from the same counters.
limit_per_ip = limiter.shared_limit(_per_ip, scope="track-ip", methods=["POST"])


def limit_per_ticket(read: Callable[[], Any]) -> RouteLimit:
    """The per-ticket limit of a view that reads its body with `read` (the page its
    form, the API `payload.json_value`): the key reads it the same way, so it counts
    the ticket the lookup finds. A key reading a form where the API read JSON sent
    as text/plain counted such guesses in a bucket of no ticket (docs/security.md,
    "Tracker numbers")."""
    return limiter.shared_limit(
        _per_ticket, scope="track-ticket", key_func=lambda: ticket_key(read()), methods=["POST"]
    )
