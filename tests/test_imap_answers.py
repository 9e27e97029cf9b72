"""The IMAP poller against answers a real Dovecot never gives (tests/support/scriptedimap.py):
a FETCH answer that leaves a message out, a FETCH that hangs or resets the connection,
a MOVE refused for one message, a message longer than the size announced for it.

What must hold whatever the server answers (docs/mail-gateway.md, "The IMAP poller"):
no message still in the mailbox is passed unless its outcome was committed, or it
was quarantined, or it was filed with a log line; one bad message holds back the
mail after it for its bounded attempts only; memory stays within MAX_MESSAGE_BYTES.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from email.policy import SMTP as SMTP_POLICY

import pytest
from flask import Flask
from sqlalchemy import func, select

from helpdesk.extensions import db
from helpdesk.models import ImapMailboxState, InboundMail, QuarantineItem
from mailgateway import imap
from mailgateway.imap import ImapPoller, parse_imap_urls
from tests.support.database import tickets
from tests.support.mail import message
from tests.support.scriptedimap import ScriptedImap, Session

REFUSED = b" NO [SERVERBUG] Internal error occurred.\r\n"


@pytest.fixture
def scripted() -> Iterator[Callable[..., ScriptedImap]]:
    servers: list[ScriptedImap] = []

    def start(messages: list[bytes], **script: object) -> ScriptedImap:
        servers.append(ScriptedImap(messages, **script))  # type: ignore[arg-type]
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def raw(i: int, body: str = "") -> bytes:
    return message(
        subject=f"Mail {i}", body=body or f"Body {i}", message_id=f"<scripted-{i}@client.example>"
    ).as_bytes(policy=SMTP_POLICY)


def poller_for(app: Flask, server: ScriptedImap, **config: object) -> ImapPoller:
    app.config.update(
        {
            "IMAP_PROCESSED_FOLDER": "Processed",
            "IMAP_FAILED_FOLDER": "Failed",
            "IMAP_POLL_SECONDS": 1,
            **config,
        }
    )
    (source,) = parse_imap_urls(server.url())
    return ImapPoller(app, source, threading.Event(), max_backoff=0.5)


def passes(poller: ImapPoller, count: int) -> list[Exception]:
    """`count` passes, each on a connection of its own, as the poller's loop makes
    them after an error (without its backoff); the errors it would note and retry."""
    errors: list[Exception] = []
    for _ in range(count):
        db.session.rollback()  # hold no SQLite lock while the poller writes
        assert poller.claim()
        try:
            with poller.connect() as client:
                poller.prepare(client)
                poller.drain(client)
        except poller.failed_quietly as exc:
            errors.append(exc)
        finally:
            poller.release()
    db.session.expire_all()
    return errors


def last_uid() -> int:
    return db.session.execute(select(ImapMailboxState.last_uid)).scalar_one()


def answered_without(session: Session, tag: bytes, uids: list[int], items: str, left_out: int) -> None:
    session.send(session.fetched([uid for uid in uids if uid != left_out], items) + tag + b" OK done\r\n")


@pytest.mark.parametrize("times", [1, 99])
def test_a_message_a_fetch_answer_leaves_out_is_taken_later_or_filed_never_passed(
    app, senders, scripted, caplog, times
):
    """The server answers a FETCH of UIDs 1-3 with OK but no UID 2, still in the
    mailbox. It was taken as expunged by another client: the poller went past it,
    and it was never taken nor logged."""
    left_out: list[list[int]] = []

    def fetch(session: Session, tag: bytes, uids: list[int], items: str) -> bool:
        if "BODY" not in items or 2 not in uids or len(left_out) >= times:
            return False
        left_out.append(uids)
        answered_without(session, tag, uids, items, 2)
        return True

    server = scripted([raw(1), raw(2), raw(3)], fetch=fetch)
    caplog.set_level(logging.WARNING, "mailgateway.imap")
    passes(poller_for(app, server), 4)
    assert server.messages == {} and last_uid() == 2  # UID 3 was moved out before it
    assert "UID 2" in caplog.text and "left out" in caplog.text
    if times == 1:
        assert server.folders == {"Processed": [1, 3, 2]} and len(tickets()) == 3
        assert db.session.execute(select(func.count(QuarantineItem.id))).scalar_one() == 0
    else:
        assert left_out == [[1, 2, 3], [2]]  # FETCH_ATTEMPTS, the second time alone
        assert server.folders == {"Processed": [1, 3], "Failed": [2]} and len(tickets()) == 2
        item = db.session.execute(select(QuarantineItem)).scalar_one()
        assert "UID 2" in item.reason and "left it out" in item.reason


def test_a_message_the_size_answer_leaves_out_is_filed_after_its_attempts(app, senders, scripted):
    """The server lists UID 3 but leaves it out of every RFC822.SIZE answer. The pass
    had no batch for it and searched again at once, without end: a hundred SEARCHes a
    second, and UID 3 never taken."""

    def fetch(session: Session, tag: bytes, uids: list[int], items: str) -> bool:
        if "RFC822.SIZE" not in items:
            return False
        if sum("RFC822.SIZE" in command for command in server.commands) > 10:
            poller.stopping.set()  # the old poller asked without end
        answered_without(session, tag, uids, items, 3)
        return True

    server = scripted([raw(1), raw(2), raw(3)], fetch=fetch)
    poller = poller_for(app, server)
    passes(poller, 4)
    assert not poller.stopping.is_set()
    assert server.folders == {"Processed": [1, 2], "Failed": [3]} and server.messages == {}
    assert sum("RFC822.SIZE" in command for command in server.commands) == 2
    assert "left it out" in db.session.execute(select(QuarantineItem.reason)).scalar_one()


def test_a_server_listing_a_message_it_then_calls_gone_is_not_searched_without_end(app, senders, scripted):
    """The server lists a UID 3 in the mailbox's SEARCH that it has not: no size for
    it, and a SEARCH of UID 3 alone finds nothing. The pass searched again at once
    without end, as for a size left out."""

    def search(session: Session, tag: bytes, found: list[int], criteria: str) -> bool:
        if criteria == "UID 3":
            return False  # the honest answer: no UID 3
        if sum("SEARCH" in command for command in server.commands) > 10:
            poller.stopping.set()  # the old poller searched without end
        session.send(
            b"* SEARCH " + b" ".join(b"%d" % uid for uid in [*found, 3]) + b"\r\n" + tag + b" OK done\r\n"
        )
        return True

    server = scripted([raw(1), raw(2)], search=search)
    poller = poller_for(app, server)
    assert passes(poller, 1) == []
    assert not poller.stopping.is_set() and sum("SEARCH" in command for command in server.commands) == 4
    assert server.folders == {"Processed": [1, 2]} and last_uid() == 2


@pytest.mark.parametrize("how", ["hang", "reset"])
def test_a_message_whose_fetch_hangs_or_resets_the_connection_is_filed_and_the_rest_goes_on(
    app, senders, scripted, monkeypatch, how
):
    """A FETCH of UID 2 never answered (the socket's timeout ends it) or answered by a
    TCP reset. Only the server's error words were counted against a message: these
    reconnected and fetched the same batch again on every pass, and nothing was ever
    taken. Only the connection fails, as a server restart would make it fail once:
    the message is filed at FETCH_DROPS such failures, not at FETCH_ATTEMPTS."""

    def fetch(session: Session, tag: bytes, uids: list[int], items: str) -> bool:
        if "BODY" not in items or 2 not in uids:
            return False
        if how == "reset":
            session.reset()
        return True  # unanswered

    monkeypatch.setattr(imap, "SOCKET_TIMEOUT", 0.3)
    server = scripted([raw(1), raw(2), raw(3)], fetch=fetch)
    errors = passes(poller_for(app, server), imap.FETCH_DROPS + 3)
    assert len(errors) == 1 + imap.FETCH_DROPS  # the batch's fetch, then each of UID 2 alone
    assert server.folders == {"Processed": [1, 3], "Failed": [2]} and server.messages == {}
    assert len(tickets()) == 2 and last_uid() == 3
    item = db.session.execute(select(QuarantineItem)).scalar_one()
    assert "UID 2" in item.reason


def test_a_message_the_server_will_not_move_does_not_hold_back_the_mail_after_it(
    app, senders, scripted, monkeypatch, caplog
):
    """The server takes every command but a MOVE of UID 2. The batch's move failed
    before the poller went past any of it: each pass ingested that batch again (as
    duplicates) and no later batch was ever taken."""

    def move(session: Session, tag: bytes, uids: list[int], folder: str) -> bool:
        if 2 in uids:
            session.send(tag + REFUSED)
            return True
        return False

    monkeypatch.setattr(imap, "BATCH_MESSAGES", 2)
    server = scripted([raw(i) for i in range(1, 6)], move=move)
    caplog.set_level(logging.WARNING, "mailgateway.imap")
    errors = passes(poller_for(app, server), 3)
    assert len(errors) == 1  # once more after a backoff, then passed
    assert server.folders == {"Processed": [1, 3, 4, 5]} and list(server.messages) == [2]
    assert len(tickets()) == 5 and last_uid() == 5
    assert "UID 2" in caplog.text and "stays in the mailbox" in caplog.text
    assert db.session.execute(select(func.count(InboundMail.id))).scalar_one() == 5


def test_a_message_that_can_be_neither_fetched_nor_moved_is_never_said_filed(app, senders, scripted, caplog):
    """FETCH and MOVE of UID 2 both refused (a store that must read a message to copy
    it): it was logged "filed in Failed" before its move failed, and given up on again
    on every pass while the mail after it waited."""

    def refuse(session: Session, tag: bytes, uids: list[int], items: str) -> bool:
        if 2 not in uids or "RFC822.SIZE" in items:
            return False
        session.send(tag + REFUSED)
        return True

    server = scripted([raw(1), raw(2), raw(3)], fetch=refuse, move=refuse)
    caplog.set_level(logging.INFO, "mailgateway.imap")
    passes(poller_for(app, server), 6)
    assert server.folders == {"Processed": [1, 3]} and list(server.messages) == [2]
    assert "filed in" not in caplog.text
    assert "UID 2" in caplog.text and "stays in the mailbox" in caplog.text
    # What the quarantine shows said "filed in the failed folder" of a mail the server kept.
    item = db.session.execute(select(QuarantineItem)).scalar_one()
    for reason in (item.reason, item.inbound_mail.reason):
        assert reason.startswith("could not be fetched") and "filed in" not in reason
        assert "refused to move it to the failed folder, so it stays in the mailbox" in reason
    assert len(tickets()) == 2 and last_uid() == 3


@pytest.mark.parametrize("partial", [True, False])
def test_a_message_longer_than_its_announced_size_is_bounded_by_max_message_bytes(
    app, senders, scripted, partial
):
    """The server announces 300 bytes and has 200 KB (MAX_MESSAGE_BYTES 4000). The
    poller checked the announced size and read, stored and ingested the whole mail
    (40 MB under a 1 MB cap in the review). It asks for MAX_MESSAGE_BYTES + 1 bytes
    now: a server that sends that much has a mail too big; one that sends more than
    it was asked for (`partial=False`) is not read at all."""
    big = raw(1, "x" * 200_000)

    def fetch(session: Session, tag: bytes, uids: list[int], items: str) -> bool:
        if "RFC822.SIZE" in items:
            session.send(b"* 1 FETCH (UID 1 RFC822.SIZE 300)\r\n" + tag + b" OK done\r\n")
        else:
            session.send(session.fetched(uids, items, partial=partial) + tag + b" OK done\r\n")
        return True

    server = scripted([big], fetch=fetch)
    passes(poller_for(app, server, MAX_MESSAGE_BYTES=4000), 3)
    assert server.folders == {"Failed": [1]} and tickets() == []
    if partial:
        record = db.session.execute(select(InboundMail)).scalar_one()
        assert record.outcome == "rejected" and record.size > 4000 and "larger than" in record.reason
        assert b"Subject: Mail 1" in record.raw and b"xxxx" not in record.raw
    else:
        item = db.session.execute(select(QuarantineItem)).scalar_one()
        assert "UID 1" in item.reason and "where at most 4001 were asked for" in item.reason
        assert all(len(raw) <= 4001 for raw in db.session.execute(select(InboundMail.raw)).scalars())
