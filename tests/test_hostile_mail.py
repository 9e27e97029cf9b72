"""Mail written by an attacker, through the real SMTP listener (SPEC §7).

Each attack here worked on the gateway before the hostile-mail work (issue 13):
staff impersonation, quarantine approval as a way into someone else's ticket,
`Authentication-Results` headers that decode or normalise into a trusted one, and
poison mail that PostgreSQL refuses and that was answered `451` forever.
"""
from __future__ import annotations

import base64

import pytest
from sqlalchemy import func, select

from helpdesk.extensions import db
from helpdesk.models import InboundMail, Message, OutboxMessage, Participant, QuarantineItem, Ticket
from helpdesk.services.senders import SendersService
from tests.mail import SUPPORT, message, start_gateway
from tests.test_outbound import deliver, open_ticket, sink  # noqa: F401  (sink: fixture)

TRUSTED = "mx.helpdesk.test"


def tickets() -> list[Ticket]:
    return list(db.session.execute(select(Ticket).order_by(Ticket.number)).scalars())


def messages(ticket: Ticket) -> list[Message]:
    return list(db.session.execute(
        select(Message).where(Message.ticket_id == ticket.id).order_by(Message.id)).scalars())


def mailed_replies() -> list[OutboxMessage]:
    return list(db.session.execute(
        select(OutboxMessage).where(OutboxMessage.kind == "reply")).scalars())


def last_record() -> InboundMail:
    return db.session.execute(select(InboundMail).order_by(InboundMail.id.desc())).scalars().first()


# -- staff are never impersonated by mail ------------------------------------------------


def test_mail_from_a_staff_address_without_proof_is_an_unverified_note_never_mailed(
        gateway, senders, agent):
    gateway.send(message(subject="Laptop broken"))
    (ticket,) = tickets()
    forged = message(sender=f"Agnes Agent <{agent.email}>", subject="Re: [TKT-000001] Laptop broken",
                     body="Please pay the repair fee to IBAN XX00 0000 first.")
    code, text = gateway.send(forged)
    assert (code, text) == (250, b"2.0.0 OK appended TKT-000001")
    first, note = messages(ticket)
    assert note.kind == "note"                     # never a public reply
    assert note.author_staff_id is None            # never acts as the staff member
    assert "unverified" in note.author_label
    assert mailed_replies() == []                  # never mailed to the customer
    db.session.refresh(ticket)
    assert ticket.first_responded_at is None       # never the SLA's first response
    assert "no proof" in last_record().reason


def test_staff_answering_mail_the_helpdesk_sent_to_them_replies_publicly(
        app, gateway, senders, agent, admin, service, sink):  # noqa: F811
    """Proof by signed Message-ID: only the staff member's mailbox received this id."""
    from helpdesk.services import Actor

    ticket = open_ticket(service, cc=[(agent.email, "Agnes Agent")])
    service.add_message(ticket, body="Which model?", actor=Actor.staff(admin), channel="web")
    db.session.commit()
    mails = deliver(app, sink)
    (to_agent,) = [mail for mail in mails if mail["To"].addresses[0].addr_spec == agent.email]
    answer = message(sender=agent.email, subject="Re: " + str(to_agent["Subject"]),
                     body="It is the X-100; we replace it today.",
                     in_reply_to=to_agent["Message-ID"])
    assert gateway.send(answer) == (250, b"2.0.0 OK appended TKT-000001")
    last = messages(ticket)[-1]
    assert (last.kind, last.author_staff_id) == ("reply", agent.id)
    assert any(row.reply_id == last.id and row.to_address == "ann@example.com"
               for row in mailed_replies())


def test_a_signed_id_sent_to_the_customer_is_no_proof_for_a_staff_address(
        app, gateway, senders, agent, sink):  # noqa: F811
    gateway.send(message(subject="Printer on fire"))
    (ack,) = deliver(app, sink)  # the customer holds this id, and can quote it
    forged = message(sender=agent.email, subject="Re: [TKT-000001] Printer on fire",
                     body="Send your password to reset the printer.",
                     in_reply_to=ack["Message-ID"])
    assert gateway.send(forged) == (250, b"2.0.0 OK appended TKT-000001")
    (ticket,) = tickets()
    note = messages(ticket)[-1]
    assert (note.kind, note.author_staff_id) == ("note", None)
    assert mailed_replies() == []


@pytest.mark.parametrize(("results", "outcome", "kind"), [
    (f"{TRUSTED}; dmarc=pass header.from=helpdesk.test", "appended", "reply"),
    (None, "quarantined", None),
    ("mx.attacker.example; dmarc=pass header.from=helpdesk.test", "quarantined", None),
])
def test_staff_mail_is_public_when_the_trusted_server_says_dmarc_passed(
        app, service, agent, results, outcome, kind):
    open_ticket(service)
    for gateway in start_gateway(app, TRUSTED_AUTHSERV_ID=TRUSTED):
        headers = {"Authentication-Results": results} if results else None
        code, text = gateway.send(message(sender=agent.email, subject="Re: [TKT-000001] Printer",
                                          body="Replaced.", headers=headers))
        assert (code, text.split()[2].decode()) == (250, outcome)
    (ticket,) = tickets()
    last = messages(ticket)[-1]
    if kind is None:
        assert len(messages(ticket)) == 1
    else:
        assert (last.kind, last.author_staff_id) == (kind, agent.id)


# -- quarantine approval vouches for the sender, not for where the mail goes ---------------


