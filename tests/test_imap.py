"""The IMAP poller against a real Dovecot, on SQLite and PostgreSQL (docs/mail-gateway.md).

Every scenario where other helpdesks lose or duplicate mail at the IMAP step:
mail already read in another client, a crash between commit and move, a server
restart, a recreated mailbox (new UIDVALIDITY), the database going away mid-batch,
two gateways on one mailbox while a batch is held up.
"""

from __future__ import annotations

import logging
import os
import signal
import ssl
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from email.policy import SMTP as SMTP_POLICY
from functools import partial

import pytest
import time_machine
from flask import Flask
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError
from sqlalchemy import exc, func, select, text, update

from helpdesk.clock import now
from helpdesk.database import OutcomeUnknown
from helpdesk.extensions import db
from helpdesk.inbound import limits
from helpdesk.inbound.ingest import Envelope, Outcome, Result, TransientError
from helpdesk.inbound.parser import InboundMail as ParsedMail
from helpdesk.models import ImapMailboxState, InboundDuplicates, InboundMail, QuarantineItem, Ticket
from helpdesk.services.senders import SendersService
from mailgateway import database_waits, imap
from mailgateway.health import Finding, check
from mailgateway.imap import (
    ImapPoller,
    InvalidImapUrl,
    MailboxSource,
    envelope_from_headers,
    parse_imap_urls,
)
from mailgateway.takings import Takings
from tests.support.app import reset_database
from tests.support.corpus import CORPUS, SAMPLES, corpus, on_the_wire
from tests.support.database import refused_as_unreachable, refused_by_database, tickets
from tests.support.dovecotserver import ACCOUNTS, TestMailbox
from tests.support.dripping_imap import DrippingImap
from tests.support.gateway_process import refused_start, start
from tests.support.lost_commit import commit_answer_lost
from tests.support.mail import message, send, start_gateway
from tests.support.pgserver import free_port
from tests.support.waiting import wait_until as wait_until_any


def poller_for(app: Flask, mailbox: TestMailbox, url: str | None = None, **config: object) -> ImapPoller:
    app.config.update(
        {
            "IMAP_PROCESSED_FOLDER": mailbox.processed,
            "IMAP_FAILED_FOLDER": mailbox.failed,
            "IMAP_POLL_SECONDS": 2,
            **config,
        }
    )
    (source,) = parse_imap_urls(url or mailbox.url)
    return ImapPoller(app, source, threading.Event(), max_backoff=0.5)


class _Died(BaseException):
    """Stands for the gateway process dying while it takes a mail (the kernel's
    out-of-memory killer, a crash in C code, a restart after a hang): nothing in the
    poller catches it, and what the poller kept in memory dies with it."""


def drain(poller: ImapPoller) -> list[tuple[int, Result]]:
    """One connection, one pass over the mailbox, as the running poller does it
    (holding the mailbox's lease, given up at the end)."""
    db.session.rollback()  # hold no SQLite lock while the poller writes
    assert poller.claim(), "another poller holds the mailbox"
    try:
        with poller.connect() as client:
            poller.prepare(client)
            results = poller.drain(client)
    except _Died:  # a dead process gives nothing up; its lease runs out (here at once)
        db.session.execute(
            update(ImapMailboxState)
            .where(ImapMailboxState.key == poller.source.key)
            .values(lease_until=datetime(2000, 1, 1))
        )
        db.session.commit()
        raise
    except BaseException:
        poller.release()
        raise
    poller.release()
    db.session.expire_all()
    return results


@contextmanager
def running(poller: ImapPoller) -> Iterator[None]:
    """The poller's own loop in a thread, stopped (and joined) at the end."""
    db.session.rollback()
    thread = threading.Thread(target=poller.run, name="test-imap")
    thread.start()
    try:
        yield
    finally:
        poller.stopping.set()
        thread.join(timeout=30)
        assert not thread.is_alive(), "the poller did not stop"


# Every condition here reads the database: roll back after each poll, so the test never
# keeps SQLite's write lock while the poller needs it.
wait_until = partial(wait_until_any, between=db.session.rollback)


def inbound_count() -> int:
    return db.session.execute(select(func.count(InboundMail.id))).scalar_one()


def raw(i: int | str, prefix: str = "imap", sender: str = "ann@example.com") -> bytes:
    return message(
        sender=sender, subject=f"Mail {i}", body=f"Body {i}", message_id=f"<{prefix}-{i}@client.example>"
    ).as_bytes(policy=SMTP_POLICY)


def raw_many(count: int, prefix: str, sender: str) -> list[bytes]:
    """`raw(i, prefix, sender with {i})` for every i below `count`: one mail is built
    and the others are it with their number put in (the email package took 10 s to
    build 16,000)."""
    template = raw("NUMBER", prefix, sender.format(i="NUMBER"))
    return [template.replace(b"NUMBER", b"%d" % i) for i in range(count)]


def outcomes(results: list[tuple[int, Result]]) -> list[str]:
    return [result.outcome.value for _uid, result in results]


# -- configuration ---------------------------------------------------------------------


def test_imap_urls_are_read_with_their_options() -> None:
    first, second = parse_imap_urls(
        "imaps://help%40corp.example:p%40ss%2Cw0rd@mail.corp.example/Support%20Desk, "
        "imap://bot:secret@127.0.0.1:1143?starttls=true"
    )
    assert first == MailboxSource(
        "mail.corp.example", 993, "help@corp.example", "p@ss,w0rd", "Support Desk", tls=True, starttls=False
    )
    assert second == MailboxSource("127.0.0.1", 1143, "bot", "secret", "INBOX", tls=False, starttls=True)
    assert first.key == "help@corp.example@mail.corp.example:993/Support Desk"
    assert "p@ss" not in first.key
    assert parse_imap_urls("") == []


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("pop3://u:p@host/INBOX", "imap:// or imaps://"),
        ("imap://host/INBOX", "user:password@"),
        ("imap://u@host/INBOX", "user:password@"),
        ("imap://u:p@:143/INBOX", "no host"),
        ("imap://u:p@host:99999/INBOX", "invalid port"),
        ("imap://u:p@host/INBOX?tls=1", "unknown options"),
        ("imap://u:p@host/INBOX?starttls=maybe", "true or false"),
        ("imaps://u:p@host/INBOX?starttls=1", "already TLS"),
        ("imap://u:p@host/A imap://u:p@host/A", "twice"),
    ],
)
def test_bad_imap_urls_are_refused_with_a_reason(url: str, complaint: str) -> None:
    with pytest.raises(InvalidImapUrl, match=complaint):
        parse_imap_urls(url)


@pytest.mark.parametrize("setting", ["IMAP_PROCESSED_FOLDER", "IMAP_FAILED_FOLDER"])
def test_the_mailbox_cannot_be_its_own_processed_or_failed_folder_in_any_case(app, setting):
    """INBOX in any case is one mailbox: a processed folder `inbox` beside the source
    INBOX moved every mail back where it came from, and the check compared the names
    as written."""
    app.config.update(IMAP_PROCESSED_FOLDER="Processed", IMAP_FAILED_FOLDER="Failed")
    app.config[setting] = "inbox"
    source = MailboxSource("h", 143, "u", "p", "INBOX", tls=False, starttls=False)
    with pytest.raises(InvalidImapUrl, match="processed or failed folder"):
        ImapPoller(app, source, threading.Event(), max_backoff=0.5)


def test_inbox_is_one_mailbox_however_it_is_spelled(app, senders, dovecot_server):
    """IMAP names INBOX case-insensitively (RFC 3501 §5.1): `.../inbox` and
    `.../INBOX` were two keys, so `IMAP_URL` could name the mailbox twice and two
    pollers held two leases on it at once. Other names keep their case, and a
    dotless ı, which Python upper-cases to I, names another mailbox."""
    user = "inbox-case@helpdesk.test"
    urls = [dovecot_server.url(name, user=user) for name in ("INBOX", "inbox", "Inbox")]
    with pytest.raises(InvalidImapUrl, match="twice"):
        parse_imap_urls(f"{urls[0]} {urls[1]}")
    sources = [source for url in urls for source in parse_imap_urls(url)]
    assert {source.key for source in sources} == {f"{user}@127.0.0.1:{dovecot_server.port}/INBOX"}
    assert MailboxSource("h", 143, "u", "p", "iNbOx", tls=False, starttls=False).key == "u@h:143/INBOX"
    for other in ("Support", "\u0131nbox", "INBOX/Sub"):
        assert parse_imap_urls(dovecot_server.url(other, user=user))[0].key.endswith(f"/{other}")
    app.config.update(IMAP_PROCESSED_FOLDER="Processed", IMAP_FAILED_FOLDER="Failed")
    lower, title = (ImapPoller(app, source, threading.Event(), max_backoff=0.5) for source in sources[1:])
    with dovecot_server.client(user) as client:
        client.append("INBOX", raw(1, "inbox-case"))
    db.session.rollback()
    assert lower.claim()
    try:
        assert not title.claim(), "a second poller took the same mailbox"
        with lower.connect() as client:
            lower.prepare(client)
            assert outcomes(lower.drain(client)) == ["created"]
    finally:
        lower.release()
    db.session.expire_all()
    assert db.session.execute(select(ImapMailboxState.key)).scalars().all() == [sources[0].key]


def test_gateway_refuses_to_start_with_a_bad_imap_url(tmp_path) -> None:  # type: ignore[no-untyped-def]
    complaint = refused_start(tmp_path, IMAP_URL="imap://nobody@host/INBOX")
    assert "gateway: IMAP_URL needs user:password@" in complaint


def test_envelope_comes_from_the_delivering_servers_headers() -> None:
    envelope = envelope_from_headers(
        b"Return-Path: <Bounce@Example.com>\r\nDelivered-To: support+TKT-000004@helpdesk.test\r\n"
        b"X-Original-To: support@helpdesk.test\r\nSubject: x\r\n\r\n"
    )
    assert envelope.mail_from == "bounce@example.com"
    assert envelope.recipients == ("support+tkt-000004@helpdesk.test", "support@helpdesk.test")
    assert envelope.channel == "imap"
    assert envelope_from_headers(b"Return-Path: <>\r\n\r\n").mail_from == ""


@pytest.mark.parametrize("field", ["Return-Path", "Delivered-To", "X-Original-To", "Envelope-To"])
def test_a_delivery_field_of_nested_comments_gives_an_envelope(field: str) -> None:
    """The standard library's address reader recursed once per `(`: 1,000 of them in a
    delivery field raised RecursionError outside the pipeline's safety net."""
    head = field.encode() + b": " + b"(" * 1000 + b"support@helpdesk.test\r\nSubject: x\r\n\r\n"
    envelope = envelope_from_headers(head)
    assert set(envelope.recipients) <= {"support@helpdesk.test"}
    assert envelope.mail_from in ("", "support@helpdesk.test")


def test_the_envelope_is_read_from_a_bounded_header() -> None:
    """At most MAX_RECIPIENTS values, the first ones (the delivery agent's, above any
    the sender wrote), and nothing past MAX_HEADER_BYTES: 14 MB of Delivered-To
    fields took 10 s to read whole, where parsing the mail took 0.08 s."""
    fields = b"".join(b"Delivered-To: u%d@example.com\r\n" % i for i in range(5000))
    envelope = envelope_from_headers(b"Return-Path: <A@Example.com>\r\n" + fields + b"\r\n", most=100)
    assert envelope.recipients == tuple(f"u{i}@example.com" for i in range(100))
    assert envelope.mail_from == "a@example.com"
    late = b"X-Filler: " + b"x" * 2000 + b"\r\nDelivered-To: late@example.com\r\n\r\n"
    assert envelope_from_headers(late).recipients == ("late@example.com",)
    assert envelope_from_headers(late, replace(limits.DEFAULT, header_bytes=1024)).recipients == ()


# -- the pipeline through IMAP ---------------------------------------------------------


def test_corpus_through_imap_gets_the_same_outcomes_as_through_smtp(app, mailbox):
    entries = corpus()
    by_smtp: dict[str, str] = {}
    # Mail whose only sender was the SMTP envelope: through IMAP, without the
    # Return-Path a delivery agent writes, nothing names a sender.
    envelope_only: set[str] = set()
    for smtp in start_gateway(app, UNKNOWN_SENDER_POLICY="accept"):
        for entry in entries:
            code, text = smtp.send(
                on_the_wire((CORPUS / entry["file"]).read_bytes()), mail_from="corpus@example.org"
            )
            assert code == 250, f"{entry['file']}: {code} {text!r}"
            by_smtp[entry["file"]] = text.decode().split()[2]
            if (
                db.session.execute(
                    select(InboundMail.from_source).order_by(InboundMail.id.desc()).limit(1)
                ).scalar_one()
                == "envelope"
            ):
                envelope_only.add(entry["file"])
    assert envelope_only  # the corpus has mail without any sender header
    db.session.rollback()
    reset_database()

    appended: list[str] = []
    refused: dict[str, str] = {}
    with mailbox.client() as client:
        for entry in entries:
            try:
                client.append(mailbox.folder, on_the_wire((CORPUS / entry["file"]).read_bytes()))
                appended.append(entry["file"])
            except IMAPClientError as exc:  # the IMAP server itself refused to store it
                refused[entry["file"]] = str(exc)
    results = drain(poller_for(app, mailbox))

    assert len(results) == len(appended)
    by_imap = {name: result.outcome.value for name, (_uid, result) in zip(appended, results, strict=True)}
    mismatches = {
        name: (by_smtp[name], by_imap[name])
        for name in appended
        if by_smtp[name] != by_imap[name] and name not in envelope_only
    }
    assert not mismatches, mismatches
    held = {
        name: result.reason
        for name, (_uid, result) in zip(appended, results, strict=True)
        if name in envelope_only and by_smtp[name] != by_imap[name]
    }
    assert held
    assert all(reason.startswith("no sender address") for reason in held.values()), held
    # Only what is not RFC 5322 text at all may be refused by Dovecot's APPEND.
    assert set(refused) <= {"mail-parser__tests_mails_mail_outlook_1"}, refused
    assert mailbox.count() == 0
    assert mailbox.count(mailbox.processed) + mailbox.count(mailbox.failed) == len(appended)
    table: dict[str, Counter[str]] = defaultdict(Counter)
    category = {entry["file"]: entry["category"] for entry in entries}
    for name, outcome in by_imap.items():
        table[category[name]][outcome] += 1
    print("\nIMAP outcomes by corpus category (identical to SMTP):")
    for name, counts in sorted(table.items()):
        print(f"  {name:12} {dict(counts)}")


