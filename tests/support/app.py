"""The application under test and the clients that drive it: building the app
on a database, migrating and emptying that database, the API client with a
token, and the portal session that posts its forms with their CSRF token."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import flask_migrate
from flask import Flask, has_app_context
from flask.testing import FlaskClient
from sqlalchemy import text

from config import TestingConfig
from helpdesk import create_app
from helpdesk.extensions import db

# Where the `clock` fixture stops time: a Monday morning, 08:00 UTC.
CLOCK_START = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)


def make_app(url: str, **overrides: object) -> Flask:
    app = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=url, **overrides)
    app.test_client_class = RequestClient
    return app


class RequestClient(FlaskClient):
    """The test client, with each request in an application context of its own.

    The `app` fixture keeps a context open for the test's own database work; without
    this, every request would reuse it, and `g` (where Flask-WTF caches the CSRF token
    and the portal its current user) would carry over from one request to the next.
    A context of its own also gives the request its own database session, as a
    worker has in production. The test's session ends its transaction before the
    request (what the request should see must be committed, and SQLite's write lock
    must be free) and after it (to see what the request committed).
    """

    def open(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        outer = has_app_context()
        if outer:
            db.session.rollback()
        try:
            with self.application.app_context():
                return super().open(*args, **kwargs)
        finally:
            if outer:
                db.session.rollback()


def migrate_database(url: str) -> None:
    app = make_app(url)
    with app.app_context():
        flask_migrate.upgrade()
        db.engine.dispose()


def reset_database() -> None:
    """Empty every table of the app's database (either backend), counter back at 1."""
    for table in reversed(db.metadata.sorted_tables):
        db.session.execute(table.delete())
    db.session.execute(text("INSERT INTO ticket_counter (id, next_value) VALUES (1, 1)"))
    db.session.commit()


class ApiClient:
    """The Flask test client with a bearer token and the JSON envelope unpacked."""

    def __init__(self, client, token: str | None = None) -> None:  # type: ignore[no-untyped-def]
        self.client = client
        self.token = token

    def call(
        self, method: str, path: str, json: object = None, *, token: str | None = None, **kwargs: object
    ):  # type: ignore[no-untyped-def]
        headers = dict(kwargs.pop("headers", None) or {})  # type: ignore[call-overload]
        bearer = token if token is not None else self.token
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        return self.client.open(f"/api/v1{path}", method=method, json=json, headers=headers, **kwargs)

    def get(self, path: str, **kwargs: object):  # type: ignore[no-untyped-def]
        return self.call("GET", path, **kwargs)

    def post(self, path: str, json: object = None, **kwargs: object):  # type: ignore[no-untyped-def]
        return self.call("POST", path, json, **kwargs)

    def patch(self, path: str, json: object = None, **kwargs: object):  # type: ignore[no-untyped-def]
        return self.call("PATCH", path, json, **kwargs)

    def put(self, path: str, json: object = None, **kwargs: object):  # type: ignore[no-untyped-def]
        return self.call("PUT", path, json, **kwargs)

    def delete(self, path: str, **kwargs: object):  # type: ignore[no-untyped-def]
        return self.call("DELETE", path, **kwargs)


def login_tokens(client, email: str, password: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    response = client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


_CSRF = re.compile(rb'name="csrf_token" value="([^"]+)"')


def page_text(response) -> bytes:  # type: ignore[no-untyped-def]
    """A page's bytes with its CSRF token blanked, to compare two pages: the token
    carries the second it was made in, so two requests a tick apart differ there."""
    return _CSRF.sub(b'name="csrf_token" value=""', response.get_data())


class Portal:
    """A logged-in browser session on the test client, posting forms with their token."""

    def __init__(self, client) -> None:  # type: ignore[no-untyped-def]
        self.client = client

    def token(self, page: str = "/login") -> str:
        match = _CSRF.search(self.client.get(page).data)
        assert match, f"no CSRF token on {page}"
        return match.group(1).decode()

    def login(self, email: str, password: str):  # type: ignore[no-untyped-def]
        return self.client.post(
            "/login", data={"email": email, "password": password, "csrf_token": self.token()}
        )

    def get(self, path: str):  # type: ignore[no-untyped-def]
        return self.client.get(path)

    def post(
        self, path: str, data: dict[str, str] | None = None, *, page: str = "/tickets", csrf: bool = True
    ):  # type: ignore[no-untyped-def]
        form = dict(data or {})
        if csrf:
            form["csrf_token"] = self.token(page)
        return self.client.post(path, data=form)