def test_approving_mail_from_a_staff_address_does_not_make_it_staff(app, service, agent, runner):
    open_ticket(service)
    for gateway in start_gateway(app, TRUSTED_AUTHSERV_ID=TRUSTED):
        code, text = gateway.send(message(sender=agent.email, subject="Re: [TKT-000001] Printer",
                                          body="Refund approved, send card details."))
        assert (code, text) == (250, b"2.0.0 OK quarantined")
    item = db.session.execute(select(QuarantineItem)).scalar_one()
    result = runner.invoke(args=["quarantine", "approve", str(item.id)])
    assert result.exit_code == 0, result.output
    db.session.expire_all()
    (ticket,) = tickets()
    last = messages(ticket)[-1]
    assert (last.kind, last.author_staff_id) == ("note", None)
    assert mailed_replies() == []


# -- Authentication-Results is read as the trusted server wrote it --------------------------


def raw_mail(*head: bytes, sender: bytes = b"Ann <ann@example.com>") -> bytes:
    return b"\r\n".join([
        *head,
        b"From: " + sender,
        b"To: " + SUPPORT.encode(),
        b"Subject: Invoice question",
        b"Message-ID: <" + base64.b16encode(b"".join(head))[:40] + b"@client.example>",
        b"",
        b"Where is my invoice?",
        b"",
    ])


PASS = TRUSTED.encode() + b"; dmarc=pass header.from=example.com"
RECEIVED = (b"Received: from mail.client.example (mail.client.example [192.0.2.7])\r\n"
            b"\tby mx.helpdesk.test (Postfix) with ESMTPS id 4Z; Mon, 2 Mar 2026 08:00:00 +0000")


@pytest.mark.parametrize(("head", "outcome"), [
    ((b"Authentication-Results: " + PASS, RECEIVED), "created"),   # the control: genuine
    ((b"Authentication-Results: =?utf-8?b?" + base64.b64encode(PASS) + b"?=", RECEIVED),
     "quarantined"),
    ((b"Authentication-Results: =?us-ascii?q?" + PASS.replace(b" ", b"_").replace(b";", b"=3B")
      + b"?=", RECEIVED), "quarantined"),
    ((b"Authentication-Results: \xc2\xa0" + PASS, RECEIVED), "quarantined"),
    ((b"Authentication-Results: " + PASS.replace(b"mx.", b"\xef\xbd\x8dx."), RECEIVED),
     "quarantined"),   # a fullwidth letter that NFKC turns into "m"
    # The trusted server says fail; a pass below the trace header it received the mail
    # with was written by the sender.
    ((b"Authentication-Results: " + TRUSTED.encode() + b"; dmarc=fail header.from=example.com",
      RECEIVED, b"Authentication-Results: " + PASS), "quarantined"),
])
def test_authentication_results_only_count_as_the_trusted_server_wrote_them(
        app, senders, head, outcome):
    for gateway in start_gateway(app, TRUSTED_AUTHSERV_ID=TRUSTED):
        code, text = gateway.send(raw_mail(*head), mail_from="ann@example.com")
        assert code == 250
        assert text.split()[2].decode() == outcome


@pytest.mark.parametrize(("signer", "outcome"), [
    (b"mail.example.co.uk", "created"),
    (b"co.uk", "quarantined"),      # a public suffix aligns with nobody
])
def test_alignment_uses_the_public_suffix_list(app, signer, outcome):
    SendersService(db.session).add("@example.co.uk", "UK Ltd")
    db.session.commit()
    results = b"Authentication-Results: " + TRUSTED.encode() + b"; dkim=pass header.d=" + signer
    for gateway in start_gateway(app, TRUSTED_AUTHSERV_ID=TRUSTED):
        code, text = gateway.send(raw_mail(results, RECEIVED, sender=b"Bo <bo@example.co.uk>"),
                                  mail_from="bo@example.co.uk")
        assert code == 250
        assert text.split()[2].decode() == outcome


# -- poison mail: stored, or quarantined with its raw bytes, never 451 ---------------------


POISON = {
    "5,000-character Message-ID": (b"Message-ID: <" + b"a" * 5000 + b"@client.example>",
                                   b"Subject: long id"),
    "NUL in the subject": (b"Message-ID: <nul@client.example>", b"Subject: printer \x00 broken"),
    "NUL in the Message-ID": (b"Message-ID: <n\x00ul@client.example>", b"Subject: nul id"),
    "300-character CC name": (b"Message-ID: <cc@client.example>", b"Subject: long cc",
                              b"Cc: " + b"B" * 300 + b" <bob@example.com>"),
    "300-character From name": (b"Message-ID: <from@client.example>", b"Subject: long from"),
    "4-byte characters in a long Message-ID": (
        b"Message-ID: <" + "\U0001F600".encode() * 850 + b"@client.example>",
        b"Subject: emoji id"),
    "NUL in References": (b"Message-ID: <ref@client.example>", b"Subject: refs",
                          b"References: <a\x00b@client.example> <c@client.example>"),
}


@pytest.mark.parametrize("name", list(POISON))
def test_poison_mail_is_recorded_and_never_answered_451(gateway, senders, name):
    head = POISON[name]
    sender = b"A" * 300 + b" <ann@example.com>" if "From name" in name else b"Ann <ann@example.com>"
    raw = b"\r\n".join([b"From: " + sender, b"To: " + SUPPORT.encode(), *head, b"",
                        b"The printer is broken.", b""])
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
