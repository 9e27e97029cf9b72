"""The SMTP listener and the inbound pipeline, through a real socket (docs/mail-gateway.md)."""

from __future__ import annotations

import base64
import hashlib
import quopri
import smtplib
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from email import message_from_bytes
from email.policy import SMTP, default

import pytest
import time_machine
from sqlalchemy import func, select, update

from helpdesk.clock import database_now
from helpdesk.errors import Conflict
from helpdesk.extensions import db
from helpdesk.inbound import ingest as ingest_module
from helpdesk.inbound import quarantine
from helpdesk.inbound.ingest import Envelope, Outcome, ingest
from helpdesk.inbound.limits import DEFAULT as DEFAULT_LIMITS
from helpdesk.models import Attachment, InboundMail, Message, OutboxMessage, QuarantineItem, Ticket
from helpdesk.services import Actor, TicketsService
from mailgateway import smtp
from tests.support.database import open_ticket, tickets
from tests.support.mail import SUPPORT, message, send, start_gateway


def count(model) -> int:  # type: ignore[no-untyped-def]
    return db.session.execute(select(func.count()).select_from(model)).scalar_one()


def test_authorized_address_opens_ticket(gateway, senders):
    code, text = gateway.send(message(subject="VPN down", body="Since 9:00.", cc="Bob <bob@example.com>"))
    assert (code, text) == (250, b"2.0.0 OK created TKT-000001")
    (ticket,) = tickets()
    assert (ticket.subject, ticket.channel, ticket.is_email_originated) == ("VPN down", "email", True)
    assert ticket.requester.email == "ann@example.com"
    assert ticket.organization.name == "Example Ltd"
    assert [p.email for p in ticket.participants] == ["bob@example.com"]
    assert ticket.messages[0].body == "Since 9:00."
    record = db.session.execute(select(InboundMail)).scalar_one()
    assert (record.outcome, record.ticket_id, record.channel) == ("created", ticket.id, "smtp")
    assert b"Since 9:00." in record.raw
    assert ticket.messages[0].inbound_mail_id == record.id


def _invisible_mail(subject: str, message_id: str) -> bytes:
    """A mail whose text is a zero-width space and a Hangul filler (UTF-8, 8bit)."""
    return (
        f"From: Ann <ann@example.com>\r\nTo: {SUPPORT}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{message_id}@client.example>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n\u200b\u3164\r\n"
    ).encode()


def test_a_mail_with_nothing_to_read_gets_the_placeholders_of_an_empty_one(app, senders):
    """A Subject of a zero-width space (RFC 2047) and a text of invisible characters
    were stored as they came: a ticket with an empty-looking subject in the queue and
    in our mail's subjects. They are no subject and no text (docs/mail-gateway.md,
    "What is stored"); the mail is never refused for them."""
    created = ingest(_invisible_mail("=?utf-8?q?=E2=80=8B?=", "first"), _by("ann@example.com"), app.config)
    assert (created.outcome, created.ticket_number) == (Outcome.CREATED, "TKT-000001")
    appended = ingest(
        _invisible_mail("=?utf-8?q?Re=3A_=5BTKT-000001=5D_=E2=80=8B?=", "second"),
        _by("ann@example.com"),
        app.config,
    )
    assert (appended.outcome, appended.ticket_number) == (Outcome.APPENDED, "TKT-000001")
    (ticket,) = tickets()
    assert (ticket.subject, ticket.description) == ("(no subject)", "(no text)")
    assert [m.body for m in ticket.messages] == ["(no text)", "(no text)"]


def test_authorized_domain_opens_ticket(gateway, senders):
    code, _ = gateway.send(message(sender="Cy <cy@corp.example>"))
    assert code == 250
    (ticket,) = tickets()
    assert ticket.organization.name == "Corp"
    assert ticket.requester.name == "Cy"


def test_unknown_sender_is_quarantined_by_default(gateway, senders):
    code, text = gateway.send(message(sender="stranger@nowhere.example"))
    assert (code, text) == (250, b"2.0.0 OK quarantined")
    assert tickets() == []
    item = db.session.execute(select(QuarantineItem)).scalar_one()
    assert "unknown sender" in item.reason
    assert b"stranger@nowhere.example" in item.inbound_mail.raw


def test_unknown_sender_rejected_under_reject_policy(app, senders):
    for gateway in start_gateway(app, UNKNOWN_SENDER_POLICY="reject"):
        code, text = gateway.send(message(sender="stranger@nowhere.example"))
        assert code == 550 and text.startswith(b"5.7.1")
        assert tickets() == []
        assert db.session.execute(select(InboundMail.outcome)).scalar_one() == "rejected"
        code, _ = gateway.send(message(sender="ann@example.com"))
        assert code == 250


def test_a_refused_stranger_cannot_tell_whether_a_ticket_exists(app, senders):
    """One 550 text for every refused stranger: naming TKT-000001 said "does not
    belong on TKT-000001", a number that does not exist "unknown sender"."""
    for gateway in start_gateway(app, UNKNOWN_SENDER_POLICY="reject"):
        gateway.send(message(message_id="<first@client.example>", subject="Laptop broken"))
        probes = [
            message(sender="eve@evil.example", subject="Re: [TKT-000001] status?"),
            message(sender="eve@evil.example", subject="Re: [TKT-000042] status?"),
            message(sender="eve@evil.example", subject="status?", in_reply_to="<first@client.example>"),
            message(sender="eve@evil.example", subject="status?", in_reply_to="<guess@client.example>"),
        ]
        replies = {gateway.send(probe) for probe in probes}
        assert replies == {(550, b"5.7.1 Sender not authorized to open tickets")}
        reasons = db.session.execute(
            select(InboundMail.reason).where(InboundMail.outcome == "rejected").order_by(InboundMail.id)
        ).scalars()
        assert [reason.startswith("eve@evil.example does not belong") for reason in reasons] == [
            True,
            False,
            True,
            False,
        ]


def test_unknown_sender_accepted_under_accept_policy(app):
    for gateway in start_gateway(app, UNKNOWN_SENDER_POLICY="accept"):
        code, text = gateway.send(message(sender="New Person <new@nowhere.example>"))
        assert (code, text) == (250, b"2.0.0 OK created TKT-000001")
        assert tickets()[0].requester.email == "new@nowhere.example"


STAND_IN = "5215512345678@phone.invalid"  # someone known by WhatsApp only (docs/integrations.md)


@pytest.mark.parametrize(
    "sender", [STAND_IN, "5215512345678@phone.ｉｎｖａｌｉｄ", "Lucía <5215512345678+x@PHONE.INVALID.>"]
)
def test_mail_from_a_stand_in_address_is_held_and_cannot_be_approved(app, service, admin, sender):
    """No mail comes from the reserved `.invalid` domain, so such a From is forged.
    Believed (no trusted server configured), it wrote into a WhatsApp customer's
    ticket as them, or opened tickets counted against their limits. It is held like
    mail naming no sender, and approving it is refused too."""
    app.config["UNKNOWN_SENDER_POLICY"] = "accept"
    open_ticket(service, requester_email=STAND_IN, requester_name="Lucía")
    envelope = Envelope("mallory@evil.example", (SUPPORT,), "smtp")
    for n, subject in enumerate(("Re: [TKT-000001] VPN drops every hour", "Something new")):
        head = f"From: {sender}\r\nTo: {SUPPORT}\r\nSubject: {subject}\r\nMessage-ID: <m{n}@evil.example>"
        result = ingest(f"{head}\r\n\r\nHi.\r\n".encode(), envelope, app.config)
        db.session.commit()
        assert result.outcome is Outcome.QUARANTINED, result.reason
        assert "the reserved .invalid domain" in result.reason
    for item in db.session.execute(select(QuarantineItem)).scalars().all():
        with pytest.raises(Conflict):
            quarantine.approve(db.session, item.id, Actor.staff(admin), app.config)
        db.session.rollback()
    assert len(tickets()) == 1 and count(Message) == 1


PASS_AR = (
    "mx.helpdesk.test; spf=pass smtp.mailfrom=example.com; "
    "dkim=pass header.d=example.com; dmarc=pass header.from=example.com"
)


@pytest.mark.parametrize(
    ("results", "expected"),
    [
        (None, "quarantined"),
        (PASS_AR, "created"),
        (PASS_AR.replace("mx.helpdesk.test", "mx.attacker.example"), "quarantined"),
        ("mx.helpdesk.test; spf=fail smtp.mailfrom=example.com; dmarc=fail", "quarantined"),
    ],
)
def test_from_is_believed_only_with_trusted_authentication_results(app, senders, results, expected):
    for gateway in start_gateway(app, TRUSTED_AUTHSERV_ID="mx.helpdesk.test"):
        headers = {"Authentication-Results": results} if results else None
        code, text = gateway.send(message(headers=headers))
        assert code == 250
        assert text.decode().split()[2] == expected


