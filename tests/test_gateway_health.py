"""`python gateway.py --check` against a real gateway process, a real Dovecot and
both databases: healthy while it works, and a failing line for each part that
does not (docs/operations.md)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import time_machine
from sqlalchemy import text

from helpdesk.clock import now
from helpdesk.extensions import db
from helpdesk.models import ImapMailboxState
from helpdesk.services import TicketsService
from helpdesk.services.senders import SendersService
from mailgateway.health import TIMEOUT, check
from tests.support.app import make_app
from tests.support.database import open_ticket
from tests.support.gateway_process import ROOT, SECRETS, refused_start, start
from tests.support.hung_database import HungDatabase
from tests.support.outbox import outbox_row
from tests.support.pgserver import free_port
from tests.support.revision import NEWER, head_and_previous, stamped
from tests.support.waiting import wait_until


def _check(env: dict[str, str], timeout: float = 60) -> tuple[int, list[str]]:
    done = subprocess.run(
        [sys.executable, "gateway.py", "--check"],
        cwd=ROOT,
        env={**os.environ, **SECRETS, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return done.returncode, done.stdout.splitlines()


def _environment(database_url: str, port: int, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "SMTP_LISTEN": f"127.0.0.1:{port}",
        "HELPDESK_INSTANCE_DIR": str(tmp_path / "instance"),
        "SUPPORT_ADDRESSES": "support@helpdesk.test",
        **extra,
    }


def test_a_working_gateway_is_healthy_and_a_stopped_one_is_not(app, database_url, mailbox, tmp_path):
    SendersService(db.session).add("@example.com", "Example Ltd")
    db.session.commit()
    db.session.remove()
    port = free_port()
    imap = mailbox.gateway_settings(OUTBOUND_SMTP_URL="")
    env = _environment(database_url, port, tmp_path, **imap)
    code, lines = _check(env)
    assert code == 1
    assert any(line.startswith("FAIL smtp listener") for line in lines), lines
    assert any(line.startswith("FAIL mailbox") and "never polled" in line for line in lines), lines
    process = start(database_url, port, tmp_path, **imap)
    try:
        code, lines = wait_until(
            lambda: (answer := _check(env))[0] == 0 and answer, timeout=60, what="a healthy check"
        )
        assert [line.split(" ")[0:4] for line in lines] == [
            ["ok", "", "", "database:"],
            ["ok", "", "", "smtp"],
            ["ok", "", "", "mailbox"],
            ["ok", "", "", "outbox:"],
        ], lines
        assert f":{process.pid}:" in lines[2], "the mailbox line names the gateway holding it"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    code, lines = _check(env)
    assert code == 1 and "FAIL smtp listener" in "\n".join(lines)


def test_a_backed_up_outbox_fails_the_check(app, database_url, tmp_path):
    db.session.add(outbox_row("pending", timedelta(hours=2)))
    db.session.commit()
    db.session.remove()
    code, lines = _check(_environment(database_url, free_port(), tmp_path))
    assert code == 1
    assert [line for line in lines if line.startswith("FAIL outbox")], lines
    assert "1 pending" in "\n".join(lines)


def test_an_unreachable_database_fails_the_check_in_one_line(tmp_path):
    code, lines = _check(_environment("postgresql://helpdesk@127.0.0.1:1/none", free_port(), tmp_path))
    assert code == 1
    assert lines[0].startswith("FAIL database: ") and "FAIL smtp listener" in lines[1], lines
    assert len(lines) == 2


@pytest.mark.parametrize("logs_in", [False, True], ids=["server-paused", "pgbouncer-waiting"])
def test_a_hung_database_fails_the_check_within_its_timeout(tmp_path, logs_in):
    """A database that takes the connection and never answers (every PostgreSQL
    process stopped), or logs the client in and holds its queries (PgBouncer while
    PostgreSQL is down, for two minutes), kept `--check` silent: nothing printed
    after 45 s. It answers within its timeout, with the listener's line."""
    with HungDatabase(logs_in=logs_in) as database:
        started = time.monotonic()
        code, lines = _check(_environment(database.url, free_port(), tmp_path), timeout=40)
        took = time.monotonic() - started
    assert code == 1
    assert lines[0] in (
        f"FAIL database: no answer within {TIMEOUT:g} s",
        "FAIL database: timeout expired",  # libpq's connect_timeout, as long
    ), lines
    assert lines[1].startswith("FAIL smtp listener"), lines
    assert len(lines) == 2, lines
    assert took < TIMEOUT + 15, "the check's own deadline, plus starting Python and the app"


