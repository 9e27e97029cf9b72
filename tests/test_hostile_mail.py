"""Mail written by an attacker, through the real SMTP listener (docs/mail-gateway.md).

The first four groups are attacks that worked on the gateway before the
hostile-mail work (issue 13): staff impersonation, quarantine approval as a way
into someone else's ticket, `Authentication-Results` headers that decode or
normalise into a trusted one, and poison mail that PostgreSQL refuses and that
was answered `451` forever. Then the caps, the pathological generator
(`tests.support.hostile`) sent while a customer keeps mailing, and fuzzing of raw bytes
through `ingest` on both databases.
"""

from __future__ import annotations

import base64
import hashlib
import quopri
import re
import smtplib
import threading
from collections.abc import Mapping
from email.message import EmailMessage
from email.policy import SMTP
from functools import partial
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from helpdesk.extensions import db
from helpdesk.inbound.automail import detect
from helpdesk.inbound.dedup import dedup_key
from helpdesk.inbound.ingest import Envelope, Outcome, ingest
from helpdesk.inbound.limits import MailLimits
from helpdesk.inbound.parser import parse
from helpdesk.models import InboundMail, Message, OutboxMessage, Participant, QuarantineItem, Ticket
from helpdesk.services.senders import SendersService
from tests.support.database import (
    open_ticket,
    refused_as_unreachable,
    refused_by_database,
    statements,
    tickets,
)
from tests.support.hostile import NESTED_LAYOUT, distinct_words, hostile_mails, ordinary_mail
from tests.support.mail import SUPPORT, message, send, start_gateway
from tests.support.outbox import deliver
from tests.support.timing import cpu_seconds, least_cpu

TRUSTED = "mx.helpdesk.test"


def messages(ticket: Ticket) -> list[Message]:
    return list(
        db.session.execute(
            select(Message).where(Message.ticket_id == ticket.id).order_by(Message.id)
        ).scalars()
    )


def mailed_replies() -> list[OutboxMessage]:
    return list(db.session.execute(select(OutboxMessage).where(OutboxMessage.kind == "reply")).scalars())


def last_record() -> InboundMail:
    return db.session.execute(select(InboundMail).order_by(InboundMail.id.desc())).scalars().first()


# -- staff are never impersonated by mail ------------------------------------------------


def test_mail_from_a_staff_address_without_proof_is_an_unverified_note_never_mailed(gateway, senders, agent):
    gateway.send(message(subject="Laptop broken"))
    (ticket,) = tickets()
    forged = message(
        sender=f"Agnes Agent <{agent.email}>",
        subject="Re: [TKT-000001] Laptop broken",
        body="Please pay the repair fee to IBAN XX00 0000 first.",
    )
    code, text = gateway.send(forged)
    assert (code, text) == (250, b"2.0.0 OK appended TKT-000001")
    first, note = messages(ticket)
    assert note.kind == "note"  # never a public reply
    assert note.author_staff_id is None  # never acts as the staff member
    assert "unverified" in note.author_label
    assert mailed_replies() == []  # never mailed to the customer
    db.session.refresh(ticket)
    assert ticket.first_responded_at is None  # never the SLA's first response
    assert "no proof" in last_record().reason


def test_staff_answering_mail_the_helpdesk_sent_to_them_replies_publicly(
    app, gateway, senders, agent, admin, service, sink
):  # noqa: F811
    """Proof by signed Message-ID: only the staff member's mailbox received this id."""
    from helpdesk.services import Actor

    ticket = open_ticket(service, cc=[(agent.email, "Agnes Agent")])
    service.add_message(ticket, body="Which model?", actor=Actor.staff(admin), channel="web")
    db.session.commit()
    mails = deliver(app, sink)
    (to_agent,) = [mail for mail in mails if mail["To"].addresses[0].addr_spec == agent.email]
    answer = message(
        sender=agent.email,
        subject="Re: " + str(to_agent["Subject"]),
        body="It is the X-100; we replace it today.",
        in_reply_to=to_agent["Message-ID"],
    )
    assert gateway.send(answer) == (250, b"2.0.0 OK appended TKT-000001")
    last = messages(ticket)[-1]
    assert (last.kind, last.author_staff_id) == ("reply", agent.id)
    assert any(row.reply_id == last.id and row.to_address == "ann@example.com" for row in mailed_replies())


def test_a_signed_id_sent_to_the_customer_is_no_proof_for_a_staff_address(app, gateway, senders, agent, sink):  # noqa: F811
    gateway.send(message(subject="Printer on fire"))
    (ack,) = deliver(app, sink)  # the customer holds this id, and can quote it
    forged = message(
        sender=agent.email,
        subject="Re: [TKT-000001] Printer on fire",
        body="Send your password to reset the printer.",
        in_reply_to=ack["Message-ID"],
    )
    assert gateway.send(forged) == (250, b"2.0.0 OK appended TKT-000001")
    (ticket,) = tickets()
    note = messages(ticket)[-1]
    assert (note.kind, note.author_staff_id) == ("note", None)
    assert mailed_replies() == []


def test_a_staff_copy_names_nobody_in_cc_so_a_reply_all_cannot_hand_its_proof_to_the_customer(
    app, gateway, senders, agent, admin, service, sink
):  # noqa: F811
    """A customer put a staff address in Cc, so it is a CC participant. Its copy of a
    colleague's public reply used to name the customer in Cc: one Reply-All, and the
    customer held the staff member's signed Message-ID in its In-Reply-To, enough to
    write as that staff member."""
    from helpdesk.services import Actor

    gateway.send(message(subject="Printer", cc=f"Agnes Agent <{agent.email}>"))
    (ticket,) = tickets()
    assert [p.email for p in ticket.participants] == [agent.email]
    service.add_message(ticket, body="Which model?", actor=Actor.staff(admin), channel="web")
    db.session.commit()
    mails = deliver(app, sink)
    (to_agent,) = [mail for mail in mails if mail["To"].addresses[0].addr_spec == agent.email]
    (to_ann,) = [
        mail for mail in mails if mail["To"].addresses[0].addr_spec == "ann@example.com" and mail["Cc"]
    ]
    assert to_agent["Cc"] is None
    assert str(to_ann["Cc"]) == agent.email  # the customers' copies still say who else got one
    # What a Reply-All to the staff copy is addressed to: its Reply-To, To and Cc but oneself.
    reply_all = {
        address.addr_spec
        for field in ("Reply-To", "To", "Cc")
        if to_agent[field] is not None
        for address in to_agent[field].addresses
    } - {agent.email}
    assert reply_all == {"support+TKT-000001@helpdesk.test"}


def test_a_cc_name_that_decodes_to_an_address_puts_nobody_else_in_the_staff_copy(
    app, gateway, senders, agent, admin, service, sink
):  # noqa: F811
    """A customer named the staff member in Cc as `Agnès <attacker@evil.example>`,
    encoded (RFC 2047). The name was stored decoded, and the staff copy of a public
    reply went out as `To: =?utf-8?q?Agn=C3=A8s?= <attacker@evil.example>
    <agent@…>`: mail readers address it to the attacker, a Reply-All handed the
    attacker the copy's signed Message-ID, and mail forged from the staff address
    answering it was a public staff reply. The copy names the staff member alone."""
    from helpdesk.services import Actor

    raw = (
        b"From: Ann <ann@example.com>\r\n"
        b"To: support@helpdesk.test\r\n"
        b"Cc: =?utf-8?q?B=C3=B6b_=3Cattacker=40evil.example=3E?= <bob@corp.example>,\r\n"
        b" =?utf-8?q?Agn=C3=A8s_=3Cattacker=40evil.example=3E?= <" + agent.email.encode() + b">\r\n"
        b"Subject: Printer\r\nMessage-ID: <cc-names@client.example>\r\n"
        b"Content-Type: text/plain\r\n\r\nIt is on fire.\r\n"
    )
    assert gateway.send(raw, mail_from="ann@example.com")[0] == 250
    (ticket,) = tickets()
    assert sorted(p.email for p in ticket.participants) == sorted([agent.email, "bob@corp.example"])
    service.add_message(ticket, body="Which model?", actor=Actor.staff(admin), channel="web")
    db.session.commit()
    deliver(app, sink)
    replies = [item for item in sink.received if item.message["Auto-Submitted"] is None]
    assert sorted(item.rcpt_tos[0] for item in replies) == sorted(
        ["ann@example.com", "bob@corp.example", agent.email]
    )
    for item in replies:
        mail = item.message
        assert [a.addr_spec for a in mail["To"].addresses] == item.rcpt_tos
        named = {
            a.addr_spec for field in ("To", "Cc") if mail[field] is not None for a in mail[field].addresses
        }
        assert "attacker@evil.example" not in named
    (to_agent,) = [item.message for item in replies if item.rcpt_tos == [agent.email]]
    reply_all = {
        address.addr_spec
        for field in ("Reply-To", "To", "Cc")
        if to_agent[field] is not None
        for address in to_agent[field].addresses
    } - {agent.email}
    assert reply_all == {"support+TKT-000001@helpdesk.test"}


