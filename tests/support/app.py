"""The application under test and the clients that drive it: building the app
on a database, migrating and emptying that database, the API client with a
token, and the portal session that posts its forms with their CSRF token."""
from __future__ import annotations

import re
from datetime import datetime, timezone

import flask_migrate
from flask import Flask, g
from sqlalchemy import text

from config import TestingConfig
from helpdesk import create_app
from helpdesk.extensions import db

# Where the `clock` fixture stops time: a Monday morning, 08:00 UTC.
CLOCK_START = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)


def make_app(url: str, **overrides: object) -> Flask:
    return create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=url, **overrides)


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

    def call(self, method: str, path: str, json: object = None, *,
             token: str | None = None, **kwargs: object):  # type: ignore[no-untyped-def]
        headers = dict(kwargs.pop("headers", None) or {})  # type: ignore[call-overload]
        bearer = token if token is not None else self.token
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        response = self.client.open(f"/api/v1{path}", method=method, json=json,
                                     headers=headers, **kwargs)
        db.session.rollback()  # see what the request committed, hold no SQLite lock
        db.session.expire_all()
        return response

    def get(self, path: str, **kwargs: object):  # type: ignore[no-untyped-def]
        return self.call("GET", path, **kwargs)

    def post(self, path: str, json: object = None, **kwargs: object):  # type: ignore[no-untyped-def]
        return self.call("POST", path, json, **kwargs)

    def patch(self, path: str, json: object = None, **kwargs: object):  # type: ignore[no-untyped-def]
        return self.call("PATCH", path, json, **kwargs)


def login_tokens(client, email: str, password: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    response = client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


_CSRF = re.compile(rb'name="csrf_token" value="([^"]+)"')


class Portal:
    """A logged-in browser session on the test client, posting forms with their token.

    Each real request gets a fresh app context and so a fresh `g`; under the `app`
    fixture's context the test client reuses one, so `g` (where Flask-WTF caches the
    CSRF token) is emptied before every request, as a real request would find it.
    """

    def __init__(self, client) -> None:  # type: ignore[no-untyped-def]
        self.client = _FreshG(client)

    def token(self, page: str = "/login") -> str:
        match = _CSRF.search(self.client.get(page).data)
        assert match, f"no CSRF token on {page}"
        return match.group(1).decode()

    def login(self, email: str, password: str):  # type: ignore[no-untyped-def]
        return self.client.post("/login", data={"email": email, "password": password,
                                                "csrf_token": self.token()})

    def get(self, path: str):  # type: ignore[no-untyped-def]
        response = self.client.get(path)
        db.session.rollback()
        db.session.expire_all()
        return response

    def post(self, path: str, data: dict[str, str] | None = None, *, page: str = "/tickets",
             csrf: bool = True):  # type: ignore[no-untyped-def]
        form = dict(data or {})
        if csrf:
            form["csrf_token"] = self.token(page)
        response = self.client.post(path, data=form)
        db.session.rollback()
        db.session.expire_all()
        return response


class _FreshG:
    def __init__(self, client) -> None:  # type: ignore[no-untyped-def]
        self._client = client

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        attribute = getattr(self._client, name)
        if name not in ("get", "post", "open"):
            return attribute

        def request(*args, **kwargs):  # type: ignore[no-untyped-def]
            for key in list(vars(g)):
                delattr(g, key)
            return attribute(*args, **kwargs)

        return request