@pytest.fixture
def opened(gateway, senders) -> Ticket:
    gateway.send(message(message_id="<first@client.example>", subject="Laptop broken"))
    return tickets()[0]


def reply_count(ticket: Ticket) -> int:
    return db.session.execute(
        select(func.count(Message.id)).where(Message.ticket_id == ticket.id)
    ).scalar_one()


@pytest.mark.parametrize(
    ("how", "kwargs"),
    [
        ("in-reply-to", {"in_reply_to": "<first@client.example>", "subject": "Re: Laptop"}),
        ("references", {"references": "<other@x.example> <first@client.example>", "subject": "Re: Laptop"}),
        ("subject", {"subject": "Re: [tkt-000001] Laptop broken"}),
        ("plus-address", {"subject": "more info", "to": "support+TKT-000001@helpdesk.test"}),
    ],
)
def test_reply_threads_into_ticket(gateway, opened, how, kwargs):
    rcpt = [kwargs["to"]] if "to" in kwargs else None
    code, text = gateway.send(message(body="It also smells.", **kwargs), rcpt=rcpt)
    assert (code, text) == (250, b"2.0.0 OK appended TKT-000001")
    assert len(tickets()) == 1
    assert reply_count(opened) == 2
    record = db.session.execute(select(InboundMail).order_by(InboundMail.id.desc())).scalars().first()
    assert how in record.reason


def numbers(first: int, count: int, *, then: str, form: str = "TKT-{}", sep: str = " ") -> str:
    """`count` numbers of no ticket from `first` on, written in `form`, then `then`."""
    return sep.join([form.format(n) for n in range(first, first + count)] + [then])


PLUS = "support+TKT-{}@helpdesk.test"


@pytest.mark.parametrize(
    ("subject", "to", "found"),
    [
        ("Re: [TKT-000042] and [TKT-000002]", SUPPORT, "TKT-000002 by subject"),
        ("TKT-000003, TKT-000002", SUPPORT, "TKT-000003 by subject"),
        ("Re: TKT-000042", f"{SUPPORT}, {PLUS.format('000002')}", "TKT-000002 by plus-address"),
        ("Re: TKT-000003", PLUS.format("000002"), "TKT-000003 by subject"),
        (
            "Re: TKT-000042",
            numbers(50, 9, then=PLUS.format(2), form=PLUS, sep=", "),
            "TKT-000002 by plus-address",
        ),
        (numbers(50, 9, then="TKT-000002"), SUPPORT, "TKT-000002 by subject"),
        # Past the first MAX_NAMED_NUMBERS of each, nothing is read.
        (numbers(50, 10, then="TKT-000002"), SUPPORT, None),
        ("Re: TKT-000042", numbers(50, 10, then=PLUS.format(2), form=PLUS, sep=", "), None),
    ],
    ids=[
        "the first that exists",
        "the first named",
        "a plus-address when the subject names none",
        "the subject before a plus-address",
        "the tenth plus-address",
        "the tenth in the subject",
        "the eleventh in the subject",
        "the eleventh plus-address",
    ],
)
def test_the_first_ticket_named_that_exists_is_matched(gateway, senders, subject, to, found):
    for title in ("Laptop broken", "Printer jammed", "VPN down"):
        gateway.send(message(subject=title))
    code, text = gateway.send(message(subject=subject, to=to), rcpt=[SUPPORT])
    record = db.session.execute(select(InboundMail).order_by(InboundMail.id.desc())).scalars().first()
    if found is None:
        assert (code, text) == (250, b"2.0.0 OK created TKT-000004")
    else:
        assert (code, text) == (250, b"2.0.0 OK appended " + found.split()[0].encode())
        assert record.reason == f"matched {found}"


@pytest.mark.parametrize(
    ("subject", "cc"),
    [("New laptop please", "bob+1@partner.example"), ("Order #2 status", "orders+tkt-2@shop.example")],
)
def test_a_plus_address_that_is_not_ours_names_no_ticket(gateway, opened, subject, cc):
    """Only the support addresses' plus-addresses carry our ticket numbers: a
    partner's `bob+1@` or a shop's `orders+tkt-2@` in Cc appended a customer's new
    request to TKT-000001 or TKT-000002."""
    gateway.send(message(subject="Second ticket"))
    code, text = gateway.send(message(subject=subject, cc=cc))
    assert (code, text) == (250, b"2.0.0 OK created TKT-000003")
    assert reply_count(opened) == 1


def test_stranger_typing_a_number_never_lands_in_the_ticket(gateway, opened):
    code, text = gateway.send(
        message(sender="mallory@evil.example", subject="Re: [TKT-000001] give me the data")
    )
    assert (code, text) == (250, b"2.0.0 OK quarantined")
    assert reply_count(opened) == 1
    item = db.session.execute(select(QuarantineItem)).scalar_one()
    assert "does not belong on TKT-000001" in item.reason


def test_stranger_referencing_message_id_never_lands_in_the_ticket(gateway, opened):
    gateway.send(message(sender="mallory@evil.example", in_reply_to="<first@client.example>"))
    assert reply_count(opened) == 1


def test_authorized_outsider_gets_new_linked_ticket(gateway, opened):
    code, text = gateway.send(message(sender="zed@other.example", subject="Re: TKT-000001 me too"))
    assert (code, text) == (250, b"2.0.0 OK created TKT-000002")
    new = tickets()[1]
    assert new.linked_ticket_id == opened.id
    assert reply_count(opened) == 1


def test_colleague_from_same_organization_may_reply(gateway, senders):
    gateway.send(message(sender="cy@corp.example", message_id="<c1@corp.example>"))
    code, text = gateway.send(message(sender="dee@corp.example", in_reply_to="<c1@corp.example>"))
    assert (code, text) == (250, b"2.0.0 OK appended TKT-000001")


@pytest.mark.parametrize(
    ("before", "after"),
    [("pending_customer", "in_progress"), ("resolved", "reopened"), ("closed", "reopened")],
)
def test_customer_reply_moves_status(gateway, opened, before, after):
    opened.status = before
    db.session.commit()
    gateway.send(message(subject="Re: [TKT-000001] still broken"))
    assert tickets()[0].status == after
    assert tickets()[0].history[-1].automated is True


def test_reply_to_cancelled_ticket_opens_a_new_linked_one(gateway, opened):
    TicketsService(db.session).change_status(opened, "cancelled", actor=Actor.system())
    db.session.commit()
    code, text = gateway.send(message(subject="Re: [TKT-000001] hello?"))
    assert (code, text) == (250, b"2.0.0 OK created TKT-000002")
    assert tickets()[1].linked_ticket_id == opened.id


def test_same_mail_twice_makes_one_ticket(gateway, senders):
    msg = message(message_id="<twice@client.example>")
    assert gateway.send(msg) == (250, b"2.0.0 OK created TKT-000001")
    code, text = gateway.send(msg)
    assert code == 250 and text.startswith(b"2.0.0 OK duplicate")
    assert len(tickets()) == 1
    assert count(InboundMail) == 1


def test_same_message_id_to_two_support_addresses_makes_one_ticket(app, senders):
    for gateway in start_gateway(app, SUPPORT_ADDRESSES=[SUPPORT, "help@helpdesk.test"]):
        msg = message(message_id="<both@client.example>", to=f"{SUPPORT}, help@helpdesk.test")
        assert gateway.send(msg, rcpt=[SUPPORT, "help@helpdesk.test"])[0] == 250
        assert gateway.send(msg, rcpt=["help@helpdesk.test"])[0] == 250
        assert len(tickets()) == 1
        assert tickets()[0].participants == []


