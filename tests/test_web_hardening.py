"""What every web answer carries beyond its body, tried as a hostile reviewer would
(docs/security.md, "The portal, the tracker and the API"): caching of private
pages, the headers an error keeps, how the API reads a JSON body."""

from __future__ import annotations

import time

import pytest

from helpdesk.extensions import db
from tests.support.app import Portal, make_app, migrate_database
from tests.support.database import open_ticket
from tests.support.pgserver import PostgresServer, free_port


def test_pages_and_api_answers_with_private_data_are_never_stored(portal, api, service):
    """The tracker sent `private, no-store` so that no shared proxy or browser
    history keeps a customer's thread; the staff ticket page showing the same thread,
    and the API's ticket, were sent with no Cache-Control at all (webhard review)."""
    open_ticket(service, description="The router password is hunter2.")
    for answer in (portal.get("/tickets/TKT-000001"), api.get("/tickets/TKT-000001")):
        assert b"hunter2" in answer.data
        assert answer.headers["Cache-Control"] == "private, no-store"
    assert portal.get("/static/style.css").headers.get("Cache-Control") != "private, no-store"


def test_the_api_s_405_names_the_methods_the_url_takes(client):
    """A 405 must carry `Allow` (RFC 9110); the portal's did, the API's JSON
    envelope was built afresh and dropped it (webhard review)."""
    answer = client.delete("/api/v1/public/track")
    assert answer.status_code == 405 and answer.get_json()["error"]["code"] == "method_not_allowed"
    assert "POST" in answer.headers["Allow"]


def test_a_json_body_is_read_as_rfc_8259_json(client):
    """A field named twice was taken with its last value, where a proxy or firewall
    in front may read the first; `NaN` is no JSON either. JSON `null` is JSON, and
    was answered "not valid JSON" (webhard review)."""
    for body in (
        '{"ticket_number": "TKT-000001", "ticket_number": "TKT-000002", "email": "a@example.com"}',
        '{"ticket_number": NaN, "email": "a@example.com"}',
    ):
        answer = client.post("/api/v1/public/track", data=body, content_type="application/json")
        assert answer.status_code == 400 and answer.get_json()["error"]["code"] == "invalid_json", body
    answer = client.post("/api/v1/public/track", data="null", content_type="application/json")
    assert answer.status_code == 422
    assert answer.get_json()["error"]["fields"] == {"body": "must be a JSON object"}


def test_a_database_that_cannot_be_reached_is_503_with_retry_after_on_pages_and_api():
    """With PostgreSQL down every portal page that reads the database was Flask's own
    500 page in English, and the API's 503 said "retry" without saying when
    (websusp review; docs/web.md, "Database errors"). A port nothing listens on is
    a stopped server to psycopg2: refused, no SQLSTATE."""
    app = make_app(f"postgresql://postgres@127.0.0.1:{free_port()}/none", PROPAGATE_EXCEPTIONS=False)
    client = app.test_client()
    with client.session_transaction() as session:  # a login the database would check
        session.update(staff_id=1, version=1, since=int(time.time()))
    page = client.get("/tickets")
    answer = client.get("/api/v1/tickets", headers={"Authorization": "Bearer x.y.z"})
    api_answer = client.post("/api/v1/auth/login", json={"email": "a@example.com", "password": "p" * 10})
    assert page.status_code == 503 and page.headers["Retry-After"] == "30"
    assert page.content_type.startswith("text/html") and b"Try again" in page.data
    assert api_answer.status_code == 503 and api_answer.headers["Retry-After"] == "30"
    assert api_answer.get_json()["error"]["code"] == "database_unavailable"
    assert answer.status_code == 401  # a token that does not parse never reaches the database


def test_a_pool_with_no_connection_free_is_503_with_retry_after_on_pages_and_api(pg_server: PostgresServer):
    """Every pooled connection busy past `pool_timeout` (a threaded worker's threads
    all waiting on a slow database) raised SQLAlchemy's `TimeoutError`, which is no
    DBAPIError: no handler knew it, and pages and API answered 500 "something went
    wrong" where the database only could not do the work now (docs/web.md,
    "Database errors")."""
    url = pg_server.create_database("pool_exhausted")
    migrate_database(url)
    app = make_app(
        url,
        PROPAGATE_EXCEPTIONS=False,
        DB_POOL_SIZE=1,
        DB_MAX_OVERFLOW=1,
        SQLALCHEMY_ENGINE_OPTIONS={"pool_timeout": 0.2},
    )
    client = app.test_client()
    with client.session_transaction() as session:
        session.update(staff_id=1, version=1, since=int(time.time()))
    with app.app_context():
        held = [db.engine.connect() for _ in range(2)]
        try:
            page = client.get("/tickets")
            login = {"email": "a@example.com", "password": "p" * 10}
            api_answer = client.post("/api/v1/auth/login", json=login)
        finally:
            for connection in held:
                connection.close()
            db.engine.dispose()
    assert page.status_code == 503 and page.headers["Retry-After"] == "30", page.status_code
    assert page.content_type.startswith("text/html") and b"Try again" in page.data
    assert api_answer.status_code == 503 and api_answer.headers["Retry-After"] == "30"
    assert api_answer.get_json()["error"]["code"] == "database_unavailable"