def test_a_signed_id_from_a_staff_copy_that_named_customers_in_cc_is_no_proof(
    app, gateway, senders, agent, admin, service, sink
):  # noqa: F811
    """A copy queued before staff copies stopped naming the customers (or sent to an
    address that became a staff account since) may have reached them: its id proves
    nothing, and mail answering it is an unverified note."""
    from helpdesk.services import Actor

    ticket = open_ticket(service, cc=[(agent.email, "Agnes Agent")])
    service.add_message(ticket, body="Which model?", actor=Actor.staff(admin), channel="web")
    db.session.commit()
    row = db.session.execute(
        select(OutboxMessage).where(OutboxMessage.kind == "reply", OutboxMessage.to_address == agent.email)
    ).scalar_one()
    assert row.cc_addresses == ""
    row.cc_addresses = "ann@example.com"  # as queued before
    db.session.commit()
    (to_agent,) = [mail for mail in deliver(app, sink) if mail["To"].addresses[0].addr_spec == agent.email]
    assert str(to_agent["Cc"]) == "ann@example.com"
    forged = message(
        sender=agent.email,
        subject="Re: " + str(to_agent["Subject"]),
        body="Refund approved; send your card number.",
        in_reply_to=to_agent["Message-ID"],
    )
    assert gateway.send(forged) == (250, b"2.0.0 OK appended TKT-000001")
    last = messages(ticket)[-1]
    assert (last.kind, last.author_staff_id) == ("note", None)
    assert "no proof" in last_record().reason


@pytest.mark.parametrize(
    ("results", "outcome", "kind"),
    [
        (f"{TRUSTED}; dmarc=pass header.from=helpdesk.test", "appended", "note"),
        (None, "quarantined", None),
        ("mx.attacker.example; dmarc=pass header.from=helpdesk.test", "quarantined", None),
    ],
)
def test_staff_mail_the_trusted_server_says_passed_dmarc_is_the_staff_members_note(
    app, service, agent, results, outcome, kind
):
    """A pass proves who wrote the mail, not to whom (a signature covers only the
    header fields the sender's server chose): the staff member's internal note, never
    a public reply, which needs the signed Message-ID of mail sent to them."""
    open_ticket(service)
    for gateway in start_gateway(app, TRUSTED_AUTHSERV_ID=TRUSTED):
        headers = {"Authentication-Results": results} if results else None
        code, text = gateway.send(
            message(sender=agent.email, subject="Re: [TKT-000001] Printer", body="Replaced.", headers=headers)
        )
        assert (code, text.split()[2].decode()) == (250, outcome)
    (ticket,) = tickets()
    last = messages(ticket)[-1]
    if kind is None:
        assert len(messages(ticket)) == 1
    else:
        assert (last.kind, last.author_staff_id) == (kind, agent.id)


@pytest.mark.parametrize(
    ("to", "subject", "rcpt"),
    [
        ("someone@attacker.example", "Re: lunch on Friday?", "support+TKT-000001@helpdesk.test"),
        ("vendor@partner.example", "Re: [TKT-000001] VPN drops every hour", SUPPORT),
        (SUPPORT, "Question about the new rota", "support+TKT-000001@helpdesk.test"),
        (
            "someone@attacker.example, support+TKT-000001@helpdesk.test",
            "Re: lunch on Friday?",
            "support+TKT-000001@helpdesk.test",
        ),
    ],
    ids=[
        "to someone else, ticket in the envelope",
        "to someone else, ticket in the subject",
        "ticket in the envelope only",
        "a To the signature does not cover names the ticket",
    ],
)
def test_a_replayed_staff_mail_with_a_dmarc_pass_is_no_public_reply(
    app, service, agent, sink, to, subject, rcpt
):
    """DKIM signs the header, never the envelope: a mail the agent once sent elsewhere
    keeps its pass when the attacker replays it to a ticket's plus-address. The pass
    proves the agent wrote it, not that they wrote it to this ticket, nor does a
    header naming the ticket: the attacker adds a To or Cc line that no signature
    covers, and the pass holds (RFC 6376 signs the fields the sender's server chose).
    Only an answer to mail the helpdesk sent to the agent is their public reply."""
    ticket = open_ticket(service)
    acknowledged = len(deliver(app, sink))
    for gateway in start_gateway(app, TRUSTED_AUTHSERV_ID=TRUSTED):
        replay = message(
            sender=agent.email,
            to=to,
            subject=subject,
            body="Sounds good, see you at noon. The router firmware fix is not ready.",
            headers={
                "Authentication-Results": (
                    f"{TRUSTED}; dkim=pass header.d=helpdesk.test; dmarc=pass header.from=helpdesk.test"
                )
            },
        )
        assert gateway.send(replay, mail_from="x@attacker.example", rcpt=[rcpt]) == (
            250,
            b"2.0.0 OK appended TKT-000001",
        )
    last = messages(ticket)[-1]
    assert (last.kind, last.author_staff_id) == ("note", agent.id)
    assert "nothing says it was written to this ticket" in last_record().reason
    assert mailed_replies() == []
    assert deliver(app, sink)[acknowledged:] == []  # the customer gets nothing
    db.session.refresh(ticket)
    assert ticket.first_responded_at is None


@pytest.mark.parametrize(
    ("subject", "kind"),
    [
        ("Fwd: Quote for the new router", "note"),
        ("RV: Presupuesto del router", "note"),
        ("  wg : Angebot Router", "note"),
        ("Re: Fwd: Quote for the new router", "reply"),
        ("Information: the router ships today", "reply"),
    ],
    ids=["fwd", "spanish outlook", "german outlook, odd blanks", "answering a forward", "a colon later"],
)
def test_a_staff_forward_to_the_ticket_is_an_internal_note_even_with_its_proof(
    app, service, agent, admin, sink, subject, kind
):
    """A forward is written to colleagues ("can someone look at this?"): even
    answering mail the helpdesk sent the staff member (their proof) it is their note,
    never mailed to the customer. Only the subject's first marker counts."""
    from helpdesk.services import Actor

    ticket = open_ticket(service, cc=[(agent.email, "Agnes Agent")])
    service.add_message(ticket, body="Which model?", actor=Actor.staff(admin), channel="web")
    db.session.commit()
    (to_agent,) = [mail for mail in deliver(app, sink) if mail["To"].addresses[0].addr_spec == agent.email]
    for gateway in start_gateway(app):
        mail = message(
            sender=agent.email,
            subject=subject,
            body="Can someone check this quote before we answer?",
            in_reply_to=to_agent["Message-ID"],
        )
        assert gateway.send(mail) == (250, b"2.0.0 OK appended TKT-000001")
    last = messages(ticket)[-1]
    assert (last.kind, last.author_staff_id) == (kind, agent.id)
    if kind == "note":
        assert "forward, written to colleagues" in last_record().reason


# -- quarantine approval vouches for the sender, not for where the mail goes ---------------