def test_a_host_whose_clock_is_off_judges_the_gateway_by_the_databases_clock(pg_app):
    """`--check` on a host whose clock runs a minute ahead of the database's, about a
    gateway on another host: its mailbox was polled 90 s ago and its outbox holds a
    mail queued 90 s ago, both within the two minutes allowed. Judged by this host's
    clock both looked 150 s old: stuck and backed up. By the database's clock, which
    every host reads alike, they are healthy; and a mailbox really stuck still is,
    on a host whose clock runs behind. (SQLite serves one host, with one clock.)"""
    key = "support@imap.example:143/INBOX"
    pg_app.config.update(
        IMAP_URL="imap://support:secret@imap.example:143/INBOX,imap://stuck:secret@imap.example:143/INBOX",
        IMAP_STUCK_AFTER=timedelta(minutes=2),
        OUTBOX_BACKLOG_AFTER=timedelta(minutes=2),
    )
    db.session.add_all(
        [
            ImapMailboxState(
                key=key,
                last_uid=0,
                last_error="",
                owner="other-host:4242:0a1b2c3d",
                last_success_at=now() - timedelta(seconds=90),
            ),
            ImapMailboxState(
                key="stuck@imap.example:143/INBOX",
                last_uid=0,
                last_error="OSError: refused",
                last_success_at=now() - timedelta(minutes=3),
            ),
            outbox_row("pending", timedelta(seconds=90)),
        ]
    )
    db.session.commit()

    def verdicts(skew: timedelta) -> dict[str, bool]:
        with time_machine.travel(datetime.now(timezone.utc) + skew, tick=True):
            findings = check(pg_app)
        return {finding.part: finding.healthy for finding in findings if finding.part != "smtp listener"}

    assert verdicts(timedelta(minutes=1)) == {
        "database": True,
        f"mailbox {key}": True,
        "mailbox stuck@imap.example:143/INBOX": False,
        "outbox": True,
    }
    assert verdicts(timedelta(minutes=-2))["mailbox stuck@imap.example:143/INBOX"] is False


def test_mail_queued_on_a_host_whose_clock_runs_behind_is_not_taken_for_a_backlog(pg_app):
    """A mail just queued on a host whose clock runs 11 minutes behind the database's
    was stamped as 11 minutes old, and `--check` (and the Mail page, by the same
    `mail_flow`) judged the outbox backed up at once. Outbox rows are stamped by the
    database's clock, which judges them. (SQLite serves one host, with one clock.)"""
    pg_app.config.update(OUTBOX_BACKLOG_AFTER=timedelta(minutes=2))
    service = TicketsService.from_config(db.session, pg_app.config)
    with time_machine.travel(datetime.now(timezone.utc) - timedelta(minutes=11), tick=True):
        open_ticket(service)
    (outbox,) = [finding for finding in check(pg_app) if finding.part == "outbox"]
    assert outbox.healthy, outbox.detail
    assert outbox.detail.startswith("1 pending")


def test_a_check_waiting_on_a_lock_is_ended_by_the_database(pg_app):
    """A migration holding the outbox table: the check's query waits on the lock.
    The check fails after its timeout, and the database ends the query then too
    (a statement timeout for the check's transaction only, as PgBouncer allows),
    so no query of it stays queued behind the migration."""
    with db.engine.connect() as migration:
        migration.execute(text("LOCK TABLE outbox IN ACCESS EXCLUSIVE MODE"))
        findings = check(pg_app, timeout=1.0)
        assert findings[0].part == "database" and not findings[0].healthy, findings
        wait_until(
            lambda: not any(thread.name == "health-database" for thread in threading.enumerate()),
            timeout=10,
            what="the check's database thread to end",
        )
        migration.rollback()
    assert [finding.healthy for finding in check(pg_app) if finding.part != "smtp listener"] == [True, True]
    assert db.session.execute(text("SHOW statement_timeout")).scalar() == "0"


