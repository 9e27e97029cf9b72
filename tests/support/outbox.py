"""Delivering the outbox in tests: a sender pointed at the test's SMTP sink, run
round by round with the test's transaction closed, and the parts of what arrived."""

from __future__ import annotations

from datetime import datetime, timedelta
from email.message import EmailMessage

from flask import Flask

from helpdesk.clock import now
from helpdesk.extensions import db
from helpdesk.models import OutboxMessage
from mailgateway.outbound import Sender
from tests.support.sink import Sink


class Clock:
    """A clock the test moves, so backoff and leases need no sleeping."""

    def __init__(self) -> None:
        self.moment = now() + timedelta(seconds=1)

    def __call__(self) -> datetime:
        return self.moment

    def advance(self, **delta: float) -> None:
        self.moment += timedelta(**delta)


def make_sender(app: Flask, sink: Sink, clock: Clock | None = None, **config: object) -> Sender:
    """Without a `clock`, the sender's own: the database's, which stamped the rows (on
    PostgreSQL time-machine does not move it; SQLite's is the host's)."""
    app.config.update(OUTBOUND_SMTP_URL=sink.url, **config)
    return Sender(app, clock=clock)


def run(sender: Sender) -> int:
    """One claim-and-deliver round, with the test's own transaction closed first (on
    SQLite an open transaction holds the write lock the sender needs)."""
    db.session.rollback()
    claimed = sender.run_once()
    db.session.expire_all()
    return claimed


def deliver(app: Flask, sink: Sink, **config: object) -> list[EmailMessage]:
    """Run a sender until nothing is due; returns everything the sink has."""
    sender = make_sender(app, sink, **config)
    while run(sender):
        pass
    return sink.messages


def text_of(mail: EmailMessage) -> str:
    return mail.get_body(("plain",)).get_content().replace("\r\n", "\n")  # type: ignore[union-attr]


def html_of(mail: EmailMessage) -> str:
    return mail.get_body(("html",)).get_content().replace("\r\n", "\n")  # type: ignore[union-attr]


def outbox_row(state: str, age: timedelta) -> OutboxMessage:
    """A notification row queued `age` ago, in `state`, about no ticket."""
    moment = now() - age
    return OutboxMessage(
        kind="created",
        to_address="a@example.com",
        state=state,
        next_attempt_at=moment,
        created_at=moment,
        attempts=0,
        last_error="",
        cc_addresses="",
        status_reason="",
    )