def test_the_delivery_agents_return_path_names_the_sender_of_mail_without_one(app, mailbox):
    raw = (SAMPLES / "from-missing-everywhere.eml").read_bytes()
    with mailbox.client() as client:
        client.append(mailbox.folder, on_the_wire(b"Return-Path: <jorge@tecnicos.example>\n" + raw))
    ((_uid, result),) = drain(poller_for(app, mailbox, UNKNOWN_SENDER_POLICY="accept"))
    assert result.outcome is Outcome.CREATED
    record = db.session.get(InboundMail, result.inbound_id)
    assert (record.from_address, record.from_source) == ("jorge@tecnicos.example", "return-path")
    ticket = db.session.execute(select(Ticket)).scalar_one()
    assert ticket.requester.email == "jorge@tecnicos.example"
    note = ticket.messages[-1]  # for staff: an internal note by the gateway
    assert note.kind == "note" and "The sender was taken from Return-Path" in note.body


def test_mail_delivered_by_smtp_and_by_imap_makes_one_ticket(app, gateway, senders, mailbox):
    mail = raw(1, "both")
    assert gateway.send(mail, mail_from="ann@example.com") == (250, b"2.0.0 OK created TKT-000001")
    mailbox.append(mail)
    assert outcomes(drain(poller_for(app, mailbox))) == ["duplicate"]
    assert len(tickets()) == 1
    assert mailbox.count() == 0 and mailbox.count(mailbox.processed) == 1


def test_each_record_and_duplicate_names_the_mailbox_it_came_from(
    app, gateway, senders, mailbox, monkeypatch
):
    """SPEC §10 counts per mailbox (docs/web.md, "Mail flow"): the mailbox's key on
    mail taken, refused as too big and quarantined unread, and on the duplicate's
    count; the SMTP copy stays its listener's."""
    both = raw(1, "both")
    gateway.send(both, mail_from="ann@example.com")
    big = message(message_id="<big@client.example>", body="x" * 6000).as_bytes(policy=SMTP_POLICY)
    bad = message(message_id="<unreadable@client.example>").as_bytes(policy=SMTP_POLICY)
    original = imap.parse

    def failing(data, *args, **kwargs):  # type: ignore[no-untyped-def]
        if b"unreadable@client.example" in data:
            raise RuntimeError("a bug nobody foresaw")
        return original(data, *args, **kwargs)

    monkeypatch.setattr(imap, "parse", failing)
    mailbox.append(both, raw(2, "new"), big, bad)
    poller = poller_for(app, mailbox, MAX_MESSAGE_BYTES=4000)
    assert outcomes(drain(poller)) == ["duplicate", "created", "rejected", "quarantined"]
    key = poller.source.key
    sources = db.session.execute(select(InboundMail.source).order_by(InboundMail.id)).scalars().all()
    assert sources == [f"smtp {app.config['SMTP_LISTEN']}", key, key, key]
    counted = select(InboundDuplicates.channel, InboundDuplicates.source, InboundDuplicates.count)
    assert [tuple(row) for row in db.session.execute(counted)] == [("imap", key, 1)]


# What the MTA prepends on its way into the mailbox (Dovecot LMTP's defaults; Postfix
# before piping to dovecot-lda writes the same three), in a maildir's LF line endings.
DELIVERY_TRACE = (
    b"Return-Path: <ann@example.com>\n"
    b"Delivered-To: support@helpdesk.test\n"
    b"Received: from mx.helpdesk.test\n\tby imap.helpdesk.test with LMTP id x1\n"
    b"\tfor <support@helpdesk.test>; Mon, 02 Mar 2026 08:00:01 +0000\n"
)


def without_message_id(date: str) -> bytes:
    msg = message(subject="No id", body="My printer is on fire.", headers={"Date": date})
    del msg["Message-ID"]
    return msg.as_bytes(policy=SMTP_POLICY)


def test_mail_without_message_id_by_smtp_and_delivered_into_the_mailbox_makes_one_ticket(
    app, gateway, senders, mailbox
):
    """Keyed by its content, the copy the delivery agent stored (trace fields on top,
    LF line endings) is the mail SMTP brought; the same text of another day is not."""
    mail = without_message_id("Mon, 02 Mar 2026 08:00:00 +0000")
    assert gateway.send(mail, mail_from="ann@example.com") == (250, b"2.0.0 OK created TKT-000001")
    for copy in (mail, without_message_id("Tue, 03 Mar 2026 08:00:00 +0000")):
        mailbox.deliver_by_agent(DELIVERY_TRACE + copy.replace(b"\r\n", b"\n"), "ann@example.com")
    assert outcomes(drain(poller_for(app, mailbox))) == ["duplicate", "created"]
    assert [ticket.number for ticket in tickets()] == [1, 2]
    with mailbox.client() as client:
        client.select_folder(mailbox.processed, readonly=True)
        heads = client.fetch(client.search(["ALL"]), ["BODY.PEEK[HEADER]"]).values()
    assert all(head[b"BODY[HEADER]"].startswith(DELIVERY_TRACE.replace(b"\n", b"\r\n")) for head in heads)


def test_messages_already_seen_in_another_client_are_processed(app, senders, mailbox):
    mailbox.append(raw(1, "seen"), raw(2, "seen"), flags=(b"\\Seen",))
    mailbox.append(raw(3, "seen"))
    assert outcomes(drain(poller_for(app, mailbox))) == ["created"] * 3
    assert sorted(t.subject for t in tickets()) == ["Mail 1", "Mail 2", "Mail 3"]
    assert all(t.channel == "email" and t.is_email_originated for t in tickets())
    records = db.session.execute(select(InboundMail.channel)).scalars().all()
    assert records == ["imap"] * 3


def test_server_without_move_gets_copy_delete_and_uid_expunge(app, senders, mailbox):
    poller = poller_for(app, mailbox)
    connect = poller.connect

    def connect_without_move():  # type: ignore[no-untyped-def]
        client = connect()
        real = client.has_capability
        client.has_capability = lambda name: name.upper() != "MOVE" and real(name)
        return client

    poller.connect = connect_without_move  # type: ignore[method-assign]
    mailbox.append(raw(1, "nomove"), raw(2, "nomove"))
    assert outcomes(drain(poller)) == ["created"] * 2
    assert sorted(mailbox.message_ids(mailbox.processed)) == [
        "nomove-1@client.example",
        "nomove-2@client.example",
    ]
    assert mailbox.count() == 0


def _without_move_or_uidplus_another_client_marking(app, mailbox, also=None):  # type: ignore[no-untyped-def]
    """A poller whose server has neither MOVE nor UIDPLUS, and where another client
    adds UID 2 marked \\Deleted once the poller has searched and found UID 1 only;
    `also(client)` may wrap more of each connection."""
    poller = poller_for(app, mailbox)
    connect, pending = poller.connect, poller._pending_uids

    def connect_without_move_or_uidplus():  # type: ignore[no-untyped-def]
        client = connect()
        real = client.has_capability
        client.has_capability = lambda name: name.upper() not in ("MOVE", "UIDPLUS") and real(name)
        if also is not None:
            also(client)
        return client

    def then_another_client_marks_a_new_mail(client):  # type: ignore[no-untyped-def]
        uids = pending(client)
        if uids == [1]:
            mailbox.append(raw(2, "marked", sender="bob@corp.example"), flags=(b"\\Deleted",))
        return uids

    poller.connect = connect_without_move_or_uidplus  # type: ignore[method-assign]
    poller._pending_uids = then_another_client_marks_a_new_mail  # type: ignore[method-assign]
    return poller


def test_without_uidplus_mail_another_client_marked_deleted_is_not_expunged_untaken(app, senders, mailbox):
    """A server with neither MOVE nor UIDPLUS: the poller's bare EXPUNGE after its
    COPY also removed a mail another client had marked \\Deleted that the poller had
    not taken yet (it came after the pass's SEARCH): lost, never recorded."""
    poller = _without_move_or_uidplus_another_client_marking(app, mailbox)
    mailbox.append(raw(1, "marked"))
    # UID 1 moved and left marked (no EXPUNGE while UID 2 waited), then UID 2 taken
    # and both expunged.
    assert outcomes(drain(poller)) == ["created", "created"]
    assert mailbox.count() == 0 and len(tickets()) == 2
    assert sorted(mailbox.message_ids(mailbox.processed)) == [
        "marked-1@client.example",
        "marked-2@client.example",
    ]


def test_without_uidplus_the_search_for_deleted_mail_asks_only_above_the_last_uid(app, senders, mailbox):
    """Each move without UIDPLUS asked UID SEARCH DELETED of the whole mailbox: every
    message left marked, taken long ago, came back at every move (100,000 of them
    0.6-0.8 MB an answer, a mail; from 125,000 to 170,000 the answer outgrew imaplib's
    line limit and every move failed). Only UIDs above the last taken are asked for
    (docs/mail-gateway.md, "Moved only after the commit")."""
    answers: list[list[int]] = []

    def recorded(client):  # type: ignore[no-untyped-def]
        search = client.search

        def recording(criteria, *args, **kwargs):  # type: ignore[no-untyped-def]
            found = search(criteria, *args, **kwargs)
            if "DELETED" in criteria:
                answers.append(sorted(found))
            return found

        client.search = recording

    poller = _without_move_or_uidplus_another_client_marking(app, mailbox, recorded)
    mailbox.append(raw(1, "marked"))
    # UID 1 moved and left marked while UID 2 waited; at UID 2's move, UID 1 is
    # passed and not asked about again.
    assert outcomes(drain(poller)) == ["created", "created"]
    assert answers == [[1, 2], [2]] and mailbox.count() == 0


def test_quarantine_by_policy_counts_as_processed(app, mailbox):
    mailbox.append(raw(1, "stranger", sender="mallory@evil.example"))
    (result,) = [r for _uid, r in drain(poller_for(app, mailbox))]
    assert (result.outcome, result.failed) == (Outcome.QUARANTINED, False)
    assert mailbox.count(mailbox.processed) == 1 and mailbox.count(mailbox.failed) == 0


def test_strangers_mail_past_the_quarantines_room_is_filed_as_failed_unrecorded(app, senders, mailbox):
    """Past QUARANTINE_MAX_MAILS a stranger's mail is not held. Left in the mailbox it
    would hold back every mail after it (the poller passes a UID only once its mail
    is moved), so it is filed in the failed folder without a record, and customers'
    mail goes on (docs/mail-gateway.md, "Quarantine room")."""
    mailbox.append(
        raw(1, "stranger", sender="mallory@evil.example"),
        raw(2, "stranger", sender="trudy@evil.example"),
        raw(3, "customer"),
    )
    results = drain(poller_for(app, mailbox, IMAP_INGEST_THREADS=1, QUARANTINE_MAX_MAILS=1))
    assert [(r.outcome.value, r.failed) for _uid, r in results] == [
        ("quarantined", False),
        ("quarantined", True),
        ("created", False),
    ]
    assert db.session.execute(select(func.count(QuarantineItem.id))).scalar_one() == 1
    assert inbound_count() == 2
    assert mailbox.count(mailbox.processed) == 2 and mailbox.count(mailbox.failed) == 1


def test_mail_held_by_a_customer_limit_counts_as_processed(app, senders, mailbox):
    mailbox.append(raw(1, "limit"), raw(2, "limit"))
    poller = poller_for(app, mailbox, IMAP_INGEST_THREADS=1, CUSTOMER_MAX_TICKETS_PER_HOUR=1)
    first, second = [result for _uid, result in drain(poller)]
    assert [(r.outcome, r.failed) for r in (first, second)] == [
        (Outcome.CREATED, False),
        (Outcome.QUARANTINED, False),
    ]
    assert second.reason.startswith("customer limit: 1 ticket opened in the last hour")
    assert mailbox.count(mailbox.processed) == 2 and mailbox.count(mailbox.failed) == 0