def test_approving_mail_from_a_staff_address_does_not_make_it_staff(app, service, agent, runner):
    open_ticket(service)
    for gateway in start_gateway(app, TRUSTED_AUTHSERV_ID=TRUSTED):
        code, text = gateway.send(
            message(
                sender=agent.email,
                subject="Re: [TKT-000001] Printer",
                body="Refund approved, send card details.",
            )
        )
        assert (code, text) == (250, b"2.0.0 OK quarantined")
    item = db.session.execute(select(QuarantineItem)).scalar_one()
    result = runner.invoke(args=["quarantine", "approve", str(item.id)])
    assert result.exit_code == 0, result.output
    db.session.expire_all()
    (ticket,) = tickets()
    last = messages(ticket)[-1]
    assert (last.kind, last.author_staff_id) == ("note", None)
    assert mailed_replies() == []


@pytest.fixture
def corp_ticket(app, senders) -> Ticket:
    """TKT-000001, opened by cy@corp.example (authenticated) with bob@partner.example in Cc."""
    app.config.update(TRUSTED_AUTHSERV_ID=TRUSTED)
    raw = raw_mail(
        b"Authentication-Results: " + TRUSTED.encode() + b"; dmarc=pass header.from=corp.example",
        RECEIVED,
        sender=b"Cy <cy@corp.example>",
        extra=(b"Cc: Bob <bob@partner.example>",),
    )
    assert ingest(raw, Envelope("cy@corp.example", (SUPPORT,), "smtp"), app.config).outcome is Outcome.CREATED
    db.session.commit()
    (ticket,) = tickets()
    return ticket


@pytest.mark.parametrize(
    "sender",
    ["cy@corp.example", "bob@partner.example", "dee@corp.example"],
    ids=["requester", "cc participant", "authorized sender of its organization"],
)
def test_approving_a_forged_from_of_someone_who_belongs_on_the_ticket_opens_a_linked_ticket(
    app, agent, corp_ticket, sender
):
    """The trusted server says the From did not authenticate: whoever wrote the mail,
    it is not shown to be the requester, a CC participant or a colleague. Approving
    it vouches for opening a ticket, not for the From: it never lands in TKT-000001
    (before, it was appended there as the person it named)."""
    from helpdesk.inbound import quarantine
    from helpdesk.services import Actor

    domain = sender.partition("@")[2].encode()

    def reply(result: bytes, tag: bytes) -> bytes:
        return raw_mail(
            b"Authentication-Results: " + TRUSTED.encode() + b"; dmarc=" + result + b" header.from=" + domain,
            RECEIVED,
            sender=sender.encode(),
            subject=b"Re: [TKT-000001] Invoice question",
            extra=(b"X-Tag: " + tag,),
        )

    envelope = Envelope("x@attacker.example", (SUPPORT,), "smtp")
    # Authenticated, the sender belongs on the ticket: appended.
    assert ingest(reply(b"pass", b"genuine"), envelope, app.config).outcome is Outcome.APPENDED
    db.session.commit()
    assert len(messages(corp_ticket)) == 2
    forged = ingest(reply(b"fail", b"forged"), envelope, app.config)
    assert forged.outcome is Outcome.QUARANTINED
    assert forged.reason.startswith("From not authenticated (")
    assert f"{sender} may not write into TKT-000001" in forged.reason
    item = db.session.execute(select(QuarantineItem)).scalar_one()
    assert item.reason == forged.reason  # what the reviewer reads
    result = quarantine.approve(db.session, item.id, Actor.staff(agent), app.config)
    db.session.commit()
    assert (result.outcome, result.ticket_number) == (Outcome.CREATED, "TKT-000002")
    assert "new ticket linked to it" in result.reason
    first, new = tickets()
    assert len(messages(first)) == 2  # the genuine reply only
    assert new.linked_ticket_id == first.id and new.requester.email == sender


def test_approving_mail_whose_header_was_read_in_part_never_believes_its_from(app, agent, corp_ticket):
    """A header past MAX_HEADER_FIELDS is read only up to the cap and the mail held
    "over a limit". The requester's address in a From on top, filler, and the
    sender's own From (the one its provider signed) past the cap: the two-From
    defence saw only the first, so approving it appended the mail to TKT-000001 as
    the requester. A From read from part of a header is never believed."""
    from helpdesk.inbound import quarantine
    from helpdesk.services import Actor

    app.config.update(MAX_HEADER_FIELDS=30)
    raw = raw_mail(
        b"Authentication-Results: " + TRUSTED.encode() + b"; dkim=pass header.d=corp.example; dmarc=pass"
        b" header.from=corp.example",
        RECEIVED,
        b"From: Cy <cy@corp.example>",
        b"Subject: Re: [TKT-000001] Invoice question",
        *(b"X-Filler-%d: %d" % (n, n) for n in range(30)),
        sender=b"Eve <eve@corp.example>",
    )
    held = ingest(raw, Envelope("eve@corp.example", (SUPPORT,), "smtp"), app.config)
    assert held.outcome is Outcome.QUARANTINED and "MAX_HEADER_FIELDS" in held.reason
    db.session.commit()
    item = db.session.execute(select(QuarantineItem)).scalar_one()
    result = quarantine.approve(db.session, item.id, Actor.staff(agent), app.config)
    db.session.commit()
    assert (result.outcome, result.ticket_number) == (Outcome.CREATED, "TKT-000002")
    assert "read only in part" in result.reason and "new ticket linked to it" in result.reason
    first, new = tickets()
    assert len(messages(first)) == 1 and new.linked_ticket_id == first.id


# -- a field hidden from the trusted server by a bare CR (or a line it ends the header at) --


def hidden_pass(sender: bytes, domain: bytes, hiding: bytes = b"X-Mailer: Foo\r") -> bytes:
    """The reported mail: the trusted server's Received and its verdict (fail), then a
    forged pass the server read as part of the field before it, so never stripped."""
    return raw_mail(
        b"Received: from mail.attacker.example (mail.attacker.example [203.0.113.9])\r\n"
        b"\tby mx.helpdesk.test with ESMTPS id 9Q; Mon, 2 Mar 2026 09:00:00 +0000",
        b"Authentication-Results: "
        + TRUSTED.encode()
        + b"; spf=fail smtp.mailfrom=attacker.example; dkim=none; dmarc=fail (p=REJECT) header.from="
        + domain,
        hiding + b"Authentication-Results: " + TRUSTED.encode() + b"; dmarc=pass header.from=" + domain,
        sender=sender,
        subject=b"Re: [TKT-000001] Invoice question",
    )


def opened_by_ann(app) -> Ticket:  # type: ignore[no-untyped-def]
    genuine = raw_mail(b"Authentication-Results: " + PASS, RECEIVED)
    assert (
        ingest(genuine, Envelope("ann@example.com", (SUPPORT,), "smtp"), app.config).outcome
        is Outcome.CREATED
    )
    db.session.commit()
    (ticket,) = tickets()
    return ticket


@pytest.mark.parametrize("hiding", [b"X-Mailer: Foo\r", b"X-Mailer: Foo\r\nFrom attacker\r\n"])
def test_a_forged_pass_hidden_from_the_trusted_server_never_makes_a_staff_reply(app, senders, agent, hiding):
    app.config.update(TRUSTED_AUTHSERV_ID=TRUSTED)
    ticket = opened_by_ann(app)
    forged = hidden_pass(b"Agnes Agent <" + agent.email.encode() + b">", b"helpdesk.test", hiding)
    result = ingest(forged, Envelope("bounce@attacker.example", (SUPPORT,), "smtp"), app.config)
    db.session.commit()
    assert result.outcome is Outcome.QUARANTINED  # before: appended as Agnes's public reply
    assert result.reason.startswith(
        "From not authenticated (mx.helpdesk.test's Authentication-Results are not taken"
    )
    assert len(messages(ticket)) == 1
    assert mailed_replies() == []