# A query string a browser never sends: `%E9` (Latin-1 "é") and the raw byte E9
# (the WSGI server hands bytes over as Latin-1 characters), neither UTF-8.
UNREADABLE_QUERIES = {"percent-encoded": {}, "raw byte": {"QUERY_STRING": "q=caf\xe9"}}


@pytest.mark.parametrize("environ", UNREADABLE_QUERIES.values(), ids=UNREADABLE_QUERIES.keys())
def test_a_query_string_that_is_not_utf_8_is_a_400_on_the_api_the_portal_and_the_tracker(
    client, api, agent, environ
):
    """`?q=caf%E9` was kept as `caf%E9` and silently matched nothing, in the queue's
    search, the API's filters and the tracker alike; the raw byte was a 500 (found
    by review). Each is now a 400: the API's `invalid_query`, a page on the portal
    and the tracker in its reader's language."""
    answer = api.get("/tickets?q=caf%E9", environ_overrides=environ)
    assert answer.status_code == 400, answer.data
    assert answer.get_json()["error"]["code"] == "invalid_query"
    assert api.get("/tickets?status=open&priority=%E9").status_code == 400

    agent.language = "es"
    db.session.commit()
    portal = Portal(client)
    portal.login(agent.email, "agent-password-1")
    page = client.get("/tickets?q=caf%E9", environ_overrides=environ)
    assert page.status_code == 400
    assert "La dirección no se pudo leer" in page.get_data(as_text=True)

    tracker = client.get("/track?number=%E9", headers={"Accept-Language": "es"}, environ_overrides=environ)
    assert tracker.status_code == 400
    assert "La dirección no se pudo leer" in tracker.get_data(as_text=True)


def test_query_strings_as_browsers_send_them_are_read(api, portal, service):
    """UTF-8 percent-encoded, raw UTF-8 and `+` for a space all still pass."""
    open_ticket(service, subject="Café con leche")
    for query in ("q=Caf%C3%A9+con", "q=Café+con", "q=Caf%C3%A9%20con"):
        found = api.get(f"/tickets?{query}")
        assert found.status_code == 200, found.data
        assert [ticket["subject"] for ticket in found.get_json()["items"]] == ["Café con leche"]
        assert "Café con leche" in portal.get(f"/tickets?{query}").get_data(as_text=True)


def test_a_urlencoded_form_of_more_fields_than_max_form_parts_is_a_413_before_it_is_parsed(client, agent):
    """Werkzeug bounds a multipart form's parts (`MAX_FORM_PARTS`, 1,000) but parses
    every field of a urlencoded one: 1 MiB of `a=&` is 350,000 fields and cost
    0.23 s of CPU on the login and the tracker before the CSRF check or the login's
    limit answered. More fields than the bound are now counted, not parsed: 413,
    the project's page in the reader's language; a form of 1,000 still logs in."""
    portal = Portal(client)
    token = portal.token()
    login = {"email": agent.email, "password": "agent-password-1", "csrf_token": token}
    at_the_bound = "&".join([*(f"{k}={v}" for k, v in login.items()), *(["a="] * 997)])
    assert at_the_bound.count("&") + 1 == 1000
    over = at_the_bound + "&a="
    form = "application/x-www-form-urlencoded"
    for path in ("/login", "/track"):
        answer = client.post(path, data=over, content_type=form, headers={"Accept-Language": "es"})
        assert answer.status_code == 413, path
        assert "Era demasiado grande." in answer.get_data(as_text=True)
    flood = client.post("/login", data="a=&" * 340_000, content_type=form)
    assert flood.status_code == 413
    logged_in = client.post("/login", data=at_the_bound, content_type=form)
    assert logged_in.status_code == 302 and logged_in.location.endswith("/tickets")