def test_a_mail_with_a_hostile_delivery_field_does_not_hold_back_the_mail_after_it(app, senders, mailbox):
    """1,000 `(` in Delivered-To raised RecursionError while the poller read the
    envelope: the batch was given up on every pass, nothing moved, for good."""
    hostile = b"Delivered-To: " + b"(" * 1000 + b"support@helpdesk.test\r\n" + raw(1, "hostile")
    mailbox.append(hostile, raw(2, "after"), raw(3, "after"))
    results = drain(poller_for(app, mailbox))
    assert outcomes(results) == ["created", "created", "created"]
    assert mailbox.count(mailbox.processed) == 3 and mailbox.count() == 0
    assert db.session.execute(select(ImapMailboxState.last_uid)).scalar_one() == 3


def test_every_address_of_a_delivery_field_separated_by_semicolons_is_read(app, senders, mailbox):
    """A delivery field naming its addresses as Outlook shows them, separated by
    ';', was read as its last address alone (the address grammar leaves the parts
    before it unread), so a Bcc'd plus-address before the ';' matched nothing and
    a reply opened a new ticket. The envelope reads them as the parser reads To."""
    bcc = b"Delivered-To: support+TKT-000001@helpdesk.test; support@helpdesk.test\r\n"
    mailbox.append(raw(1, "first"), bcc + raw(2, "bcc"))
    assert outcomes(drain(poller_for(app, mailbox))) == ["created", "appended"]
    assert envelope_from_headers(bcc + b"\r\n").recipients == (
        "support@helpdesk.test",
        "support+tkt-000001@helpdesk.test",
    )


def test_unprocessable_mail_is_quarantined_raw_and_filed_as_failed(app, mailbox):
    depth = 1200
    nested = (
        b"From: a@example.com\r\nMessage-ID: <deep@client.example>\r\n"
        b"Content-Type: multipart/mixed; boundary=b0\r\n\r\n"
        + b"".join(
            b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (i, i + 1) for i in range(depth)
        )
        + b"--b%d\r\nContent-Type: text/plain\r\n\r\ndeep\r\n" % depth
    )
    mailbox.append(nested)
    (result,) = [r for _uid, r in drain(poller_for(app, mailbox))]
    assert (result.outcome, result.failed) == (Outcome.QUARANTINED, True)
    item = db.session.execute(select(QuarantineItem)).scalar_one()
    assert "nested deeper than MAX_MIME_DEPTH" in item.reason
    assert item.inbound_mail.raw.replace(b"\r\n", b"\n") == nested.replace(b"\r\n", b"\n")
    assert mailbox.count(mailbox.failed) == 1 and mailbox.count(mailbox.processed) == 0


def test_failed_mail_found_again_after_a_crash_before_its_move_is_filed_as_failed(app, senders, mailbox):
    """A crash between the commit and the move: the next pass finds each mail again
    and is answered with the earlier record. Mail that failed (too big, unreadable)
    was answered as if it had been taken, and filed as processed, though the
    mailbox holds its only whole copy; mail held by policy is processed either way."""
    big = message(message_id="<big@client.example>", body="x" * 6000).as_bytes(policy=SMTP_POLICY)
    parts = (
        b"From: ann@example.com\r\nMessage-ID: <parts@client.example>\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + b"--b\r\n\r\nx\r\n" * 30 + b"--b--\r\n"
    )
    mailbox.append(big, parts, raw(1, "crash"), raw(2, "crash", sender="mallory@evil.example"))
    first = poller_for(app, mailbox, MAX_MESSAGE_BYTES=4000, MAX_MIME_PARTS=20)

    def crash(client, uids, folder):  # type: ignore[no-untyped-def]
        raise ConnectionError("the connection dropped before the move")

    first._move = crash  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        drain(first)
    assert mailbox.count() == 4
    results = drain(poller_for(app, mailbox, MAX_MESSAGE_BYTES=4000, MAX_MIME_PARTS=20))
    assert [(r.outcome, r.failed) for _uid, r in results] == [
        (Outcome.REJECTED, True),
        (Outcome.DUPLICATE, True),
        (Outcome.DUPLICATE, False),
        (Outcome.DUPLICATE, False),
    ]
    assert mailbox.count(mailbox.failed) == 2 and mailbox.count(mailbox.processed) == 2
    assert sorted(mailbox.message_ids(mailbox.failed)) == ["big@client.example", "parts@client.example"]


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_mail_that_keeps_failing_goes_to_failed_and_quarantine_and_the_rest_goes_on(app, senders, mailbox):
    """The database refuses one mail with a connection-failure code while serving
    everything else: the poller retries it once, then parks it and carries on."""
    poison = message(subject="VPN", body="poison pill", message_id="<poison@client.example>")
    mailbox.append(poison.as_bytes(policy=SMTP_POLICY), raw(1, "after"))
    poller = poller_for(app, mailbox)
    with refused_as_unreachable("poison"):
        with pytest.raises(TransientError):
            drain(poller)  # the mail beside it may have committed meanwhile (two threads)
        assert mailbox.count(mailbox.failed) == 0
        results = drain(poller)
    assert (results[0][1].outcome, results[0][1].failed) == (Outcome.QUARANTINED, True)
    assert sorted(db.session.execute(select(InboundMail.outcome)).scalars()) == ["created", "quarantined"]
    item = db.session.execute(select(QuarantineItem)).scalar_one()
    assert b"poison pill" in item.inbound_mail.raw
    assert mailbox.count(mailbox.failed) == 1 and mailbox.count(mailbox.processed) == 1


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_mail_the_database_refuses_even_to_park_goes_to_failed_unrecorded_and_the_rest_goes_on(
    app, senders, mailbox
):
    """The database refuses every record of one mail for a reason of its own (a
    constraint nobody foresaw), its parked raw bytes included: the poller stopped at
    it on every pass, for good, and the mail after it waited. It is tried once more,
    then filed in the failed folder, where its only copy is, without a record."""
    poison = message(subject="VPN", body="poison pill", message_id="<refused@client.example>")
    mailbox.append(poison.as_bytes(policy=SMTP_POLICY), raw(1, "after"))
    poller = poller_for(app, mailbox)
    with refused_by_database("poison", "23514", "inbound_mails", "raw"):
        with pytest.raises(TransientError):
            drain(poller)
        results = drain(poller)
    assert [r.failed for _uid, r in results][0] is True
    assert list(db.session.execute(select(InboundMail.outcome)).scalars()) == ["created"]
    assert mailbox.count(mailbox.failed) == 1 and mailbox.count(mailbox.processed) == 1


def test_the_configured_caps_hold_for_imap_too(app, senders, mailbox):
    parts = (
        b"From: ann@example.com\r\nMessage-ID: <parts@client.example>\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + b"--b\r\n\r\nx\r\n" * 30 + b"--b--\r\n"
    )
    mailbox.append(parts)
    (result,) = [r for _uid, r in drain(poller_for(app, mailbox, MAX_MIME_PARTS=20))]
    assert (result.outcome, result.failed) == (Outcome.QUARANTINED, True)
    assert "MAX_MIME_PARTS (20)" in result.reason


def test_oversized_mail_is_recorded_and_filed_as_failed(app, senders, mailbox):
    big = message(message_id="<big@client.example>", body="x" * 6000).as_bytes(policy=SMTP_POLICY)
    mailbox.append(big, raw(1, "small"))
    results = drain(poller_for(app, mailbox, MAX_MESSAGE_BYTES=4000))
    assert outcomes(results) == ["rejected", "created"]
    record = db.session.execute(
        select(InboundMail).where(InboundMail.message_id == "big@client.example")
    ).scalar_one()
    assert record.outcome == "rejected" and record.size == len(big)
    assert "larger than MAX_MESSAGE_BYTES" in record.reason
    assert b"Subject: Printer on fire" in record.raw and b"xxxx" not in record.raw
    assert mailbox.count(mailbox.failed) == 1 and mailbox.count(mailbox.processed) == 1
    assert len(tickets()) == 1


def test_oversized_mail_that_is_all_header_is_stored_within_max_header_bytes(app, mailbox):
    """The header of a mail without a blank line is the whole mail: 8.6 MB were
    fetched and stored (and read for its envelope) for a limit of 1 MB, saying
    "only its header was stored"."""
    fields = b"".join(b"Delivered-To: u%d@example.com\r\n" % i for i in range(3000))
    big = raw(1, "all-header").split(b"\r\n\r\n")[0] + b"\r\n" + fields
    mailbox.deliver(big)
    ((_uid, result),) = drain(poller_for(app, mailbox, MAX_MESSAGE_BYTES=20_000, MAX_HEADER_BYTES=8192))
    assert (result.outcome, result.failed) == (Outcome.REJECTED, True)
    record = db.session.execute(select(InboundMail)).scalar_one()
    assert record.message_id == "all-header-1@client.example" and record.size == len(big)
    assert 0 < len(record.raw) <= 8192 and big.startswith(record.raw)
    assert "only the first 8192 bytes of its header were stored" in record.reason
    assert mailbox.count(mailbox.failed) == 1 and mailbox.count() == 0


@pytest.mark.parametrize("size", ["small", "oversized"])
def test_a_mail_that_fails_before_the_pipeline_is_quarantined_raw_and_the_rest_goes_on(
    app, senders, mailbox, monkeypatch, size
):
    """A failure while the poller reads one mail for the pipeline (its envelope, its
    parse, the record of a mail too big) is outside the pipeline's safety net: it
    failed the whole batch on every pass, and nothing after it was ever taken."""
    body = "x" * 6000 if size == "oversized" else "unreadable"
    bad = message(message_id="<unreadable@client.example>", body=body).as_bytes(policy=SMTP_POLICY)
    step = "parse" if size == "small" else "refuse_oversized"
    original = getattr(imap, step)

    def failing(data, *args, **kwargs):  # type: ignore[no-untyped-def]
        if b"unreadable@client.example" in data:
            raise RuntimeError("a bug nobody foresaw")
        return original(data, *args, **kwargs)

    monkeypatch.setattr(imap, step, failing)
    mailbox.append(raw(1, "before"), bad, raw(2, "after"))
    results = drain(poller_for(app, mailbox, MAX_MESSAGE_BYTES=4000))
    assert [(r.outcome, r.failed) for _uid, r in results] == [
        (Outcome.CREATED, False),
        (Outcome.QUARANTINED, True),
        (Outcome.CREATED, False),
    ]
    item = db.session.execute(select(QuarantineItem)).scalar_one()
    assert item.reason.startswith("processing failed") and "RuntimeError: a bug nobody foresaw" in item.reason
    kept = item.inbound_mail.raw.replace(b"\r\n", b"\n")
    if size == "small":
        assert kept == bad.replace(b"\r\n", b"\n")
    else:
        assert b"Subject: Printer on fire" in kept and b"xxxx" not in kept
    assert mailbox.count(mailbox.failed) == 1 and mailbox.count(mailbox.processed) == 2
    assert mailbox.count() == 0 and len(tickets()) == 2
    assert db.session.execute(select(ImapMailboxState.last_uid)).scalar_one() == 3


def test_a_backlog_longer_than_a_command_line_is_taken_a_bounded_chunk_at_a_time(
    app, senders, mailbox, monkeypatch
):
    """16,000 waiting mails: their UIDs as one comma list (about 95 KB) are past
    Dovecot's 64 KiB command line, which refused the one FETCH of all their sizes
    (BAD "Too long argument") on every pass, so none was ever taken."""
    backlog = raw_many(16_000, "backlog", "customer{i}@corp.example")
    assert backlog[7] == raw(7, "backlog", "customer7@corp.example")
    mailbox.deliver(*backlog)
    poller = poller_for(app, mailbox)
    taken = 0
    ingest = poller._ingest

    def ingest_some(*args):  # type: ignore[no-untyped-def]
        nonlocal taken
        taken += 1
        if taken == 120:  # enough to show the way; ingesting all would take minutes
            poller.stopping.set()
        return ingest(*args)

    monkeypatch.setattr(poller, "_ingest", ingest_some)
    monkeypatch.setattr(imap, "PENDING_CHUNK", 50)  # and go on past a chunk or two
    results = drain(poller)
    assert len(results) >= 120 and set(outcomes(results)) == {"created"}
    uids = [uid for uid, _result in results]
    assert uids == list(range(1, len(uids) + 1))
    assert mailbox.count(mailbox.processed) == len(results)
    assert db.session.execute(select(ImapMailboxState.last_uid)).scalar_one() == uids[-1]


def test_a_mailbox_draining_a_backlog_is_healthy_from_its_first_batch(app, senders, mailbox, monkeypatch):
    """The last good poll was stamped only when a whole pass ended: a poller taking
    a backlog for longer than `IMAP_STUCK_AFTER` was reported stuck all along. Each
    committed batch records where it got to (one write per batch)."""
    app.config.update(IMAP_URL=mailbox.url, IMAP_STUCK_AFTER=timedelta(minutes=5), SMTP_LISTEN="127.0.0.1:1")
    mailbox.deliver(*raw_many(4, "backlog", "customer{i}@corp.example"))
    poller = poller_for(app, mailbox)
    monkeypatch.setattr(imap, "BATCH_MESSAGES", 2)
    db.session.rollback()
    assert poller.claim()
    db.session.execute(update(ImapMailboxState).values(last_success_at=now() - timedelta(hours=1)))
    db.session.commit()
    seen: list[tuple[bool, int]] = []
    process_batch = poller._process_batch

    def observed(client, batch, sizes):  # type: ignore[no-untyped-def]
        (finding,) = [f for f in check(app) if f.part.startswith("mailbox")]
        seen.append((finding.healthy, db.session.execute(select(ImapMailboxState.last_uid)).scalar_one()))
        db.session.rollback()
        return process_batch(client, batch, sizes)

    monkeypatch.setattr(poller, "_process_batch", observed)
    poller.release()
    assert outcomes(drain(poller)) == ["created"] * 4
    assert seen == [(False, 0), (True, 2)], "stuck an hour until the first batch, then healthy"