def test_a_forged_pass_hidden_behind_a_bare_cr_through_the_smtp_listener(app, senders, agent):
    """The same bytes over a real SMTP session, bare CR and all (smtplib would have
    turned it into CRLF): a staff address, then a customer's."""
    ticket = opened_by_ann(app)
    for gateway in start_gateway(app, TRUSTED_AUTHSERV_ID=TRUSTED):
        as_staff = hidden_pass(b"Agnes Agent <" + agent.email.encode() + b">", b"helpdesk.test")
        assert b"Foo\rAuthentication-Results" in as_staff
        assert gateway.send_verbatim(as_staff, mail_from="bounce@attacker.example") == (
            250,
            b"2.0.0 OK quarantined",
        )
        assert b"X-Mailer: Foo\rAuthentication-Results" in last_record().raw  # stored as it came
        as_ann = hidden_pass(b"Ann <ann@example.com>", b"example.com")
        assert gateway.send_verbatim(as_ann, mail_from="bounce@attacker.example") == (
            250,
            b"2.0.0 OK quarantined",
        )
    assert len(messages(ticket)) == 1 and len(tickets()) == 1
    assert mailed_replies() == []
    reasons = db.session.execute(select(QuarantineItem.reason).order_by(QuarantineItem.id)).scalars().all()
    assert all("bare CR" in reason for reason in reasons) and len(reasons) == 2


# -- Authentication-Results is read as the trusted server wrote it --------------------------


def raw_mail(
    *head: bytes,
    sender: bytes = b"Ann <ann@example.com>",
    subject: bytes = b"Invoice question",
    extra: tuple[bytes, ...] = (),
) -> bytes:
    return b"\r\n".join(
        [
            *head,
            b"From: " + sender,
            b"To: " + SUPPORT.encode(),
            *extra,
            b"Subject: " + subject,
            b"Message-ID: <"
            + hashlib.sha256(b"\n".join((*head, sender, subject, *extra))).hexdigest()[:40].encode()
            + b"@client.example>",
            b"",
            b"Where is my invoice?",
            b"",
        ]
    )


PASS = TRUSTED.encode() + b"; dmarc=pass header.from=example.com"
RECEIVED = (
    b"Received: from mail.client.example (mail.client.example [192.0.2.7])\r\n"
    b"\tby mx.helpdesk.test (Postfix) with ESMTPS id 4Z; Mon, 2 Mar 2026 08:00:00 +0000"
)


@pytest.mark.parametrize(
    ("head", "outcome"),
    [
        ((b"Authentication-Results: " + PASS, RECEIVED), "created"),  # the control: genuine
        ((b"Authentication-Results: =?utf-8?b?" + base64.b64encode(PASS) + b"?=", RECEIVED), "quarantined"),
        (
            (
                b"Authentication-Results: =?us-ascii?q?"
                + PASS.replace(b" ", b"_").replace(b";", b"=3B")
                + b"?=",
                RECEIVED,
            ),
            "quarantined",
        ),
        ((b"Authentication-Results: \xc2\xa0" + PASS, RECEIVED), "quarantined"),
        (
            (b"Authentication-Results: " + PASS.replace(b"mx.", b"\xef\xbd\x8dx."), RECEIVED),
            "quarantined",
        ),  # a fullwidth letter that NFKC turns into "m"
        # The trusted server says fail; a pass below the trace header it received the mail
        # with was written by the sender.
        (
            (
                b"Authentication-Results: " + TRUSTED.encode() + b"; dmarc=fail header.from=example.com",
                RECEIVED,
                b"Authentication-Results: " + PASS,
            ),
            "quarantined",
        ),
    ],
)
def test_authentication_results_only_count_as_the_trusted_server_wrote_them(app, senders, head, outcome):
    for gateway in start_gateway(app, TRUSTED_AUTHSERV_ID=TRUSTED):
        code, text = gateway.send(raw_mail(*head), mail_from="ann@example.com")
        assert code == 250
        assert text.split()[2].decode() == outcome


@pytest.mark.parametrize(
    ("signer", "outcome"),
    [
        (b"mail.example.co.uk", "created"),
        (b"co.uk", "quarantined"),  # a public suffix aligns with nobody
    ],
)
def test_alignment_uses_the_public_suffix_list(app, signer, outcome):
    SendersService(db.session).add("@example.co.uk", "UK Ltd")
    db.session.commit()
    results = b"Authentication-Results: " + TRUSTED.encode() + b"; dkim=pass header.d=" + signer
    for gateway in start_gateway(app, TRUSTED_AUTHSERV_ID=TRUSTED):
        code, text = gateway.send(
            raw_mail(results, RECEIVED, sender=b"Bo <bo@example.co.uk>"), mail_from="bo@example.co.uk"
        )
        assert code == 250
        assert text.split()[2].decode() == outcome


def test_a_from_its_providers_signature_does_not_cover_never_writes_as_a_customer(app, senders):
    """Eve and Ann have mailboxes at one provider, which signs Eve's mail (d=example.com)
    without oversigning From. Eve puts `From: Ann` above her own signed From: DKIM
    covers the bottom From, the gateway read the top one (RFC 6376 §5.4.2). Before, it
    was appended to Ann's ticket as Ann, even beside the server's own DMARC fail."""
    app.config.update(TRUSTED_AUTHSERV_ID=TRUSTED)
    ticket = opened_by_ann(app)
    provider = (
        b"Authentication-Results: " + TRUSTED.encode() + b"; dkim=pass header.d=example.com header.s=s1"
    )
    ann, eve = b"Ann <ann@example.com>", b"From: Eve <eve@example.com>"
    envelope = Envelope("eve@example.com", (SUPPORT,), "smtp")
    for head, sender, extra in [
        (provider + b"; dmarc=pass header.from=example.com", ann, (eve,)),
        (provider + b"; dmarc=fail header.from=example.com", ann, (eve,)),
        (provider + b"; dmarc=pass header.from=example.com", ann + b", Eve <eve@example.com>", ()),
        (provider + b"; dmarc=fail (p=REJECT adkim=s) header.from=example.com", ann, ()),  # one From
    ]:
        raw = raw_mail(
            head, RECEIVED, sender=sender, subject=b"Re: [TKT-000001] Invoice question", extra=extra
        )
        result = ingest(raw, envelope, app.config)
        db.session.commit()
        assert result.outcome is Outcome.QUARANTINED, (head, sender, extra)
        assert result.reason.startswith("From not authenticated (")
    assert len(messages(ticket)) == 1
    # The control: one From, the provider's signature and no DMARC policy.
    control = raw_mail(
        provider + b"; dmarc=none header.from=example.com",
        RECEIVED,
        subject=b"Re: [TKT-000001] Invoice question",
    )
    assert ingest(control, envelope, app.config).outcome is Outcome.APPENDED


def test_a_customer_at_an_internationalised_domain_is_authenticated(app):
    """The trusted server names the domain as DNS does (`xn--bcher-kva.example`), the
    From as its sender wrote it (`bücher.example`): the same domain. Before, never."""
    SendersService(db.session).add("@bücher.example", "Bücher GmbH")
    db.session.commit()
    app.config.update(TRUSTED_AUTHSERV_ID=TRUSTED)
    head = b"Authentication-Results: " + TRUSTED.encode() + b"; dkim=pass header.d=xn--bcher-kva.example"
    raw = raw_mail(head, RECEIVED, sender="Ana <ana@bücher.example>".encode())
    result = ingest(raw, Envelope("ana@xn--bcher-kva.example", (SUPPORT,), "smtp"), app.config)
    assert (result.outcome, result.reason) == (Outcome.CREATED, "authorized sender")


# -- poison mail: stored, or quarantined with its raw bytes, never 451 ---------------------


POISON = {
    "5,000-character Message-ID": (b"Message-ID: <" + b"a" * 5000 + b"@client.example>", b"Subject: long id"),
    "NUL in the subject": (b"Message-ID: <nul@client.example>", b"Subject: printer \x00 broken"),
    "NUL in the Message-ID": (b"Message-ID: <n\x00ul@client.example>", b"Subject: nul id"),
    "300-character CC name": (
        b"Message-ID: <cc@client.example>",
        b"Subject: long cc",
        b"Cc: " + b"B" * 300 + b" <bob@example.com>",
    ),
    "300-character From name": (b"Message-ID: <from@client.example>", b"Subject: long from"),
    "4-byte characters in a long Message-ID": (
        b"Message-ID: <" + "\U0001f600".encode() * 850 + b"@client.example>",
        b"Subject: emoji id",
    ),
    "NUL in References": (
        b"Message-ID: <ref@client.example>",
        b"Subject: refs",
        b"References: <a\x00b@client.example> <c@client.example>",
    ),
}


