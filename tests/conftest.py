"""Fixtures: every database test runs on SQLite and on a real PostgreSQL server.

The PostgreSQL server is started here on a free loopback port and stopped at the
end, even on failure. A missing server is a failure, never a skip (`make test`
installs it). The schema is built once per backend with the real migrations; each
test then gets a fresh copy (SQLite) or a truncated database (PostgreSQL).
"""
from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import flask_migrate
import pytest
import time_machine
from flask import Flask, g
from sqlalchemy import text

from config import TestingConfig
from helpdesk import create_app
from helpdesk.extensions import db
from helpdesk.models import StaffUser
from helpdesk.services import Actor, TicketsService
from helpdesk.services.senders import SendersService
from helpdesk.services.staff import StaffService
from tests.dovecotserver import DovecotServer, DovecotUnavailable
from tests.mail import Gateway, start_gateway
from tests.pgserver import PostgresServer, PostgresUnavailable

BACKENDS = ("sqlite", "postgresql")
# Where the `clock` fixture stops time: a Monday morning, 08:00 UTC.
CLOCK_START = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # type: ignore[no-untyped-def]
    """Keep each phase's report on the test item, so a fixture's teardown can tell
    whether the test failed (the browser tests save a screenshot then)."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


def make_app(url: str, **overrides: object) -> Flask:
    return create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=url, **overrides)


def migrate_database(url: str) -> None:
    app = make_app(url)
    with app.app_context():
        flask_migrate.upgrade()
        db.engine.dispose()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    try:
        server = PostgresServer().start()
    except PostgresUnavailable as exc:
        pytest.fail(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def dovecot_server() -> Iterator[DovecotServer]:
    """A private Dovecot for the IMAP tests; missing, it is a failure, never a skip."""
    try:
        server = DovecotServer().start()
    except DovecotUnavailable as exc:
        pytest.fail(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def migrated(backend: str, request: pytest.FixtureRequest,
             tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated database for the session: a template file (SQLite) or a URL."""
    if backend == "sqlite":
        template = tmp_path_factory.mktemp("sqlite-template") / "template.db"
        migrate_database(f"sqlite:///{template}")
        return str(template)
    server: PostgresServer = request.getfixturevalue("pg_server")
    url = server.create_database("helpdesk_test")
    migrate_database(url)
    return url


@pytest.fixture
def database_url(backend: str, migrated: str, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        target = tmp_path / "helpdesk.db"
        shutil.copyfile(migrated, target)
        yield f"sqlite:///{target}"
        return
    yield migrated
    _truncate(migrated)


def reset_database() -> None:
    """Empty every table of the app's database (either backend), counter back at 1."""
    for table in reversed(db.metadata.sorted_tables):
        db.session.execute(table.delete())
    db.session.execute(text("INSERT INTO ticket_counter (id, next_value) VALUES (1, 1)"))
    db.session.commit()


def _truncate(url: str) -> None:
    app = make_app(url)
    with app.app_context():
        names = ", ".join(t.name for t in db.metadata.sorted_tables)
        db.session.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        db.session.execute(text("INSERT INTO ticket_counter (id, next_value) VALUES (1, 1)"))
        db.session.commit()
        db.engine.dispose()


@pytest.fixture
def app(database_url: str) -> Iterator[Flask]:
    app = make_app(database_url)
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app: Flask):  # type: ignore[no-untyped-def]
    return app.test_client()


@pytest.fixture
def runner(app: Flask):  # type: ignore[no-untyped-def]
    return app.test_cli_runner()


@pytest.fixture
def clock() -> Iterator[time_machine.Traveller]:
    """Time stands still at CLOCK_START until the test moves it (`clock.shift(…)`),
    so due times, breaches and windows are tested without sleeping."""
    with time_machine.travel(CLOCK_START, tick=False) as traveller:
        yield traveller


@pytest.fixture
def service(app: Flask) -> TicketsService:
    return TicketsService.from_config(db.session, app.config)


def _staff_user(role: str, name: str) -> StaffUser:
    user, _ = StaffService(db.session).create(
        email=f"{role}@helpdesk.test", name=name, role=role, password=f"{role}-password-1"
    )
    db.session.commit()
    return user


@pytest.fixture
def agent(app: Flask) -> StaffUser:
    return _staff_user("agent", "Agnes Agent")


@pytest.fixture
def admin(app: Flask) -> StaffUser:
    return _staff_user("admin", "Ada Admin")


@pytest.fixture
def agent_actor(agent: StaffUser) -> Actor:
    return Actor.staff(agent)


@pytest.fixture
def gateway(app: Flask) -> Iterator[Gateway]:
    yield from start_gateway(app)


@pytest.fixture
def senders(app: Flask) -> None:
    service = SendersService(db.session)
    service.add("ann@example.com", "Example Ltd")
    service.add("@corp.example", "Corp")
    service.add("zed@other.example", "Other Inc")
    db.session.commit()


@pytest.fixture
def pg_app(pg_server: PostgresServer) -> Iterator[Flask]:
    """PostgreSQL only, for scenarios that stop the server."""
    url = pg_server.create_database("database_down")
    migrate_database(url)
    app = make_app(url)
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


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


@pytest.fixture
def api(client, agent: StaffUser) -> ApiClient:  # type: ignore[no-untyped-def]
    """Logged in as the agent."""
    return ApiClient(client, login_tokens(client, agent.email, "agent-password-1")["access_token"])


@pytest.fixture
def admin_api(client, admin: StaffUser) -> ApiClient:  # type: ignore[no-untyped-def]
    return ApiClient(client, login_tokens(client, admin.email, "admin-password-1")["access_token"])


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


@pytest.fixture
def portal(client, agent) -> Portal:  # type: ignore[no-untyped-def]
    session = Portal(client)
    assert session.login(agent.email, "agent-password-1").status_code == 302
    return session


@pytest.fixture
def admin_portal(client, admin) -> Portal:  # type: ignore[no-untyped-def]
    session = Portal(client)
    assert session.login(admin.email, "admin-password-1").status_code == 302
    return session