def test_a_message_the_server_cannot_read_is_filed_as_failed_and_the_rest_goes_on(
    app, senders, mailbox, runner
):
    """Dovecot believes the size in a maildir file's name (S=); one that is wrong
    fails every FETCH that touches the message ("Internal error occurred") and
    closes the connection. It failed the whole batch on every pass: nothing after
    it (nor before it, in its batch) was ever taken."""
    mailbox.deliver(*(raw(i, "before", f"before{i}@corp.example") for i in range(3)))
    unreadable = raw(0, "unreadable")
    mailbox.deliver(unreadable, size_tag=10)
    mailbox.deliver(*(raw(i, "after", f"after{i}@corp.example") for i in range(3)))
    poller = poller_for(app, mailbox)
    with running(poller):
        wait_until(lambda: mailbox.count() == 0, timeout=30, what="the mailbox emptied")
    assert mailbox.count(mailbox.processed) == 6 and mailbox.count(mailbox.failed) == 1
    assert len(tickets()) == 6
    item = db.session.execute(select(QuarantineItem)).scalar_one()
    assert item.reason.startswith("could not be fetched from the mailbox after 2 attempts")
    assert "UID 4" in item.reason and "Internal error occurred" in item.reason
    shown = runner.invoke(args=["quarantine", "show", str(item.id)])
    assert shown.exit_code == 0 and "UID 4" in shown.output
    approved = runner.invoke(args=["quarantine", "approve", str(item.id)])  # there is no mail to approve
    assert approved.exit_code == 1 and "Cannot approve" in approved.stderr and len(tickets()) == 6
    state = db.session.execute(select(ImapMailboxState)).scalar_one()
    assert state.last_uid == 7


def test_a_connection_dropping_while_a_good_mail_is_fetched_is_not_that_mails_failure(
    app, senders, mailbox, dovecot_server
):
    """The server's imap process dies (EOF, no BYE) while the one mail waiting is
    fetched, on two passes. Each drop was counted against the mail as a failed fetch:
    after FETCH_ATTEMPTS it was quarantined unread as "could not be fetched …
    socket error: EOF" and filed as failed, and no ticket was made of it."""
    mailbox.append(raw(1, "dropped"))
    poller = poller_for(app, mailbox)
    fetch, drops = poller._fetch, []

    def dropping(client, uids, items):  # type: ignore[no-untyped-def]
        if "RFC822.SIZE" not in items and len(drops) < imap.FETCH_ATTEMPTS:
            drops.append(uids)
            dovecot_server.kill_sessions()
        return fetch(client, uids, items)

    poller._fetch = dropping  # type: ignore[method-assign]
    for _ in range(imap.FETCH_ATTEMPTS):
        with pytest.raises(poller.failed_quietly):
            drain(poller)
    assert len(drops) == imap.FETCH_ATTEMPTS
    assert outcomes(drain(poller)) == ["created"]
    assert db.session.execute(select(func.count(QuarantineItem.id))).scalar_one() == 0
    assert mailbox.count(mailbox.processed) == 1 and mailbox.count(mailbox.failed) == 0


def test_a_lone_message_the_server_cannot_read_is_filed_as_failed_too(app, senders, mailbox):
    """Every fetch asks for it alone, so no fetch of several comes first."""
    mailbox.deliver(raw(0, "lone"), size_tag=10)
    poller = poller_for(app, mailbox)
    with running(poller):
        wait_until(lambda: mailbox.count() == 0, timeout=30, what="the mailbox emptied")
        mailbox.append(raw(1, "later"))
        wait_until(lambda: mailbox.count() == 0 and inbound_count() == 2, what="the later mail taken")
    assert mailbox.count(mailbox.failed) == 1 and mailbox.count(mailbox.processed) == 1
    assert sorted(db.session.execute(select(InboundMail.outcome)).scalars()) == ["created", "quarantined"]


def test_mail_another_client_expunges_during_a_batch_is_passed_not_quarantined(
    app, senders, mailbox, monkeypatch
):
    """Another client expunges UIDs 2 and 4 between the poller's size FETCH and its
    body FETCH. Dovecot answers `BODY[] NIL` for a message another session expunged
    that this one was not told of yet: it was quarantined as "empty message" and
    filed as failed, and the second was a duplicate of the first."""
    mailbox.append(*(raw(i, "busy", sender=f"u{i}@corp.example") for i in range(1, 7)))
    poller = poller_for(app, mailbox)
    fetch, expunged = poller._fetch, []

    def fetch_after_another_client(client, uids, items):  # type: ignore[no-untyped-def]
        if "RFC822.SIZE" not in items and not expunged:
            with mailbox.client() as other:
                other.select_folder(mailbox.folder)
                expunged.extend(other.delete_messages([2, 4]))
                other.expunge()
        return fetch(client, uids, items)

    monkeypatch.setattr(poller, "_fetch", fetch_after_another_client)
    results = drain(poller)
    assert [uid for uid, _result in results] == [1, 3, 5, 6] and set(outcomes(results)) == {"created"}
    assert expunged and db.session.execute(select(func.count(QuarantineItem.id))).scalar_one() == 0
    assert (
        mailbox.count() == 0 and mailbox.count(mailbox.failed) == 0 and mailbox.count(mailbox.processed) == 4
    )
    assert db.session.execute(select(ImapMailboxState.last_uid)).scalar_one() == 6


def test_uidvalidity_change_rescans_without_duplicates(app, senders, mailbox):
    first = [raw(i, "validity") for i in range(3)]
    mailbox.append(*first)
    poller = poller_for(app, mailbox)
    assert outcomes(drain(poller)) == ["created"] * 3
    state = db.session.execute(select(ImapMailboxState)).scalar_one()
    old_validity, old_last = state.uidvalidity, state.last_uid
    assert old_last == 3

    # Recreate the mailbox with the same content, as a server migration or restore
    # would: new UIDVALIDITY, UIDs from 1 again, all below the remembered last UID.
    with mailbox.client() as client:
        client.delete_folder(mailbox.folder)
        client.create_folder(mailbox.folder)
    mailbox.append(*first, raw(3, "validity"))
    assert outcomes(drain(poller)) == ["duplicate"] * 3 + ["created"]
    db.session.refresh(state)
    assert state.uidvalidity != old_validity
    assert sorted(t.subject for t in tickets()) == ["Mail 0", "Mail 1", "Mail 2", "Mail 3"]
    assert mailbox.count() == 0


Span = tuple[float, float, str]  # when a mail's ingest started and ended (monotonic), in which thread


def observe(poller: ImapPoller, pause: Callable[[ParsedMail], None] = lambda mail: None) -> dict[str, Span]:
    """Record when and where the poller ingests each mail, by Message-ID; `pause`
    runs first, in the same thread, to hold a mail in flight for a while."""
    spans: dict[str, Span] = {}
    ingest = poller._ingest

    def observed(raw_mail: bytes, envelope: Envelope, mail: ParsedMail) -> Result:
        started = time.monotonic()
        try:
            pause(mail)
            return ingest(raw_mail, envelope, mail)
        finally:
            spans[mail.message_id or ""] = (started, time.monotonic(), threading.current_thread().name)

    poller._ingest = observed  # type: ignore[method-assign]
    return spans


def started_after_all_before_it(
    spans: dict[str, Span], results: list[tuple[int, Result]], message_id: str
) -> bool:
    order = [result.message_id or "" for _, result in results]
    before = order[: order.index(message_id)]
    return all(spans[message_id][0] >= spans[earlier][1] for earlier in before)


def test_mail_of_a_batch_that_may_thread_waits_for_the_mail_before_it(app, senders, mailbox, caplog):
    """New conversations are ingested side by side; a follow-up of a mail in the
    batch, a reply by the number of a ticket the batch opens and a second copy of a
    mail in flight wait for everything before them, so each gets what strict UID
    order would give it."""
    caplog.set_level(logging.INFO, logger="helpdesk.inbound.ingest")
    mails: list[bytes] = []
    expected: list[str] = []
    for i in range(12):
        original = f"<batch-{i}@client.example>"
        customer = f"c{i}@corp.example"  # a customer each: the per-customer limits are not tested here
        mails.append(raw(i, "batch", sender=customer))
        mails.append(
            message(
                customer,
                subject=f"Mail {i} (forgot the attachment)",
                body="Here it is.",
                message_id=f"<batch-{i}-again@client.example>",
                in_reply_to=original,
            ).as_bytes(policy=SMTP_POLICY)
        )
        mails.append(raw(100 + i, "batch", sender=customer))
        expected += ["created", "appended", "created"]
    mails.append(raw(200, "batch", sender="c0@corp.example"))
    mails.append(raw(200, "batch", sender="c0@corp.example"))  # a second copy, while the first is in flight
    mails.append(
        message(
            "c0@corp.example",
            subject="Re: [TKT-000001] more",
            body="By number.",
            message_id="<batch-by-number@client.example>",
        ).as_bytes(policy=SMTP_POLICY)
    )
    expected += ["created", "duplicate", "appended"]
    mailbox.append(*mails)
    poller = poller_for(app, mailbox, IMAP_INGEST_THREADS=4)
    spans = observe(poller, lambda mail: time.sleep(0.02))  # mail in flight long enough to be overtaken
    results = drain(poller)

    assert outcomes(results) == expected
    subjects = {t.id: t.subject for t in tickets()}
    assert len(subjects) == 25
    for i in range(12):
        original = db.session.execute(
            select(InboundMail).where(InboundMail.message_id == f"batch-{i}@client.example")
        ).scalar_one()
        follow_up = db.session.execute(
            select(InboundMail).where(InboundMail.message_id == f"batch-{i}-again@client.example")
        ).scalar_one()
        assert follow_up.ticket_id == original.ticket_id
        assert subjects[original.ticket_id] == f"Mail {i}"
    assert mailbox.count() == 0 and mailbox.count(mailbox.processed) == len(mails)
    threads = defaultdict(set)
    for record in caplog.records:
        if record.name == "helpdesk.inbound.ingest" and "via imap" in record.getMessage():
            outcome = record.getMessage().split(": ", 1)[1].split()[0]
            threads[outcome].add(record.threadName)
    assert len({name for name in threads["created"] if name.startswith("imap-ingest")}) > 1, (
        "new conversations were not ingested side by side"
    )
    waited = [
        result.message_id or "" for _, result in results if result.outcome.value in ("appended", "duplicate")
    ]
    assert len(waited) == 14
    for message_id in waited:
        assert started_after_all_before_it(spans, results, message_id), message_id


def test_answers_to_tickets_older_than_the_batch_run_beside_new_mail_one_at_a_time(app, senders, mailbox):
    """An answer whose ticket no mail of its batch can create (a Message-ID received
    before, a number below where the batch's tickets start) runs beside new
    conversations, but never beside another answer: two may answer one ticket, whose
    messages keep the order they were sent in."""
    poller = poller_for(app, mailbox, IMAP_INGEST_THREADS=4)
    mailbox.append(*(raw(i, "older", sender=f"o{i}@corp.example") for i in range(4)))
    assert outcomes(drain(poller)) == ["created"] * 4
    numbers = {t.subject: t.number for t in tickets()}  # not in UID order: the four ran side by side
    mails: list[bytes] = []
    for i in range(4):
        mails.append(raw(10 + i, "newer", sender=f"n{i}@corp.example"))
        by_id = i % 2 == 0
        mails.append(
            message(
                f"o{i}@corp.example",
                subject=f"Mail {i} again" if by_id else f"Re: [TKT-{numbers[f'Mail {i}']:06d}] Mail {i}",
                body="Still broken.",
                message_id=f"<answer-{i}@client.example>",
                in_reply_to=f"<older-{i}@client.example>" if by_id else None,
            ).as_bytes(policy=SMTP_POLICY)
        )
    mailbox.append(*mails)
    answer_started = [threading.Event() for _ in range(4)]

    def pause(mail: ParsedMail) -> None:
        kind, _, n = (mail.message_id or "").partition("@")[0].partition("-")
        if kind == "answer":
            answer_started[int(n)].set()
            time.sleep(0.05)  # answers that ran side by side would overlap
        else:
            answer_started[int(n) - 10].wait(5)  # the answer after this new mail runs meanwhile

    spans = observe(poller, pause)
    results = drain(poller)

    assert outcomes(results) == ["created", "appended"] * 4
    for i in range(4):
        answer = db.session.execute(
            select(InboundMail).where(InboundMail.message_id == f"answer-{i}@client.example")
        ).scalar_one()
        assert answer.ticket_id is not None
        assert db.session.get(Ticket, answer.ticket_id).number == numbers[f"Mail {i}"]
    for i in range(4):
        new, answer = spans[f"newer-{10 + i}@client.example"], spans[f"answer-{i}@client.example"]
        assert answer[0] < new[1], f"answer {i} waited for the new mail before it"
    answers = sorted(span for mid, span in spans.items() if mid.startswith("answer-"))
    for earlier, later in zip(answers, answers[1:], strict=False):
        assert earlier[1] <= later[0], f"two answers ran side by side: {answers}"


