"""`/metrics` in Prometheus' format, written by prometheus-client (docs/operations.md):
every label value escaped by the library, per-route request counts and latencies,
and, under gunicorn, the counts of every worker in one answer (multiprocess mode)."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from helpdesk.extensions import db
from helpdesk.inbound.ingest import Envelope, ingest
from helpdesk.models import ImapMailboxState, InboundMail
from tests.support.app import migrate_database
from tests.support.mail import SUPPORT, message
from tests.support.web_process import WebServer

TOKEN = "s3cret-token"


def _scrape(client) -> dict[str, list]:  # type: ignore[no-untyped-def]
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    return _families(response.get_data(as_text=True))


def _families(text: str) -> dict[str, list]:  # type: ignore[type-arg]
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def test_the_bearer_scheme_is_read_in_any_case_and_required(client, app):
    """RFC 9110 11.1: the scheme is case-insensitive, so `bearer` is a scraper's
    Bearer; a bare token or another scheme is no bearer token (docs/operations.md)."""
    app.config["METRICS_TOKEN"] = TOKEN
    answers = {
        header: client.get("/metrics", headers={"Authorization": header}).status_code
        for header in (f"bearer {TOKEN}", f"BEARER {TOKEN}", TOKEN, f"Basic {TOKEN}", "Bearer wrong")
    }
    assert answers == {
        f"bearer {TOKEN}": 200,
        f"BEARER {TOKEN}": 200,
        TOKEN: 401,
        f"Basic {TOKEN}": 401,
        "Bearer wrong": 401,
    }
    assert client.get("/metrics").headers["WWW-Authenticate"] == "Bearer"


def test_metrics_are_closed_without_a_token(client):
    assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 404


def test_every_label_value_survives_the_format(client, app):
    """A mailbox key is read from IMAP_URL, percent-decoding included: quotes,
    backslashes and line breaks must come back out of the text format as they went in."""
    app.config["METRICS_TOKEN"] = TOKEN
    key = 'odd"user\\name\nline@imap.example:993/INBOX'
    db.session.add(ImapMailboxState(key=key, last_uid=0, last_error=""))
    db.session.commit()
    samples = _scrape(client)["helpdesk_imap_stuck"]
    assert [sample.labels["mailbox"] for sample in samples] == [key]


def test_how_full_the_quarantine_is_is_a_gauge(client, app):
    """Past QUARANTINE_MAX_MAILS or QUARANTINE_MAX_BYTES strangers' mail is refused for
    now (docs/mail-gateway.md, "Quarantine room"): the monitoring sees it coming."""
    app.config.update(METRICS_TOKEN=TOKEN, QUARANTINE_MAX_MAILS=1)
    ingest(
        message(sender="a@nowhere.example").as_bytes(),
        Envelope("a@nowhere.example", (SUPPORT,), "smtp"),
        app.config,
    )
    families = _scrape(client)
    size = db.session.execute(select(InboundMail.size)).scalar_one()
    assert [
        (s.name, s.value) for name in ("mails", "bytes") for s in families[f"helpdesk_quarantine_held_{name}"]
    ] == [
        ("helpdesk_quarantine_held_mails", 1),
        ("helpdesk_quarantine_held_bytes", size),
    ]
    assert [s.value for s in families["helpdesk_quarantine_full"]] == [1]


def test_requests_are_counted_and_timed_per_route(client, app, portal):
    app.config["METRICS_TOKEN"] = TOKEN
    before = _route_count(_scrape(client), "portal.queue")
    for _ in range(3):
        assert portal.get("/tickets").status_code == 200
    assert portal.get("/tickets/TKT-000777").status_code == 404
    assert client.get("/no/such/page").status_code == 404
    families = _scrape(client)
    assert _route_count(families, "portal.queue") - before == 3
    assert _route_count(families, "portal.ticket", status="404") >= 1
    assert _route_count(families, "(unmatched)", status="404") >= 1
    durations = [
        sample
        for sample in families["helpdesk_http_request_duration_seconds"]
        if sample.name.endswith("_count") and sample.labels["route"] == "portal.queue"
    ]
    assert durations and durations[0].value >= 3


def _route_count(families, route: str, status: str = "200") -> float:  # type: ignore[no-untyped-def]
    return sum(
        sample.value
        for sample in families.get("helpdesk_http_requests", [])
        if sample.name == "helpdesk_http_requests_total"
        and sample.labels["route"] == route
        and sample.labels["status"] == status
    )


def test_gunicorn_workers_add_up_in_one_answer(pg_server, tmp_path):
    url = pg_server.create_database("metrics_workers")
    migrate_database(url)
    server = WebServer(url, tmp_path, workers=3, METRICS_TOKEN=TOKEN)

    def health_count() -> float:
        request = urllib.request.Request(
            f"{server.base}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            return _route_count(_families(answer.read().decode()), "api.health")

    try:
        before = health_count()  # the server's start-up probe is one
        for _ in range(30):  # spread over the workers by the kernel
            with urllib.request.urlopen(f"{server.base}/api/v1/health", timeout=10) as answer:
                assert answer.status == 200
        after = health_count()
    finally:
        server.stop()
    assert after - before == 30
