"""`python gateway.py --check`: is this host's gateway getting its work done?

For a monitor or a load balancer's health probe (exit status 0 healthy, 1 not) and
for the operator (one line per part). It asks from outside, as a client would: the
database answers a query; the SMTP listener answers a connection with its `220`
banner; each configured mailbox had a successful poll within `IMAP_STUCK_AFTER`,
by this host or whichever gateway holds its lease; the outbox has not backed up
(`OUTBOX_BACKLOG_AFTER`). Those times are judged by the database's clock
(`clock.database_now`), not this host's: a host whose clock runs ahead found a
healthy gateway on another host stuck. Mail that failed for good is counted, not
judged: it stays failed until someone looks, and a probe must not fail for it
forever. See docs/operations.md.
"""

from __future__ import annotations

import smtplib
from dataclasses import dataclass
from datetime import datetime

from flask import Flask
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from helpdesk.clock import database_now
from helpdesk.extensions import db
from helpdesk.models import ImapMailboxState
from helpdesk.services.mailflow import mail_flow
from mailgateway.imap import parse_imap_urls

CONNECT_TIMEOUT = 5.0


@dataclass(frozen=True)
class Finding:
    part: str
    healthy: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.healthy else 'FAIL'} {self.part}: {self.detail}"


def check(app: Flask) -> list[Finding]:
    findings = [_listener(app)]
    with app.app_context():
        try:
            db.session.execute(text("SELECT 1"))
        except DBAPIError as exc:
            return [Finding("database", False, str(exc.orig or exc).strip().splitlines()[0]), *findings]
        findings.insert(0, Finding("database", True, "answers"))
        moment = database_now(db.session)
        findings.extend(_mailboxes(app, moment))
        findings.append(_outbox(app, moment))
        db.session.rollback()
    return findings


def _listener(app: Flask) -> Finding:
    listen = str(app.config["SMTP_LISTEN"])
    host, _, port = listen.rpartition(":")
    host = "127.0.0.1" if host in ("", "0.0.0.0", "::", "[::]") else host.strip("[]")
    try:
        with smtplib.SMTP(timeout=CONNECT_TIMEOUT) as client:
            code, banner = client.connect(host, int(port))
    except (OSError, smtplib.SMTPException) as exc:
        return Finding("smtp listener", False, f"{listen}: {exc}")
    if code != 220:
        return Finding("smtp listener", False, f"{listen} greets with {code}")
    return Finding("smtp listener", True, f"{listen} answers")


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
        if state.last_success_at < moment - stuck_after:
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