def test_answers_to_what_the_batch_may_create_wait_even_beside_older_tickets(app, senders, mailbox):
    """Naming a ticket numbered from where the batch's tickets start, or a mail still
    in flight, makes an answer wait for everything before it, also when it names an
    older ticket too."""
    poller = poller_for(app, mailbox, IMAP_INGEST_THREADS=4)
    mailbox.append(raw(0, "before", sender="b0@corp.example"))
    assert outcomes(drain(poller)) == ["created"]
    mailbox.append(
        raw(1, "fresh", sender="f1@corp.example"),  # TKT-000002
        message(
            "f1@corp.example",
            subject="Re: [TKT-000002] Mail 1, and [TKT-000001]",
            body="By number.",
            message_id="<fresh-by-number@client.example>",
        ).as_bytes(policy=SMTP_POLICY),
        raw(2, "fresh", sender="f2@corp.example"),  # TKT-000003
        message(
            "f2@corp.example",
            subject="Mail 2, once more",
            body="By id.",
            message_id="<fresh-by-id@client.example>",
            in_reply_to="<fresh-2@client.example>",
            references="<before-0@client.example> <fresh-2@client.example>",
        ).as_bytes(policy=SMTP_POLICY),
    )
    spans = observe(poller, lambda mail: time.sleep(0.2))  # new tickets slow to commit
    results = drain(poller)

    assert outcomes(results) == ["created", "appended", "created", "appended"]
    numbers = {
        row.message_id: db.session.get(Ticket, row.ticket_id).number
        for row in db.session.execute(select(InboundMail)).scalars()
        if row.ticket_id is not None
    }
    assert numbers["fresh-by-number@client.example"] == numbers["fresh-1@client.example"] == 2
    assert numbers["fresh-by-id@client.example"] == numbers["fresh-2@client.example"] == 3
    for message_id in ("fresh-by-number@client.example", "fresh-by-id@client.example"):
        assert started_after_all_before_it(spans, results, message_id), message_id


def test_one_ingest_thread_takes_mail_strictly_in_uid_order(app, senders, mailbox):
    mailbox.append(*(raw(i, "serial") for i in range(8)))
    assert outcomes(drain(poller_for(app, mailbox, IMAP_INGEST_THREADS=1))) == ["created"] * 8
    assert [t.subject for t in tickets()] == [f"Mail {i}" for i in range(8)]


def test_idle_takes_new_mail_within_seconds(app, senders, mailbox):
    poller = poller_for(app, mailbox, IMAP_POLL_SECONDS=300)  # no polling to fall back on
    with running(poller):
        wait_until(
            lambda: (
                db.session.execute(select(ImapMailboxState.last_success_at)).scalar_one_or_none() is not None
            )
        )
        time.sleep(0.5)  # let it enter IDLE: the mail must come through IDLE, not the first poll
        mailbox.append(raw(1, "idle"))
        wait_until(lambda: inbound_count() == 1, timeout=10)  # polling would take 300 s
    assert mailbox.count(mailbox.processed) == 1


@pytest.mark.parametrize("command", ["search", "idle"])
def test_mail_delivered_between_the_last_search_and_idle_is_taken_within_seconds(
    app, senders, mailbox, command
):
    """Dovecot tells a connection about new mail once: mail delivered just before the
    poller's SEARCH is announced with the SEARCH's answer (EXISTS) but not in its
    results, and mail delivered just before IDLE comes in the same packet as IDLE's
    continuation, which imapclient's idle_check never looks at. Either way IDLE
    reports nothing more, and the mail waited for the IDLE renewal (60 s here)."""
    poller = poller_for(app, mailbox, IMAP_POLL_SECONDS=60)
    connect = poller.connect
    delivered = threading.Event()

    def connect_delivering_before_the_command() -> imap.IMAPClient:
        client = connect()
        real = getattr(client, command)

        def deliver_first(*args: object, **kwargs: object) -> object:
            if not delivered.is_set():  # the first one: the mailbox is empty so far
                mailbox.append(raw(1, "window"))  # committed by Dovecot when APPEND returns
                delivered.set()
            return real(*args, **kwargs)

        setattr(client, command, deliver_first)
        return client

    poller.connect = connect_delivering_before_the_command  # type: ignore[method-assign]
    with running(poller):
        wait_until_any(delivered.is_set, timeout=10, what="the delivery in the window")
        wait_until(lambda: inbound_count() == 1, timeout=5, what="the mail taken (the IDLE renewal is 60 s)")
    assert mailbox.count(mailbox.processed) == 1


@pytest.mark.parametrize("command", ["search", "idle"])
def test_a_server_repeating_an_unchanged_exists_does_not_keep_the_poller_searching(
    app, senders, mailbox, command
):
    """RFC 3501 lets a server send EXISTS at any time, changed or not. A server that
    sent one with every SEARCH answer (or IDLE continuation) sent the poller back to
    search at once, for ever: about 20 searches and state saves a second. Dovecot
    does not do it, so its client is given the announcement here, as imaplib
    collects it, after each real command."""
    poller = poller_for(app, mailbox, IMAP_POLL_SECONDS=60)
    connect = poller.connect
    searches = []

    def connect_repeating_exists() -> imap.IMAPClient:
        client = connect()
        real_search = client.search

        def search(*args: object, **kwargs: object) -> object:
            searches.append(time.monotonic())
            return real_search(*args, **kwargs)

        client.search = search  # type: ignore[method-assign]
        real = getattr(client, command)

        def announcing(*args: object, **kwargs: object) -> object:
            answer = real(*args, **kwargs)
            client._imap.untagged_responses.setdefault("EXISTS", []).append(b"0")
            return answer

        setattr(client, command, announcing)
        return client

    poller.connect = connect_repeating_exists  # type: ignore[method-assign]
    with running(poller):
        wait_until_any(lambda: len(searches) >= 1, timeout=10, what="the first search")
        time.sleep(2)
    assert len(searches) <= 3, f"{len(searches)} searches in 2 s of an empty mailbox"


def test_server_without_idle_is_polled(app, senders, mailbox):
    poller = poller_for(app, mailbox, IMAP_POLL_SECONDS=1)
    connect = poller.connect
    connections = []

    def connect_without_idle():  # type: ignore[no-untyped-def]
        client = connect()
        real = client.has_capability
        client.has_capability = lambda name: name.upper() != "IDLE" and real(name)
        client.idle = None  # the poller must not try it
        connections.append(client)
        return client

    poller.connect = connect_without_idle  # type: ignore[method-assign]
    with running(poller):
        wait_until(
            lambda: (
                db.session.execute(select(ImapMailboxState.last_success_at)).scalar_one_or_none() is not None
            )
        )
        for n in (1, 2):
            mailbox.append(raw(n, "poll"))
            wait_until(lambda n=n: inbound_count() == n, timeout=10)
    assert len(connections) == 1, "polling should keep its one connection"
    assert sorted(t.subject for t in tickets()) == ["Mail 1", "Mail 2"]


@pytest.mark.parametrize("tls", ["imaps", "starttls"])
def test_tls_connections_are_verified_and_work(app, senders, mailbox, dovecot_server, monkeypatch, tls):
    poller = poller_for(app, mailbox, url=dovecot_server.url(mailbox.folder, tls))
    with pytest.raises(ssl.SSLCertVerificationError):  # a certificate nobody vouched for
        poller.connect()
    monkeypatch.setenv("SSL_CERT_FILE", str(dovecot_server.certificate))  # trust it now
    mailbox.append(raw(1, tls))
    assert outcomes(drain(poller)) == ["created"]
    assert mailbox.message_ids(mailbox.processed) == [f"{tls}-1@client.example"]


@pytest.mark.parametrize(
    "user",
    [
        "umlaut@helpdesk.test",  # pässwörd: UnicodeEncodeError, with its traceback, at every retry
        "help desk@helpdesk.test",  # the user name went unquoted: BAD
        "jürgen@helpdesk.test",
    ],
)
def test_credentials_login_cannot_carry_log_in(app, dovecot_server, user):
    """The percent-encoding of `IMAP_URL` carries any user name and password; LOGIN
    does not (imaplib quotes the password only, and sends ASCII only). A user name
    is quoted, and credentials that are not ASCII go by AUTHENTICATE PLAIN in UTF-8
    (RFC 4616), which Dovecot offers."""
    (source,) = parse_imap_urls(dovecot_server.url("INBOX", user=user))
    assert (source.username, source.password) == (user, ACCOUNTS[user])
    app.config.update(IMAP_PROCESSED_FOLDER="Processed", IMAP_FAILED_FOLDER="Failed")
    poller = ImapPoller(app, source, threading.Event(), max_backoff=0.5)
    with poller.connect() as client:
        assert client.select_folder("INBOX")[b"UIDVALIDITY"]


def test_credentials_that_are_not_ascii_without_authenticate_plain_fail_quietly_saying_why(
    app, dovecot_server, monkeypatch
):
    """A server without AUTH=PLAIN leaves LOGIN, which cannot send them: a login
    failure naming the reason, noted and retried as a connection failure (no
    traceback at every retry, no command sent)."""
    (source,) = parse_imap_urls(dovecot_server.url("INBOX", user="umlaut@helpdesk.test"))
    offered = IMAPClient.capabilities
    monkeypatch.setattr(
        IMAPClient, "capabilities", lambda self: tuple(c for c in offered(self) if c != b"AUTH=PLAIN")
    )
    poller = ImapPoller(app, source, threading.Event(), max_backoff=0.5)
    with pytest.raises(LoginError, match="AUTHENTICATE PLAIN") as refused:
        poller.connect()
    assert isinstance(refused.value, ImapPoller.failed_quietly)


@pytest.mark.parametrize(
    ("dripped", "tls", "ended_by"),
    [
        ("fetch", "", "deadline"),
        ("fetch", "", "stop"),
        ("greeting", "", "deadline"),
        ("greeting", "", "stop"),
        ("greeting", "imaps", "deadline"),  # the TLS handshake (its own deadline), then the greeting
    ],
)
def test_a_server_dripping_is_cut_off(
    app, senders, mailbox, dovecot_server, monkeypatch, dripped, tls, ended_by
):
    """A server handing its FETCH answer over a byte at a time beats SOCKET_TIMEOUT,
    which bounds each recv: the poller waited for as long as it dripped, kept
    renewing the mailbox's lease all the while, and a stop waited for it too. The
    read's deadline (READ_SECONDS), or a stop, cuts the connection; the round ends,
    and the next one takes the mail. The greeting, which imaplib reads while the
    connection is built, before the read watch existed, held them too (IMAP review
    leftover): building the connection is watched as one read."""
    monkeypatch.setattr(imap, "SOCKET_TIMEOUT", 1.0)  # each byte comes well within it
    monkeypatch.setattr(imap, "READ_SECONDS", 1.0 if ended_by == "deadline" else 60.0)
    monkeypatch.setattr(imap, "STOP_GRACE_SECONDS", 0.5)
    monkeypatch.setattr(imap, "WATCH_SECONDS", 0.2)
    monkeypatch.setenv("SSL_CERT_FILE", str(dovecot_server.certificate))
    mailbox.append(raw(1, "drip"))
    port = dovecot_server.tls_port if tls == "imaps" else dovecot_server.port
    with DrippingImap(port, trigger=b"BODY.PEEK[]" if dripped == "fetch" else None, drip=0.2) as relay:
        url = relay.url(dovecot_server.url(mailbox.folder, tls), port)
        poller = poller_for(app, mailbox, url=url, IMAP_LEASE_SECONDS=3)
        db.session.rollback()
        thread = threading.Thread(target=poller.run, name="test-imap-drip")
        thread.start()
        try:
            assert relay.dripping.wait(10), f"the {dripped} was never dripped"
            started = time.monotonic()
            if ended_by == "stop":
                poller.stopping.set()
                thread.join(timeout=3)
                assert not thread.is_alive(), "a stop waited for the dripping server"
            else:
                assert relay.cut.wait(3), "the drip was not cut"
                wait_until(lambda: mailbox.count(mailbox.processed) == 1, timeout=30)
            assert relay.cut.is_set() and time.monotonic() - started < 5
        finally:
            poller.stopping.set()
            thread.join(timeout=30)
    assert [t.subject for t in tickets()] == ([] if ended_by == "stop" else ["Mail 1"])


def test_several_mailboxes_are_polled_side_by_side(app, senders, dovecot_server):
    boxes = [TestMailbox(dovecot_server, "m" + uuid.uuid4().hex[:12]) for _ in range(2)]
    app.config.update(IMAP_PROCESSED_FOLDER="Processed", IMAP_FAILED_FOLDER="Failed", IMAP_POLL_SECONDS=2)
    sources = parse_imap_urls(", ".join(box.url for box in boxes))
    stopping = threading.Event()
    pollers = [ImapPoller(app, source, stopping, max_backoff=0.5) for source in sources]
    threads = [threading.Thread(target=poller.run) for poller in pollers]
    for index, box in enumerate(boxes):
        box.append(*(raw(n, f"box{index}") for n in range(3)))
    db.session.rollback()
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: inbound_count() == 6)
    finally:
        stopping.set()
        for thread in threads:
            thread.join(timeout=30)
    keys = db.session.execute(
        select(ImapMailboxState.key, ImapMailboxState.last_uid).order_by(ImapMailboxState.key)
    ).all()
    assert [tuple(row) for row in keys] == sorted((source.key, 3) for source in sources)
    assert sorted(t.number for t in tickets()) == [1, 2, 3, 4, 5, 6]
    assert [box.count() for box in boxes] == [0, 0]


