"""`GET /metrics` in Prometheus' text format, written by prometheus-client: requests
per route (count and latency), and the mail flow and ticket counts read from the
database at scrape time.

Off unless `METRICS_TOKEN` is set (404); then the scraper sends it as a bearer token
(Prometheus: `authorization: {credentials: …}`), the scheme in any case (RFC 9110
11.1), the token compared in constant time; anything else is 401 (docs/operations.md).

Under gunicorn each worker counts its own requests; `gunicorn.conf.py` points
`PROMETHEUS_MULTIPROC_DIR` at a private folder, so every worker writes its counts
there and any worker's answer adds all of them up (prometheus-client's multiprocess
mode). Label values (a mailbox key comes from `IMAP_URL`) are escaped by the
library, and the labels of requests take only bounded values: the route's endpoint
name, a known method, the status code.
"""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Iterator
from datetime import datetime, timezone

from flask import Blueprint, Flask, Response, abort, current_app, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from werkzeug.datastructures import WWWAuthenticate

from helpdesk import vocabulary as v
from helpdesk.extensions import db
from helpdesk.inbound import room
from helpdesk.models import Ticket
from helpdesk.services.mailflow import SourceFlow, mail_flow

bp = Blueprint("metrics", __name__)

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "(unmatched)"

# Not in the library's default registry: a scrape builds its own (see `_registry`).
REQUESTS = Counter(
    "helpdesk_http_requests",
    "HTTP requests by route, method and status.",
    ["route", "method", "status"],
    registry=None,
)
DURATION = Histogram(
    "helpdesk_http_request_duration_seconds",
    "Time to answer an HTTP request, by route and method.",
    ["route", "method"],
    registry=None,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.before_request(_started)
    app.after_request(_answered)


def _started() -> None:
    g.request_started = time.perf_counter()


def _answered(response: Response) -> Response:
    route = request.url_rule.endpoint if request.url_rule is not None else UNMATCHED
    method = request.method if request.method in METHODS else "OTHER"
    REQUESTS.labels(route, method, str(response.status_code)).inc()
    started = g.pop("request_started", None)
    if started is not None:
        DURATION.labels(route, method).observe(time.perf_counter() - started)
    return response


@bp.get("/metrics")
def metrics() -> Response:
    if not current_app.config["METRICS_TOKEN"]:
        abort(404)
    if not scraper_token_offered():
        abort(401, www_authenticate=WWWAuthenticate("Bearer"))
    return Response(generate_latest(_registry()), content_type=CONTENT_TYPE_LATEST)


def scraper_token_offered() -> bool:
    """Does the request carry `METRICS_TOKEN` as its bearer token? Never when no token
    is set. The operator's monitoring holds it, so answers meant for the operator
    (the health answer's schema revisions) are given to it too."""
    token = current_app.config["METRICS_TOKEN"]
    if not token:
        return False
    scheme, _, offered = request.headers.get("Authorization", "").strip().partition(" ")
    # Compared whatever the scheme, so a wrong scheme costs what a wrong token does.
    matches = hmac.compare_digest(offered.strip().encode(), token.encode())
    return scheme.lower() == "bearer" and matches


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)  # every worker's request counts, from their files
    else:
        registry.register(REQUESTS)
        registry.register(DURATION)
    registry.register(_DatabaseCollector())
    return registry


class _DatabaseCollector(Collector):
    """The mail flow and the tickets, read when scraped (they live in the database,
    the same for every worker and host)."""

    def collect(self) -> Iterator[Metric]:
        cfg = current_app.config
        flow = mail_flow(
            db.session, stuck_after=cfg["IMAP_STUCK_AFTER"], backlog_after=cfg["OUTBOX_BACKLOG_AFTER"]
        )
        # Per mailbox and listener (`source`, docs/web.md "Mail flow"); a channel with
        # none yet, or mail recorded before migration 0043, is under source="", which
        # Prometheus reads as no source label: the series these were before.
        inbound = CounterMetricFamily(
            "helpdesk_inbound_mails",
            "Mail recorded by the gateway, by channel, source (IMAP mailbox or SMTP listener) and outcome.",
            labels=["channel", "source", "outcome"],
        )
        duplicates = CounterMetricFamily(
            "helpdesk_inbound_duplicates",
            "Deliveries that were mail received before (deduplicated, no record), by channel and source.",
            labels=["channel", "source"],
        )
        for channel in v.INBOUND_CHANNELS:
            sources = [place for place in flow.sources if place.channel == channel] or [
                SourceFlow(channel, "", dict.fromkeys(v.INBOUND_OUTCOMES, 0), {}, 0)
            ]
            for place in sources:
                for outcome, count in place.inbound.items():
                    inbound.add_metric([channel, place.source, outcome], count)
                duplicates.add_metric([channel, place.source], place.duplicates)
        yield inbound
        yield duplicates
        last_success = GaugeMetricFamily(
            "helpdesk_imap_last_success_timestamp_seconds", "Last good poll per mailbox.", labels=["mailbox"]
        )
        stuck = GaugeMetricFamily(
            "helpdesk_imap_stuck",
            "1 when a mailbox had no good poll for IMAP_STUCK_AFTER.",
            labels=["mailbox"],
        )
        for box in flow.mailboxes:
            last_success.add_metric(
                [box.key], _utc_seconds(box.last_success_at) if box.last_success_at else 0
            )
            stuck.add_metric([box.key], int(box.stuck))
        yield last_success
        yield stuck
        outbox = GaugeMetricFamily("helpdesk_outbox_messages", "Outbox rows by state.", labels=["state"])
        for state, count in flow.outbox.items():
            outbox.add_metric([state], count)
        yield outbox
        oldest = (flow.moment - flow.oldest_pending_at).total_seconds() if flow.oldest_pending_at else 0
        yield GaugeMetricFamily(
            "helpdesk_outbox_oldest_pending_seconds", "Age of the oldest unsent mail.", value=oldest
        )
        # How full the quarantine is: past either cap strangers' mail is refused for
        # now (`inbound.room`; docs/mail-gateway.md, "Quarantine room").
        mails, size = room.held(db.session)
        most_mails, most_bytes = cfg["QUARANTINE_MAX_MAILS"], cfg["QUARANTINE_MAX_BYTES"]
        yield GaugeMetricFamily(
            "helpdesk_quarantine_held_mails", "Mail held in quarantine waiting for review.", value=mails
        )
        yield GaugeMetricFamily(
            "helpdesk_quarantine_held_bytes", "Raw bytes of the mail held waiting for review.", value=size
        )
        full = bool(most_mails and mails >= most_mails) or bool(most_bytes and size >= most_bytes)
        yield GaugeMetricFamily(
            "helpdesk_quarantine_full",
            "1 when QUARANTINE_MAX_MAILS or QUARANTINE_MAX_BYTES is reached: strangers' mail is refused.",
            value=int(full),
        )
        tickets = GaugeMetricFamily("helpdesk_tickets", "Tickets by status.", labels=["status"])
        for status, count in db.session.execute(
            select(Ticket.status, func.count(Ticket.id)).group_by(Ticket.status)
        ):
            tickets.add_metric([status], count)
        yield tickets


def _utc_seconds(moment: datetime) -> float:
    """Stored times are naive UTC (helpdesk.clock)."""
    return moment.replace(tzinfo=timezone.utc).timestamp()