def _choke_on_boom(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The pipeline fails, as a bug would, on mail whose Subject is "boom"."""
    from helpdesk.inbound import matching

    real = matching.find_ticket

    def choke(session, mail, *args):  # type: ignore[no-untyped-def]
        if mail.subject == "boom":
            raise RuntimeError("a bug nobody foresaw")
        return real(session, mail, *args)

    monkeypatch.setattr(matching, "find_ticket", choke)


def test_a_mail_the_pipeline_chokes_on_is_kept_in_quarantine_once(gateway, senders, monkeypatch):
    _choke_on_boom(monkeypatch)
    boom = message(subject="boom", message_id="<boom@client.example>")
    assert gateway.send(boom) == (250, b"2.0.0 OK quarantined")
    assert gateway.send(boom) == (250, b"2.0.0 OK duplicate")  # not a second item, not a 451
    item = db.session.execute(select(QuarantineItem)).scalar_one()
    assert item.reason == "processing failed: RuntimeError: a bug nobody foresaw"
    assert (item.ticket_id, item.ticket_unknown) == (None, True)  # matching is what failed
    assert b"boom@client.example" in item.inbound_mail.raw
    assert tickets() == []
    assert gateway.send(message(subject="fine"))[1] == b"2.0.0 OK created TKT-000001"


def test_mail_without_message_id_is_deduplicated_by_content(gateway, senders):
    raw = message().as_bytes().replace(b"Message-ID:", b"X-Old-ID:")
    raw = raw.replace(b"\n", b"\r\n")
    assert gateway.send(raw, mail_from="ann@example.com")[0] == 250
    assert gateway.send(raw, mail_from="ann@example.com")[1].startswith(b"2.0.0 OK duplicate")
    assert len(tickets()) == 1
    assert db.session.execute(select(InboundMail.dedup_key)).scalar_one().startswith("sha256:")


def test_mail_without_message_id_relayed_by_two_mx_hosts_makes_one_ticket(gateway, senders):
    """Each relay prepends its own Received field; the mail under them is the same one
    (and the same text sent the next day is another)."""
    msg = message(headers={"Date": "Mon, 02 Mar 2026 08:00:00 +0000"})
    del msg["Message-ID"]
    raw = msg.as_bytes(policy=SMTP)

    def relayed(mx: str, mail: bytes) -> bytes:
        return f"Received: from client.example by {mx}; Mon, 02 Mar 2026 08:00:05 +0000\r\n".encode() + mail

    assert gateway.send(relayed("mx1.helpdesk.test", raw), mail_from="ann@example.com") == (
        250,
        b"2.0.0 OK created TKT-000001",
    )
    assert gateway.send(relayed("mx2.helpdesk.test", raw), mail_from="ann@example.com")[1].startswith(
        b"2.0.0 OK duplicate"
    )
    next_day = raw.replace(b"Mon, 02 Mar 2026", b"Tue, 03 Mar 2026")
    assert gateway.send(relayed("mx1.helpdesk.test", next_day), mail_from="ann@example.com") == (
        250,
        b"2.0.0 OK created TKT-000002",
    )
    assert len(tickets()) == 2


# -- a Message-ID used by another mail first (docs/mail-gateway.md, "Duplicates") ------------

CLAIMED = "<CAB1234-ann@mail.example.com>"
# What Dovecot LMTP prepends to the mailbox's copy of a mail SMTP brought too.
LMTP = (
    b"Return-Path: <ann@example.com>\r\n"
    b"Delivered-To: support@helpdesk.test\r\n"
    b"Received: from mx.helpdesk.test by imap.helpdesk.test with LMTP; Mon, 02 Mar 2026 08:00:01 +0000\r\n"
)


def _by(sender: str, channel: str = "smtp") -> Envelope:
    return Envelope(sender, (SUPPORT,), channel)


def _eve_first(app) -> bytes:  # type: ignore[no-untyped-def]
    """A stranger's mail under Ann's Message-ID, recorded (held) first: its raw bytes."""
    raw = message(sender="eve@evil.example", subject="hello", body="nothing", message_id=CLAIMED).as_bytes(
        policy=SMTP
    )
    assert ingest(raw, _by("eve@evil.example"), app.config).outcome is Outcome.QUARANTINED
    return raw


def _anns_mail(dated: bool = True) -> bytes:
    headers = {"Date": "Mon, 02 Mar 2026 07:59:00 +0000"} if dated else {}
    mail = message(subject="Server room flooded", body="Send someone.", message_id=CLAIMED, headers=headers)
    return mail.as_bytes(policy=SMTP)


@pytest.mark.parametrize("dated", [True, False], ids=["dated", "without Date"])
def test_a_stranger_who_uses_a_customers_message_id_first_does_not_make_her_mail_vanish(app, senders, dated):
    """Eve, in Cc of Ann's mail or on its list, mails the gateway under Ann's
    Message-ID before Ann's mail arrives (greylisted, deferred): Ann's mail was then
    answered `250 … duplicate` and stored nowhere. A mail under a used Message-ID is
    a duplicate only when it is the same mail; Ann's is kept under a key of its own,
    which its own retries and its mailbox copy find again (with a Date or without)."""
    eve_raw = _eve_first(app)

    ann = ingest(_anns_mail(dated), _by("ann@example.com"), app.config)

    assert (ann.outcome, ann.ticket_number) == (Outcome.CREATED, "TKT-000001")
    (ticket,) = tickets()
    description, note = ticket.messages
    assert description.body == "Send someone."
    assert note.kind == "note" and "(inbound mail #1)" in note.body
    assert "#1" in ann.reason
    for raw, envelope, first in (
        (eve_raw, _by("eve@evil.example"), 1),
        (_anns_mail(dated), _by("ann@example.com"), ann.inbound_id),
        (LMTP + _anns_mail(dated), _by("ann@example.com", "imap"), ann.inbound_id),
    ):
        again = ingest(raw, envelope, app.config)
        assert (again.outcome, again.inbound_id) == (Outcome.DUPLICATE, first)
    assert count(InboundMail) == 2 and len(tickets()) == 1
    reply = message(subject="Any news?", in_reply_to=CLAIMED)
    assert (
        ingest(reply.as_bytes(policy=SMTP), _by("ann@example.com"), app.config).ticket_number == "TKT-000001"
    )


def test_another_mail_under_a_used_message_id_is_kept_and_said_so(app, senders):
    """The other way round: Ann's mail first, then Eve's under its Message-ID. Eve's
    is kept too (held, as a stranger's is), its reason naming the mail whose id it
    reused, and replies naming the id still thread to the mail received first."""
    assert ingest(_anns_mail(), _by("ann@example.com"), app.config).outcome is Outcome.CREATED
    eve = message(sender="eve@evil.example", subject="Re: flood", body="Pay here.", message_id=CLAIMED)
    held = ingest(eve.as_bytes(policy=SMTP), _by("eve@evil.example"), app.config)
    assert held.outcome is Outcome.QUARANTINED and held.inbound_id != 1
    item = db.session.execute(select(QuarantineItem)).scalar_one()
    assert item.reason.startswith("unknown sender: eve@evil.example") and "#1" in item.reason
    reply = message(subject="Any news?", in_reply_to=CLAIMED)
    result = ingest(reply.as_bytes(policy=SMTP), _by("ann@example.com"), app.config)
    assert (result.outcome, result.ticket_number) == (Outcome.APPENDED, "TKT-000001")


def test_a_mail_the_pipeline_chokes_on_under_a_used_message_id_is_held_as_its_own(app, senders, monkeypatch):
    """A failure before the mail's record is written looked up the key too ("an
    earlier delivery met the same fate"): another mail holding it is not this one."""
    _eve_first(app)
    _choke_on_boom(monkeypatch)
    boom = message(subject="boom", message_id=CLAIMED).as_bytes(policy=SMTP)
    held = ingest(boom, _by("ann@example.com"), app.config)
    assert held.outcome is Outcome.QUARANTINED and held.inbound_id != 1
    assert held.reason.startswith("processing failed: RuntimeError") and "#1" in held.reason
    assert ingest(boom, _by("ann@example.com"), app.config).inbound_id == held.inbound_id


def test_a_mail_too_big_under_a_used_message_id_is_recorded_as_its_own(app, senders):
    """The IMAP poller's record of a mail too big to take looked its key up first."""
    _eve_first(app)
    head = _anns_mail().split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
    size = app.config["MAX_MESSAGE_BYTES"] + 1
    refused = ingest_module.refuse_oversized(head, size, _by("ann@example.com", "imap"), app.config)
    assert (refused.outcome, refused.failed) == (Outcome.REJECTED, True) and refused.inbound_id != 1
    again = ingest_module.refuse_oversized(head, size, _by("ann@example.com", "imap"), app.config)
    assert (again.outcome, again.inbound_id) == (Outcome.REJECTED, refused.inbound_id)


# The copies of one mail that reach the gateway by three ways: SMTP behind amavis, the
# mailbox behind another MX, and a Gmail-hosted mailbox. Only what the servers wrote
# above the author's fields differs, not always in one block of trace fields.
THROUGH_SMTP = (
    b"Received: from mx1.helpdesk.test (mx1 [10.0.0.1]) by gw; Mon, 2 Mar 2026 08:00:01 +0000\r\n"
    b"X-Virus-Scanned: amavisd-new at mx1.helpdesk.test\r\n"
    b"Received: from mail.example.com by mx1.helpdesk.test; Mon, 2 Mar 2026 08:00:00 +0000\r\n"
)
THROUGH_MAILBOX = (
    LMTP + b"X-Virus-Scanned: amavisd-new at mx2.helpdesk.test\r\n"
    b"X-Spam-Status: No, score=-0.1 required=5.0\r\n\ttests=DKIM_SIGNED autolearn=ham\r\n"
    b"Received: from mail.example.com by mx2.helpdesk.test; Mon, 2 Mar 2026 08:00:02 +0000\r\n"
)
THROUGH_GMAIL = (
    b"Delivered-To: support@helpdesk.test\r\n"
    b"Received: by 2002:a05:6a10:1234 with SMTP id abc; Mon, 2 Mar 2026 08:00:04 -0800 (PST)\r\n"
    b"X-Received: by 2002:a17:906:1234 with SMTP id xyz; Mon, 2 Mar 2026 08:00:04 -0800 (PST)\r\n"
    b"ARC-Seal: i=1; a=rsa-sha256; t=1772467204; cv=none; d=google.com; s=arc-20240605; b=AbC\r\n"
    b"Return-Path: <ann@example.com>\r\n"
    b"Received: from mail.example.com by mx.google.com; Mon, 2 Mar 2026 08:00:03 -0800 (PST)\r\n"
    b"X-Google-Smtp-Source: AGHT+IFabc\r\n"
)


def test_one_mail_through_smtp_and_two_mailboxes_with_filters_stamps_is_one_ticket(app, senders):
    """SPEC section 7: through SMTP and IMAP, one ticket. A filter's field between
    two Received (amavis, SpamAssassin, Gmail's X-Received) made each copy "another
    mail" under the Message-ID: three tickets, three acknowledgments. A collision
    compares the author's fields and the body only (docs/mail-gateway.md, "Duplicates")."""
    first = ingest(THROUGH_SMTP + _anns_mail(), _by("ann@example.com"), app.config)
    assert first.outcome is Outcome.CREATED
    for route in (THROUGH_MAILBOX, THROUGH_GMAIL):
        copy = ingest(
            route + _anns_mail().replace(b"\r\n", b"\n"), _by("ann@example.com", "imap"), app.config
        )
        assert (copy.outcome, copy.inbound_id) == (Outcome.DUPLICATE, first.inbound_id)
    assert count(InboundMail) == 1 and len(tickets()) == 1
    assert count(OutboxMessage) == 1  # one acknowledgment


def _alert(date: str | None = "Mon, 02 Mar 2026 07:59:00 +0000") -> bytes:
    """Ann's mail as a device writes it: no Message-ID, a Date or none."""
    mail = message(subject="Toner low", body="Tray 2.", headers={"Date": date} if date else {})
    del mail["Message-ID"]
    return mail.as_bytes(policy=SMTP)


# The SMTP copy with nothing but Received fields above the author's.
TRACE_ONLY = (
    b"Received: from mx1.helpdesk.test (mx1 [10.0.0.1]) by gw; Mon, 2 Mar 2026 08:00:01 +0000\r\n"
    b"Received: from mail.example.com by mx1.helpdesk.test; Mon, 2 Mar 2026 08:00:00 +0000\r\n"
)


def test_mail_without_message_id_through_smtp_and_mailboxes_with_filter_stamps_is_one_ticket(app, senders):
    """A mail without Message-ID is keyed by its author's fields and body when it has
    a Date (docs/mail-gateway.md, "Deduplicate"): the bytes below the leading block of
    trace fields made the copies whose servers wrote amavis', SpamAssassin's or
    Gmail's stamps between two Received three mails, three tickets. The same text
    with another Date is another mail."""
    first = ingest(TRACE_ONLY + _alert(), _by("ann@example.com"), app.config)
    assert (first.outcome, first.ticket_number) == (Outcome.CREATED, "TKT-000001")
    for route in (THROUGH_MAILBOX, THROUGH_GMAIL, THROUGH_SMTP):
        copy = ingest(route + _alert().replace(b"\r\n", b"\n"), _by("ann@example.com", "imap"), app.config)
        assert (copy.outcome, copy.inbound_id) == (Outcome.DUPLICATE, first.inbound_id)
    assert count(InboundMail) == 1 and count(OutboxMessage) == 1  # one acknowledgment
    next_week = ingest(
        THROUGH_MAILBOX + _alert("Mon, 09 Mar 2026 07:59:00 +0000"), _by("ann@example.com"), app.config
    )
    assert (next_week.outcome, next_week.ticket_number) == (Outcome.CREATED, "TKT-000002")
    assert len(tickets()) == 2


def test_mail_with_neither_message_id_nor_date_is_keyed_by_its_bytes_as_they_came(app, senders):
    """Without a Date the same text is not the same mail ("Toner low" again next
    week): only the same bytes are, a retry of the same delivery; another way with
    other servers' fields makes another ticket, which staff merge."""
    dateless = TRACE_ONLY + _alert(None)
    assert ingest(dateless, _by("ann@example.com"), app.config).ticket_number == "TKT-000001"
    again = ingest(dateless, _by("ann@example.com"), app.config)
    assert (again.outcome, again.inbound_id) == (Outcome.DUPLICATE, 1)
    other_way = ingest(THROUGH_MAILBOX + _alert(None), _by("ann@example.com", "imap"), app.config)
    assert (other_way.outcome, other_way.ticket_number) == (Outcome.CREATED, "TKT-000002")
    next_week = ingest(dateless.replace(b"Mon, 2 Mar", b"Mon, 9 Mar"), _by("ann@example.com"), app.config)
    assert (next_week.outcome, next_week.ticket_number) == (Outcome.CREATED, "TKT-000003")


def test_a_copy_of_a_mail_recorded_under_its_key_from_before_the_upgrade_is_its_duplicate(app, senders):
    """Before, a mail without Message-ID was keyed by its bytes below the leading
    block of trace fields, and stored keys are not rewritten: the mailbox's copy of a
    mail SMTP brought just before the upgrade, or a retry after it, looks that key up
    too (docs/mail-gateway.md, "Decisions"), and is no second ticket."""
    first = ingest(TRACE_ONLY + _alert(), _by("ann@example.com"), app.config)
    below_trace = _alert().replace(b"\r\n", b"\n").rstrip(b"\n")
    record = db.session.get(InboundMail, first.inbound_id)
    record.dedup_key = "sha256:" + hashlib.sha256(below_trace).hexdigest()  # as recorded before
    db.session.commit()
    copy = ingest(LMTP + _alert(), _by("ann@example.com", "imap"), app.config)
    assert (copy.outcome, copy.inbound_id) == (Outcome.DUPLICATE, first.inbound_id)
    assert count(InboundMail) == 1 and len(tickets()) == 1


@pytest.mark.parametrize("stranger_first", [False, True], ids=["alone", "beside a stranger's"])
def test_a_copy_too_big_for_the_poller_of_a_mail_smtp_took_is_a_duplicate(app, senders, stranger_first):
    """The mailbox's copy is bigger than SMTP's by its servers' fields: near
    MAX_MESSAGE_BYTES one fits and the other is refused by its header. That header is
    compared by the author's fields only (the body was not fetched): no record of its
    own, neither for the mail SMTP took nor for a mail kept beside a stranger's."""
    if stranger_first:
        _eve_first(app)
    taken = ingest(_anns_mail(), _by("ann@example.com"), app.config)
    assert taken.outcome is Outcome.CREATED
    head = THROUGH_MAILBOX + _anns_mail().split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
    size = app.config["MAX_MESSAGE_BYTES"] + 1
    records = count(InboundMail)
    refused = ingest_module.refuse_oversized(head, size, _by("ann@example.com", "imap"), app.config)
    assert (refused.outcome, refused.inbound_id) == (Outcome.DUPLICATE, taken.inbound_id)
    assert count(InboundMail) == records


def test_two_copies_too_big_cut_at_max_header_bytes_in_other_places_are_one(app, senders):
    """Both copies too big, their headers stored up to MAX_HEADER_BYTES: trace blocks
    of other lengths cut them at other places among the author's fields (past the
    Message-ID), which made the second "another mail" with a record of its own."""
    size = app.config["MAX_MESSAGE_BYTES"] + 1
    head = _anns_mail().split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
    config = {**app.config, "MAX_HEADER_BYTES": len(THROUGH_MAILBOX) + 200}
    refused = ingest_module.refuse_oversized(THROUGH_MAILBOX + head, size, _by("ann@example.com"), config)
    assert refused.outcome is Outcome.REJECTED and "MAX_HEADER_BYTES" in refused.reason
    longer = THROUGH_MAILBOX + b"X-Spam-Score: 0.5\r\n"
    again = ingest_module.refuse_oversized(longer + head, size, _by("ann@example.com", "imap"), config)
    assert (again.outcome, again.inbound_id) == (Outcome.REJECTED, refused.inbound_id)
    assert count(InboundMail) == 1


def test_a_reply_naming_a_shared_message_id_goes_where_its_sender_belongs(app, senders):
    """Zed (another customer's authorized sender) used Ann's Message-ID first; Ann's
    mail, Cc Bob, is kept beside it. Bob's reply to Ann's mail went to the mail
    received first, Zed's ticket, where Bob does not belong: held, naming it. The
    ticket the sender belongs on is taken; the first received when none."""
    zed = message(sender="zed@other.example", subject="hello", body="nothing", message_id=CLAIMED)
    assert (
        ingest(zed.as_bytes(policy=SMTP), _by("zed@other.example"), app.config).ticket_number == "TKT-000001"
    )
    ann = message(subject="Flooded", message_id=CLAIMED, cc="Bob <bob@example.com>")
    assert ingest(ann.as_bytes(policy=SMTP), _by("ann@example.com"), app.config).ticket_number == "TKT-000002"
    bob = message(
        sender="bob@example.com", subject="Re: Flooded", body="Door code 4711.", in_reply_to=CLAIMED
    )
    result = ingest(bob.as_bytes(policy=SMTP), _by("bob@example.com"), app.config)
    assert (result.outcome, result.ticket_number) == (Outcome.APPENDED, "TKT-000002")
    again = message(sender="zed@other.example", subject="Re: hello", body="more", in_reply_to=CLAIMED)
    result = ingest(again.as_bytes(policy=SMTP), _by("zed@other.example"), app.config)
    assert (result.outcome, result.ticket_number) == (Outcome.APPENDED, "TKT-000001")


def test_approving_a_mail_kept_under_a_used_message_id_keeps_saying_so(app, senders, agent):
    """Approval rewrote the record's reason and read the raw mail again without the
    gateway's note: the record and the ticket no longer said that another mail had
    used its Message-ID first."""
    _eve_first(app)
    stranger = message(sender="cy@nowhere.example", subject="Outage", message_id=CLAIMED)
    held = ingest(stranger.as_bytes(policy=SMTP), _by("cy@nowhere.example"), app.config)
    assert held.outcome is Outcome.QUARANTINED
    item = db.session.execute(select(QuarantineItem).filter_by(inbound_mail_id=held.inbound_id)).scalar_one()
    result = quarantine.approve(db.session, item.id, Actor.staff(agent), app.config)
    db.session.commit()
    assert result.outcome is Outcome.CREATED
    record = db.session.get(InboundMail, held.inbound_id)
    assert record.reason.startswith("approved by") and record.reason.endswith(
        "Message-ID already used by another mail, #1"
    )
    (ticket,) = tickets()
    assert any(m.kind == "note" and "(inbound mail #1)" in m.body for m in ticket.messages)


@pytest.mark.parametrize(
    ("headers", "sender", "subject", "reason"),
    [
        ({"Auto-Submitted": "auto-replied"}, "ann@example.com", "Re: hi", "auto-submitted: auto-replied"),
        ({"Precedence": "bulk"}, "ann@example.com", "Newsletter", "precedence: bulk"),
        ({"Precedence": "junk"}, "ann@example.com", "Offer", "precedence: junk"),
        ({"Precedence": "list"}, "ann@example.com", "[list] digest", "precedence: list"),
        ({"X-Autoreply": "yes"}, "ann@example.com", "Away", "x-autoreply header"),
        ({"X-Autorespond": "Out of office"}, "ann@example.com", "Away", "x-autorespond header"),
        ({"Return-Path": "<>"}, "ann@example.com", "Delivery report", "empty return-path"),
        (
            {},
            "MAILER-DAEMON@mx.example.com",
            "Undelivered Mail Returned to Sender",
            "bounce sender mailer-daemon@mx.example.com",
        ),
        (
            {},
            "postmaster@example.com",
            "Delivery Status Notification",
            "bounce sender postmaster@example.com",
        ),
        ({}, "ann@example.com", "Automatic reply: Printer on fire", "out-of-office subject"),
        ({}, SUPPORT, "Loop", "own address"),
        (
            {"Message-ID": "<tkt.1.2.0123456789abcdef01234567@helpdesk.helpdesk.test>"},
            "ann@example.com",
            "Our own mail coming back",
            "own message-id domain",
        ),
        ({"Content-Type": "multipart/report"}, "ann@example.com", "Report", "delivery status report"),
    ],
)
def test_auto_mail_is_ignored_and_recorded(gateway, senders, headers, sender, subject, reason):
    mail = message(
        sender=sender,
        subject=subject,
        headers={k: v for k, v in headers.items() if k not in ("Message-ID", "Content-Type")},
    )
    if "Message-ID" in headers:
        mail.replace_header("Message-ID", headers["Message-ID"])
    if "Content-Type" in headers:  # a delivery report (RFC 3464), as MTAs send them
        mail.make_mixed()
        mail.replace_header("Content-Type", 'multipart/report; report-type=delivery-status; boundary="r"')
        mail.set_boundary("r")
    code, text = gateway.send(mail)
    assert (code, text) == (250, b"2.0.0 OK ignored")
    assert tickets() == []
    record = db.session.execute(select(InboundMail)).scalar_one()
    assert (record.outcome, record.reason) == ("ignored", reason)


# Our support address with its domain in fullwidth letters: IDNA (and so every relay)
# maps it to support@helpdesk.test.
FULLWIDTH_SUPPORT = "support@\uff48\uff45\uff4c\uff50\uff44\uff45\uff53\uff4b.test"


@pytest.mark.parametrize(
    "sender",
    [
        FULLWIDTH_SUPPORT,
        "SUPPORT@HELPDESK.TEST",
        "Support+TKT-000001@\uff28\uff25\uff2c\uff30\uff24\uff25\uff33\uff2b.\uff34\uff25\uff33\uff34",
    ],
)
def test_mail_from_our_own_address_spelled_otherwise_is_a_loop_like_our_own(app, senders, sender):
    """Mail From our support address in another spelling comes from the mailbox a
    relay (and our own outbound rules) see as ours. Compared as written, the
    fullwidth one was a stranger's: where strangers may open tickets it opened one,
    and its acknowledgment was queued to ourselves. It is answered and recorded
    exactly as mail From support@helpdesk.test: ignored as our own, never a ticket,
    never answered."""
    for gateway in start_gateway(app, UNKNOWN_SENDER_POLICY="accept"):
        answers = []
        for from_ in (SUPPORT, sender):
            raw = message(sender=SUPPORT, subject="Loop").as_bytes(policy=SMTP)
            raw = raw.replace(f"From: {SUPPORT}".encode(), f"From: {from_}".encode())
            code, text = gateway.send(raw, mail_from="mallory@evil.example")
            record = db.session.execute(select(InboundMail).order_by(InboundMail.id.desc())).scalars().first()
            answers.append((code, text, record.outcome, record.reason))
        assert answers[1] == answers[0] == (250, b"2.0.0 OK ignored", "ignored", "own address")
    assert tickets() == []
    assert count(OutboxMessage) == 0


def test_null_reverse_path_is_ignored(gateway, senders):
    code, text = gateway.send(message(sender="ann@example.com"), mail_from="")
    assert (code, text) == (250, b"2.0.0 OK ignored")
    assert tickets() == []
    assert "null reverse-path" in db.session.execute(select(InboundMail.reason)).scalar_one()


def test_auto_submitted_no_is_a_person(gateway, senders):
    code, _ = gateway.send(message(headers={"Auto-Submitted": "no"}))
    assert code == 250
    assert len(tickets()) == 1


def test_foreign_recipient_is_refused_at_rcpt(gateway, senders):
    code, text = gateway.send(message(to="someone@else.example"), rcpt=["someone@else.example"])
    assert code == 550 and text.startswith(b"5.1.1")
    assert count(InboundMail) == 0


def test_recipients_are_capped_deduplicated_and_bounded_in_length(gateway, senders):
    """RFC 5321 4.5.3.1.8: 100 recipients must be accepted, more may get 452; a path
    is at most 254 characters (4.5.3.1.3). Before, 200,000 pipelined RCPTs were
    all accepted and stored (84.6 million characters in `recipients`)."""
    plus = [f"support+{n}@helpdesk.test" for n in range(100)]
    db.session.rollback()
    with smtplib.SMTP("127.0.0.1", gateway.port, timeout=30) as client:
        client.ehlo("client.example")
        client.mail("ann@example.com")
        assert client.rcpt(f"support+{'a' * 250}@helpdesk.test")[0] == 501
        for address in plus:
            assert client.rcpt(address)[0] == 250
        assert client.rcpt(plus[0])[0] == 250  # a duplicate: accepted, not stored twice
        assert client.rcpt("support+extra@helpdesk.test") == (452, b"4.5.3 Too many recipients")
        code, _ = client.data(message().as_bytes())
    assert code == 250
    record = db.session.execute(select(InboundMail)).scalar_one()
    assert record.recipients.split(",") == plus


def test_ingest_keeps_a_bounded_list_of_recipients(app, senders):
    """The IMAP poller reads the envelope from Delivered-To and the like: however
    many a mail names, the record keeps the first MAX_RECIPIENTS that can be
    addresses, once each."""
    plus = tuple(f"support+{n}@helpdesk.test" for n in range(5000))
    named = (SUPPORT, "x" * 300 + "@helpdesk.test", SUPPORT, *plus)
    ingest(message().as_bytes(), Envelope("ann@example.com", named, "imap"), app.config)
    record = db.session.execute(select(InboundMail)).scalar_one()
    assert record.recipients.split(",") == [SUPPORT, *plus[:99]]


def test_oversized_mail_is_refused(app, senders, caplog):
    for gateway in start_gateway(app, MAX_MESSAGE_BYTES=20_000):
        code, text = gateway.send(message(body="x" * 30_000))
        assert code == 552 and text.startswith(b"5.3.4")
        assert count(InboundMail) == 0
    # SPEC §10: a log line for the refusal too; the mail was drained unread, so
    # its Message-ID is unknown, and the line says so.
    lines = [r.getMessage() for r in caplog.records if r.name == "mailgateway.smtp"]
    assert lines == [
        "mail (no Message-ID read) via smtp from ann@example.com to support@helpdesk.test: "
        "552, larger than MAX_MESSAGE_BYTES (20000)"
    ]


def test_the_logged_message_id_is_read_from_a_bounded_header_on_one_line():
    limits = replace(DEFAULT_LIMITS, header_fields=5)
    assert smtp.logged_message_id(b"Subject: x\r\nMessage-ID:\r\n <a\x1b@b>\r\n\r\nbody", limits) == "a@b"
    assert smtp.logged_message_id(b"Message-ID: <" + b"x" * 300 + b">\n\n", limits) == "x" * 200
    assert smtp.logged_message_id(b"Subject: x\n\nMessage-ID: <in@body>\n", limits) == smtp.NO_MESSAGE_ID
    late = b"X-A: 1\n" * 5 + b"Message-ID: <late@x>\n\n"  # past MAX_HEADER_FIELDS: not read
    assert smtp.logged_message_id(late, limits) == smtp.NO_MESSAGE_ID


def test_long_lines_and_8bit_without_8bitmime_are_accepted(gateway, senders):
    raw = (
        b"From: ann@example.com\r\nTo: support@helpdesk.test\r\nSubject: caf\xe9 8bit\r\n"
        b"Message-ID: <long@client.example>\r\n\r\n" + b"caf\xe9 " * 600 + b"\r\n"
    )
    code, _ = gateway.send(raw, mail_from="ann@example.com")
    assert code == 250
    # No Content-Type: us-ascii, read as windows-1252 (detection stored "cafй 8bit").
    assert tickets()[0].subject == "café 8bit"
    body = tickets()[0].messages[0].body
    assert "café" in body and len(body) > 2000


def test_what_the_customer_wrote_is_the_ticket_s_text(gateway, senders):
    """An HTML message before a list footer, and Latin-1 text under a Content-Type
    without charset, reach the ticket as written (docs/mail-gateway.md, step 1)."""
    footer = (
        b"From: ann@example.com\r\nTo: support@helpdesk.test\r\nSubject: Pedido\r\n"
        b"Message-ID: <footer@client.example>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="==1=="\r\n\r\n'
        b"--==1==\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        b"<p>El pedido 4411 no ha llegado.</p>\r\n"
        b"--==1==\r\nContent-Type: text/plain; charset=us-ascii\r\nContent-Disposition: inline\r\n\r\n"
        b"Compras mailing list\r\n--==1==--\r\n"
    )
    latin1 = (
        b"From: ann@example.com\r\nTo: support@helpdesk.test\r\nSubject: Consulta\r\n"
        b"Message-ID: <latin1@client.example>\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGracias, Jos\xe9\r\n"
    )
    assert gateway.send(footer, mail_from="ann@example.com")[0] == 250
    assert gateway.send(latin1, mail_from="ann@example.com")[0] == 250
    descriptions = sorted(ticket.description for ticket in tickets())
    assert descriptions == ["El pedido 4411 no ha llegado.\n\nCompras mailing list", "Gracias, José"]


def test_a_mail_that_only_forwards_a_message_opens_a_ticket_with_its_text(app, senders):
    """Forward as attachment: the ticket's description is the enclosed message (a
    short header block, then its text), not "(no text)"; the .eml is kept as a file."""
    raw = (
        b"From: ann@example.com\r\nTo: support@helpdesk.test\r\nSubject: Fwd: Pedido\r\n"
        b"Message-ID: <fwd@client.example>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="==1=="\r\n\r\n'
        b"--==1==\r\nContent-Type: message/rfc822\r\n"
        b'Content-Disposition: attachment; filename="Pedido.eml"\r\n\r\n'
        b"From: Bob <bob@example.org>\r\nDate: Mon, 2 Nov 2026 10:00:00 +0100\r\nSubject: Pedido 4411\r\n\r\n"
        b"El pedido 4411 no ha llegado.\r\n\r\nBob\r\n--==1==--\r\n"
    )
    result = ingest(raw, Envelope("ann@example.com", (SUPPORT,), "smtp"), app.config)
    assert result.outcome is Outcome.CREATED
    ticket = tickets()[0]
    assert ticket.description == (
        "From: Bob <bob@example.org>\nDate: Mon, 2 Nov 2026 10:00:00 +0100\nSubject: Pedido 4411\n\n"
        "El pedido 4411 no ha llegado.\n\nBob"
    )
    assert [a.filename for a in db.session.execute(select(Attachment)).scalars()] == ["Pedido.eml"]


# As Outlook sends a customer's mail: CRLF, a Received line longer than a
# quoted-printable line, a Subject in encoded words, 8-bit text.
PEDIDO = (
    b"Received: from mail.example.org (mail.example.org [192.0.2.7]) by mx.example.com with ESMTPS;\r\n"
    b"\tMon, 2 Nov 2026 10:00:01 +0100\r\nFrom: Bob <bob@example.org>\r\nTo: ann@example.com\r\n"
    b"Date: Mon, 2 Nov 2026 10:00:00 +0100\r\nSubject: =?utf-8?q?Pedido_4411_no_lleg=C3=B3?=\r\n"
    b"Message-ID: <pedido-4411@example.org>\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    + "El pedido 4411 no ha llegado. Ma\u00f1ana llamo.\r\n\r\nBob\r\n".encode()
    + b"Bob Customer, Compras\r\n" * 40
)


def _forward(number: int, part: bytes) -> bytes:
    return (
        b"From: ann@example.com\r\nTo: support@helpdesk.test\r\nSubject: Fwd: Pedido\r\n"
        b"Message-ID: <fwd-%d@client.example>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="==1=="\r\n\r\n'
        b"--==1==\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\r\n"
        b"--==1==\r\n%b\r\n--==1==--\r\n" % (number, part)
    )


def test_a_forwarded_message_downloads_as_a_mail_that_opens_as_the_message_enclosed(app, senders, portal):
    """What staff download for a message forwarded as attachment opens in a mail
    client as that message: its bytes begin with its header. Sent base64 or
    quoted-printable (RFC 2046 §5.2.1 allows neither; some servers do it), the .eml
    held the encoded text after a blank line, named attachment-1.eml or after the
    Subject still encoded; now the message decoded, named after its Subject."""
    encoded = b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: "
    based = base64.encodebytes(PEDIDO).replace(b"\n", b"\r\n")
    nested = b"From: Carla <carla@example.org>\r\nSubject: Fwd: Pedido 4411\r\n"
    nested += b"Content-Type: message/rfc822\r\n\r\n" + PEDIDO
    shapes = {  # name: (the part, the file kept, the Subject it opens with, a line of its text)
        "Thunderbird": (
            b'Content-Type: message/rfc822; charset=UTF-8; name="Pedido 4411.eml"\r\n'
            b'Content-Disposition: attachment; filename="Pedido 4411.eml"\r\n'
            b"Content-Transfer-Encoding: 7bit\r\n\r\n" + PEDIDO,
            "Pedido 4411.eml",
            "Pedido 4411 no lleg\u00f3",
            "Bob Customer, Compras",
        ),
        "Outlook": (
            b"Content-Type: message/rfc822\r\nContent-Disposition: attachment\r\n\r\n" + PEDIDO,
            "Pedido 4411 no lleg\u00f3.eml",
            "Pedido 4411 no lleg\u00f3",
            "Bob Customer, Compras",
        ),
        "nested": (
            b"Content-Type: message/rfc822\r\n\r\n" + nested,
            "Fwd_ Pedido 4411.eml",
            "Fwd: Pedido 4411",
            "Bob Customer, Compras",
        ),
        "base64": (
            encoded + b"base64\r\n\r\n" + based,
            "Pedido 4411 no lleg\u00f3.eml",
            "Pedido 4411 no lleg\u00f3",
            "Bob Customer, Compras",
        ),
        "quoted-printable": (
            encoded + b"quoted-printable\r\n\r\n" + quopri.encodestring(PEDIDO),
            "Pedido 4411 no lleg\u00f3.eml",
            "Pedido 4411 no lleg\u00f3",
            "Bob Customer, Compras",
        ),
        "truncated base64": (
            # cut one letter into a line: no padding completes it (the email package
            # keeps such base64 as the text itself)
            encoded + b"base64\r\n\r\n" + based[: based.index(b"\r\n", len(based) // 2) + 3],
            "Pedido 4411 no lleg\u00f3.eml",
            "Pedido 4411 no lleg\u00f3",
            "Ma\u00f1ana llamo.",
        ),
    }
    for number, (shape, (part, name, subject, line)) in enumerate(shapes.items(), 1):
        result = ingest(_forward(number, part), Envelope("ann@example.com", (SUPPORT,), "smtp"), app.config)
        assert result.outcome is Outcome.CREATED, shape
        (kept,) = tickets()[-1].messages[0].attachments
        assert (kept.filename, kept.content_type) == (name, "message/rfc822"), shape
        download = portal.get(f"/attachments/{kept.id}")
        assert download.status_code == 200, shape
        assert download.data == kept.data and download.data.startswith((b"Received: ", b"From: ")), shape
        opened = message_from_bytes(download.data, policy=default)
        assert (opened["Subject"], opened.defects) == (subject, []), shape
        inner = opened.get_body() if shape != "nested" else opened.get_payload()[0].get_body()
        assert line in inner.get_content(), shape
        if shape in ("base64", "quoted-printable"):
            assert download.data == PEDIDO  # as it was enclosed


def test_html_is_sanitized_and_filenames_are_safe(gateway, senders):
    msg = message(
        html='<p onclick="steal()">Hi<script>alert(1)</script>'
        '<a href="javascript:evil()">x</a><img src="cid:logo"></p>'
    )
    msg.add_attachment(
        b"root:x:0:0", maintype="application", subtype="octet-stream", filename="../../etc/passwd"
    )
    assert gateway.send(msg)[0] == 250
    first = tickets()[0].messages[0]
    assert "<script" not in first.body_html and "onclick" not in first.body_html
    assert "javascript:" not in first.body_html
    assert "Hi" in first.body_html
    (attachment,) = db.session.execute(select(Attachment)).scalars()
    assert "/" not in attachment.filename and ".." not in attachment.filename
    assert attachment.filename.endswith("passwd")
    assert attachment.size == 10


def test_attachments_over_the_limits_are_left_in_the_raw_mail_with_a_note(app, gateway, senders):
    app.config.update(MAX_ATTACHMENT_BYTES=100, MAX_ATTACHMENTS_TOTAL_BYTES=120)
    msg = message()
    for name, size in (("a.txt", 50), ("big.bin", 150), ("c.txt", 80), ("d.txt", 60)):
        msg.add_attachment(b"x" * size, maintype="application", subtype="octet-stream", filename=name)
    assert gateway.send(msg)[0] == 250
    ticket = tickets()[0]
    stored = db.session.execute(select(Attachment.filename, Attachment.size).order_by(Attachment.id)).all()
    assert [tuple(row) for row in stored] == [("a.txt", 50), ("d.txt", 60)]
    assert ticket.description == "The printer on floor 3 is on fire."  # the customer's words only
    # What was left out is told to staff: an internal note by the gateway, never mailed.
    note = ticket.messages[1]
    assert (note.kind, note.author_label, note.author_staff_id, note.author_contact_id) == (
        "note",
        "mail gateway",
        None,
        None,
    )
    assert note.body == (
        "big.bin (150 bytes) not stored: larger than 100 bytes; it is in the original mail.\n"
        "c.txt (80 bytes) not stored: attachments exceed 120 bytes in total; it is in the original mail."
    )
    assert len(ticket.messages) == 2
    assert ticket.messages[0].inbound_mail.raw.count(b'filename="') == 4


def test_inline_cid_image_is_kept_and_its_reference_survives_sanitizing(gateway, senders):
    msg = message(html='<p>See <img src="cid:logo@client.example" alt="logo"></p>')
    msg.get_payload()[1].add_related(
        b"\x89PNG fake",
        maintype="image",
        subtype="png",
        cid="<logo@client.example>",
        filename="logo.png",
        disposition="inline",
    )
    assert gateway.send(msg)[0] == 250
    first = tickets()[0].messages[0]
    assert 'src="cid:logo@client.example"' in first.body_html
    (image,) = db.session.execute(select(Attachment)).scalars()
    assert (image.filename, image.content_id, image.is_inline, image.data) == (
        "logo.png",
        "logo@client.example",
        True,
        b"\x89PNG fake",
    )


def test_quoted_history_is_stripped_for_display(gateway, opened):
    body = (
        "Yes, that fixed it.\n\nOn Mon, 1 Jan 2024 at 10:00, Support <support@helpdesk.test> wrote:\n"
        "> Did you try turning it off and on?\n"
    )
    gateway.send(message(subject="Re: [TKT-000001]", body=body))
    last = tickets()[0].messages[-1]
    assert last.body == "Yes, that fixed it."
    assert b"Did you try" in last.inbound_mail.raw


def test_quarantine_approve_creates_ticket_with_next_number(gateway, senders, runner):
    gateway.send(message(sender="ann@example.com", subject="first"))
    gateway.send(message(sender="stranger@nowhere.example", subject="let me in"))
    item = db.session.execute(select(QuarantineItem)).scalar_one()
    listing = runner.invoke(args=["quarantine", "list"])
    assert "stranger@nowhere.example" in listing.output
    shown = runner.invoke(args=["quarantine", "show", str(item.id)])
    assert "let me in" in shown.output
    approved = runner.invoke(args=["quarantine", "approve", str(item.id)])
    assert approved.exit_code == 0, approved.output
    assert "created TKT-000002" in approved.output
    db.session.expire_all()
    assert [t.subject for t in tickets()] == ["first", "let me in"]
    again = runner.invoke(args=["quarantine", "approve", str(item.id)])
    assert again.exit_code == 1 and "already approved" in again.output


def test_quarantine_approve_of_a_strangers_reply_opens_a_new_linked_ticket(gateway, opened, runner):
    """Approval vouches for the sender, not for their place on the ticket they named:
    a stranger never gets into someone else's ticket (docs/mail-gateway.md)."""
    gateway.send(message(sender="helper@partner.example", subject="Re: [TKT-000001] info"))
    item = db.session.execute(select(QuarantineItem)).scalar_one()
    result = runner.invoke(args=["quarantine", "approve", str(item.id)])
    assert result.exit_code == 0, result.output
    assert "created TKT-000002" in result.output
    db.session.expire_all()
    assert reply_count(opened) == 1
    new = tickets()[1]
    assert (new.requester.email, new.linked_ticket_id) == ("helper@partner.example", opened.id)


def test_a_mail_naming_its_sender_only_in_the_envelope_follows_the_sender_policy(gateway, senders, runner):
    """The envelope is the last fallback for the sender (docs/mail-gateway.md): an
    authorized envelope sender opens a ticket, and a stranger's mail is held and,
    once approved, opens one for the envelope sender; the quarantine shows why."""
    raw = b"To: support@helpdesk.test\r\nSubject: no from at all\r\n\r\nThe link is down.\r\n"
    code, text = gateway.send(raw, mail_from="ann@example.com")
    assert code == 250 and b"created TKT-000001" in text
    first = tickets()[0]
    assert first.requester.email == "ann@example.com"
    assert (
        "The sender was taken from the SMTP envelope (MAIL FROM): the mail has no From "
        "header." in first.messages[-1].body
    )
    code, text = gateway.send(raw.replace(b"no from", b"still no from"), mail_from="stranger@nowhere.example")
    assert code == 250 and b"quarantined" in text
    item = db.session.execute(select(QuarantineItem)).scalar_one()
    assert (item.inbound_mail.from_address, item.inbound_mail.from_source) == (
        "stranger@nowhere.example",
        "envelope",
    )
    approved = runner.invoke(args=["quarantine", "approve", str(item.id)])
    assert approved.exit_code == 0 and "created TKT-000002" in approved.output
    db.session.expire_all()
    assert tickets()[1].requester.email == "stranger@nowhere.example"


def test_a_mail_naming_no_sender_at_all_is_held(gateway, senders):
    raw = b"To: support@helpdesk.test\r\nSubject: who am I\r\n\r\nhello\r\n"
    code, text = gateway.send(raw, mail_from="not an address")
    assert code == 250 and b"quarantined" in text
    record = db.session.execute(select(InboundMail)).scalar_one()
    assert (record.from_address, record.from_source) == ("", "")
    assert record.reason.startswith("no sender address")


def test_held_mail_is_held_since_the_databases_clock(app, monkeypatch):
    """The gateway's host runs 11 minutes ahead of the database. A held mail's item
    was stamped by that host's clock while its mail was received by the
    database's: the held-mail list showed it held 11 minutes after it arrived, out
    of order with mail held on other hosts. Both ways of holding a mail (a decision
    to hold it, a pipeline that failed on it) stamp the database's clock. (On SQLite
    that is the host's, moved here.)"""
    _choke_on_boom(monkeypatch)
    envelope = Envelope("stranger@nowhere.example", (SUPPORT,), "smtp")
    with time_machine.travel(datetime.now(timezone.utc) + timedelta(minutes=11), tick=True):
        for subject in ("Printer on fire", "boom"):
            mail = message(sender="stranger@nowhere.example", subject=subject)
            assert ingest(mail.as_bytes(), envelope, app.config).outcome is Outcome.QUARANTINED
        moment = database_now(db.session)
    items = db.session.execute(select(QuarantineItem).order_by(QuarantineItem.id)).scalars().all()
    assert [item.reason.startswith("processing failed") for item in items] == [False, True]
    for item in items:
        assert abs(moment - item.created_at) < timedelta(minutes=1)
        assert abs(item.inbound_mail.received_at - item.created_at) < timedelta(seconds=10)


def test_quarantine_reject_and_spam(gateway, senders, runner):
    gateway.send(message(sender="a@nowhere.example", subject="one"))
    gateway.send(message(sender="b@nowhere.example", subject="two"))
    first, second = db.session.execute(select(QuarantineItem).order_by(QuarantineItem.id)).scalars()
    assert runner.invoke(args=["quarantine", "reject", str(first.id)]).exit_code == 0
    assert runner.invoke(args=["quarantine", "reject", "--spam", str(second.id)]).exit_code == 0
    db.session.expire_all()
    assert [
        i.state for i in db.session.execute(select(QuarantineItem).order_by(QuarantineItem.id)).scalars()
    ] == ["rejected", "spam"]
    assert tickets() == []
    assert runner.invoke(args=["quarantine", "show", "999"]).exit_code == 1


def test_unknown_senders_get_452_once_the_quarantine_is_full(app, senders, caplog):
    """Anyone may mail the support address, and every stranger's mail was held: 300
    mails of 64 KiB from 300 new addresses (each under every per-sender limit) put
    19.7 MB in the quarantine in 3.5 s, without bound. Past QUARANTINE_MAX_MAILS
    held mails waiting for review, a stranger's mail is answered 452 (its sender
    retries); customers' mail and a copy of mail already held still get 250
    (docs/mail-gateway.md, "Quarantine room")."""
    for gateway in start_gateway(app, QUARANTINE_MAX_MAILS=2):
        first = message(sender="a@nowhere.example", message_id="<held-1@nowhere.example>")
        assert gateway.send(first) == (250, b"2.0.0 OK quarantined")
        assert gateway.send(message(sender="b@nowhere.example"))[0] == 250
        assert gateway.send(
            message(sender="c@nowhere.example", message_id="<refused-1@nowhere.example>")
        ) == (
            452,
            b"4.3.1 Insufficient system storage, try again later",
        )
        assert gateway.send(first) == (250, b"2.0.0 OK duplicate")
        assert gateway.send(message(sender="ann@example.com")) == (250, b"2.0.0 OK created TKT-000001")
    assert count(QuarantineItem) == 2
    # SPEC §10: the refused mail has its own line, with its Message-ID and outcome.
    lines = [r.getMessage() for r in caplog.records if r.name == "mailgateway.smtp"]
    assert [line for line in lines if "452, quarantine full" in line] == [
        "mail refused-1@nowhere.example via smtp from c@nowhere.example to support@helpdesk.test: "
        "452, quarantine full"
    ]


def test_the_quarantine_counts_its_bytes_too_and_has_room_again_once_reviewed(app, senders, monkeypatch):
    for gateway in start_gateway(app, QUARANTINE_MAX_BYTES=1500):
        assert gateway.send(message(sender="a@nowhere.example", body="x" * 900))[0] == 250
        assert gateway.send(message(sender="b@nowhere.example", body="y" * 900))[0] == 452
        from helpdesk.inbound import room

        db.session.execute(update(QuarantineItem).values(state="rejected"))
        db.session.commit()
        monkeypatch.setattr(room, "RECOUNT_SECONDS", 0.0)  # counted again at once, not in 10 s
        assert gateway.send(message(sender="b@nowhere.example", body="y" * 900))[0] == 250


def test_a_mail_waiting_on_the_database_does_not_stall_other_connections(gateway, senders):
    """The counter row (PostgreSQL) or the write lock (SQLite) is held by the test, so
    the first mail's commit waits; another SMTP session must still be served."""
    import smtplib
    import threading

    from helpdesk.models import TicketCounter

    db.session.rollback()
    db.session.execute(select(TicketCounter).with_for_update()).all()  # take the lock
    replies: list[tuple[int, bytes]] = []
    waiting = threading.Thread(target=lambda: replies.append(send(gateway.port, message())))
    waiting.start()
    try:
        # Served while the lock is still held: had the first mail stalled the listener,
        # this session would hit its client timeout instead.
        with smtplib.SMTP("127.0.0.1", gateway.port, timeout=10) as other:
            assert other.ehlo()[0] == 250
            assert other.mail("cy@corp.example")[0] == 250
            assert other.rcpt(SUPPORT)[0] == 250
        assert replies == [], "the first mail should still be waiting for the lock"
    finally:
        db.session.rollback()  # release the lock
    waiting.join(timeout=30)
    assert replies == [(250, b"2.0.0 OK created TKT-000001")]


def test_each_session_has_its_own_command_line_limits(gateway):
    """aiosmtpd keeps MAIL's line limit (512, and 36 more once EHLO has offered SIZE
    and SMTPUTF8) in one dict shared by every session: each EHLO anywhere raised it
    for all, and each new connection emptied it, so a MAIL line within the limit its
    own EHLO set was refused as too long once someone else connected (no real path
    is that long: RFC 5321 allows 256 octets; the limit must still be the session's)."""
    import smtplib

    mail_from = "a" * 60 + "@" + ".".join(letter * 60 for letter in "defghi") + "." + "j" * 40 + ".example"
    line = f"MAIL FROM:<{mail_from}> SIZE=1000 BODY=8BITMIME SMTPUTF8"
    assert 512 < len(line) + 2 <= 548
    with smtplib.SMTP("127.0.0.1", gateway.port, timeout=5) as sender:
        sender.ehlo("sender.example")
        with smtplib.SMTP("127.0.0.1", gateway.port, timeout=5) as other:  # a new session
            assert sender.docmd(line)[0] == 250
            assert sender.docmd("RSET")[0] == 250
            for _ in range(15):
                other.ehlo("other.example")
            assert sender.docmd(f"MAIL FROM:<{'x' * 900}@example.com>")[0] == 500


def test_repeating_ehlo_does_not_raise_the_sessions_own_mail_limit(gateway):
    """aiosmtpd adds SIZE's and SMTPUTF8's room (36 bytes) to MAIL's line limit at
    each EHLO: 15 EHLOs in one session raised its own limit from 548 to 1,052 bytes.
    Each EHLO sets it again instead (docs/mail-gateway.md, "Timeouts")."""
    import smtplib

    line = f"MAIL FROM:<{'a' * 560}@example.com>"
    assert 548 < len(line) + 2 < 1052
    with smtplib.SMTP("127.0.0.1", gateway.port, timeout=5) as sender:
        for _ in range(15):
            assert sender.ehlo("sender.example")[0] == 250
        assert sender.docmd(line)[0] == 500
        assert sender.docmd(f"MAIL FROM:<{'a' * 500}@example.com> SIZE=1000 SMTPUTF8")[0] == 250


def test_banner_and_ehlo_name_the_configured_host_without_asking_dns(gateway, monkeypatch):
    import smtplib
    import socket

    def no_dns() -> str:
        raise AssertionError("the listener asked DNS for its own name")

    monkeypatch.setattr(socket, "getfqdn", no_dns)
    with smtplib.SMTP("127.0.0.1", gateway.port, local_hostname="client.example", timeout=5) as connection:
        code, banner = connection.ehlo()
    assert code == 250
    assert banner.splitlines()[0] == b"helpdesk.helpdesk.test"


@pytest.mark.parametrize(
    ("subject", "alert"),
    [
        ("Fwd: [TKT-000001] SLA breach: VPN drops", True),
        ("RE:  [tkt-1]   sla   BREACH: VPN drops", True),
        ("[TKT-000001] SLA incumplido: VPN", True),
        ("[Case 42] Escalated: invoice is wrong", False),
        ("[Order 7] SLA breach: late parcel", False),
        ("[TKT-x1] Escalated: no number", False),
        ("Escalated: no reference at all", False),
    ],
)
def test_only_our_own_ticket_reference_before_an_alert_prefix_makes_an_alert_subject(subject, alert):
    """A customer's own subject "[Case 42] Escalated: …" is no alert of ours: a staff
    answer to it was kept as a note the customer never got (found by review)."""
    from helpdesk.inbound.matching import names_staff_alert

    assert names_staff_alert(subject, "TKT-") is alert