def test_poller_reconnects_after_the_imap_server_restarts(app, senders, mailbox, dovecot_server):
    poller = poller_for(app, mailbox)
    with running(poller):
        mailbox.append(raw(1, "restart"))
        wait_until(lambda: inbound_count() == 1)
        dovecot_server.pause()
        try:  # the poller loses its connection, records it and backs off
            wait_until(
                lambda: db.session.execute(select(ImapMailboxState.last_error)).scalar_one(),
                what="recording the lost connection",
            )
        finally:
            dovecot_server.resume()
        mailbox.append(raw(2, "restart"))
        wait_until(lambda: inbound_count() == 2)
    assert sorted(t.subject for t in tickets()) == ["Mail 1", "Mail 2"]
    assert mailbox.count(mailbox.processed) == 2


# -- no loss, no duplicate -------------------------------------------------------------


def test_database_down_mid_batch_moves_nothing_unrecorded(pg_app, pg_server, mailbox):
    SendersService(db.session).add("@example.com", "Example Ltd")
    db.session.commit()
    total = 150
    expected = {f"dbdown-{i}@client.example" for i in range(total)}
    mailbox.append(*(raw(i, "dbdown", sender=f"user{i}@example.com") for i in range(total)))
    poller = poller_for(pg_app, mailbox)
    with running(poller):
        wait_until(lambda: inbound_count() >= 20)
        db.session.remove()
        pg_server.pause()
        try:
            time.sleep(2)  # the poller hits the outage and moves only what was committed
            waiting, moved = mailbox.count(), mailbox.count(mailbox.processed)
            assert waiting + moved == total and waiting > 0, (waiting, moved)
            time.sleep(2)
            assert mailbox.count(mailbox.processed) == moved, "moved while the database was down"
        finally:
            pg_server.resume()
        wait_until(lambda: mailbox.count() == 0 and inbound_count() == total, timeout=60)
    stored = db.session.execute(select(InboundMail.message_id)).scalars().all()
    assert sorted(stored) == sorted(expected)
    numbers = db.session.execute(select(Ticket.number).order_by(Ticket.number)).scalars().all()
    assert numbers == list(range(1, total + 1))
    assert sorted(mailbox.message_ids(mailbox.processed)) == sorted(expected)


def test_kill_9_mid_batch_then_restart_processes_every_message_once(app, database_url, mailbox, tmp_path):
    SendersService(db.session).add("@example.com", "Example Ltd")
    db.session.commit()
    total = 300
    expected = {f"kill-{i}@client.example" for i in range(total)}
    mailbox.append(*(raw(i, "kill", sender=f"user{i}@example.com") for i in range(total)))
    env = mailbox.gateway_settings()
    db.session.remove()
    process = start(database_url, free_port(), tmp_path, **env)
    try:
        # Watch the IMAP side, not the database: on SQLite a reader would compete with
        # the poller for the database lock and see the count late.
        wait_until_any(lambda: mailbox.count(mailbox.processed) >= 30, timeout=60, interval=0.02)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        killed_at = inbound_count()
        db.session.rollback()
        assert 0 < killed_at < total, "the kill came too late (or too early) to prove anything"
        process = start(database_url, free_port(), tmp_path, **env)
        wait_until(lambda: mailbox.count() == 0 and inbound_count() == total, timeout=120)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    stored = db.session.execute(select(InboundMail.message_id)).scalars().all()
    assert sorted(stored) == sorted(expected), "a message was lost or stored twice"
    numbers = db.session.execute(select(Ticket.number).order_by(Ticket.number)).scalars().all()
    assert numbers == list(range(1, total + 1))
    in_processed = mailbox.message_ids(mailbox.processed)
    assert sorted(in_processed) == sorted(expected), "the processed folder lost or doubled mail"


def _dying_at(poller: ImapPoller, message_id: str, dead: threading.Event | None = None) -> ImapPoller:
    """`poller`, whose process dies each time it takes the mail of `message_id`
    (setting `dead`, for the process's other threads)."""
    take = poller._ingest

    def ingest(raw: bytes, envelope: Envelope, mail: ParsedMail) -> Result:
        if mail.message_id == message_id:
            if dead is not None:
                dead.set()
            raise _Died(message_id)
        return take(raw, envelope, mail)

    poller._ingest = ingest  # type: ignore[method-assign]
    return poller


def test_a_mail_that_kills_the_gateway_each_time_is_filed_as_failed_and_the_rest_goes_on(
    app, senders, mailbox, runner
):
    """A mail whose taking kills the gateway process every time. The counts of failed
    attempts lived in the process's memory, so each new process (a restart, or the
    gateway on another host taking the lease over) began again from nothing: the mail
    was never filed, and the mail after it was never read. The attempts begun are
    kept in the database: each process that begins taking the mail alone and never
    finishes counts once, and after TAKING_ATTEMPTS of them it is quarantined by its
    place and filed in the failed folder unread."""
    mailbox.append(raw(0, "before"), raw(1, "deadly"), raw(2, "after"))
    deaths = 0
    for _process in range(6):  # each a new gateway process: nothing remembered
        poller = _dying_at(poller_for(app, mailbox), "deadly-1@client.example")
        try:
            drain(poller)
        except _Died:
            deaths += 1
            if deaths == 1:  # a mail of a later pass, never read while the deadly one blocks
                mailbox.append(raw(3, "later"))
            continue
        break
    assert mailbox.count() == 0, f"the mailbox is still blocked after {deaths} deaths"
    assert deaths == 1 + imap.TAKING_ATTEMPTS  # its batch once, then each time alone
    assert mailbox.count(mailbox.failed) == 1 and mailbox.count(mailbox.processed) == 3
    assert sorted(mailbox.message_ids(mailbox.processed)) == [
        "after-2@client.example",
        "before-0@client.example",
        "later-3@client.example",
    ]
    assert len(tickets()) == 3
    item = db.session.execute(select(QuarantineItem)).scalar_one()
    assert "UID 2" in item.reason and "never finished" in item.reason
    state = db.session.execute(select(ImapMailboxState)).scalar_one()
    assert state.last_uid == 4
    # Its bytes were never read: staff see why; there is no mail to approve here (it
    # is taken again once moved back to the mailbox).
    shown = runner.invoke(args=["quarantine", "show", str(item.id)])
    assert shown.exit_code == 0 and "never finished" in shown.output
    approved = runner.invoke(args=["quarantine", "approve", str(item.id)])
    assert approved.exit_code == 1 and "Cannot approve" in approved.stderr and len(tickets()) == 3


def _stopped_taking(poller: ImapPoller, uid: int) -> ImapPoller:
    """`poller`, stopped cleanly (as by SIGTERM: its loop finishes what is in flight and
    gives the mailbox up) each time it has fetched a batch holding `uid` and before it
    reads any of it."""
    process = poller._process_batch

    def process_batch(
        client: IMAPClient, batch: list[int], sizes: dict[int, int]
    ) -> list[tuple[int, Result]]:
        if uid in batch:
            poller.stopping.set()
        return process(client, batch, sizes)

    poller._process_batch = process_batch  # type: ignore[method-assign,assignment]
    return poller


def test_clean_stops_while_a_good_mail_is_taken_never_file_it_as_failed(app, senders, mailbox):
    """Deploys during a backlog: each gateway process is stopped cleanly (SIGTERM) while
    it takes the same good mail. A clean stop is no death: it must leave no mark that
    sends the next process one message at a time, and count nothing against the mail
    it was taking. Counted, the mail was filed as failed, unread, after three deploys."""
    mailbox.append(*(raw(i, "deploy") for i in range(4)))
    for _process in range(1 + imap.TAKING_ATTEMPTS):  # each a new gateway process, stopped
        drain(_stopped_taking(poller_for(app, mailbox), 2))
    drain(poller_for(app, mailbox))
    assert mailbox.count(mailbox.failed) == 0, "a good mail was filed as failed unread"
    assert db.session.execute(select(QuarantineItem)).scalars().all() == []
    assert sorted(mailbox.message_ids(mailbox.processed)) == [f"deploy-{i}@client.example" for i in range(4)]
    assert len(tickets()) == 4
    assert db.session.execute(select(ImapMailboxState.last_uid)).scalar_one() == 4