@pytest.mark.parametrize("name", list(POISON))
def test_poison_mail_is_recorded_and_never_answered_451(gateway, senders, name):
    head = POISON[name]
    sender = b"A" * 300 + b" <ann@example.com>" if "From name" in name else b"Ann <ann@example.com>"
    raw = b"\r\n".join(
        [b"From: " + sender, b"To: " + SUPPORT.encode(), *head, b"", b"The printer is broken.", b""]
    )
    for attempt in ("first", "retry"):
        code, text = gateway.send(raw, mail_from="ann@example.com")
        assert code == 250, (attempt, code, text)
    records = db.session.execute(select(InboundMail)).scalars().all()
    assert len(records) == 1
    (record,) = records
    assert record.outcome in ("created", "quarantined")
    assert record.raw == raw
    if record.outcome == "quarantined":
        assert db.session.execute(select(func.count(QuarantineItem.id))).scalar_one() == 1
    for ticket in tickets():
        assert "\x00" not in ticket.subject
        for participant in db.session.execute(select(Participant)).scalars():
            assert len(participant.name) <= 200


ENCODED_WORD_ADDRESS = "=?utf-8?q?a=0d=0ab?=@example.com"


def with_field(mail: EmailMessage, name: str, value: str) -> bytes:
    """The mail's bytes with `name` set to `value` as written (the email package
    would decode an encoded word in it when the field is set)."""
    del mail[name]
    return f"{name}: {value}\r\n".encode() + mail.as_bytes(policy=SMTP)


def test_mail_from_an_address_reading_as_an_encoded_word_names_no_sender_in_from(gateway, senders):
    """Such an address is no address (`addresses.is_valid`): before, it was the
    sender, and a ticket opened for it (by an approval or a sender rule) would have
    had every mail to it fail to compose. Now `From` names nobody and the sender
    comes from the envelope (which aiosmtpd hands over decoded, its line break
    dropped): an unknown sender, held in quarantine with the raw mail."""
    raw = with_field(message(), "From", f"Ann <{ENCODED_WORD_ADDRESS}>")
    assert gateway.send(raw, mail_from=ENCODED_WORD_ADDRESS) == (250, b"2.0.0 OK quarantined")
    record = last_record()
    assert (record.from_address, record.from_source) == ("ab@example.com", "envelope")
    assert record.reason == "unknown sender: ab@example.com" and record.raw == raw
    assert tickets() == [] and db.session.execute(select(OutboxMessage)).first() is None


def test_an_encoded_word_address_in_cc_becomes_no_participant(gateway, senders):
    raw = with_field(message(), "Cc", f"{ENCODED_WORD_ADDRESS}, Bob <bob@example.com>")
    assert gateway.send(raw, mail_from="ann@example.com") == (250, b"2.0.0 OK created TKT-000001")
    (ticket,) = tickets()
    assert [p.email for p in ticket.participants] == ["bob@example.com"]  # before, the other one too


# Bidirectional embeddings, overrides and isolates: text after U+202E is shown right
# to left, so "Invoice \u202egpj.exe" reads as "Invoice exe.jpg".
BIDI_CONTROLS = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


def test_bidirectional_controls_in_a_subject_or_name_are_dropped(gateway, senders, agent):
    """A subject or a sender's name makes a line of the queue, the ticket, a mail's
    header: one with an override read other than it was written (a customer named
    "Support\u202e…" or a subject turning a file name round), and an unclosed one
    turned the rest of the line it was shown in. They are dropped from one-line
    text (`inputs.one_line`), whatever the channel; right-to-left letters stay."""
    gateway.send(
        message(
            sender=f"Eve{BIDI_CONTROLS[4]}nimda <ann@example.com>",
            subject=f"Invoice {BIDI_CONTROLS}fdp.exe \u05e9\u05dc\u05d5\u05dd",
            cc=f"Bob{BIDI_CONTROLS[7]} <bob@example.com>",
        )
    )
    (ticket,) = tickets()
    assert ticket.subject == "Invoice fdp.exe \u05e9\u05dc\u05d5\u05dd"
    assert ticket.requester.name == "Evenimda"
    assert [p.name for p in ticket.participants] == ["Bob"]
    # Mail held for a decision is listed by its subject too, where phishing waits.
    code, _ = gateway.send(message(sender="mallory@evil.example", subject="Invoice \u202efdp.exe"))
    assert code == 250
    assert last_record().outcome == "quarantined" and last_record().subject == "Invoice fdp.exe"


# -- the database refusing one mail as if it were unreachable -------------------------------


def _twice_then_another(gateway, poison):  # type: ignore[no-untyped-def]
    """The answers to `poison` delivered twice, then to an ordinary mail after it."""
    return (
        gateway.send(poison),
        gateway.send(poison),
        gateway.send(message(subject="Printer", body="Ordinary.")),
    )


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_mail_failing_as_if_the_database_were_down_gets_451_once_then_is_parked(gateway, senders):
    poison = message(subject="VPN", body="poison pill", message_id="<poison@client.example>")
    with refused_as_unreachable("poison"):
        first, again, after = _twice_then_another(gateway, poison)
    assert first[0] == 451
    assert again == (250, b"2.0.0 OK quarantined")
    assert after == (250, b"2.0.0 OK created TKT-000001")
    record = db.session.execute(select(InboundMail).where(InboundMail.message_id.is_(None))).scalar_one()
    assert b"poison pill" in record.raw and "failed twice" in record.reason
    assert gateway.send(poison) == (250, "2.0.0 OK duplicate".encode())


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
@pytest.mark.parametrize("sqlstate", ["23514", "22000"])  # a CHECK constraint; a value refused
def test_a_mail_the_database_refuses_even_to_park_gets_451_once_then_554(gateway, senders, sqlstate):
    """SPEC §7: the same bytes never get 451 twice for another reason than the database
    being unreachable. A mail whose every record the database refused for a reason of
    its own (here a trigger; a constraint nobody foresaw), its raw bytes parked with
    fixed words included, was answered 451 at each delivery, for days, until the
    sender gave up. Now the second delivery gets 554: the sender returns it to its
    author at once, and the mail after it is taken as ever."""
    poison = message(subject="VPN", body="poison pill", message_id=f"<refused-{sqlstate}@client.example>")
    with refused_by_database("poison", sqlstate, "inbound_mails", "raw"):
        first, again, after = _twice_then_another(gateway, poison)
    assert first[0] == 451
    assert again == (554, b"5.3.0 The message could not be stored; it was not accepted")
    assert after == (250, b"2.0.0 OK created TKT-000001")
    assert db.session.execute(select(InboundMail).where(InboundMail.raw.contains(b"poison"))).first() is None


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_mail_the_database_refuses_as_too_large_is_held_at_once_never_451(gateway, senders):
    """SQLSTATE class 54 (a text too long for an index) is the mail's own fault: held
    with the database's reason at the first delivery, and a retry is the duplicate."""
    poison = message(subject="log", body="poison pill")
    with refused_by_database("poison", "54000", "tickets", "description"):
        assert gateway.send(poison) == (250, b"2.0.0 OK quarantined")
        assert gateway.send(poison) == (250, b"2.0.0 OK duplicate")
    item = db.session.execute(select(QuarantineItem)).scalar_one()
    assert item.reason.startswith("processing failed") and "refused for the test" in item.reason
    assert tickets() == []


# -- over a cap: recorded, never dropped ----------------------------------------------------


def test_mail_over_a_structural_cap_is_quarantined_with_its_header(app, senders):
    raw = (
        b"From: Ann <ann@example.com>\r\nTo: support@helpdesk.test\r\n"
        b"Subject: many parts\r\nMessage-ID: <parts@client.example>\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + b"--b\r\n\r\nx\r\n" * 30 + b"--b--\r\n"
    )
    for gateway in start_gateway(app, MAX_MIME_PARTS=20):
        assert gateway.send(raw, mail_from="ann@example.com") == (250, b"2.0.0 OK quarantined")
    item = db.session.execute(select(QuarantineItem)).scalar_one()
    assert "MAX_MIME_PARTS (20)" in item.reason
    assert item.inbound_mail.subject == "many parts"


