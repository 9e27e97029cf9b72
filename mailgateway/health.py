"""`python gateway.py --check`: is this host's gateway getting its work done?

For a monitor or a load balancer's health probe (exit status 0 healthy, 1 not) and
for the operator (one line per part). It asks from outside, as a client would: the
database answers a query, at a schema revision not behind this code's; the SMTP
listener answers a connection with its `220` banner and none of its mails has been
stored for longer than `SMTP_TIMEOUT` (their ingest threads hang; read from the
listeners' files, `smtp_takings`); each configured mailbox had a
successful poll within `IMAP_STUCK_AFTER`, by this host or whichever gateway holds
its lease, and no mail of it has been in `ingest` for longer than `SMTP_TIMEOUT`
since (its poller wrote so: `imap.hung_taking`); the outbox has not backed up
(`OUTBOX_BACKLOG_AFTER`). Those times are
judged by the database's clock (`clock.database_now`), not this host's: a host
whose clock runs ahead found a healthy gateway on another host stuck. Mail that
failed for good is counted, not judged: it stays failed until someone looks, and
a probe must not fail for it forever.

Every part answers within `TIMEOUT` or fails; without a deadline a database that
hangs (its server paused, PgBouncer holding queries while PostgreSQL is down)
keeps the check from printing anything for minutes. The database's part runs in
a thread of its own, beside the listener's, and is left behind when it does not
answer in time. See docs/operations.md.
"""

from __future__ import annotations

import smtplib
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from flask import Flask
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from helpdesk import schema
from helpdesk.clock import database_now
from helpdesk.extensions import db
from helpdesk.models import ImapMailboxState
from helpdesk.services.mailflow import mail_flow
from mailgateway.imap import hung_taking, parse_imap_urls
from mailgateway.smtp_takings import storing_for, takings_directory

#: Seconds each part (the database's queries together) has to answer.
TIMEOUT = 5.0


@dataclass(frozen=True)
class Finding:
    part: str
    healthy: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.healthy else 'FAIL'} {self.part}: {self.detail}"


def check(app: Flask, timeout: float = TIMEOUT) -> list[Finding]:
    answer: list[list[Finding]] = []
    database = threading.Thread(
        target=lambda: answer.append(_database(app, timeout)), name="health-database", daemon=True
    )
    deadline = time.monotonic() + timeout
    database.start()
    listener = _listener(app)
    database.join(max(0.0, deadline - time.monotonic()))
    if not answer:
        # A thread that ended without an answer raised; its traceback is on stderr.
        detail = f"no answer within {timeout:g} s" if database.is_alive() else "the check failed"
        return [Finding("database", False, detail), listener]
    [first, *rest] = answer[0]
    return [first, listener, *rest]


def _database(app: Flask, timeout: float) -> list[Finding]:
    """The database line, then (when it answers) the mailboxes' and the outbox's."""
    with app.app_context():
        # A new connection that gets no answer fails within TIMEOUT: libpq's
        # connect_timeout, set for every engine (helpdesk.database.CONNECTION_OPTIONS).
        engine = db.engine

        def bounded() -> None:
            if engine.dialect.name == "postgresql":
                # Ends the check's queries on the server when they wait on a lock
                # (a migration's). Local to the transaction, so it works through
                # PgBouncer, which drops options given at connection.
                db.session.execute(
                    text("SELECT set_config('statement_timeout', :ms, true)"),
                    {"ms": str(int(timeout * 1000))},
                )

        try:
            bounded()
            # The round trip reads the schema's revision: behind the code, the other
            # parts' queries may fail on what it lacks, and the gateway would not start.
            revisions = schema.read(app, db.session)
            if revisions.behind:
                return [Finding("database", False, revisions.describe())]
            if revisions.unreadable:
                bounded()  # the failed read rolled the transaction back, its bound too
            moment = database_now(db.session)
            return [
                Finding("database", True, f"answers, {revisions.describe()}"),
                *_mailboxes(app, moment),
                _outbox(app, moment),
            ]
        except DBAPIError as exc:
            return [Finding("database", False, str(exc.orig or exc).strip().splitlines()[0])]
        finally:
            db.session.rollback()


def _listener(app: Flask) -> Finding:
    listen = str(app.config["SMTP_LISTEN"])
    host, _, port = listen.rpartition(":")
    host = "127.0.0.1" if host in ("", "0.0.0.0", "::", "[::]") else host.strip("[]")
    try:
        with smtplib.SMTP(timeout=TIMEOUT) as client:
            code, banner = client.connect(host, int(port))
    except (OSError, smtplib.SMTPException) as exc:
        return Finding("smtp listener", False, f"{listen}: {exc}")
    if code != 220:
        return Finding("smtp listener", False, f"{listen} greets with {code}")
    # A mail stored for longer than SMTP_TIMEOUT had its 451 already: its thread hangs
    # (on the database, or in the pipeline), holding one of its process's 8.
    deadline = app.config["SMTP_TIMEOUT"].total_seconds()
    ages = storing_for(takings_directory(app.instance_path, listen))
    hung = [age for age in ages if age > deadline]
    if hung:
        return Finding(
            "smtp listener",
            False,
            f"{listen} answers, but {len(hung)} of the {len(ages)} mail(s) being stored have been "
            f"for more than SMTP_TIMEOUT ({deadline:g} s), the longest {max(hung):.0f} s: "
            "their ingest threads hang",
        )
    return Finding("smtp listener", True, f"{listen} answers, {len(ages)} mail(s) being stored")


def _mailboxes(app: Flask, moment: datetime) -> list[Finding]:
    sources = parse_imap_urls(str(app.config["IMAP_URL"] or ""))
    stuck_after = app.config["IMAP_STUCK_AFTER"]
    states = {
        state.key: state
        for state in db.session.execute(
            select(ImapMailboxState).where(ImapMailboxState.key.in_([source.key for source in sources]))
        ).scalars()
    }
    findings = []
    for source in sources:
        state = states.get(source.key)
        if state is None or state.last_success_at is None:
            findings.append(Finding(f"mailbox {source.key}", False, "never polled successfully"))
            continue
        ago = int((moment - state.last_success_at).total_seconds())
        holder = f" by {state.owner}" if state.owner else ""
        detail = f"last good poll {ago} s ago{holder}"
        if hung := hung_taking(state):
            findings.append(Finding(f"mailbox {source.key}", False, f"{hung}; {detail}"))
        elif state.last_success_at < moment - stuck_after:
            findings.append(Finding(f"mailbox {source.key}", False, f"stuck: {detail}; {state.last_error}"))
        else:
            findings.append(Finding(f"mailbox {source.key}", True, detail))
    return findings


def _outbox(app: Flask, moment: datetime) -> Finding:
    flow = mail_flow(
        db.session,
        stuck_after=app.config["IMAP_STUCK_AFTER"],
        backlog_after=app.config["OUTBOX_BACKLOG_AFTER"],
        moment=moment,
    )
    detail = f"{flow.outbox['pending']} pending, {flow.outbox['failed']} failed"
    if flow.outbox_backed_up:
        return Finding("outbox", False, f"backed up since {flow.oldest_pending_at:%Y-%m-%d %H:%M}: {detail}")
    return Finding("outbox", True, detail)