def test_a_mail_that_kills_the_gateway_from_another_mailbox_files_no_good_mail_here(
    app, senders, dovecot_server
):
    """One gateway process polls two mailboxes; a mail in the second kills the process
    each time it is taken. Every death came while the first mailbox's poller was taking
    a good mail alone (the batch the first death cut short is taken one at a time), so
    the good mail was counted as the killer and filed as failed, unread, with the
    deadly one. A message taken alone is now the only mail the process's pollers take
    meanwhile: a death is counted against that one alone."""
    good, deadly = (TestMailbox(dovecot_server, "m" + uuid.uuid4().hex[:12]) for _ in range(2))
    good.append(*(raw(n, "good") for n in range(3)))
    deadly.append(raw(0, "deadly"), raw(1, "after"))
    deaths = 0
    for _process in range(8):  # each a new gateway process polling both mailboxes
        dead = threading.Event()  # set when the process dies: its every thread stops
        first = poller_for(app, good)
        second = _dying_at(poller_for(app, deadly), "deadly-0@client.example", dead)
        take = first._process_batch

        def process_batch(client, batch, sizes, dead=dead, take=take):  # type: ignore[no-untyped-def]
            dead.wait(1.0)  # in flight until the process dies, or for a second
            if dead.is_set():
                raise _Died("the other mailbox's mail")
            return take(client, batch, sizes)

        first._process_batch = process_batch  # type: ignore[method-assign]
        begin = first._begin

        def begin_unless_dead(batch, *, alone, dead=dead, begin=begin):  # type: ignore[no-untyped-def]
            # A real death stops every thread at once; here the first poller's thread
            # runs on until it looks, and waiting at the gate while the other mailbox's
            # mail was taken alone, it passed it once that mail had "died" and counted
            # its next message before its batch looked (seen under load).
            if dead.is_set():
                raise _Died("the other mailbox's mail")
            return begin(batch, alone=alone)

        first._begin = begin_unless_dead  # type: ignore[method-assign]
        ended: list[BaseException] = []

        def poll(poller: ImapPoller, ended: list[BaseException] = ended) -> None:
            with app.app_context():
                try:
                    drain(poller)
                except _Died as exc:
                    ended.append(exc)

        db.session.rollback()
        threads = [threading.Thread(target=poll, args=(poller,)) for poller in (first, second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        deaths += bool(ended)
        if not ended and good.count() == 0 and deadly.count() == 0:
            break
    db.session.rollback()
    assert good.count() == 0 and deadly.count() == 0, f"still blocked after {deaths} deaths"
    assert good.count(good.failed) == 0, "a good mail of the other mailbox was filed as the killer"
    assert sorted(good.message_ids(good.processed)) == [f"good-{n}@client.example" for n in range(3)]
    assert deadly.count(deadly.failed) == 1
    assert deadly.message_ids(deadly.processed) == ["after-1@client.example"]
    item = db.session.execute(select(QuarantineItem)).scalar_one()
    assert "never finished" in item.reason and "UID 1" in item.reason


def test_smtp_mail_is_not_stored_beside_a_message_the_poller_takes_alone(app, gateway, senders, mailbox):
    """The SMTP listener runs in the gateway's process too: a mail it stores while the
    poller takes a message alone could kill the process, and the death would be
    counted against that message (three such, sent when the gateway restarts, filed
    it as failed unread). An SMTP mail waits until the message taken alone is done."""
    mailbox.append(raw(0, "suspect"))
    with pytest.raises(_Died):  # a process died in its batch: the next takes it alone
        drain(_dying_at(poller_for(app, mailbox), "suspect-0@client.example"))
    in_flight, go_on = threading.Event(), threading.Event()
    poller = poller_for(app, mailbox)
    take = poller._ingest

    def ingest(raw: bytes, envelope: Envelope, mail: ParsedMail) -> Result:
        in_flight.set()
        go_on.wait(10)
        return take(raw, envelope, mail)

    poller._ingest = ingest  # type: ignore[method-assign]
    answers: list[tuple[int, bytes]] = []

    def poll() -> None:
        with app.app_context():
            drain(poller)

    polling = threading.Thread(target=poll)
    sending = threading.Thread(
        target=lambda: answers.append(send(gateway.port, raw(1, "smtp"), mail_from="ann@example.com"))
    )
    polling.start()
    try:
        assert in_flight.wait(10), "the message was not taken alone"
        sending.start()
        time.sleep(1.5)
        db.session.rollback()
        stored = inbound_count()
        db.session.rollback()  # no SQLite lock held while the poller writes
        assert stored == 0, "an SMTP mail was stored beside the message taken alone"
    finally:
        go_on.set()
        polling.join(timeout=30)
        sending.join(timeout=30)
    assert answers == [(250, b"2.0.0 OK created TKT-000002")]
    assert sorted(t.subject for t in tickets()) == ["Mail 0", "Mail 1"]


def test_a_gateway_that_loses_the_mailbox_while_taking_a_mail_alone_takes_its_count_back(
    app, senders, mailbox
):
    """A gateway stalls while it takes a mail alone, another host takes the lease
    over, and the first goes on running, waiting for its turn. It did not die on the
    mail: its count was left standing, and three such stalls (or two and a deploy)
    filed a good mail as failed unread. Its loop takes the count back at once."""
    mailbox.append(raw(0, "moved"))
    with pytest.raises(_Died):  # a process died in its batch: the next takes it alone
        drain(_dying_at(poller_for(app, mailbox), "moved-0@client.example"))
    poller = poller_for(app, mailbox)
    take = poller._ingest
    counted: list[int] = []

    def ingest(raw: bytes, envelope: Envelope, mail: ParsedMail) -> Result:
        with app.app_context():  # meanwhile another host took the mailbox over
            counted.append(db.session.execute(select(ImapMailboxState.taking_processes)).scalar_one())
            db.session.execute(
                update(ImapMailboxState).values(owner="elsewhere:1:0", lease_until=datetime(2100, 1, 1))
            )
            db.session.commit()
        return take(raw, envelope, mail)

    poller._ingest = ingest  # type: ignore[method-assign]

    def count() -> int:
        return db.session.execute(select(ImapMailboxState.taking_processes)).scalar_one()

    with running(poller):
        wait_until(lambda: counted == [1] and count() == 0, what="the count taken back", timeout=15)
    assert mailbox.count() == 1  # left to the holder, who finds it recorded: a duplicate


def test_lost_answers_to_the_count_of_a_taking_never_file_a_good_mail(app, senders, mailbox):
    """The count of the processes that began a message alone is added by an UPDATE
    whose COMMIT may lose its answer (the connection drops as it goes): the database
    kept the count, the poller took it for nothing kept, and its round failed with
    the process alive, so it never took it back. Three such losses stood as three
    deaths, and the good mail was filed as failed, unread. A lost answer is now taken
    for a count that may have been kept, and taken back as the round ends."""
    mailbox.append(raw(0, "unlucky"))
    with pytest.raises(_Died):  # a process died in its batch: the next takes it alone
        drain(_dying_at(poller_for(app, mailbox), "unlucky-0@client.example"))
    poller = poller_for(app, mailbox)
    for _loss in range(imap.TAKING_ATTEMPTS):  # the count's UPDATE sets taking_uid
        with commit_answer_lost(lambda statement: "taking_uid=" in statement):
            with pytest.raises((exc.OperationalError, OutcomeUnknown)):
                drain(poller)
        assert mailbox.count() == 1
    assert outcomes(drain(poller)) == ["created"]
    assert mailbox.count(mailbox.failed) == 0, "a good mail was filed as failed unread"
    assert db.session.execute(select(QuarantineItem)).scalars().all() == []
    assert mailbox.message_ids(mailbox.processed) == ["unlucky-0@client.example"]


def _mailbox_finding(app: Flask) -> Finding:
    findings = check(app)
    mailboxes = [f for f in findings if f.part.startswith("mailbox")]
    assert len(mailboxes) == 1, [f.line() for f in findings]
    return mailboxes[0]


def _taking() -> tuple[str, int]:
    """The mailbox's last error and its count of processes that began the message taken
    alone, read with no transaction left open (SQLite's write lock)."""
    db.session.rollback()
    row = db.session.execute(select(ImapMailboxState.last_error, ImapMailboxState.taking_processes)).one()
    db.session.rollback()
    return row.last_error, row.taking_processes


def _hung() -> tuple[str, int] | None:
    error, processes = _taking()
    return (error, processes) if error.startswith("ingest hangs") else None


def test_an_ingest_hung_on_a_lock_is_reported_and_is_no_death_of_its_mail(
    pg_app, mailbox, caplog, monkeypatch
):
    """A mail taken alone (after a death in its batch) whose ingest waits on a lock
    nobody releases. The poller waited for ever, logged nothing, and the health check
    called the mailbox healthy until IMAP_STUCK_AFTER; and its count stood, so each
    restart that ended the hang (a supervisor acting on the check) counted as the
    mail's death, and the third filed a good mail as failed, unread. A mail that
    waits rather than computes has its count taken back within WAITING_SECONDS (a
    restart then counts nothing, reported or not); past SMTP_TIMEOUT the hang is
    logged and fails the check with a line of its own; the mail is taken once the
    lock goes."""
    SendersService(db.session).add("@example.com", "Example Ltd")
    db.session.commit()
    pg_app.config.update(IMAP_URL=mailbox.url, SMTP_LISTEN="127.0.0.1:1")
    mailbox.append(raw(0, "before"))
    drain(poller_for(pg_app, mailbox))  # a good poll: the mailbox is healthy
    mailbox.append(raw(1, "locked"))
    with pytest.raises(_Died):  # a process died in its batch: the next takes it alone
        drain(_dying_at(poller_for(pg_app, mailbox), "locked-1@client.example"))
    monkeypatch.setattr(database_waits, "WAITING_SECONDS", 1.0)  # none before
    poller = poller_for(pg_app, mailbox, SMTP_TIMEOUT=timedelta(seconds=8))
    caplog.set_level(logging.INFO, logger="mailgateway.imap")

    def said(text: str) -> bool:
        return any(text in r.getMessage() for r in caplog.records)

    with db.engine.connect() as locker:  # another session holds a lock on what ingest writes
        locker.execute(text("LOCK TABLE inbound_mails IN SHARE MODE"))
        with running(poller):
            try:
                wait_until(lambda: said("UID 2 waits in ingest"), what="the wait seen")
                assert _taking() == ("", 0), "a restart now would count the wait as the mail's death"
                assert _mailbox_finding(pg_app).healthy  # not yet past SMTP_TIMEOUT
                _error, processes = wait_until(_hung, what="the hang recorded on the mailbox")
                assert processes == 0
                finding = _mailbox_finding(pg_app)
                assert not finding.healthy
                assert finding.detail.startswith("ingest hangs: UID 2 has been in ingest for more than 8 s")
                assert "waiting (on the database, a lock)" in finding.detail
                assert said("UID 2 has been in ingest")
                assert mailbox.count() == 1
            finally:
                locker.rollback()  # the lock goes: the mail is taken
            wait_until(lambda: mailbox.count() == 0, what="the mail taken once the lock went")
            wait_until(lambda: _mailbox_finding(pg_app).healthy, what="the mailbox healthy again")
    assert sorted(mailbox.message_ids(mailbox.processed)) == [
        "before-0@client.example",
        "locked-1@client.example",
    ]
    assert db.session.execute(select(QuarantineItem)).scalars().all() == []
    assert _taking()[1] == 0


def test_a_mail_taken_alone_that_waits_on_the_database_holds_no_other_mail_back(
    pg_app, mailbox, caplog, monkeypatch
):
    """A mail taken alone (after a death in its batch) whose ingest waits on the
    database: another session holds an uncommitted row under its dedup key. Every
    other taking of the process waited behind it for as long as the wait lasted, so
    the SMTP listener answered each sender 451 at its deadline. Once the wait is seen
    (its count taken back: a death is no longer its own), it is taken as shared, and
    an SMTP mail is stored beside it at once."""
    SendersService(db.session).add("@example.com", "Example Ltd")
    db.session.commit()
    pg_app.config.update(IMAP_URL=mailbox.url)
    mailbox.append(raw(0, "locked"))
    with pytest.raises(_Died):  # a process died in its batch: the next takes it alone
        drain(_dying_at(poller_for(pg_app, mailbox), "locked-0@client.example"))
    monkeypatch.setattr(database_waits, "WAITING_SECONDS", 1.0)
    caplog.set_level(logging.INFO, logger="mailgateway.imap")
    with db.engine.connect() as locker:  # holds the key the mail's ingest inserts
        locker.execute(
            text(
                "INSERT INTO inbound_mails (dedup_key, channel, size, outcome, mail_from, from_address,"
                " from_source, recipients, subject, reason, received_at, raw) VALUES"
                " ('locked-0@client.example', 'imap', 0, 'created', '', '', '', '', '', '', now(), '')"
            )
        )
        with contextmanager(start_gateway)(pg_app, SMTP_TIMEOUT=timedelta(seconds=6)) as gateway:
            with running(poller_for(pg_app, mailbox, SMTP_TIMEOUT=timedelta(seconds=6))):
                try:
                    wait_until(
                        lambda: any("UID 1 waits in ingest" in r.getMessage() for r in caplog.records),
                        what="the wait seen",
                    )
                    started = time.monotonic()
                    smtp_mail = raw(1, "smtp", sender="bob@example.com")  # another contact: none of its locks
                    answer = send(gateway.port, smtp_mail, mail_from="bob@example.com")
                    assert answer == (250, b"2.0.0 OK created TKT-000001"), answer
                    assert time.monotonic() - started < 3, "the SMTP mail waited for the mail taken alone"
                    assert mailbox.count() == 1
                finally:
                    locker.rollback()  # the key goes: the mail is taken
                wait_until(lambda: mailbox.count() == 0, what="the mail taken once the key went")
    assert sorted(t.subject for t in tickets()) == ["Mail 0", "Mail 1"]
    assert _taking()[1] == 0


def test_an_ingest_that_spins_on_its_mail_keeps_its_count(app, senders, mailbox):
    """A hang that is the mail's own (the pipeline computing on it for ever) is told
    from one waiting on the database by the CPU its thread used: it is reported the
    same way, but its count stands, so the restarts that end it file it after
    TAKING_ATTEMPTS, as a mail that kills the gateway is."""
    app.config.update(IMAP_URL=mailbox.url, SMTP_LISTEN="127.0.0.1:1")
    mailbox.append(raw(0, "spinning"))
    with pytest.raises(_Died):  # a process died in its batch: the next takes it alone
        drain(_dying_at(poller_for(app, mailbox), "spinning-0@client.example"))
    poller = poller_for(app, mailbox, SMTP_TIMEOUT=timedelta(seconds=2))
    take, done = poller._ingest, threading.Event()

    def ingest(raw: bytes, envelope: Envelope, mail: ParsedMail) -> Result:
        while not done.is_set():  # computing, as a pipeline looping on the mail would
            sum(range(10_000))
        return take(raw, envelope, mail)

    poller._ingest = ingest  # type: ignore[method-assign]
    with running(poller):
        try:
            error, processes = wait_until(_hung, what="the hang recorded on the mailbox")
            assert "computing" in error and processes == 1
            assert not _mailbox_finding(app).healthy
        finally:
            done.set()
        wait_until(lambda: mailbox.count() == 0, what="the mail taken once its ingest ended")
    assert mailbox.message_ids(mailbox.processed) == ["spinning-0@client.example"]


def test_an_ingest_that_waits_on_no_database_keeps_its_count(app, senders, mailbox, monkeypatch):
    """One rule for IMAP and SMTP (`mailgateway/database_waits.py`): only a wait on
    the database is no death of the mail. The poller read the share of its time the
    ingest's thread spent on the CPU, and took any wait off it (here a sleep, as a
    lock in the process or a slow disk would be) for a database wait: it took the
    count back, as the SMTP listener never did for the same mail."""
    app.config.update(IMAP_URL=mailbox.url, SMTP_LISTEN="127.0.0.1:1")
    mailbox.append(raw(0, "sleeping"))
    with pytest.raises(_Died):  # a process died in its batch: the next takes it alone
        drain(_dying_at(poller_for(app, mailbox), "sleeping-0@client.example"))
    monkeypatch.setattr(database_waits, "WAITING_SECONDS", 1.0)
    poller = poller_for(app, mailbox, SMTP_TIMEOUT=timedelta(seconds=3))
    take, done = poller._ingest, threading.Event()

    def ingest(raw: bytes, envelope: Envelope, mail: ParsedMail) -> Result:
        done.wait(30)  # off the CPU, and off the database
        return take(raw, envelope, mail)

    poller._ingest = ingest  # type: ignore[method-assign]
    with running(poller):
        try:
            error, processes = wait_until(_hung, what="the hang recorded on the mailbox")
            assert "computing" in error and processes == 1, (error, processes)
        finally:
            done.set()
        wait_until(lambda: mailbox.count() == 0, what="the mail taken once its ingest ended")
    assert mailbox.message_ids(mailbox.processed) == ["sleeping-0@client.example"]


# -- several gateways on one mailbox ------------------------------------------------------------


def _owner() -> str:
    owner = db.session.execute(select(ImapMailboxState.owner)).scalar_one_or_none() or ""
    db.session.rollback()
    return owner


def test_two_gateways_on_one_mailbox_poll_it_one_at_a_time(app, database_url, mailbox, tmp_path):
    """Two hosts configured alike: one holds the mailbox's lease and polls, the other
    waits; killed, the first lets the lease run out and the second takes over."""
    SendersService(db.session).add("@example.com", "Example Ltd")
    db.session.commit()
    env = mailbox.gateway_settings()
    db.session.remove()
    first_log: list[str] = []
    second_log: list[str] = []
    first = start(database_url, free_port(), tmp_path / "host-a", first_log, **env)
    second = None
    try:
        wait_until(lambda: f":{first.pid}:" in _owner(), what="the first gateway taking the mailbox")
        second = start(database_url, free_port(), tmp_path / "host-b", second_log, **env)
        wait_until(lambda: any("held by" in line for line in second_log), what="the second one waiting")
        mailbox.append(*(raw(i, "turns", sender=f"user{i}@example.com") for i in range(10)))
        wait_until(lambda: mailbox.count(mailbox.processed) == 10)
        assert f":{first.pid}:" in _owner()
        assert not any("connected (UIDVALIDITY" in line for line in second_log), "both polled"
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        mailbox.append(*(raw(i, "turns", sender=f"user{i}@example.com") for i in range(10, 15)))
        wait_until(lambda: mailbox.count(mailbox.processed) == 15, timeout=60)
        assert f":{second.pid}:" in _owner()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        if second is not None:
            second.send_signal(signal.SIGTERM)
            assert second.wait(timeout=30) == 0
    assert _owner() == "", "a gateway that stops gives the mailbox up"
    numbers = db.session.execute(select(Ticket.number).order_by(Ticket.number)).scalars().all()
    assert numbers == list(range(1, 16))


# Short enough that holding a batch up for two leases takes seconds; long enough that
# a renewal every third of it survives two busy cores.
LEASE = 2


def _two_pollers(app: Flask, mailbox: TestMailbox) -> tuple[ImapPoller, ImapPoller]:
    """Two gateways configured alike on one mailbox, as on two hosts (each its own owner)."""
    SendersService(db.session).add("@example.com", "Example Ltd")
    db.session.commit()
    first, second = (poller_for(app, mailbox, IMAP_LEASE_SECONDS=LEASE) for _host in range(2))
    second.takings = Takings()  # another host's process takes its mail by itself
    return first, second


def _held(
    real: Callable[..., Result], held: threading.Event, go: threading.Event, *, after: bool
) -> Callable[..., Result]:
    """`real` (a poller's `_ingest`) held up until `go`, before it runs (a slow
    database) or after it committed (a poller stalled between commit and move)."""

    def ingest(*args: object) -> Result:
        if not after:
            held.set()
            assert go.wait(30), "never let go"
        result = real(*args)
        if after:
            held.set()
            assert go.wait(30), "never let go"
        return result

    return ingest


def test_a_poller_held_up_in_a_batch_keeps_the_mailbox_and_the_other_waits(app, mailbox, monkeypatch):
    """A slow database holds the first poller's batch up for two leases: its lease is
    renewed while the batch runs, so the second gateway never fetches or ingests
    anything, and each mail is one ticket, moved once, by the first."""
    first, second = _two_pollers(app, mailbox)
    held, go = threading.Event(), threading.Event()
    monkeypatch.setattr(first, "_ingest", _held(first._ingest, held, go, after=False))
    seen_by_second: list[object] = []
    fetch, ingest = second._fetch, second._ingest

    def second_fetches(client, uids, items):  # type: ignore[no-untyped-def]
        seen_by_second.append(("fetch", uids))
        return fetch(client, uids, items)

    def second_ingests(*args):  # type: ignore[no-untyped-def]
        seen_by_second.append("ingest")
        return ingest(*args)

    monkeypatch.setattr(second, "_fetch", second_fetches)
    monkeypatch.setattr(second, "_ingest", second_ingests)
    total = 4
    expected = sorted(f"slow-{i}@client.example" for i in range(total))
    with running(first):
        try:
            wait_until(lambda: _owner() == first.owner, what="the first poller taking the mailbox")
            with running(second):
                wait_until(lambda: second.held_by == first.owner, what="the second one waiting")
                mailbox.append(*(raw(i, "slow", sender=f"user{i}@example.com") for i in range(total)))
                assert held.wait(30), "the first poller never started its batch"
                time.sleep(2 * LEASE)
                assert _owner() == first.owner, "the lease ran out under a batch still running"
                assert seen_by_second == [], "the second gateway worked the mailbox beside the first"
                go.set()
                wait_until(lambda: mailbox.count(mailbox.processed) == total, timeout=30)
                assert seen_by_second == []
        finally:
            go.set()  # before the poller is stopped: it is waiting on it
    assert mailbox.count() == 0
    assert sorted(mailbox.message_ids(mailbox.processed)) == expected
    assert sorted(db.session.execute(select(InboundMail.message_id)).scalars()) == expected
    assert [t.number for t in tickets()] == list(range(1, total + 1))


def test_a_poller_that_lost_the_mailbox_mid_batch_moves_nothing(app, mailbox, monkeypatch):
    """The first poller stalls between its commits and its moves until the lease has
    passed to the second gateway (handed over here, as when a paused machine's lease
    runs out). Woken, it moves nothing; the second reads the mail again, the first's
    committed mail as duplicates, and moves each message once."""
    first, second = _two_pollers(app, mailbox)
    held, go = threading.Event(), threading.Event()
    monkeypatch.setattr(first, "_ingest", _held(first._ingest, held, go, after=True))
    moved_by_first: list[tuple[list[int], str]] = []
    batches_done = threading.Semaphore(0)
    move, process_batch = first._move, first._process_batch

    def first_moves(client, uids, folder):  # type: ignore[no-untyped-def]
        if uids:
            moved_by_first.append((list(uids), folder))
        return move(client, uids, folder)

    def first_processes(*args):  # type: ignore[no-untyped-def]
        try:
            return process_batch(*args)
        finally:
            batches_done.release()

    monkeypatch.setattr(first, "_move", first_moves)
    monkeypatch.setattr(first, "_process_batch", first_processes)
    total = 4
    expected = sorted(f"lost-{i}@client.example" for i in range(total))
    with running(first):
        try:
            wait_until(lambda: _owner() == first.owner, what="the first poller taking the mailbox")
            mailbox.append(*(raw(i, "lost", sender=f"user{i}@example.com") for i in range(total)))
            assert held.wait(30), "the first poller never committed a mail"
            # While it stalls its lease runs out and the second gateway takes the mailbox.
            db.session.execute(
                update(ImapMailboxState).values(owner=second.owner, lease_until=now() + timedelta(minutes=1))
            )
            db.session.commit()
            with running(second):
                wait_until(lambda: mailbox.count(mailbox.processed) == total, timeout=30)
                go.set()
                assert batches_done.acquire(timeout=30), "the first poller never came out of its batch"
                assert moved_by_first == [], "a poller that lost the mailbox moved mail"
                assert _owner() == second.owner
        finally:
            go.set()  # before the poller is stopped: it is waiting on it
    assert moved_by_first == []
    assert mailbox.count() == 0 and mailbox.count(mailbox.failed) == 0
    assert sorted(mailbox.message_ids(mailbox.processed)) == expected
    assert sorted(db.session.execute(select(InboundMail.message_id)).scalars()) == expected
    assert [t.number for t in tickets()] == list(range(1, total + 1))
    assert db.session.execute(select(ImapMailboxState.last_uid)).scalar_one() == total


def test_a_gateway_whose_clock_runs_ahead_cannot_take_a_held_mailbox(pg_app, mailbox):
    """On PostgreSQL the lease is timed by the database's clock: a host whose clock
    runs an hour ahead still sees the other's lease as running, not long run out.
    (SQLite is one host, with one clock.)"""
    first, second = _two_pollers(pg_app, mailbox)
    db.session.rollback()
    assert first.claim()
    with time_machine.travel(now() + timedelta(hours=1), tick=True):
        assert not second.claim(), "a clock an hour ahead took a held mailbox"
    assert _owner() == first.owner


def test_a_gateway_whose_clock_runs_behind_stamps_its_polls_by_the_databases_clock(pg_app, mailbox):
    """The last good poll is judged on other hosts (`--check`, the Mail page): a gateway
    whose clock runs 20 minutes behind stamps it by the database's clock, not as 20
    minutes old already."""
    poller = poller_for(pg_app, mailbox)
    with time_machine.travel(datetime.now(timezone.utc) - timedelta(minutes=20), tick=True):
        drain(poller)
    state = db.session.execute(select(ImapMailboxState)).scalar_one()
    database_now = db.session.execute(text("SELECT timezone('UTC', clock_timestamp())")).scalar_one()
    for stamp in (state.last_poll_at, state.last_success_at):
        assert stamp is not None and abs(database_now - stamp) < timedelta(minutes=1)


# -- renewals that fail ---------------------------------------------------------------------


class RefusedRenewals:
    """The lease-renewing thread of one poller gets no database connection from the
    pool while `refusing` is set: "pool timeout" (every pooled connection busy for the
    pool's whole timeout) or "connection refused" (the database restarting). Every
    other thread's connections are real. `refused` holds each refusal's monotonic time."""

    def __init__(
        self, monkeypatch: pytest.MonkeyPatch, poller: ImapPoller, refusal: str, *, times: int
    ) -> None:
        self.refusal = refusal
        self.times = times
        self.refused: list[float] = []
        self.renewers: set[int] = set()
        renew_until = poller._renew_until
        connect = db.engine.pool.connect

        def renewing(done: threading.Event) -> None:
            self.renewers.add(threading.get_ident())
            try:
                renew_until(done)
            finally:
                self.renewers.discard(threading.get_ident())

        def connect_or_refuse():  # type: ignore[no-untyped-def]
            if threading.get_ident() in self.renewers and len(self.refused) < self.times:
                self.refused.append(time.monotonic())
                raise self.error()
            return connect()

        monkeypatch.setattr(poller, "_renew_until", renewing)
        monkeypatch.setattr(db.engine.pool, "connect", connect_or_refuse)

    def error(self) -> Exception:
        if self.refusal == "pool timeout":
            return exc.TimeoutError(
                "QueuePool limit of size 5 overflow 10 reached, connection timed out, timeout 30.00"
            )
        return db.engine.dialect.loaded_dbapi.OperationalError("connection refused (for the test)")

    def stop(self) -> None:
        self.times = len(self.refused)


def _connections(
    monkeypatch: pytest.MonkeyPatch, poller: ImapPoller, before: Callable[[int], object] = lambda made: None
) -> list[float]:
    """The monotonic time of each connection `poller` makes (one per round);
    `before(n)` runs before the n-th (counted from 1) is made."""
    made: list[float] = []
    connect = poller.connect

    def counted():  # type: ignore[no-untyped-def]
        made.append(time.monotonic())
        before(len(made))
        return connect()

    monkeypatch.setattr(poller, "connect", counted)
    return made


def _last_error() -> str:
    error = db.session.execute(select(ImapMailboxState.last_error)).scalar_one()
    db.session.rollback()
    return error


@pytest.mark.parametrize("refusal", ["pool timeout", "connection refused"])
def test_a_renewal_that_gets_no_database_connection_is_tried_again_and_the_round_goes_on(
    app, senders, mailbox, monkeypatch, refusal
):
    """The renewing thread gets no connection once: it waited in vain for a pooled one
    (the ingest threads had them all) or the database refused it for a moment. That
    says nothing about who holds the mailbox: the next turn renews the lease, and the
    poller keeps its connection, its lease and its mail, with no error noted."""
    # It waits in IDLE between passes: only the renewing thread renews the lease.
    poller = poller_for(app, mailbox, IMAP_LEASE_SECONDS=LEASE, IMAP_POLL_SECONDS=60)
    connections = _connections(monkeypatch, poller)
    renewals = RefusedRenewals(monkeypatch, poller, refusal, times=1)
    with running(poller):
        wait_until(lambda: renewals.refused, what="a renewal refused its connection")
        time.sleep(1.5 * LEASE)  # past the lease the failed renewal would have given
        assert _owner() == poller.owner
        mailbox.append(raw(1, "renewed"))
        wait_until(lambda: mailbox.count(mailbox.processed) == 1, timeout=30)
        assert len(connections) == 1, "the round ended over a renewal that got no connection"
        assert _last_error() == ""
        assert _owner() == poller.owner
    assert [t.number for t in tickets()] == [1]


def test_a_lease_that_runs_out_unrenewed_ends_the_round(app, senders, mailbox, monkeypatch):
    """The renewing thread gets no connection for longer than the lease, while the
    poller waits for mail: once the lease has run out the poller stops working the
    mailbox (another gateway may hold it by now), not before, and takes the lease
    anew before it goes on."""
    # It waits in IDLE between passes: only the renewing thread renews the lease.
    poller = poller_for(app, mailbox, IMAP_LEASE_SECONDS=LEASE, IMAP_POLL_SECONDS=60)
    renewals = RefusedRenewals(monkeypatch, poller, "connection refused", times=1000)

    def next_round(made: int) -> None:
        if made == 2:  # the mail waits for the next round's first pass
            renewals.stop()
            mailbox.append(raw(1, "expired"))

    connections = _connections(monkeypatch, poller, before=next_round)
    with running(poller):
        wait_until(lambda: renewals.refused, what="a renewal refused its connection")
        wait_until(lambda: len(connections) == 2, timeout=5 * LEASE, what="the round ending")
        # The lease was taken when the round began and renewed by nobody since.
        assert connections[1] - connections[0] >= LEASE
        assert "ran out" in _last_error()
        wait_until(lambda: mailbox.count(mailbox.processed) == 1, timeout=30)
        assert _owner() == poller.owner
        assert len(connections) == 2
    assert [t.number for t in tickets()] == [1]