@pytest.mark.parametrize(
    ("count", "left_out"),
    [
        (6, "2 more attachments not stored: more than 4 in one mail (MAX_ATTACHMENTS); they are in"),
        (5, "1 more attachment not stored: more than 4 in one mail (MAX_ATTACHMENTS); it is in"),
    ],
)
def test_mail_over_the_count_caps_is_stored_with_a_note(app, senders, count, left_out):
    msg = message(cc=", ".join(f"p{i}@example.com" for i in range(8)), html="<p>" + "word " * 400 + "</p>")
    for i in range(count):
        msg.add_attachment(b"x" * 10, maintype="application", subtype="octet-stream", filename=f"f{i}.bin")
    for gateway in start_gateway(app, MAX_CC_PARTICIPANTS=3, MAX_ATTACHMENTS=4):
        assert gateway.send(msg)[0] == 250
    (ticket,) = tickets()
    assert len(ticket.participants) == 3
    assert len(messages(ticket)[0].attachments) == 4
    note = messages(ticket)[-1]  # for staff, not in the customer's message
    assert note.kind == "note" and "not stored" not in ticket.description
    assert left_out in note.body
    assert "5 more To/Cc addresses were not added" in note.body


def test_html_only_mail_beyond_the_text_cap_is_read_in_part_with_a_note(app, senders):
    html = "<p>" + "start " + "word " * 3000 + "</p>"
    for gateway in start_gateway(app, MAX_HTML_TO_TEXT_CHARS=1000):
        msg = message()
        msg.set_content(html, subtype="html")
        assert gateway.send(msg)[0] == 250
    (ticket,) = tickets()
    assert ticket.description.startswith("start word")
    assert len(ticket.description) < 1500
    assert "Only the first 1000 characters of the HTML" in messages(ticket)[-1].body


# -- a pasted log: more words than a full-text vector holds --------------------------------

# 1.3 MB of different words, whose whole tsvector would be some 2 MB (PostgreSQL's
# limit is 1 MB): the description's words index reads only its beginning (0027).
PASTED_LOG = "impresora " + distinct_words(260_000)


def test_a_mail_of_more_words_than_a_tsvector_holds_becomes_a_ticket_with_its_acknowledgment(
    gateway, senders, portal
):
    """Before migration 0027 PostgreSQL refused the numbering statement ("string is too
    long for tsvector"): held as failed processing, no acknowledgment, and approving
    it was a 500 every time."""
    assert gateway.send(message(subject="log", body=PASTED_LOG)) == (250, b"2.0.0 OK created TKT-000001")
    (ticket,) = tickets()
    assert ticket.description.startswith("impresora aaaa") and ticket.description.rstrip().endswith(
        PASTED_LOG[-20:]
    )
    assert [row.kind for row in db.session.execute(select(OutboxMessage)).scalars()] == ["created"]
    held = gateway.send(message(sender="stranger@nowhere.example", subject="log", body=PASTED_LOG))
    assert held == (250, b"2.0.0 OK quarantined")
    item = db.session.execute(select(QuarantineItem)).scalar_one()
    assert portal.post(f"/quarantine/{item.id}/approve", page="/quarantine").status_code == 302
    db.session.expire_all()
    assert [t.number for t in tickets()] == [1, 2] and item.state == "approved"


# -- the generator of pathological mail, through the listener, beside ordinary mail ---------


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_hostile_mail_gets_a_final_answer_while_ordinary_mail_keeps_flowing(app, senders, agent):
    hostile = hostile_mails(256 * 1024, staff=agent.email.encode())
    ordinary: list[int | str] = []
    stop = threading.Event()

    def customer(port: int) -> None:
        """An ordinary client whose patience is a few seconds: a mail stuck behind the
        hostile ones ends in a client timeout, recorded instead of a reply code."""
        n = 0
        while not stop.is_set():
            n += 1
            try:
                code, _ = send(port, message(subject=f"Ordinary {n}", body="The VPN is down."), timeout=5)
            except (TimeoutError, smtplib.SMTPServerDisconnected) as error:
                ordinary.append(f"{type(error).__name__}: {error}")
            else:
                ordinary.append(code)

    for gateway in start_gateway(app):
        assert gateway.send(message(subject="First"))[0] == 250  # TKT-000001 to aim at
        db.session.rollback()
        thread = threading.Thread(target=customer, args=(gateway.port,))
        thread.start()
        try:
            answers = {
                mail.name: [
                    send(gateway.port, mail.raw, mail_from="x@attacker.example")[0]
                    for _ in ("first", "retry")
                ]
                for mail in hostile
            }
        finally:
            stop.set()
            thread.join(timeout=60)
    db.session.rollback()
    final = {250, 550}
    assert {name: codes for name, codes in answers.items() if not set(codes) <= final} == {}
    hostile_records = db.session.execute(
        select(func.count(InboundMail.id)).where(
            ~InboundMail.subject.like("Ordinary %"), InboundMail.subject != "First"
        )
    ).scalar_one()
    assert hostile_records == len(hostile)  # one record each, retries included
    assert ordinary and [answer for answer in ordinary if answer != 250] == []


# -- fuzzing: no input escapes the pipeline, every mail gets one record ---------------------


_HEADER_NAMES = (
    "From",
    "To",
    "Cc",
    "Subject",
    "Message-ID",
    "In-Reply-To",
    "References",
    "Content-Type",
    "Content-Transfer-Encoding",
    "Content-Disposition",
    "Auto-Submitted",
    "Authentication-Results",
    "Received",
    "X-Loop",
    "Sender",
    "Return-Path",
    "Precedence",
    "List-Id",
)
_PIECES = (
    b"=?utf-8?q?",
    b"=?",
    b"?=",
    b"<",
    b">",
    b"@",
    b"(",
    b")",
    b'"',
    b"\\",
    b"\x00",
    b"\r",
    b"\n",
    b"\t",
    b" ",
    b"\xff",
    b"\xc3\xa9",
    b"TKT-000001",
    b"multipart/mixed",
    b'boundary="b"',
    b"--b",
    b"--b--",
    b"base64",
    b"<br",
    b"agent@helpdesk.test",
    b"mx.helpdesk.test; dmarc=pass",
    b"support@helpdesk.test",
    b"\xc2\xa0",
    b";",
    b",",
)
_value = st.lists(st.one_of(st.sampled_from(_PIECES), st.binary(max_size=12)), max_size=12).map(b"".join)
_structured = st.builds(
    lambda fields, body: (
        b"".join(name.encode() + b": " + value + b"\r\n" for name, value in fields) + b"\r\n" + body
    ),
    st.lists(st.tuples(st.sampled_from(_HEADER_NAMES), _value), min_size=1, max_size=12),
    st.lists(_value, max_size=20).map(b"\r\n".join),
)
_mutated = st.builds(
    lambda mail, at, junk: mail[:at] + junk + mail[at + len(junk) :],
    st.sampled_from([mail.raw for mail in hostile_mails(2048)]),
    st.integers(min_value=0, max_value=2048),
    st.binary(min_size=1, max_size=16),
)


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(raw=st.one_of(st.binary(max_size=3000), _structured, _mutated))
def test_fuzzed_mail_never_escapes_ingest_and_gets_exactly_one_record(app, senders, raw):
    envelope = Envelope("fuzz@attacker.example", ("support@helpdesk.test",), "smtp")
    result = ingest(raw, envelope, app.config)
    db.session.rollback()
    assert isinstance(result.outcome, Outcome)
    key = dedup_key(parse(raw, MailLimits.from_config(app.config)))
    assert (
        db.session.execute(
            select(func.count(InboundMail.id)).where(InboundMail.dedup_key == key)
        ).scalar_one()
        == 1
    )
    assert ingest(raw, envelope, app.config).outcome in (Outcome.DUPLICATE, Outcome.REJECTED)
    db.session.rollback()