def test_a_gateway_refuses_to_start_on_a_schema_behind_its_code(app, database_url, tmp_path):
    """`flask db upgrade` not run after an upgrade of the code (docs/operations.md,
    "Upgrades and the schema revision"): the gateway started and answered every mail
    451 for ever, or 250 and quarantined it, and `--check` found nothing wrong (or a
    missing column, by chance). It refuses to start, in one line naming both
    revisions and the command; `--check` fails its database line the same way."""
    head, previous = head_and_previous()
    with stamped(previous):
        db.session.remove()
        complaint = refused_start(
            tmp_path, DATABASE_URL=database_url, SUPPORT_ADDRESSES="support@helpdesk.test"
        )
        findings = check(app, timeout=TIMEOUT)
    assert complaint.count("\n") == 1, complaint  # one line, no traceback
    assert complaint.startswith("gateway: ") and "flask --app wsgi db upgrade" in complaint
    assert f"at revision {previous}, this code needs {head}" in complaint
    database = findings[0]
    assert (database.part, database.healthy) == ("database", False), findings
    assert f"{previous}, this code needs {head}" in database.detail
    assert [finding.part for finding in findings] == ["database", "smtp listener"], findings


def test_a_gateway_starts_on_a_schema_ahead_of_its_code_and_says_so(app, database_url, tmp_path):
    """A rolling deploy migrates for the new release while the old one still runs:
    a revision this code does not know is a newer release's, and the release before
    keeps working (docs/operations.md). A warning, no refusal; `--check` healthy."""
    head, _ = head_and_previous()
    log: list[str] = []
    with stamped(NEWER):
        db.session.remove()
        process = start(database_url, free_port(), tmp_path, log)
        try:
            findings = check(app, timeout=TIMEOUT)
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0
    assert any(f"at revision {NEWER}, newer than this code's {head}" in line for line in log), log
    database = findings[0]
    assert (database.part, database.healthy) == ("database", True), findings
    assert NEWER in database.detail


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_revision_table_the_role_may_not_read_is_not_a_database_never_migrated(app, database_url):
    """Migrations run as the tables' owner and the application as a role granted
    the tables it uses: any failure to read `alembic_version` was taken for a
    database never migrated, so on a database at its head the gateway refused to
    start ("run flask db upgrade", which had nothing to do) and the web's health
    answered 503. Only a missing table is never migrated; otherwise the revision is
    unknown, said as such, and nothing is refused (docs/operations.md)."""
    from sqlalchemy.engine import make_url

    from helpdesk import schema

    role = "helpdesk_no_revision"
    with db.engine.begin() as connection:
        connection.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD 'pw'"))
        connection.execute(text(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"))
        connection.execute(text(f"REVOKE SELECT ON alembic_version FROM {role}"))
    restricted = make_app(make_url(database_url).set(username=role, password="pw").render_as_string(False))
    try:
        with restricted.app_context():
            schema.refuse_when_behind(restricted)  # no ConfigurationError: the gateway starts
            revisions = schema.read(restricted, db.session)
            assert (revisions.behind, revisions.ahead, revisions.state) == (False, False, "unknown")
            assert "permission denied for table alembic_version" in revisions.describe()
            health = restricted.test_client().get("/api/v1/health")
            assert health.status_code == 200, health.get_json()
            assert health.get_json() == {"status": "ok", "database": "ok", "schema": "unknown"}
            db.session.remove()
        database = check(restricted, timeout=TIMEOUT)[0]
        assert (database.part, database.healthy) == ("database", True), database
        assert "could not be read (permission denied" in database.detail
    finally:
        with restricted.app_context():
            db.engine.dispose()
        with db.engine.begin() as connection:
            connection.execute(text(f"DROP OWNED BY {role}"))
            connection.execute(text(f"DROP ROLE {role}"))


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_locked_revision_table_holds_neither_the_gateways_start_nor_the_health_answer(
    app, database_url, monkeypatch
):
    """Another session holding `alembic_version` (`VACUUM FULL`, `LOCK TABLE`, a
    migration altering it): the gateway's start and every web health probe waited
    as long as the lock, where before the revision check they read no table (a
    probe is a worker held, a start a gateway not listening). The read waits
    `schema.LOCK_WAIT_SECONDS`; then the revision is unknown, and nothing is
    refused (docs/operations.md, "Upgrades and the schema revision")."""
    from helpdesk import schema

    monkeypatch.setattr(schema, "LOCK_WAIT_SECONDS", 0.2, raising=False)
    answers: list[tuple[int, object]] = []
    findings = []

    def start_then_probe() -> None:
        schema.refuse_when_behind(app)
        health = app.test_client().get("/api/v1/health")
        answers.append((health.status_code, health.get_json()))
        findings.extend(check(app, timeout=TIMEOUT))

    with db.engine.connect() as holder:
        holder.execute(text("LOCK TABLE alembic_version IN ACCESS EXCLUSIVE MODE"))
        waiting = threading.Thread(target=start_then_probe, daemon=True)
        waiting.start()
        waiting.join(timeout=10)
        held = waiting.is_alive()
        holder.rollback()
    waiting.join(timeout=10)
    assert not held, "the start and the health probe wait as long as the lock"
    assert answers == [(200, {"status": "ok", "database": "ok", "schema": "unknown"})]
    database = findings[0]
    assert database.healthy, database
    assert "could not be read (canceling statement due to lock timeout" in database.detail


def test_a_database_that_logs_in_and_never_answers_holds_the_gateways_start_no_longer_than_its_deadline(
    monkeypatch, caplog
):
    """PgBouncer holding the query while PostgreSQL is down (its `query_wait_timeout`,
    two minutes by default, for ever when 0), or a server that hangs after the login:
    the start's read of the schema revision waited as long, the gateway not listening
    (found by review). The read has `schema.READ_SECONDS`; then the start says so and
    goes on, as on a database it cannot reach (docs/operations.md, "Upgrades and the
    schema revision")."""
    from helpdesk import schema

    monkeypatch.setattr(schema, "READ_SECONDS", 0.5, raising=False)
    with HungDatabase(logs_in=True) as database:
        hung = make_app(database.url)
        starting = threading.Thread(target=schema.refuse_when_behind, args=(hung,), daemon=True)
        began = time.monotonic()
        starting.start()
        starting.join(timeout=10)
        assert not starting.is_alive(), "the start waits as long as the database"
        assert time.monotonic() - began < 5
    assert "the schema revision was not read within 0.5 s" in caplog.text, caplog.text
    assert "starting anyway" in caplog.text


def test_a_start_that_stopped_waiting_for_the_revision_leaves_no_read_on_the_server(
    pg_app, monkeypatch, caplog
):
    """The start goes on after `schema.READ_SECONDS`; its read, still waiting on the
    server (here on a lock held longer than that, `LOCK_WAIT_SECONDS` raised for it),
    is ended by the database at the same bound, its statement timeout for that
    transaction only: no query of a gateway that started stays queued."""
    from helpdesk import schema

    monkeypatch.setattr(schema, "LOCK_WAIT_SECONDS", 60.0, raising=False)
    monkeypatch.setattr(schema, "READ_SECONDS", 0.5, raising=False)
    db.session.rollback()
    with db.engine.connect() as holder:
        holder.execute(text("LOCK TABLE alembic_version IN ACCESS EXCLUSIVE MODE"))
        starting = threading.Thread(target=schema.refuse_when_behind, args=(pg_app,), daemon=True)
        starting.start()
        starting.join(timeout=10)
        held = starting.is_alive()
        wait_until(
            lambda: not any(thread.name == "schema-revision" for thread in threading.enumerate()),
            timeout=10,
            what="the database to end the start's read",
        )
        holder.rollback()
    starting.join(timeout=10)
    assert not held, "the start waits as long as the lock"
    assert "the schema revision was not read within 0.5 s" in caplog.text, caplog.text
