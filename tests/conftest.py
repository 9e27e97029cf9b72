"""Fixtures: every database test runs on SQLite and on a real PostgreSQL server.

The PostgreSQL server is started here on a free loopback port and stopped at the
end, even on failure. A missing server is a failure, never a skip (`make test`
installs it). The schema is built once per backend with the real migrations; each
test then gets a fresh copy (SQLite) or a truncated database (PostgreSQL).
Under pytest-xdist (`make test` runs two workers) each worker is a session of its
own, with servers and schemas of its own on ports it picks itself.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import pytest
import time_machine
from flask import Flask
from sqlalchemy import Engine, create_engine, text

from config import normalize_database_url
from helpdesk.extensions import db
from helpdesk.models import StaffUser
from helpdesk.services import Actor, TicketsService
from helpdesk.services.senders import SendersService
from helpdesk.services.staff import StaffService
from helpdesk.services.teams import TeamsService
from tests.support.app import (
    CLOCK_START,
    ApiClient,
    Portal,
    login_tokens,
    make_app,
    migrate_database,
    reset_database,
)
from tests.support.dovecotserver import DovecotServer, DovecotUnavailable, TestMailbox
from tests.support.mail import Gateway, start_gateway
from tests.support.passwords import remembered
from tests.support.pgbouncer import PgBouncer, PgBouncerUnavailable
from tests.support.pgserver import PostgresServer, PostgresUnavailable
from tests.support.routes import shared
from tests.support.sink import Sink

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(scope="session", autouse=True)
def _password_hashes_remembered() -> Iterator[None]:
    """Each password is hashed and checked for real once a session
    (tests/support/passwords.py): scrypt's cost is the point in production and
    a fifth of the suite's time here."""
    with remembered():
        yield


@pytest.fixture(scope="session", autouse=True)
def _url_builders_shared() -> Iterator[None]:
    """Each route's URL builder is made once a session (tests/support/routes.py):
    most of the cost of building an app, which every test does."""
    with shared():
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # type: ignore[no-untyped-def]
    """Keep each phase's report on the test item, so a fixture's teardown can tell
    whether the test failed (the browser tests save a screenshot then)."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


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
def pgbouncer(pg_server: PostgresServer) -> Iterator[PgBouncer]:
    """PgBouncer in transaction mode before the test PostgreSQL; missing, a failure."""
    try:
        bouncer = PgBouncer(pg_server).start()
    except PgBouncerUnavailable as exc:
        pytest.fail(str(exc))
    try:
        yield bouncer
    finally:
        bouncer.stop()


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


@pytest.fixture
def mailbox(dovecot_server: DovecotServer) -> TestMailbox:
    """A fresh mailbox of its own on the private Dovecot."""
    return TestMailbox(dovecot_server, "t" + uuid.uuid4().hex[:12])


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def migrated(backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated database for the session: a template file (SQLite) or a URL. Emptied
    of the rows migrations seed (the default teams), so every test on either backend
    starts from the same empty database."""
    if backend == "sqlite":
        template = tmp_path_factory.mktemp("sqlite-template") / "template.db"
        migrate_database(f"sqlite:///{template}")
        app = make_app(f"sqlite:///{template}")
        with app.app_context():
            reset_database()
            db.engine.dispose()
        return str(template)
    server: PostgresServer = request.getfixturevalue("pg_server")
    url = server.create_database("helpdesk_test")
    migrate_database(url)
    _truncate(url)
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


def _truncate(url: str) -> None:
    """Empty what the test filled and restart every id at 1, as `TRUNCATE … RESTART
    IDENTITY` of every table would, at a small part of its cost: most tests fill a few
    of the tables with a few rows, and truncating a table replaces its files and makes
    every connection reload what it knew of it. Those are deleted instead (foreign keys
    unchecked, as truncating all of them at once needs none); a table grown past
    `_TRUNCATE_FROM` bytes (a search test's 20,000 tickets) is truncated, which leaves
    no dead rows behind for the next test to read past."""
    with _cleaner(url).begin() as connection:
        names = [table.name for table in db.metadata.sorted_tables]
        # Wait for any writer still open (a thread or process the test left behind),
        # as truncating every table did, so its rows are seen and go too.
        connection.execute(text(f"LOCK TABLE {', '.join(names)} IN SHARE MODE"))
        filled = connection.execute(
            text(
                " UNION ALL ".join(
                    f"SELECT '{name}', pg_total_relation_size('{name}') WHERE EXISTS (SELECT FROM {name})"
                    for name in names
                )
            )
        ).all()
        big = [name for name, size in filled if size > _TRUNCATE_FROM]
        if big:
            connection.execute(text(f"TRUNCATE {', '.join(big)} CASCADE"))
        connection.execute(text("SET LOCAL session_replication_role = replica"))  # no foreign key checks
        for name, size in filled:
            if size <= _TRUNCATE_FROM:
                connection.execute(text(f"DELETE FROM {name}"))
        connection.execute(text("SELECT setval(oid, 1, false) FROM pg_class WHERE relkind = 'S'"))
        connection.execute(text("INSERT INTO ticket_counter (id, next_value) VALUES (1, 1)"))


# A table this big after a test is truncated rather than emptied row by row (`_truncate`).
_TRUNCATE_FROM = 4 * 1024 * 1024


@lru_cache(maxsize=None)
def _cleaner(url: str) -> Engine:
    """One engine for the session's cleaning; pre-ping, since some tests restart the server."""
    return create_engine(normalize_database_url(url), pool_pre_ping=True)


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
def teams(app: Flask) -> TeamsService:
    """The teams and routes migration 0016 gives a new install (the test database is
    emptied of them, so tests that route tickets make them again)."""
    service = TeamsService(db.session)
    for name in ("support_team", "onboarding_team", "field_ops"):
        service.add(name)
    service.set_route("general_inquiry", "support_team")
    service.set_route("outage_report", "support_team")
    service.set_route("installation_request", "field_ops")
    db.session.commit()
    return service


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


@pytest.fixture
def api(client, agent: StaffUser) -> ApiClient:  # type: ignore[no-untyped-def]
    """Logged in as the agent."""
    return ApiClient(client, login_tokens(client, agent.email, "agent-password-1")["access_token"])


@pytest.fixture
def admin_api(client, admin: StaffUser) -> ApiClient:  # type: ignore[no-untyped-def]
    return ApiClient(client, login_tokens(client, admin.email, "admin-password-1")["access_token"])


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


@pytest.fixture
def sink() -> Iterator[Sink]:
    server = Sink().start()
    try:
        yield server
    finally:
        server.stop()