def test_the_ticket_page_shows_the_reviewer_why_a_staff_mail_is_unverified(gateway, senders, agent, portal):
    gateway.send(message(subject="Laptop broken"))
    gateway.send(
        message(sender=agent.email, subject="Re: [TKT-000001] Laptop broken", body="Wire the fee first.")
    )
    page = portal.get("/tickets/TKT-000001").get_data(as_text=True)
    assert "Unverified sender" in page and "carries no proof" in page
    assert "Wire the fee first." in page


# -- the CPU attacks reported in issue 13, parsed beside ordinary mail of their size ---------


def _cost(raw: bytes) -> float:
    """CPU seconds to read a mail and decide whether a machine wrote it (least of 3).
    Compared as a ratio to ordinary mail in the same run, never as a duration (see
    test_linear_patterns for why these few timed checks are tests)."""

    def read() -> None:
        mail = parse(raw)
        detect(
            mail, own_addresses=["support@helpdesk.test"], own_message_id_domains=["helpdesk.helpdesk.test"]
        )

    return least_cpu(read)


# The email package parses every one of these 955 X-Loop addresses, which is honest
# work for the 190 KB header they fill: 16-17 times a short ordinary mail of that size
# on a quiet machine, 26 seen under a loaded suite. Unfixed, each address was put into
# its IDNA form (about 1 ms each, 700 times ordinary); 50 still fails that by far.
_CPU_RATIO_LIMITS = {"x-loop: many addresses with international labels": 50}
_CPU_ROUNDS = 3


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "name",
    [
        "html: unclosed <br",
        "auto-submitted: nested comments",
        "mime: flat multipart of tiny parts",
        "mime: deep multipart nesting",
        "header: sender fields of invalid address words",
        "body: unclosed list-notice phrase",
        "header: many cc fields",
        "mime: long raw 8-bit filenames",
        "mime: attached messages with long subjects",
        "x-loop: an address with one long international domain",
        "x-loop: many addresses with international labels",
        "from: an address with a long international domain",
        "mime: semicolons in a quoted filename",
        "mime: many parameters",
        "header: semicolons in a quoted charset",
    ],
)
def test_the_reported_cpu_attacks_cost_what_ordinary_mail_of_their_size_costs(name):
    (raw,) = [mail.raw for mail in hostile_mails(1_000_000) if mail.name == name]
    # Each side's least over rounds apart in time: under a loaded suite a run of the
    # flat multipart (31 ms alone, 9 times ordinary) cost 92 ms three times in a row
    # while the ordinary mail's 3.5 ms runs found a quiet moment.
    ordinary = attack = float("inf")
    for _ in range(_CPU_ROUNDS):
        ordinary = min(ordinary, *(_cost(ordinary_mail(len(raw), seed)) for seed in range(3)))
        attack = min(attack, _cost(raw))
    assert attack <= _CPU_RATIO_LIMITS.get(name, 20) * ordinary


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "name",
    ["html: nested <div>", "html: nested <details>", "html: nested layout", "html: formatting opened again"],
)
def test_html_only_mail_nested_deep_costs_what_flat_html_costs(name):
    """An HTML-only mail is read as text through nh3 when parsed, before anyone knows
    who sent it; nh3's tree builder looks through its open elements for each start
    tag, so 1 MB of unclosed `<div>` from a stranger took 188 s (MAX_HTML_TO_TEXT_CHARS
    is 1 MiB). The baseline is flat HTML of the same size, not ordinary mail: reading
    1 MB of tags costs more than a photo attachment."""
    (raw,) = [mail.raw for mail in hostile_mails(1_000_000) if mail.name == name]
    head, _, body = raw.partition(b"\r\n\r\n")
    flat = head + b"\r\n\r\n" + (b"<p>A line of the mail.</p>\r\n" * (len(body) // 28 + 1))[: len(body)]
    assert _cost(raw) <= 5 * _cost(flat)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("unit", ["<div>", "<details>", NESTED_LAYOUT])
def test_deeply_nested_html_costs_what_flat_html_costs_to_store_and_to_show(app, senders, portal, api, unit):
    """A mail's HTML is sanitized by nh3 when stored and again on each view of its
    ticket and in the API, and nh3's tree builder looks through its open elements for
    each start tag: 400 KB of unclosed `<div>` took 15 s to store, and at 650 KB the
    ticket page passed gunicorn's 30 s, so the ticket could never be opened. Nesting
    past `html_depth.MAX_DEPTH` is flattened first; compared with flat HTML of the
    same size (1 MB), as a ratio in one run."""
    size = 1_000_000
    shapes = {
        "flat": ("<p>A line of the mail.</p>\n" * (size // 25 + 1))[:size],
        "nested": (unit * (size // len(unit) + 1))[:size],
    }
    envelope = Envelope("ann@example.com", (SUPPORT,), "smtp")
    stored: dict[str, float] = {}
    shown: dict[str, float] = {}
    for shape, html in shapes.items():
        raws = [
            message(subject=f"{shape} {n}", body="See the HTML part.", html=html).as_bytes(policy=SMTP)
            for n in range(2)
        ]
        stored[shape] = ingest_cpu(raws, envelope, app.config)
        (number,) = db.session.execute(select(Ticket.number).where(Ticket.subject == f"{shape} 1")).scalars()
        page = f"/tickets/TKT-{number:06d}"
        assert portal.get(page).status_code == 200
        assert api.get(page).status_code == 200
        viewed = least_cpu(lambda page=page: portal.get(page))
        shown[shape] = viewed + least_cpu(lambda page=page: api.get(page))
    assert stored["nested"] <= 5 * stored["flat"]
    assert shown["nested"] <= 5 * shown["flat"]


@pytest.mark.timeout(120)
def test_an_attached_message_with_a_field_of_many_words_costs_what_ordinary_mail_costs():
    """An enclosed message is serialised back to bytes to be kept; the email package
    refolded each of its fields word by word, re-measuring the line each time: a field
    of 40,000 words (80 KB) took 30 s, 80,000 two minutes. Its fields are now written
    as they came, and the attachment keeps the field whole."""
    field = b"X-Words: " + b"w " * 40_000
    raw = (
        b"From: Ann <ann@example.com>\r\nTo: support@helpdesk.test\r\nSubject: forwarded\r\n"
        b"Message-ID: <enclosed-words@example.com>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
        b"--b\r\nContent-Type: message/rfc822\r\n\r\n"
        b"From: Bob <bob@example.com>\r\nSubject: inner\r\n folded\r\n"
        + field
        + b"\r\n\r\ninner body\r\n--b--\r\n"
    )
    ordinary = min(_cost(ordinary_mail(len(raw), seed)) for seed in range(3))
    assert _cost(raw) <= 20 * ordinary
    (enclosed,) = [a for a in parse(raw).attachments if a.content_type == "message/rfc822"]
    assert field.rstrip() in enclosed.data and b"inner body" in enclosed.data
    # One kind of line break, also inside a folded field.
    assert b"Subject: inner\n folded\n" in enclosed.data and b"\r" not in enclosed.data


def _mixed(parts: list[bytes]) -> bytes:
    return (
        b"From: Ann <ann@example.com>\r\nTo: support@helpdesk.test\r\nSubject: fwd\r\n"
        b"Message-ID: <fwd-cost@example.com>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        + b"".join(b"--b\r\n" + part for part in parts)
        + b"--b--\r\n"
    )


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "shape",
    [
        "many enclosed HTML messages",
        "many enclosed messages in base64",
        "many enclosed messages of 50 fields in quoted-printable",
        "a forward of a forward, 15 deep",
    ],
)
def test_forwarded_messages_read_as_text_cost_what_the_same_text_of_the_mails_own_costs(shape):
    """A mail with no text of its own reads as the messages it encloses (forward as
    attachment, docs/mail-gateway.md step 1): each once, their HTML within the mail's
    one MAX_HTML_TO_TEXT_CHARS, forwards of forwards within MAX_MIME_DEPTH. The
    baseline is the same text as the mail's own body parts (1 MB of HTML read as
    text costs more than ordinary mail of the size)."""
    if shape == "many enclosed HTML messages":
        html = [
            b"Content-Type: text/html\r\n\r\n<p>%d " % n + b"word " * 800 + b"</p>\r\n" for n in range(240)
        ]
        forward = _mixed(
            [b"Content-Type: message/rfc822\r\n\r\nFrom: b@x.example\r\n" + part for part in html]
        )
        own = _mixed(html)
    elif shape == "many enclosed messages in base64":
        texts = [b"Content-Type: text/plain\r\n\r\n%d " % n + b"word " * 2000 + b"\r\n" for n in range(100)]
        encoded = b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        forward = _mixed([encoded + base64.encodebytes(b"From: b@x.example\r\n" + part) for part in texts])
        # decoded and read a second time: held to the same messages sent as they should be
        own = _mixed([b"Content-Type: message/rfc822\r\n\r\nFrom: b@x.example\r\n" + part for part in texts])
    elif shape == "many enclosed messages of 50 fields in quoted-printable":
        # their fields written back one by one, each decoded .eml's header read for its name
        header = b"From: b@x.example\r\n" + b"X-Field: value\r\n" * 50
        texts = [b"Content-Type: text/plain\r\n\r\n%d " % n + b"word " * 2000 + b"\r\n" for n in range(100)]
        encoded = b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        forward = _mixed([encoded + quopri.encodestring(header + part) for part in texts])
        own = _mixed([b"Content-Type: message/rfc822\r\n\r\n" + header + part for part in texts])
    else:
        text = b"Content-Type: text/plain\r\n\r\n" + b"word " * 200_000 + b"\r\n"
        enclosed = b"From: b@x.example\r\n" + text
        for _ in range(15):
            enclosed = b"From: b@x.example\r\nContent-Type: message/rfc822\r\n\r\n" + enclosed
        forward = _mixed([b"Content-Type: message/rfc822\r\n\r\n" + enclosed])
        own = _mixed([text])
    assert parse(forward).text_body.count("word") == parse(own).text_body.count("word") > 100_000
    assert _cost(forward) <= 3 * _cost(own)


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("name", "word", "utf8_word"),
    [
        ("subject: encoded words in an unknown charset", b"=?x-unknown?q?caf=E9?=", b"=?utf-8?q?caf=C3=A9?="),
        ("mime: filenames of encoded words", b"=?gb2312?b?//8=?=", b"=?utf-8?b?w6k=?="),
        (
            "mime: attached messages with subjects of encoded words",
            b"=?iso-8859-3?q?=A5?=",
            b"=?utf-8?q?=C3=A9?=",
        ),
        ("header: raw 8-bit fields", b"caf\xe9", "café".encode()),
    ],
)
def test_text_its_charset_cannot_read_costs_what_utf8_text_costs(name, word, utf8_word):
    """Each run of encoded words whose bytes its label does not read (an unknown
    label, bytes invalid in the declared charset) went to charset detection, some
    0.3 ms a run however short: a 200 KB Subject took 10 s, and filenames and attached
    messages' subjects are under no header cap. So did each raw 8-bit header value
    without a body charset to try: 790 fields took 0.66 s; a mail now has
    MAX_CHARSET_DETECTIONS. The baseline is the same mail in UTF-8, not ordinary
    mail: decoding some 10,000 words in Python costs 35 times ordinary mail of the
    size (see "subject: many encoded words")."""
    (raw,) = [mail.raw for mail in hostile_mails(256 * 1024) if mail.name == name]
    assert raw.count(word) > 8000
    assert _cost(raw) <= 5 * _cost(raw.replace(word, utf8_word))


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("name", "plain_reading", "ratio"),
    [
        # every plain alternative short, so each HTML is read to see whether it is a
        # placeholder; the baseline reads every HTML part as body text
        (
            "mime: alternatives with placeholder plain parts",
            (b"multipart/alternative", b"multipart/mixed"),
            2,
        ),
        ("body: format=flowed lines", (b"; format=flowed; delsp=yes", b""), 4),
        ("charset: 8-bit text without a charset", (b"text/plain", b"text/plain; charset=windows-1252"), 3),
    ],
)
def test_the_fidelity_readings_cost_what_the_same_mail_read_plainly_costs(name, plain_reading, ratio):
    """The placeholder check, unflowing format=flowed and the windows-1252 check for
    text without a charset (docs/mail-gateway.md, step 1) are linear and bounded:
    each costs a small factor of the same mail without it. (Such mail is not held
    to ordinary mail of its size: a megabyte of HTML paragraphs read as an HTML-only
    mail costs 45 times that, and short lines cost what any reading of lines does.)"""
    (raw,) = [mail.raw for mail in hostile_mails(1_000_000) if mail.name == name]
    assert raw.count(plain_reading[0]) >= 1
    assert _cost(raw) <= ratio * _cost(raw.replace(*plain_reading))


# -- the tickets a mail names: looked up at once, however many it names --------------------


def number_lookups(sent: list[str]) -> int:
    """How many of `sent` looked tickets up by number."""
    return sum("WHERE tickets.number" in statement for statement in sent)


def as_another_mail(raw: bytes, n: int) -> bytes:
    """`raw` with a Message-ID of its own (the same one again is a duplicate)."""
    return raw.replace(b"Message-ID: <", b"Message-ID: <%d." % n, 1)


def naming_one_ticket(raw: bytes) -> bytes:
    """The same mail naming only the first of its ticket numbers."""
    first = rb"(?m)^(Subject: TKT-\d+|Cc: support\+TKT-\d+@helpdesk\.test)[^\r\n]*"
    return re.sub(first, rb"\1", raw, count=1)


def ingest_cpu(raws: list[bytes], envelope: Envelope, config: Mapping[str, Any]) -> float:
    """The least CPU seconds one of `raws` took to ingest: different mails, as the
    same one again is a duplicate and costs less (see `least_cpu`)."""
    return min(cpu_seconds(partial(ingest, raw, envelope, config)) for raw in raws)


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "name", ["subject: thousands of ticket numbers", "cc: thousands of plus-addresses naming tickets"]
)
@pytest.mark.parametrize("held", [False, True], ids=["from a stranger", "naming no sender"])
def test_a_mail_naming_thousands_of_tickets_looks_them_up_in_one_statement(app, service, name, held):
    """Each ticket number named in the Subject or a support plus-address was a SELECT
    of its own until one existed: 20,000 in one Subject were 20,002 statements and
    14 s of a gateway thread on PostgreSQL, for any mail from anyone, and since
    132af74 for mail held with no sender or over a cap too (`ingest._named_ticket`).
    Now the first `matching.MAX_NAMED_NUMBERS` of each are looked up in one
    statement; the existing tickets this mail names last are past them."""
    open_ticket(service)
    open_ticket(service)  # TKT-000001 and TKT-000002, named last
    (raw,) = [mail.raw for mail in hostile_mails(256 * 1024) if mail.name == name]
    if held:
        raw = raw.split(b"\r\n", 1)[1]  # `header` writes From first
    envelope = Envelope("" if held else "mallory@attacker.example", (SUPPORT,), "imap" if held else "smtp")
    one = naming_one_ticket(raw)
    assert len(one) * 10 < len(raw)
    # A stranger's first mail also counts the quarantine's room (`room`, at most once
    # every RECOUNT_SECONDS): counted now, so both mails below run the same statements.
    ingest(as_another_mail(one, 99), envelope, app.config)

    with statements() as sent:
        result = ingest(raw, envelope, app.config)
    with statements() as sent_for_one:
        ingest(as_another_mail(one, 0), envelope, app.config)

    assert result.outcome is Outcome.QUARANTINED
    item = db.session.execute(
        select(QuarantineItem).where(QuarantineItem.inbound_mail_id == result.inbound_id)
    ).scalar_one()
    assert (item.ticket_id, item.ticket_unknown) == (None, False)
    assert number_lookups(sent) == 1
    assert len(sent) == len(sent_for_one)
    hostile = ingest_cpu([as_another_mail(raw, n) for n in (1, 2, 3)], envelope, app.config)
    ordinary = ingest_cpu([ordinary_mail(len(raw), seed) for seed in range(3)], envelope, app.config)
    assert hostile <= 10 * ordinary
