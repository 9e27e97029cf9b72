"""Calls per customer inside an integration's budget (`INTEGRATION_CUSTOMER_RATE_LIMIT`,
docs/integrations.md "Calls per customer").

An integration's budget (`API_RATE_LIMIT`, `auth.integration_required`) is shared by
every customer it talks for: one chat visitor hammering the lookup, or one WhatsApp
user steering the assistant's model, spent it, and every other customer of the
integration got 429s. So the chat and assistant endpoints also count the customer
each request names, per integration, by `customers.Named.key` (the proven number,
else the mailbox): `Ann@`, `ann+x@` and a fullwidth domain are one customer, as
`+52 1 55…` and `whatsapp:+52…` are one number. A chat request is one call; an
assistant request counts each of its tool calls, the work the model asked for.

Counted in the limiter's store (helpdesk.limit_storage: the database on PostgreSQL,
shared by every worker and host), in fixed windows, under a digest of the key:
the counters hold no address or number. A call refused here counts in the
customer's window but is given back to the integration's budget
(`auth.give_back_api_call`), so it spends no one else's calls.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass

from flask import Response, current_app

from helpdesk.api.customers import Named
from helpdesk.auth import give_back_api_call, integration_caller, parsed_limits
from helpdesk.extensions import limiter
from helpdesk.http_errors import error_response

SCOPE = "customer"  # the counters' name after the integration's (`auth.integration_caller`)


@dataclass(frozen=True)
class Allowance:
    """What a customer's limit allows of a request's calls: the first `calls` of
    them run; the others are refused until `retry_after` seconds have passed."""

    calls: int
    retry_after: int


def allowance(customer: Named, calls: int = 1) -> Allowance:
    """Count `calls` calls of `customer` through the calling integration
    (`g.integration`), and say how many fit in each of the customer's limits (all
    of them while the limiter is off). A request none of whose calls fit did
    nothing: its place in the integration's budget is given back."""
    if not limiter.enabled:
        return Allowance(calls, 0)
    storage = limiter.limiter.storage
    digest = hashlib.sha256(customer.key.encode()).hexdigest()
    # Under `RATELIMIT_KEY_PREFIX` as every other counter, when the operator set one.
    names = [name for name in (limiter._key_prefix, integration_caller(), SCOPE, digest) if name]
    allowed, wait = calls, 0.0
    for item in parsed_limits(str(current_app.config["INTEGRATION_CUSTOMER_RATE_LIMIT"])):
        key = item.key_for(*names)
        count = storage.incr(key, item.get_expiry(), amount=calls)
        fits = max(0, item.amount - (count - calls))
        if fits < calls:
            wait = max(wait, storage.get_expiry(key) - time.time())
        allowed = min(allowed, fits)
    if not allowed:
        give_back_api_call()
    return Allowance(allowed, max(1, math.ceil(wait)) if allowed < calls else 0)


def refused_call(customer: Named) -> tuple[Response, int] | None:
    """Count one call of `customer` (a chat request); the answer to give when it is
    over their limit, 429 with `Retry-After` as the integration's own budget
    answers, under a code of its own; None while it fits."""
    allowed = allowance(customer)
    if allowed.calls:
        return None
    response, status = error_response(
        429, "too_many_customer_calls", "Too many calls for this customer; retry later."
    )
    response.headers["Retry-After"] = str(allowed.retry_after)
    return response, status
