"""Outbound notifications (docs/outbound-mail.md) against a real SMTP sink (aiosmtpd).

Notifications are queued by TicketsService in the event's own transaction and
delivered by `mailgateway.outbound.Sender`; replies come back through the real
SMTP listener of the gateway, so the whole round trip runs over sockets.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import signal
import smtplib
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import time_machine
from aiosmtpd.smtp import AuthResult, LoginPassword
from alembic.migration import MigrationContext
from alembic.operations import Operations
from flask import Flask
from sqlalchemy import create_engine, delete, event, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError

from helpdesk import return_paths, vocabulary
from helpdesk.clock import database_clock, database_now, now
from helpdesk.extensions import db
from helpdesk.inbound.ingest import Envelope, Outcome, ingest
from helpdesk.inbound.parser import header_block
from helpdesk.instance import ConfigurationError
from helpdesk.message_ids import Signer
from helpdesk.models import Contact, InboundMail, Message, OutboxMessage, Participant, Ticket
from helpdesk.outbound.compose import MAX_REFERENCES, Composer
from helpdesk.return_paths import ReturnPaths
from helpdesk.services import Actor, TicketsService, contacts, email_proofs, notifications
from helpdesk.services.integrations import IntegrationsService
from helpdesk.services.mailflow import mail_flow
from helpdesk.services.senders import SendersService
from helpdesk.services.staff import StaffService
from helpdesk.services.tickets import NewAttachment
from helpdesk.services.workflow import open_workflow_ticket
from mailgateway.imap import envelope_from_headers
from mailgateway.outbound import Sender, parse_outbound_url
from mailgateway.serverurl import InvalidServerUrl
from tests.support import outbound_worker
from tests.support.corpus import CORPUS
from tests.support.database import CUSTOMER
from tests.support.database import open_ticket as open_committed_ticket
from tests.support.dripping_relay import DrippingRelay
from tests.support.gateway_process import refused_start
from tests.support.gateway_process import start as start_gateway_process
from tests.support.mail import message, send, start_gateway
from tests.support.outbox import Clock, deliver, html_of, make_sender, run, text_of
from tests.support.pgserver import free_port
from tests.support.processes import run_processes
from tests.support.sink import Sink
from tests.support.tls import OpensslMissing, self_signed_certificate
from tests.support.waiting import wait_until

MESSAGE_ID = re.compile(r"^<tkt\.(\d+)\.(\d+)\.[0-9a-f]{24}@helpdesk\.helpdesk\.test>$")
RETURN_PATH = re.compile(r"^support\+b-([0-9a-v]+)-[0-9a-v]{16}@helpdesk\.test$")


def outbox() -> list[OutboxMessage]:
    return list(db.session.execute(select(OutboxMessage).order_by(OutboxMessage.id)).scalars())


# The ticket these tests mail about; the title is what their subjects check.
open_ticket = partial(
    open_committed_ticket, subject="Printer on fire", description="The printer on floor 3 is on fire."
)


def last_inbound() -> InboundMail:
    return db.session.execute(select(InboundMail).order_by(InboundMail.id.desc())).scalars().first()


def message_count(ticket: Ticket) -> int:
    return db.session.execute(
        select(func.count(Message.id)).where(Message.ticket_id == ticket.id)
    ).scalar_one()


# -- each kind arrives with the right headers and content ------------------------------


def test_acknowledgment_of_mailed_ticket_has_number_threading_and_loop_headers(app, gateway, senders, sink):
    gateway.send(
        message(
            sender="Ann Example <ann@example.com>",
            message_id="<first@client.example>",
            subject="Printer on fire",
        )
    )
    (ack,) = deliver(app, sink)
    (row,) = outbox()
    assert (row.kind, row.state, row.attempts) == ("created", "sent", 1)
    assert row.sent_at is not None
    assert ack["Subject"] == "[TKT-000001] Printer on fire"
    assert ack["To"] == "Ann Example <ann@example.com>"
    assert ack["From"] == "Helpdesk <support@helpdesk.test>"
    assert ack["Reply-To"] == "support+TKT-000001@helpdesk.test"
    assert MESSAGE_ID.match(ack["Message-ID"])
    assert ack["Message-ID"] == f"<{row.message_id}>"
    assert ack["In-Reply-To"] == "<first@client.example>"
    assert ack["References"] == "<first@client.example>"
    assert ack["Auto-Submitted"] == "auto-replied"
    assert ack["X-Auto-Response-Suppress"] == "All"
    assert ack["X-Loop"] == "support@helpdesk.test"
    assert ack.get_content_type() == "multipart/alternative"
    text = text_of(ack)
    for expected in (
        "TKT-000001",
        "Printer on fire",
        "Priority:  Medium",
        "Category:  Support",
        "within 4 hours",
        "just reply to this mail",
        "http://helpdesk.test/track",
    ):
        assert expected in text
    assert "<strong>TKT-000001</strong>" in html_of(ack)
    # Bounces come back to us, to an address of this row's own (docs/outbound-mail.md, "Bounces").
    assert RETURN_PATH.match(sink.received[0].mail_from)
    assert sink.received[0].mail_from == ReturnPaths.from_config(app.config).make(row.id, "ann@example.com")
    assert sink.received[0].rcpt_tos == ["ann@example.com"]


@pytest.mark.parametrize(
    "name",
    [
        "Soporte T\u00e9cnico, Acme",
        "Acme Support Desk, Customer Care, Billing and Field Service of the Northern Region, "
        "noc@acme.example",
        "Helpdesk (Acme; Northern Region) <noreply@acme.example>",
    ],
)
def test_the_from_name_is_written_as_configured_and_names_only_our_address(app, service, sink, name):
    """OUTBOUND_FROM's name is text, written as `To` names are: a quoted name longer
    than a line lost its quotes when the email package folded it, and the From
    named every comma-separated part as an address."""
    quoted = name.replace("\\", "\\\\").replace('"', '\\"')
    open_ticket(service)
    (ack,) = deliver(app, sink, OUTBOUND_FROM=f'"{quoted}" <support@helpdesk.test>')
    (sender,) = ack["From"].addresses
    assert sender.addr_spec == "support@helpdesk.test"
    assert "".join(sender.display_name.split()) == "".join(name.split())


def test_acknowledgment_of_portal_ticket_is_automatic_without_in_reply_to(app, service, agent_actor, sink):
    open_ticket(service, agent_actor, priority="urgent", category="billing")
    (ack,) = deliver(app, sink)
    assert ack["Auto-Submitted"] == "auto-replied"
    assert ack["In-Reply-To"] is None and ack["References"] is None
    assert "Priority:  Urgent" in text_of(ack) and "within 15 minutes" in text_of(ack)


def test_ticket_opened_by_the_system_sends_no_acknowledgment(app, service, sink):
    open_ticket(service, Actor.system("import"))
    assert outbox() == []
    assert deliver(app, sink) == []


def test_public_reply_goes_to_requester_and_each_cc_in_a_copy_of_their_own(
    app, gateway, senders, sink, agent_actor, service
):
    gateway.send(
        message(
            sender="Ann Example <ann@example.com>",
            message_id="<first@client.example>",
            cc="Bob <bob@example.com>",
        )
    )
    deliver(app, sink)
    ticket = db.session.execute(select(Ticket)).scalar_one()
    service.add_message(ticket, body="Please switch it off and on again.", actor=agent_actor, channel="web")
    db.session.commit()
    _ack, to_ann, to_bob = deliver(app, sink)
    assert (to_ann["To"], to_bob["To"]) == ("Ann Example <ann@example.com>", "Bob <bob@example.com>")
    assert (to_ann["Cc"], to_bob["Cc"]) == ("bob@example.com", "ann@example.com")
    assert to_ann["Message-ID"] != to_bob["Message-ID"]
    for mail in (to_ann, to_bob):
        assert mail["Subject"] == "[TKT-000001] Printer on fire"
        assert mail["Auto-Submitted"] is None  # a person wrote it (RFC 3834 §5)
        assert mail["X-Auto-Response-Suppress"] == "All"
        assert mail["In-Reply-To"] == "<first@client.example>"
        assert "Please switch it off and on again." in text_of(mail)
        assert "Agnes Agent" in text_of(mail)
        assert "agent@helpdesk.test" not in text_of(mail)
    assert [r.rcpt_tos for r in sink.received[1:]] == [["ann@example.com"], ["bob@example.com"]]
    assert len({r.mail_from for r in sink.received}) == 3  # each copy its own return path


def test_an_address_literal_kept_as_a_participant_is_never_mailed(
    app, gateway, senders, sink, agent_actor, service
):
    """A participant `bob@[127.0.0.1]`, kept from a mail's Cc before such a Cc was
    left out (or moved by a merge), got replies: the relay, given that recipient,
    connects to the host it names (its own loopback, a server inside the network).
    Its copy is skipped with the reason, and the others' Cc leaves it out
    (docs/outbound-mail.md)."""
    gateway.send(message(sender="Ann <ann@example.com>"))
    ticket = db.session.execute(select(Ticket)).scalar_one()
    ticket.participants.append(Participant(email="bob@[127.0.0.1]", name="Bob"))
    service.add_message(ticket, body="Switch it off and on again.", actor=agent_actor, channel="web")
    db.session.commit()
    _ack, to_ann = deliver(app, sink)
    assert to_ann["Cc"] is None
    assert [r.rcpt_tos for r in sink.received] == [["ann@example.com"], ["ann@example.com"]]
    skipped = db.session.execute(select(OutboxMessage).where(OutboxMessage.state == "skipped")).scalar_one()
    assert skipped.to_address == "bob@[127.0.0.1]"
    assert skipped.last_error == "an address literal (a host named by its IP address): never mailed"


def test_internal_notes_and_customer_messages_are_never_mailed(app, service, agent_actor, sink):
    ticket = open_ticket(service)
    deliver(app, sink)
    service.add_message(ticket, body="Customer is grumpy.", actor=agent_actor, channel="web", internal=True)
    service.add_participant(ticket, "bob@example.com", "Bob")
    service.add_message(ticket, body="Any news?", actor=CUSTOMER, channel="email")
    db.session.commit()
    assert [row.kind for row in outbox()] == ["created"]
    assert len(deliver(app, sink)) == 1


def test_status_changes_are_mailed_and_resolution_says_how_to_reopen(app, service, agent_actor, sink):
    ticket = open_ticket(service)
    service.mark_viewed(ticket, actor=agent_actor)  # new → open, automated: not mailed
    service.change_status(ticket, "in_progress", actor=agent_actor)
    service.change_status(ticket, "pending_customer", actor=agent_actor, reason="Which printer model is it?")
    service.change_status(ticket, "resolved", actor=agent_actor, reason="Replaced the fuser.")
    db.session.commit()
    _ack, progress, pending, resolved = deliver(app, sink)
    assert [row.kind for row in outbox()] == ["created", "status", "status", "resolved"]
    assert "is now: In progress (was: Open)" in text_of(progress)
    assert "Which printer model is it?" in text_of(pending)
    assert "waiting for your answer: just reply" in text_of(pending)
    assert "has been resolved" in text_of(resolved)
    assert "Replaced the fuser." in text_of(resolved)
    assert "Just reply to this mail and the ticket reopens." in text_of(resolved)
    assert "closed after 7 days" in text_of(resolved)
    previous = _ack
    for mail in (progress, pending, resolved):
        assert mail["Auto-Submitted"] == "auto-replied"
        assert mail["Subject"] == "[TKT-000001] Printer on fire"
        # No mail from the customer on record: the thread is our own mail to them.
        assert mail["In-Reply-To"] == previous["Message-ID"]
        assert mail["References"].split()[0] == _ack["Message-ID"]
        previous = mail


def test_automated_moves_and_cancellation_are_not_mailed(app, service, agent_actor, sink):
    ticket = open_ticket(service)
    service.change_status(ticket, "cancelled", actor=agent_actor, reason="spam")
    other = open_ticket(service)
    service.change_status(other, "open", actor=Actor.system("sla"), automated=True)
    db.session.commit()
    assert [row.kind for row in outbox()] == ["created", "created"]


def test_html_alternative_escapes_what_customers_wrote(app, service, agent_actor, sink):
    ticket = open_ticket(service, subject="<script>alert(1)</script> broken")
    service.add_message(ticket, body="Use <b>this</b> & that", actor=agent_actor, channel="web")
    db.session.commit()
    ack, reply = deliver(app, sink)
    assert "<script>" not in html_of(ack) and "&lt;script&gt;" in html_of(ack)
    assert "Use &lt;b&gt;this&lt;/b&gt; &amp; that" in html_of(reply)
    assert "Use <b>this</b> & that" in text_of(reply)


def test_operator_templates_override_the_built_in_ones(app, service, sink, tmp_path):
    (tmp_path / "created.txt").write_text("Ticket {{ number }} is ours now, {{ recipient_name }}.\n")
    open_ticket(service)
    (ack,) = deliver(app, sink, MAIL_TEMPLATES_DIR=str(tmp_path))
    assert text_of(ack) == "Ticket TKT-000001 is ours now, Ann Example.\n"
    assert "<strong>TKT-000001</strong>" in html_of(ack)  # the built-in HTML still applies


def test_mail_is_seven_bit_whatever_its_words_as_the_envelope_declares_nothing(app, service, sink, tmp_path):
    """The sender declares no `BODY=8BITMIME` (RFC 6152 §3), so a mail must be 7-bit:
    a text whose lines all fit 78 octets (an operator's short template in Spanish)
    went as `Content-Transfer-Encoding: 8bit`, raw UTF-8 a relay or next hop without
    8BITMIME may refuse or strip to seven bits. It is quoted-printable now, as a
    text with a longer line always was, and reads the same."""
    (tmp_path / "created.txt").write_text("Hola, {{ recipient_name }}: recibimos tu solicitud.\n")
    (tmp_path / "created.html").write_text("<p>Hola, {{ recipient_name }}.</p>\n")
    open_ticket(service, requester_name="Ana Núñez", subject="Sin conexión en el módem")
    (ack,) = deliver(app, sink, MAIL_TEMPLATES_DIR=str(tmp_path))
    (received,) = sink.received
    assert all(octet < 0x80 for octet in received.data)
    assert text_of(ack) == "Hola, Ana Núñez: recibimos tu solicitud.\n"
    assert html_of(ack) == "<p>Hola, Ana Núñez.</p>\n"
    assert ack["Subject"] == "[TKT-000001] Sin conexión en el módem"


def test_broken_operator_template_fails_its_row_visibly(app, service, sink, tmp_path):
    (tmp_path / "created.txt").write_text("{{ no_such_variable }}\n")
    open_ticket(service)
    assert deliver(app, sink, MAIL_TEMPLATES_DIR=str(tmp_path)) == []
    (row,) = outbox()
    assert row.state == "failed"
    assert "no_such_variable" in row.last_error


# -- replies thread back ----------------------------------------------------------------


def test_answer_to_acknowledgment_is_appended_to_the_same_ticket(app, gateway, senders, sink):
    gateway.send(message(subject="Printer on fire"))
    (ack,) = deliver(app, sink)
    answer = message(
        subject="Thanks", body="It is model X-100.", in_reply_to=ack["Message-ID"], to=ack["Reply-To"]
    )
    code, text = gateway.send(answer, rcpt=[ack["Reply-To"]])
    assert (code, text) == (250, b"2.0.0 OK appended TKT-000001")
    assert "by in-reply-to" in last_inbound().reason
    (ticket,) = db.session.execute(select(Ticket)).scalars()
    assert message_count(ticket) == 2
    assert [row.kind for row in outbox()] == ["created"]  # the customer's answer is not echoed


def test_answer_to_staff_reply_is_appended_to_the_same_ticket(
    app, gateway, senders, sink, service, agent_actor
):
    ticket = open_ticket(service, agent_actor)
    service.add_message(ticket, body="Which model?", actor=agent_actor, channel="web")
    db.session.commit()
    _ack, reply = deliver(app, sink)
    answer = message(subject="model", body="X-100", references=reply["Message-ID"])
    code, text = gateway.send(answer)
    assert (code, text) == (250, b"2.0.0 OK appended TKT-000001")
    assert "by references" in last_inbound().reason
    assert len(db.session.execute(select(Ticket)).all()) == 1
    assert message_count(ticket) == 3


@pytest.mark.parametrize("where", ["api", "portal"])
def test_staff_reply_from_api_or_portal_reaches_the_customer_and_the_answer_threads(
    app, client, gateway, senders, sink, agent, where
):
    """The whole loop: mail opens a ticket, staff answer it through the JSON API or
    the portal form, the answer is mailed threaded onto the customer's mail, and the
    customer's reply to it lands in the same ticket."""
    from tests.support.app import ApiClient, Portal, login_tokens

    original = message(subject="Printer on fire", message_id="<first@client.example>")
    assert gateway.send(original)[0] == 250
    (ack,) = deliver(app, sink)
    if where == "api":
        api = ApiClient(client, login_tokens(client, agent.email, "agent-password-1")["access_token"])
        response = api.post("/tickets/TKT-000001/replies", {"body": "Which model is it?"})
        assert response.status_code == 201, response.get_json()
    else:
        portal = Portal(client)
        portal.login(agent.email, "agent-password-1")
        response = portal.post(
            "/tickets/TKT-000001/reply", {"body": "Which model is it?"}, page="/tickets/TKT-000001"
        )
        assert response.status_code == 302
    _ack, staff_reply = deliver(app, sink)
    assert staff_reply["To"] == "ann@example.com"
    assert staff_reply["Subject"] == "[TKT-000001] Printer on fire"
    assert "Which model is it?" in text_of(staff_reply)
    assert staff_reply["In-Reply-To"] == "<first@client.example>"
    assert staff_reply["Auto-Submitted"] is None  # a person wrote it
    answer = message(
        subject="Re: [TKT-000001] Printer on fire",
        body="X-100",
        in_reply_to=staff_reply["Message-ID"],
        message_id="<second@client.example>",
    )
    assert gateway.send(answer) == (250, b"2.0.0 OK appended TKT-000001")
    assert "by in-reply-to" in last_inbound().reason
    (ticket,) = db.session.execute(select(Ticket)).scalars()
    assert message_count(ticket) == 3
    # viewing the ticket in the portal opens it (docs/lifecycle.md); a reply alone does not
    assert ticket.status == ("new" if where == "api" else "open")


def test_a_customer_of_a_merged_ticket_is_answered_in_the_thread_they_wrote_from(
    app, client, gateway, senders, sink, agent
):
    """After a merge each customer's copy of a reply threads under their own mail and
    our earlier mail to them, never under another customer's Message-ID: their client
    keeps the conversation together, and nobody is sent an id of someone else's mail
    (docs/outbound-mail.md, "Threading")."""
    from tests.support.app import ApiClient, login_tokens

    ann = message(subject="Sin internet en Col. Roma", message_id="<ann-1@client.example>")
    assert gateway.send(ann)[0] == 250
    bob = message("bob@corp.example", "Sin internet", message_id="<bob-1@client.example>")
    assert gateway.send(bob)[0] == 250
    acks = {mail["To"]: mail for mail in deliver(app, sink)}
    api = ApiClient(client, login_tokens(client, agent.email, "agent-password-1")["access_token"])
    assert api.post("/tickets/TKT-000002/merge", {"into": "TKT-000001"}).status_code == 200
    assert api.post("/tickets/TKT-000001/replies", {"body": "Servicio restablecido."}).status_code == 201
    replies = {mail["To"]: mail for mail in deliver(app, sink) if "Servicio restablecido." in text_of(mail)}
    assert set(replies) == {"ann@example.com", "bob@corp.example"}
    assert replies["ann@example.com"]["In-Reply-To"] == "<ann-1@client.example>"
    to_bob = replies["bob@corp.example"]
    assert to_bob["In-Reply-To"] == "<bob-1@client.example>"
    assert "<bob-1@client.example>" in to_bob["References"]
    assert "ann-1@client.example" not in str(to_bob["References"])
    answer = message(
        "bob@corp.example", "Re: Sin internet", body="Gracias, ya funciona.", in_reply_to=to_bob["Message-ID"]
    )
    assert gateway.send(answer) == (250, b"2.0.0 OK appended TKT-000001")
    assert acks["bob@corp.example"]["Message-ID"]
    assert api.post("/tickets/TKT-000001/replies", {"body": "Gracias a ti."}).status_code == 201
    again = {mail["To"]: mail for mail in deliver(app, sink) if "Gracias a ti." in text_of(mail)}
    assert again["bob@corp.example"]["In-Reply-To"] == answer["Message-ID"]
    assert again["ann@example.com"]["In-Reply-To"] == "<ann-1@client.example>"


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_merge_committed_during_the_senders_claim_threads_no_stranger_s_mail(
    app, gateway, senders, sink, service, agent_actor, monkeypatch
):
    """A merge committed between the sender's batch read (`ThreadHint`: nothing merged
    into the ticket yet) and the rendering of a row queued before it. On PostgreSQL
    each statement of the claim sees what committed before it, so the row is rendered
    after the merge with the hint from before: its thread is the one it had a moment
    before the merge, every mail on its own ticket, the co-participant's included
    (Carol, Cc'd on Ann's ticket from the start), as in any unmerged ticket. The mail
    of the merged ticket's customer (Bob) is on his own ticket, which that thread
    does not read: no id of a stranger's mail is sent (docs/outbound-mail.md,
    "Merged tickets"). On SQLite the claim holds the write lock, so no merge commits
    inside it."""
    assert gateway.send(message(cc="carol@corp.example", message_id="<ann-1@client.example>"))[0] == 250
    carol = message("carol@corp.example", "Re: [TKT-000001] On fire", message_id="<carol-1@c.example>")
    assert gateway.send(carol) == (250, b"2.0.0 OK appended TKT-000001")
    bob = message("bob@corp.example", "Paper jam", message_id="<bob-1@client.example>")
    assert gateway.send(bob)[0] == 250
    deliver(app, sink)
    sink.messages.clear()
    ann_ticket, bob_ticket = (service.get(number) for number in ("TKT-000001", "TKT-000002"))
    service.add_message(ann_ticket, body="Fixed on floor 3.", actor=agent_actor, channel="web")
    db.session.commit()
    batch_context = Sender._batch_context

    def merge_after_the_read(session, rows):  # type: ignore[no-untyped-def]
        read = batch_context(session, rows)
        assert not any(hint.merged for hint in read[1].values())

        def merge() -> None:
            with app.app_context():
                tickets = TicketsService.from_config(db.session, app.config)
                survivor = tickets.get(ann_ticket.number)
                tickets.merge(tickets.get(bob_ticket.number), survivor, actor=agent_actor)
                db.session.commit()

        other = threading.Thread(target=merge)  # its own session and connection
        other.start()
        other.join(timeout=30)
        return read

    monkeypatch.setattr(Sender, "_batch_context", staticmethod(merge_after_the_read))
    sender = make_sender(app, sink)
    while run(sender):
        pass
    assert db.session.execute(select(Ticket.merged_into_id).where(Ticket.id == bob_ticket.id)).scalar_one()
    copies = {mail["To"]: mail for mail in sink.messages if "Fixed on floor 3." in text_of(mail)}
    assert set(copies) == {"ann@example.com", "carol@corp.example"}
    for copy in copies.values():
        assert "bob-1" not in f"{copy['In-Reply-To']} {copy['References']}"
    # The thread from before the merge: Carol's mail on Ann's own ticket is the last.
    assert copies["ann@example.com"]["In-Reply-To"] == "<carol-1@c.example>"
    assert "<ann-1@client.example>" in copies["ann@example.com"]["References"]


def test_a_customer_of_a_merge_of_a_merge_is_answered_in_her_own_thread(
    app, client, gateway, senders, sink, agent
):
    """Cat's ticket is merged into Bob's, Bob's into Ann's: Cat's copy of a reply on
    Ann's ticket threads under Cat's mail, not Bob's."""
    from tests.support.app import ApiClient, login_tokens

    for sender, subject, mid in (
        ("ann@example.com", "Sin internet", "<ann-1@client.example>"),
        ("bob@corp.example", "Sin internet", "<bob-1@client.example>"),
        ("cat@corp.example", "Sin internet", "<cat-1@client.example>"),
    ):
        assert gateway.send(message(sender, subject, message_id=mid))[0] == 250
    deliver(app, sink)
    api = ApiClient(client, login_tokens(client, agent.email, "agent-password-1")["access_token"])
    assert api.post("/tickets/TKT-000003/merge", {"into": "TKT-000002"}).status_code == 200
    assert api.post("/tickets/TKT-000002/merge", {"into": "TKT-000001"}).status_code == 200
    assert api.post("/tickets/TKT-000001/replies", {"body": "Servicio restablecido."}).status_code == 201
    replies = {mail["To"]: mail for mail in deliver(app, sink) if "Servicio restablecido." in text_of(mail)}
    assert replies["cat@corp.example"]["In-Reply-To"] == "<cat-1@client.example>"
    assert "bob-1" not in str(replies["cat@corp.example"]["References"])
    assert replies["bob@corp.example"]["In-Reply-To"] == "<bob-1@client.example>"


def test_a_reply_after_a_merge_names_and_titles_only_each_customer_s_own_conversation(
    app, sink, service, agent_actor
):
    """The outage: three customers in three domains, the duplicates merged into the
    first. One reply used to Cc every customer to every other (a Reply-All wrote to
    strangers) under the first customer's subject, in her words. Each copy names
    the people of its recipient's own conversation and carries that conversation's
    subject under the survivor's number; Bob, on two of the merged tickets, is in
    both (docs/outbound-mail.md, "Merged tickets")."""
    roma = "Sin internet en Col. Roma, cuenta 88812, Calle Durango 14"
    opened = [
        ("ann@a-corp.example", roma, [("carol@a-corp.example", "Carol")]),
        ("bob@b-home.example", "No internet", [("dave@b-home.example", "Dave")]),
        ("cy@c-isp.example", "Internet caído", [("bob@b-home.example", "Bob")]),
    ]
    survivor, *duplicates = (
        open_committed_ticket(
            service, agent_actor, subject=subject, requester_email=email, requester_name="", cc=cc
        )
        for email, subject, cc in opened
    )
    for duplicate in duplicates:
        service.merge(duplicate, survivor, actor=agent_actor)
    db.session.commit()
    deliver(app, sink)
    service.add_message(survivor, body="El servicio ya fue restablecido.", actor=agent_actor, channel="web")
    db.session.commit()
    copies = {
        mail["To"]: (str(mail["Subject"]).strip(), sorted(str(mail["Cc"] or "").split(", ")))
        for mail in deliver(app, sink)
        if "restablecido" in text_of(mail)
    }
    assert copies == {
        "ann@a-corp.example": (f"[TKT-000001] {roma}", ["carol@a-corp.example"]),
        "Carol <carol@a-corp.example>": (f"[TKT-000001] {roma}", ["ann@a-corp.example"]),
        "bob@b-home.example": ("[TKT-000001] No internet", ["cy@c-isp.example", "dave@b-home.example"]),
        "Dave <dave@b-home.example>": ("[TKT-000001] No internet", ["bob@b-home.example"]),
        "cy@c-isp.example": ("[TKT-000001] Internet caído", ["bob@b-home.example"]),
    }


def test_a_merge_of_a_merge_keeps_each_customer_in_their_own_conversation(app, sink, service, agent_actor):
    """Cat's ticket is merged into Bob's, which makes her a CC participant of it, and
    Bob's into Ann's. Read as Bob's too, Cat was named in Bob's copy and Bob in hers,
    strangers to each other, and she was mailed in Bob's subject and language
    (docs/outbound-mail.md, "Merged tickets")."""
    contacts.find_or_create(db.session, "cat@c-isp.example", "Cat").language = "es"
    opened = [
        ("ann@a-corp.example", "Internet down"),
        ("bob@b-home.example", "No internet"),
        ("cat@c-isp.example", "Sin internet"),
    ]
    ann, bob, cat = (
        open_committed_ticket(service, agent_actor, subject=subject, requester_email=email, requester_name="")
        for email, subject in opened
    )
    deliver(app, sink)  # the acknowledgments fix the threads' languages: en, en, es
    service.merge(cat, bob, actor=agent_actor)
    service.merge(bob, ann, actor=agent_actor)
    service.add_message(ann, body="Service is back.", actor=agent_actor, channel="web")
    db.session.commit()
    copies = {
        mail["To"]: (str(mail["Subject"]), mail["Cc"], "responde a este correo" in text_of(mail))
        for mail in deliver(app, sink)
        if "Service is back." in text_of(mail)
    }
    assert copies == {
        "ann@a-corp.example": ("[TKT-000001] Internet down", None, False),
        "bob@b-home.example": ("[TKT-000001] No internet", None, False),
        "Cat <cat@c-isp.example>": ("[TKT-000001] Sin internet", None, True),
    }


def _customer_mail(service: Any, ticket: Ticket, customer: Actor, number: int, **recorded: Any) -> None:
    """Ann's mail `m<number>@client.example` filed on `ticket`, as the gateway files a reply."""
    mail = InboundMail(
        dedup_key=f"k{number}",
        message_id=f"m{number:02d}@client.example",
        channel="smtp",
        from_address="ann@example.com",
        size=1,
        outcome="appended",
        ticket_id=ticket.id,
        raw=b"",
        **recorded,
    )
    db.session.add(mail)
    db.session.flush()
    service.add_message(
        ticket, body=f"mail {number}", actor=customer, channel="email", inbound_mail_id=mail.id
    )


def test_a_reply_s_threading_reads_the_ids_it_writes_not_the_whole_ticket(app, service, agent_actor):
    """In-Reply-To and References need the thread's first id and its newest ones. Every
    customer mail of the ticket and every earlier row to the recipient was read, for
    each copy, in the sender's claim (SQLite's write lock): 20,000 mails made a
    20-copy claim take 2.5 s. The database picks the few ids now
    (docs/outbound-mail.md, "Headers")."""
    ticket = open_committed_ticket(service, agent_actor, requester_email="ann@example.com")
    customer = Actor.customer("ann@example.com", "Ann")
    mails = 3 * MAX_REFERENCES
    for number in range(mails):
        _customer_mail(service, ticket, customer, number)
    service.add_message(ticket, body="We are on it.", actor=agent_actor, channel="web")
    db.session.commit()
    (row,) = [row for row in outbox() if row.kind == "reply"]
    fetched: list[int] = []

    def count(state: Any) -> Any:
        result = state.invoke_statement().freeze()
        fetched.append(len(result.data))
        return result()

    event.listen(db.session, "do_orm_execute", count)
    try:
        parent, references = Composer(app.config)._thread(db.session, row)
    finally:
        event.remove(db.session, "do_orm_execute", count)
    newest = [f"m{number:02d}@client.example" for number in range(mails - MAX_REFERENCES + 1, mails)]
    assert (parent, references) == (newest[-1], ["m00@client.example", *newest])
    assert sum(fetched) <= 2 * (MAX_REFERENCES + 1) < mails


def _plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _plan_nodes(child)


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_reply_s_threading_reads_the_ticket_s_rows_in_order_from_its_indexes(app, service, agent_actor):
    """The ids picked, every mail of the ticket and every row to the recipient was
    still fetched and sorted (the mails joined to their messages and made
    distinct): 70–120 ms of PostgreSQL's time a copy at 20,000 mails on one
    ticket. Each of the four reads now takes its rows in order from an index led by
    the ticket (migration 0045, docs/benchmarks.md): asked with sorts, hashes and
    unordered scans discouraged, PostgreSQL finds a plan with none of them."""
    ticket = open_committed_ticket(service, agent_actor, requester_email="ann@example.com")
    customer = Actor.customer("ann@example.com", "Ann")
    for number in range(MAX_REFERENCES + 1):
        _customer_mail(service, ticket, customer, number, received_at=datetime(2026, 1, 1, 12, number))
        sent = OutboxMessage(
            ticket_id=ticket.id,
            kind="reply",
            to_address="ann@example.com",
            message_id=f"o{number:02d}@helpdesk.test",
            state="sent",
            created_at=datetime(2026, 1, 1, 12, number, 30),
        )
        db.session.add(sent)
    service.add_message(ticket, body="We are on it.", actor=agent_actor, channel="web")
    db.session.commit()
    (row,) = [row for row in outbox() if row.kind == "reply" and row.state == "pending"]
    reads: list[tuple[str, Any]] = []

    def keep(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if "ORDER BY" in statement:
            reads.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", keep)
    try:
        parent, references = Composer(app.config)._thread(db.session, row)
    finally:
        event.remove(db.engine, "before_cursor_execute", keep)
    assert (parent, len(references)) == ("m10@client.example", MAX_REFERENCES)
    assert len(reads) == 4  # newest and oldest, of the mails and of our rows
    # A table of a dozen rows leaves the planner free to walk any index in order (a
    # CI run once walked another of inbound_mails'): mail filed on no ticket, and
    # fresh statistics, make the ticket's own index the one a real table needs.
    db.session.execute(
        insert(InboundMail),
        [
            dict(dedup_key=f"unfiled{n}", channel="smtp", size=1, outcome="quarantined", raw=b"")
            for n in range(2_000)
        ],
    )
    db.session.commit()
    db.session.execute(text("ANALYZE inbound_mails"))
    db.session.execute(text("ANALYZE outbox"))
    db.session.execute(text("ANALYZE messages"))
    connection = db.session.connection()
    for setting in ("seqscan", "bitmapscan", "sort", "hashjoin", "hashagg", "mergejoin"):
        connection.execute(text(f"SET LOCAL enable_{setting} = off"))
    unordered: list[tuple[str, str]] = []
    fetch_all = ("Sort", "Hash", "Hash Join", "Aggregate", "Merge Join", "Seq Scan", "Bitmap Heap Scan")
    for statement, parameters in reads:
        (plan,) = connection.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, parameters).scalar_one()
        for node in _plan_nodes(plan["Plan"]):
            kind = node["Node Type"]
            if kind in fetch_all:
                unordered.append((kind, statement[:60]))
            elif "Relation Name" in node and "ticket_id" not in node.get("Index Cond", ""):
                unordered.append((f"{kind} of {node['Relation Name']} not by ticket", statement[:60]))
    db.session.rollback()
    assert unordered == []


def test_an_acknowledgment_asks_the_database_three_statements_and_its_batch_five(
    app, service, agent_actor, sink
):
    """What a notification costs the sender in statements (docs/benchmarks.md,
    outbound): its ticket's mail language fixed, its claim with what was rendered,
    its `sent` mark; and once a batch its claim, the tickets, their CC participants,
    the bounced recipients and the rate limits' counts. The threading reads and the
    rate-limit count were asked for every row, and merges and the language twice,
    8.3 statements a notification where the benchmark's figure was 5.2; a ticket
    with no earlier mail to thread to, nobody merged into it and no other row in the
    batch has no thread to read."""
    customers = 4
    for n in range(customers):
        open_ticket(service, agent_actor, requester_email=f"c{n}@example.com", subject=f"Request {n}")
    sender = make_sender(app, sink, Clock())
    asked: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if statement.lstrip().split(" ", 1)[0].upper() in ("SELECT", "UPDATE", "INSERT", "DELETE"):
            asked.append(" ".join(statement.split())[:40])

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        assert run(sender) == customers
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    assert [row.state for row in outbox()] == ["sent"] * customers
    assert len(asked) == 5 + 3 * customers, asked


def test_a_reply_threads_onto_the_customers_mail_never_onto_a_staff_mail_kept_as_a_note(
    app, gateway, senders, sink, service, agent_actor
):
    """A mail from a staff address with no proof is kept as an internal note (anyone can
    write that From). It was the parent of the next mail to the customer: they were
    sent its Message-ID (an internal host's name, and a hint that a note exists), and
    a forger chose our In-Reply-To. The parent is the customer's last public mail."""
    assert gateway.send(message(subject="Printer on fire", message_id="<ann-1@client.example>"))[0] == 250
    deliver(app, sink)
    note = message(
        "agent@helpdesk.test", "Re: [TKT-000001] Printer on fire", message_id="<note-77@exch01.corp.internal>"
    )
    assert gateway.send(note) == (250, b"2.0.0 OK appended TKT-000001")
    assert "unverified internal note" in last_inbound().reason
    (ticket,) = db.session.execute(select(Ticket)).scalars()
    service.add_message(ticket, body="We are on it.", actor=agent_actor, channel="web")
    db.session.commit()
    (reply,) = [mail for mail in deliver(app, sink) if "We are on it." in text_of(mail)]
    assert reply["In-Reply-To"] == "<ann-1@client.example>"
    assert "note-77" not in str(reply["References"])


def forged(genuine: str, how: str, app: Flask) -> str:
    ticket_id, row_id = (int(part) for part in MESSAGE_ID.match(genuine).groups())  # type: ignore[union-attr]
    if how == "wrong mac":
        return re.sub(r"\.[0-9a-f]{24}@", "." + "0" * 24 + "@", genuine)
    if how == "other secret":
        other = Signer(b"not the helpdesk's key", "helpdesk.helpdesk.test")
        return f"<{other.make(ticket_id, row_id, 'ann@example.com')}>"
    if how == "mac of another recipient":
        signer = Signer.from_config(app.config)
        return f"<{signer.make(ticket_id, row_id, 'mallory@example.com')}>"
    assert how == "unknown row"
    signer = Signer.from_config(app.config)
    return f"<{signer.make(ticket_id, row_id + 1000, 'ann@example.com')}>"


@pytest.mark.parametrize("how", ["wrong mac", "other secret", "mac of another recipient", "unknown row"])
def test_forged_message_id_does_not_thread(app, gateway, senders, sink, how):
    gateway.send(message(subject="Printer on fire"))
    (ack,) = deliver(app, sink)
    fake = forged(ack["Message-ID"], how, app)
    assert fake != ack["Message-ID"]
    code, text = gateway.send(message(subject="Thanks", body="More.", in_reply_to=fake))
    assert (code, text) == (250, b"2.0.0 OK created TKT-000002")
    first = db.session.execute(select(Ticket).where(Ticket.number == 1)).scalar_one()
    assert message_count(first) == 1


# -- customers' Message-IDs in our threading headers -----------------------------------

# Outlook's ids run past a 78-character line; other clients' longer still.
OUTLOOK_ID = "AS8PR10MB7427D1B5C9A4F3E2C1B0A9F8E7D6C5B4A3F2E1@AS8PR10MB7427.EURPRD10.PROD.OUTLOOK.COM"
LONGER_ID = "CAK" + "7q9fZ3xWm2LpT8vR4nB6yH1cJ5dG0sE" * 5 + "+x=Y@mail.gmail.com"


def sent_field(data: bytes, name: str) -> list[bytes]:
    """The lines of a header field as it was sent, folds and all."""
    head = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    start = next(i for i, line in enumerate(head) if line.lower().startswith(name.lower().encode() + b":"))
    end = next((i for i in range(start + 1, len(head)) if head[i][:1] not in (b" ", b"\t")), len(head))
    return head[start:end]


def test_long_message_ids_are_written_as_they_came_folded_only_between_ids(
    app, gateway, senders, sink, service, agent_actor
):
    """The email package holds In-Reply-To and References as text and wrote an id
    longer than a line as RFC 2047 encoded words, which no mail client threads on.
    Each id must stay whole on one line; a fold may only come between two ids."""
    gateway.send(message(message_id=f"<{OUTLOOK_ID}>"))
    (ack,) = deliver(app, sink)
    answer = message(subject="Re: it", in_reply_to=ack["Message-ID"], message_id=f"<{LONGER_ID}>")
    assert gateway.send(answer) == (250, b"2.0.0 OK appended TKT-000001")
    (ticket,) = db.session.execute(select(Ticket)).scalars()
    service.add_message(ticket, body="On our way.", actor=agent_actor, channel="web")
    db.session.commit()
    deliver(app, sink)
    ack_data, reply_data = sink.received[0].data, sink.received[-1].data
    assert sent_field(ack_data, "In-Reply-To") == [f"In-Reply-To: <{OUTLOOK_ID}>".encode()]
    assert sent_field(reply_data, "In-Reply-To") == [f"In-Reply-To: <{LONGER_ID}>".encode()]
    ids = [f"<{OUTLOOK_ID}>", ack["Message-ID"], f"<{LONGER_ID}>"]
    lines = sent_field(reply_data, "References")
    assert b" ".join(line.strip() for line in lines) == ("References: " + " ".join(ids)).encode()
    for line in lines:  # whole ids only, each line as short as they allow
        assert re.fullmatch(rb"(References:)? <[^<>\s]+>( <[^<>\s]+>)*", line), line
        assert len(line) <= 78 or line.count(b"<") == 1
    assert b"=?" not in reply_data.split(b"\r\n\r\n", 1)[0]


def test_a_message_id_reading_as_an_encoded_word_adds_no_header_lines_to_our_mail(
    app, gateway, senders, sink, service, agent_actor
):
    """A customer's Message-ID sent double-encoded is stored as encoded-word text; the
    email package decoded it into our In-Reply-To, and its line breaks became header
    lines (here of the copy staff's answer sends another participant). It is
    written as no header now, and is no msg-id either: it is left out."""
    hostile = "=?utf-8?q?x=0D=0AX-Injected:_yes=0D=0A=0D=0AForged_body?=@evil.example"
    encoded = base64.b64encode(f"<{hostile}>".encode()).decode()
    mail = message(cc="Bob <bob@example.com>")
    del mail["Message-ID"]
    raw = f"Message-ID: =?utf-8?b?{encoded}?=\r\n".encode() + mail.as_bytes(policy=SMTP_POLICY)
    assert gateway.send(raw, mail_from="ann@example.com")[0] == 250
    assert last_inbound().message_id == hostile
    (ticket,) = db.session.execute(select(Ticket)).scalars()
    service.add_message(ticket, body="On our way.", actor=agent_actor, channel="web")
    db.session.commit()
    for mail in deliver(app, sink):
        assert mail["X-Injected"] is None
        assert "Forged body" not in text_of(mail)
    for received in sink.received:  # no msg-id, and an encoded word: left out
        assert hostile.encode() not in received.data


@pytest.mark.parametrize("stored", ["ñandú@client.example", "x" * 980 + "@client.example"])
def test_an_id_seven_bit_mail_cannot_carry_is_left_out_and_the_mail_still_goes(
    app, gateway, senders, sink, service, agent_actor, stored
):
    """An id with non-ASCII characters (mail with 8-bit headers) or longer than a line
    threads nowhere in the mail we send; leaving it out keeps the rest of the mail."""
    gateway.send(message(message_id="<first@client.example>"))
    db.session.execute(update(InboundMail).values(message_id=stored))
    db.session.commit()
    (ticket,) = db.session.execute(select(Ticket)).scalars()
    service.add_message(ticket, body="On our way.", actor=agent_actor, channel="web")
    db.session.commit()
    ack, reply = deliver(app, sink)
    assert [row.state for row in outbox()] == ["sent", "sent"]
    for mail in (ack, reply):
        assert mail["In-Reply-To"] is None and mail["References"] is None


@pytest.mark.parametrize(
    ("stored", "kept"),
    [
        ("=?utf-8?q?caf=C3=A9?=@client.example", False),  # an encoded word: readers decode it
        ("=?utf-8?q?a=0D=0AX-Injected=3A_yes?=@client.example", False),
        ("a:b@client.example", False),  # no msg-id (RFC 5322 §3.6.4): `:` is no atext
        ("a@b@client.example", False),
        ('a"b@client.example', False),
        ("no-at-sign.client.example", False),
        ("CAF=x+y_z-1.2~{a}@mail.gmail.com", True),
        ("12.34@[192.0.2.1]", True),
    ],
)
def test_a_customer_id_is_copied_into_our_threading_only_when_it_is_a_msg_id(
    app, gateway, senders, sink, stored, kept
):
    """A customer's Message-ID is copied into our In-Reply-To and References as it
    came, so it must be one: `<id-left@id-right>` of RFC 5322's characters, and no
    encoded word (RFC 2047 allows none there; a reader that decodes one found a
    line break or a character beyond ASCII in our header). Any printable ASCII was
    copied, encoded words and all."""
    gateway.send(message(message_id="<first@client.example>"))
    db.session.execute(update(InboundMail).values(message_id=stored))
    db.session.commit()
    (ack,) = deliver(app, sink)
    assert outbox()[0].state == "sent"
    assert ack["In-Reply-To"] == (f"<{stored}>" if kept else None)
    assert (b"=?" in sink.received[0].data.split(b"\r\n\r\n", 1)[0]) is False


# -- delivery: outage, backoff, permanent failure, crash ------------------------------


def test_relay_down_rows_are_retried_with_backoff_then_each_delivered_once(app, service, sink):
    for n in range(3):
        open_ticket(service, requester_email=f"c{n}@example.com")
    sink.stop()
    clock = Clock()
    sender = make_sender(app, sink, clock)
    started = clock()
    assert run(sender) == 3
    rows = outbox()
    assert {(r.state, r.attempts) for r in rows} == {("pending", 1)}
    assert all("cannot connect" in r.last_error for r in rows)
    assert {r.next_attempt_at - started for r in rows} == {timedelta(minutes=1)}

    clock.advance(seconds=59)
    assert run(sender) == 0  # not due yet
    clock.advance(seconds=1)
    assert run(sender) == 3  # second attempt, still down
    assert {r.next_attempt_at - clock() for r in outbox()} == {timedelta(minutes=2)}
    clock.advance(minutes=2)
    assert run(sender) == 3
    assert {r.next_attempt_at - clock() for r in outbox()} == {timedelta(minutes=4)}

    sink.start()
    clock.advance(minutes=4)
    assert run(sender) == 3
    assert {(r.state, r.attempts) for r in outbox()} == {("sent", 4)}
    assert sorted(sink.message_ids().values()) == [1, 1, 1]
    clock.advance(hours=5)
    assert run(sender) == 0
    assert len(sink.received) == 3


def test_backoff_is_capped_and_gives_up_after_the_configured_age(app, service, sink):
    open_ticket(service)
    sink.stop()
    clock = Clock()
    sender = make_sender(
        app,
        sink,
        clock,
        OUTBOUND_RETRY_MAX=timedelta(minutes=5),
        OUTBOUND_GIVE_UP_AFTER=timedelta(minutes=30),
    )
    delays = []
    while outbox()[0].state == "pending":
        due = outbox()[0].next_attempt_at
        clock.moment = max(clock.moment, due)
        run(sender)
        row = outbox()[0]
        delays.append(row.next_attempt_at - clock() if row.state == "pending" else None)
    assert delays[:4] == [timedelta(minutes=m) for m in (1, 2, 4, 5)]
    assert delays[-1] is None
    row = outbox()[0]
    assert row.state == "failed" and row.last_error.startswith(f"gave up after {row.attempts}")


def test_a_given_up_row_retried_by_the_operator_gets_its_backoff_again(app, service, sink):
    """`flask outbox retry` set a given-up row pending and kept its age and attempts,
    so the first 4xx after it (the relay still warming up) failed it for good at
    once, with no backoff, and the Mail page counted it backed up for days. A retry
    starts the row's clock again: it is as old as the retry, and backs off from the
    first delay."""
    open_ticket(service)
    sink.stop()
    clock = Clock()
    config = {"OUTBOUND_RETRY_MAX": timedelta(minutes=5), "OUTBOUND_GIVE_UP_AFTER": timedelta(minutes=30)}
    sender = make_sender(app, sink, clock, **config)
    while outbox()[0].state == "pending":
        clock.moment = max(clock.moment, outbox()[0].next_attempt_at)
        run(sender)
    row = outbox()[0]
    assert row.state == "failed"
    row.created_at -= timedelta(hours=1)  # the test's clock moved, the database's did not
    db.session.commit()
    notifications.retry(db.session, row.id)
    db.session.commit()
    assert not mail_flow(
        db.session, stuck_after=timedelta(hours=1), backlog_after=timedelta(minutes=30)
    ).outbox_backed_up
    assert run(make_sender(app, sink, None, **config)) == 1  # the database's clock, as the retry's stamp
    row = outbox()[0]
    assert (row.state, row.attempts) == ("pending", 1), row.last_error
    assert timedelta(seconds=50) < row.next_attempt_at - row.claimed_at < timedelta(seconds=70)


def test_sender_loop_rides_out_a_relay_outage(app, service, sink):
    """The real loop in its thread: the relay is down, comes back, all arrive once."""
    for n in range(4):
        open_ticket(service, requester_email=f"c{n}@example.com")
    db.session.rollback()
    sink.stop()
    app.config.update(
        OUTBOUND_SMTP_URL=sink.url,
        OUTBOUND_POLL_SECONDS=0.05,
        OUTBOUND_RETRY_FIRST=timedelta(seconds=0.2),
        OUTBOUND_RETRY_MAX=timedelta(seconds=0.5),
    )
    stopping = threading.Event()
    thread = threading.Thread(target=Sender(app, stopping).run)
    thread.start()
    try:
        wait_until(
            lambda: min(row.attempts for row in outbox()) >= 3, timeout=20, between=db.session.rollback
        )  # never hold SQLite's write lock while waiting
        sink.start()
        sink.wait_for(4)
    finally:
        stopping.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
    db.session.rollback()
    assert {row.state for row in outbox()} == {"sent"}
    assert sorted(sink.message_ids().values()) == [1, 1, 1, 1]


@pytest.mark.parametrize("stage", ["rcpt", "data"])
def test_permanent_failure_stops_retries_and_is_shown(app, service, sink, runner, stage):
    open_ticket(service, requester_email="gone@example.com")
    open_ticket(service, requester_email="ann@example.com")
    if stage == "rcpt":
        sink.refuse_rcpt["gone@example.com"] = "550 5.1.1 <gone@example.com>: User unknown"
    clock = Clock()
    sender = make_sender(app, sink, clock)
    if stage == "data":
        sink.data_reply = "554 5.6.0 Message rejected"
        run(sender)
        sink.data_reply = None
    else:
        run(sender)
    gone, ann = outbox()
    assert (gone.state, gone.attempts) == ("failed", 1)
    expected = "550 5.1.1 <gone@example.com>: User unknown" if stage == "rcpt" else "554 5.6.0"
    assert gone.last_error.startswith(expected)
    assert ann.state == ("sent" if stage == "rcpt" else "failed")
    received = len(sink.received)
    clock.advance(days=1)
    assert run(sender) == 0
    assert len(sink.received) == received
    listing = runner.invoke(args=["outbox", "list", "--state", "failed"])
    assert listing.exit_code == 0
    assert "gone@example.com" in listing.output and expected in listing.output


@pytest.mark.parametrize(
    ("reply", "undeliverable"),
    [
        ("550 5.1.1 <gone@example.com>: Recipient address rejected: User unknown", True),
        ("550 5.1.2 Host unknown", True),
        ("550 5.1.10 Recipient address has null MX", True),
        ("550 5.7.1 Relaying denied", False),  # about us, not the mailbox
        ("553 5.1.8 Sender address rejected: Domain not found", False),  # our sender's
        ("550 User unknown", False),  # no enhanced code: nothing proven
    ],
)
def test_a_bad_mailbox_refused_at_rcpt_marks_the_address_undeliverable(
    app, service, agent_actor, sink, reply, undeliverable
):
    """A 5.1.x refusal at RCPT is a bounce that comes at once: the address is marked
    like after a bounce, and the ticket's next notices are not tried again."""
    sink.refuse_rcpt["gone@example.com"] = reply
    ticket = open_ticket(service, agent_actor, requester_email="gone@example.com")
    deliver(app, sink)
    service.add_message(ticket, body="Update", actor=agent_actor, channel="web")
    db.session.commit()
    deliver(app, sink)
    first, second = outbox()
    assert first.state == "failed" and first.last_error.startswith(reply)
    gone = db.session.execute(select(Contact).where(Contact.email == "gone@example.com")).scalar_one()
    assert (gone.undeliverable_since is not None) is undeliverable
    assert second.state == ("skipped" if undeliverable else "failed")


def test_temporary_refusal_is_retried(app, service, sink):
    open_ticket(service)
    sink.refuse_rcpt["ann@example.com"] = "450 4.2.1 Mailbox busy, try later"
    clock = Clock()
    sender = make_sender(app, sink, clock)
    run(sender)
    (row,) = outbox()
    assert (row.state, row.last_error) == ("pending", "450 4.2.1 Mailbox busy, try later")
    del sink.refuse_rcpt["ann@example.com"]
    clock.advance(minutes=1)
    run(sender)
    assert outbox()[0].state == "sent"
    assert len(sink.received) == 1


def test_a_retry_late_in_a_slow_batch_waits_its_backoff_from_the_failure(app, service, sink, monkeypatch):
    """A relay takes 3 minutes over the first mail of a batch (a batch may be held
    for half of OUTBOUND_LEASE) and greylists the second. Its retry was due a minute
    after the batch's claim, so due at once: while a relay was slow the backoff
    vanished. It waits its minute from the failure, by the sender's clock."""
    open_ticket(service, requester_email="ann@example.com")
    open_ticket(service, requester_email="bob@example.com")
    sink.refuse_rcpt["bob@example.com"] = "451 4.7.1 Greylisted, try again later"
    clock = Clock()
    handler = sink.controller.handler
    take = handler.handle_DATA

    async def slowly(server, session, envelope):  # type: ignore[no-untyped-def]
        clock.advance(minutes=3)
        return await take(server, session, envelope)

    monkeypatch.setattr(handler, "handle_DATA", slowly)
    sender = make_sender(app, sink, clock)
    claimed_at = clock()
    assert run(sender) == 2
    ann, bob = outbox()
    assert (ann.state, bob.state) == ("sent", "pending")
    assert bob.next_attempt_at == claimed_at + timedelta(minutes=4)
    assert run(sender) == 0, "a retry was due at once: no backoff"
    clock.advance(minutes=1)
    assert run(sender) == 1


@pytest.mark.parametrize("at", ["greeting", "data"])
def test_a_relay_that_never_finishes_answering_is_cut_while_the_claim_is_ours(app, service, at):
    """A relay (or something posing as one) answers one continuation line at a time,
    each within OUTBOUND_TIMEOUT_SECONDS, and never a last line: the timeout is per
    read, so the sender waited for ever, its row stayed `sending`, and once the lease
    ran out another sender sent it again while this one could still get its 250.
    The connection is cut at three quarters of the lease and the row waits for a
    retry, marked by the claim that is still ours."""
    open_ticket(service)
    with DrippingRelay(at=at) as relay:
        app.config.update(
            OUTBOUND_SMTP_URL=relay.url, OUTBOUND_LEASE=timedelta(seconds=2), OUTBOUND_TIMEOUT_SECONDS=1
        )
        sender = Sender(app)
        db.session.rollback()
        thread = threading.Thread(target=sender.run_once, daemon=True)
        thread.start()
        thread.join(timeout=8)
        assert not thread.is_alive(), "the sender still waits for the relay's last line"
        assert relay.mails_taken == (1 if at == "data" else 0)
    db.session.expire_all()
    (row,) = outbox()
    assert (row.state, row.attempts) == ("pending", 1)
    assert "cut: the relay had not finished answering" in row.last_error, row.last_error


def test_a_cut_due_before_the_connection_exists_comes_as_soon_as_it_does(app, service):
    """The cut can come due while the connection is still opening (a slow connect
    or TLS handshake, a claim that took long): it used to find no socket, give up
    for good, and a relay dripping its greeting then held the row past its lease."""
    open_ticket(service)
    with DrippingRelay(at="greeting") as relay:
        app.config.update(
            OUTBOUND_SMTP_URL=relay.url, OUTBOUND_LEASE=timedelta(seconds=2), OUTBOUND_TIMEOUT_SECONDS=1
        )
        sender = Sender(app)
        db.session.rollback()

        def deliver_late() -> None:
            with app.app_context():
                _, outgoing = sender.claim()
                sender.deliver(outgoing, time.monotonic() - 2)  # claimed a whole lease ago
                db.session.remove()

        thread = threading.Thread(target=deliver_late, daemon=True)
        thread.start()
        thread.join(timeout=8)
        assert not thread.is_alive(), "the sender still reads the relay's greeting"
    db.session.expire_all()
    (row,) = outbox()
    assert row.state == "pending" and "cut: the relay had not finished" in row.last_error, row.last_error


def test_a_cut_due_before_a_connection_that_fails_leaves_its_own_error(app, service):
    """A cut that came due before any socket existed cut nothing: a refused
    connection was recorded as a dripping relay, sending operators the wrong way
    (found by the second review of the fixes)."""
    open_ticket(service)
    app.config.update(
        OUTBOUND_SMTP_URL=f"smtp://127.0.0.1:{free_port()}",  # nobody listens
        OUTBOUND_LEASE=timedelta(seconds=2),
    )
    sender = Sender(app)
    db.session.rollback()
    with app.app_context():
        _, outgoing = sender.claim()
        sender.deliver(outgoing, time.monotonic() - 2)
        db.session.remove()
    db.session.expire_all()
    (row,) = outbox()
    assert row.state == "pending" and "ConnectionRefusedError" in row.last_error, row.last_error


def test_failed_row_can_be_retried_by_an_operator(app, service, sink, runner):
    open_ticket(service)
    sink.refuse_rcpt["ann@example.com"] = "550 5.7.1 Relaying denied"
    deliver(app, sink)
    assert outbox()[0].state == "failed"
    del sink.refuse_rcpt["ann@example.com"]
    result = runner.invoke(args=["outbox", "retry", str(outbox()[0].id)])
    assert result.exit_code == 0, result.output
    assert len(deliver(app, sink)) == 1
    assert outbox()[0].state == "sent"
    again = runner.invoke(args=["outbox", "retry", str(outbox()[0].id)])
    assert again.exit_code == 1 and "only failed or skipped" in again.output


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_batchs_files_are_encoded_one_mail_at_a_time_after_the_claim(
    app, service, agent_actor, sink, database_url, monkeypatch
):
    """The claim built every mail of its batch, files and all, in its transaction: on
    SQLite that holds the database's one write lock, and a reply with 20 MiB of files
    to 20 recipients kept the portal, the API and the listener waiting ~30 s (then
    failing), while the batch's 550 MiB were held at once. A mail's files are read
    and encoded just before it is sent, after the claim: writers get in meanwhile,
    and one mail's bytes are held at a time."""
    ticket = open_ticket(service, cc=[("bob@example.com", "Bob")])
    deliver(app, sink)  # the acknowledgment
    files = [NewAttachment("log.txt", "text/plain", b"line\n" * 10)]
    service.add_message(ticket, body="See attached.", actor=agent_actor, channel="web", attachments=files)
    db.session.commit()
    sink.received.clear()
    other = create_engine(database_url, connect_args={"timeout": 1})  # another process's writer
    encoded: list[tuple[int, str]] = []
    add_attachment = EmailMessage.add_attachment

    def encode_while_someone_writes(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            with other.begin() as connection:
                connection.execute(update(Ticket).values(priority=Ticket.priority))
            wrote = "wrote"
        except OperationalError as exc:
            wrote = str(exc.orig)
        encoded.append((len(sink.received), wrote))  # how many mails went before this one's files
        return add_attachment(self, *args, **kwargs)

    monkeypatch.setattr(EmailMessage, "add_attachment", encode_while_someone_writes)
    try:
        assert run(make_sender(app, sink)) == 2
    finally:
        other.dispose()
    assert encoded == [(0, "wrote"), (1, "wrote")]
    assert [[part.get_content() for part in mail.iter_attachments()] for mail in sink.messages] == [
        ["line\n" * 10]
    ] * 2
    assert {row.state for row in outbox()} == {"sent"}


def test_a_batch_carries_a_bounded_amount_of_files_and_at_least_one_mail(
    app, service, agent_actor, sink, monkeypatch
):
    """Each recipient of a reply gets a copy of its files: a batch stops taking rows
    once their files pass a bound (its first row goes whatever its size); the rest
    are claimed by the next round."""
    ticket = open_ticket(service, cc=[("bob@example.com", "Bob"), ("cat@example.com", "Cat")])
    deliver(app, sink)  # the acknowledgment
    files = [NewAttachment("log.txt", "text/plain", b"x" * 100)]
    service.add_message(ticket, body="See attached.", actor=agent_actor, channel="web", attachments=files)
    db.session.commit()
    monkeypatch.setattr("mailgateway.outbound._BATCH_FILE_BYTES", 250)
    sender = make_sender(app, sink)
    assert [run(sender), run(sender), run(sender)] == [2, 1, 0]
    monkeypatch.setattr("mailgateway.outbound._BATCH_FILE_BYTES", 50)
    service.add_message(ticket, body="And again.", actor=agent_actor, channel="web", attachments=files)
    db.session.commit()
    assert [run(sender), run(sender), run(sender), run(sender)] == [1, 1, 1, 0]
    assert len(sink.received) == 7 and {row.state for row in outbox()} == {"sent"}


def test_a_mail_whose_files_cannot_be_written_fails_alone_with_the_reason(
    app, service, agent_actor, sink, monkeypatch
):
    """Files are attached after the claim now; a mail the email package cannot write
    then still fails for good with the reason, as a row that cannot render does, and
    the rest of the batch goes."""
    ticket = open_ticket(service)
    deliver(app, sink)  # the acknowledgment
    files = [NewAttachment("log.txt", "text/plain", b"x" * 100)]
    service.add_message(ticket, body="See attached.", actor=agent_actor, channel="web", attachments=files)
    service.change_status(ticket, "open", actor=agent_actor, reason="Looking into it.")
    db.session.commit()

    def refuse(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise ValueError("no such file type")

    monkeypatch.setattr(EmailMessage, "add_attachment", refuse)
    sink.received.clear()
    assert run(make_sender(app, sink)) == 2
    _ack, reply, status = outbox()
    assert (reply.state, reply.last_error) == ("failed", "cannot render: ValueError: no such file type")
    assert status.state == "sent" and [mail["Message-ID"] for mail in sink.messages] == [
        f"<{status.message_id}>"
    ]


class Crash(BaseException):
    """Stands for the process dying: nothing after it runs."""


def test_crash_between_250_and_mark_resends_only_that_mail(app, service, sink):
    for n in range(3):
        open_ticket(service, requester_email=f"c{n}@example.com")
    clock = Clock()

    class CrashingSender(Sender):
        def _mark(self, item, outcome, **values):  # type: ignore[no-untyped-def]
            if outcome == "sent" and not getattr(self, "crashed", False):
                self.crashed = True
                raise Crash
            super()._mark(item, outcome, **values)

    app.config.update(OUTBOUND_SMTP_URL=sink.url)
    db.session.rollback()
    with pytest.raises(Crash):
        CrashingSender(app, clock=clock).run_once()
    assert len(sink.received) == 1
    db.session.expire_all()
    assert {row.state for row in outbox()} == {"sending"}

    sender = make_sender(app, sink, clock)
    clock.advance(minutes=9)
    assert run(sender) == 0  # the lease (10 minutes) still holds
    clock.advance(minutes=2)
    assert [run(sender) for _ in range(4)] == [1, 1, 1, 0]  # each claimed again alone
    assert {row.state for row in outbox()} == {"sent"}
    counts = sink.message_ids()
    first = f"<{outbox()[0].message_id}>"
    assert counts[first] == 2  # at least once: that one mail, twice
    assert sorted(counts.values()) == [1, 1, 2]  # the others exactly once
    assert len({str(m["Message-ID"]) for m in sink.messages}) == 3


def test_a_row_whose_sender_keeps_dying_is_given_up_like_any_other(app, service, sink):
    """Giving up was decided only after a failed attempt, so a row whose sending
    killed its sender every time (or a host restarted in a loop) was claimed again
    after every lease, for ever, and sent again each time the crash came after the
    relay's 250. A row claimed again after its lease is given up once it is older
    than OUTBOUND_GIVE_UP_AFTER, as a failing one is; a younger one is sent."""
    old = open_ticket(service, requester_email="old@example.com")
    young = open_ticket(service, requester_email="young@example.com")
    clock = Clock()

    class DyingSender(Sender):
        def deliver(self, batch, claimed):  # type: ignore[no-untyped-def]
            raise Crash

    app.config.update(OUTBOUND_SMTP_URL=sink.url)
    db.session.rollback()
    with pytest.raises(Crash):
        DyingSender(app, clock=clock).run_once()
    row = db.session.execute(select(OutboxMessage).where(OutboxMessage.ticket_id == old.id)).scalar_one()
    row.created_at -= timedelta(days=3)
    db.session.commit()
    clock.advance(minutes=11)
    sender = make_sender(app, sink, clock)
    assert [run(sender) for _ in range(3)] == [1, 1, 0]  # each claimed again alone
    db.session.expire_all()
    rows = {row.ticket_id: row for row in outbox()}
    assert (rows[old.id].state, rows[young.id].state) == ("failed", "sent")
    assert rows[old.id].last_error == "gave up: its sender stopped while sending it (attempts: 1)"
    assert [m["To"].addresses[0].addr_spec for m in sink.messages] == ["young@example.com"]


def test_a_mail_whose_sending_kills_its_sender_takes_no_other_mail_down_with_it(app, service, sink):
    """A sender that dies while sending one mail (the gateway killed by the host for
    the memory a mail with 20 MiB of files takes, a crash in the TLS library) leaves
    its whole batch `sending`. Claimed again as a batch after each lease, in the
    same order, the mail that kills it came first every time, so the rest of its
    batch was never sent and was given up with it after OUTBOUND_GIVE_UP_AFTER. A
    row claimed again after its lease is claimed alone, the one claimed longest ago
    first: the others go one lease late, the deadly one alone is tried again and
    given up."""
    for address in ("deadly@example.com", "ann@example.com", "bob@example.com"):
        open_ticket(service, requester_email=address)
    clock = Clock()
    app.config.update(OUTBOUND_SMTP_URL=sink.url, OUTBOUND_GIVE_UP_AFTER=timedelta(hours=1))

    class DyingSender(Sender):
        def _data(self, item):  # type: ignore[no-untyped-def]
            if item.to_address == "deadly@example.com":
                raise Crash  # the process dies here, every time
            return super()._data(item)

    def life() -> None:
        """One gateway process: rounds until nothing is due, or the deadly mail kills it."""
        sender = DyingSender(app, clock=clock)
        db.session.rollback()
        try:
            while sender.run_once():
                pass
        except Crash:
            pass

    for _ in range(8):  # restarted after each death, for 88 minutes
        life()
        clock.advance(minutes=11)
    db.session.expire_all()
    states = {row.to_address: (row.state, row.last_error) for row in outbox()}
    assert states == {
        "deadly@example.com": ("failed", states["deadly@example.com"][1]),
        "ann@example.com": ("sent", ""),
        "bob@example.com": ("sent", ""),
    }
    assert states["deadly@example.com"][1].startswith("gave up: its sender stopped while sending it")
    assert sorted(sink.message_ids().values()) == [1, 1]


# -- loops: auto-replies, bounces, machine and own addresses, rate limits -----------------


def test_auto_reply_to_a_notification_creates_nothing_and_sends_nothing(app, gateway, senders, sink):
    gateway.send(message(subject="Printer on fire"))
    (ack,) = deliver(app, sink)
    out_of_office = message(
        subject=f"Automatic reply: {ack['Subject']}",
        body="I am on holiday until Monday.",
        in_reply_to=ack["Message-ID"],
        headers={"Auto-Submitted": "auto-replied"},
    )
    code, text = gateway.send(out_of_office, rcpt=[ack["Reply-To"]])
    assert (code, text) == (250, b"2.0.0 OK ignored")
    assert last_inbound().reason == "auto-submitted: auto-replied"
    (ticket,) = db.session.execute(select(Ticket)).scalars()
    assert message_count(ticket) == 1
    assert len(outbox()) == 1
    assert len(deliver(app, sink)) == 1


def test_our_own_mail_coming_back_is_ignored(app, gateway, senders, sink):
    gateway.send(message(subject="Printer on fire"))
    (ack,) = deliver(app, sink)
    code, text = gateway.send(sink.received[0].data, mail_from="forwarder@example.com")
    assert (code, text) == (250, b"2.0.0 OK ignored")
    assert last_inbound().reason == "own address"
    # A forwarder that rewrites From and Message-ID still keeps our X-Loop.
    rewritten = ack
    rewritten.replace_header("From", "ann@example.com")
    rewritten.replace_header("Message-ID", "<fwd-1@example.com>")
    code, text = gateway.send(rewritten, mail_from="ann@example.com")
    assert (code, text) == (250, b"2.0.0 OK ignored")
    assert last_inbound().reason == "x-loop: own address"
    assert len(outbox()) == 1


def corpus_bounce(
    original_message_id: str, recipient: str, action: str = "failed", return_path: str | None = None
) -> bytes:
    """A real MailSite DSN from the shared corpus, rewritten to report on our mail;
    addressed (Delivered-To, To) to `return_path` as the reporting server addresses
    it to the envelope sender, when given."""
    raw = (CORPUS / "mail-parser__tests_mails_mail_malformed_2").read_bytes()
    if return_path is not None:
        raw = raw.replace(b"To: tanya@infospacemail.com", f"To: {return_path}".encode())
    raw = raw.replace(b"<004801d1fc84$01c934ac$b247f0b7$@infospacemail.com>", original_message_id.encode())
    raw = raw.replace(b"abh@netpar.com.br", recipient.encode())
    return raw.replace(b"Action: failed", f"Action: {action}".encode())


def test_bounce_of_a_notification_marks_the_address_undeliverable(
    app, gateway, senders, sink, service, agent_actor
):
    """Ann's server reports the acknowledgment failed, to the address it came from (the
    row's return path, as a real MTA does): the row is bounced and Ann undeliverable."""
    gateway.send(message(subject="Printer on fire"))
    (ack,) = deliver(app, sink)
    return_path = sink.received[0].mail_from
    bounce = corpus_bounce(ack["Message-ID"], "ann@example.com", return_path=return_path)
    code, text = gateway.send(bounce, mail_from="", rcpt=[return_path])
    assert (code, text) == (250, b"2.0.0 OK ignored")
    assert "bounce of outbox #1 to ann@example.com" in last_inbound().reason
    assert last_inbound().recipients == return_path
    (row,) = outbox()
    assert row.state == "bounced" and row.bounced_at is not None
    assert "reported by inbound mail" in row.last_error
    ann = db.session.execute(select(Contact).where(Contact.email == "ann@example.com")).scalar_one()
    assert ann.undeliverable_since is not None
    assert len(db.session.execute(select(Ticket)).all()) == 1

    ticket = db.session.execute(select(Ticket)).scalar_one()
    service.add_message(ticket, body="Did it work?", actor=agent_actor, channel="web")
    db.session.commit()
    assert len(deliver(app, sink)) == 1  # nothing new: the address bounced
    skipped = outbox()[-1]
    assert skipped.state == "skipped" and "undeliverable since" in skipped.last_error

    gateway.send(message(subject="Re: [TKT-000001] Printer on fire", body="I am back."))
    db.session.expire_all()
    assert db.session.get(Contact, ann.id).undeliverable_since is None  # she wrote again
    service.add_message(ticket, body="Welcome back.", actor=agent_actor, channel="web")
    db.session.commit()
    assert len(deliver(app, sink)) == 2


def test_only_mail_from_a_bounced_address_clears_its_mark(app, client, senders, sink):
    """docs/outbound-mail.md: mail from the address itself proves it works again. A
    chat, an assistant or a workflow naming the address proves nothing (a typo stays
    a typo): they cleared the mark too, and the next acknowledgment went to it."""
    ann = contacts.mark_undeliverable(db.session, "ann@example.com")
    tokens = {kind: IntegrationsService(db.session).add(kind, kind)[1] for kind in ("chat", "assistant")}
    db.session.commit()

    def post(kind: str, path: str, body: dict[str, object]) -> Any:
        response = client.post(
            f"/api/v1/{path}", json=body, headers={"Authorization": f"Bearer {tokens[kind]}"}
        )
        assert response.status_code in (200, 201), response.get_json()
        return response.get_json()

    customer = {"email": "ann@example.com"}
    post("chat", "chat/tickets", {"conversation_id": "c1", "customer": customer, "transcript": "Hi"})
    answer = post(
        "assistant",
        "assistant/tool-calls",
        {
            "customer": customer,
            "channel": "chat",
            "tool_calls": [
                {
                    "id": f"c{n}",
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(arguments)},
                }
                for n, (name, arguments) in enumerate(
                    [
                        ("create_ticket_report", {"title": "No line", "description": "."}),
                        ("add_ticket_comment", {"ticketId": "TKT-000001", "text": "Still down."}),
                    ]
                )
            ],
        },
    )
    assert [json.loads(output["output"])["success"] for output in answer["tool_outputs"]] == [True, True]
    open_workflow_ticket(
        db.session, app.config, title="Visit", description=".", customer_email="ann@example.com"
    )
    db.session.commit()
    assert db.session.get(Contact, ann.id).undeliverable_since is not None
    assert len(db.session.execute(select(Message)).all()) == 4  # three tickets and the comment
    assert deliver(app, sink) == []  # the acknowledgments skipped: the address bounced

    envelope = Envelope("ann@example.com", ("support@helpdesk.test",), "smtp")
    assert (
        ingest(message(subject="Re: [TKT-000001]").as_bytes(), envelope, app.config).outcome
        is Outcome.APPENDED
    )
    db.session.commit()
    assert db.session.get(Contact, ann.id).undeliverable_since is None  # she wrote


def _ann_and_bob_get_a_reply(app, gateway, sink, service, agent_actor) -> Ticket:  # type: ignore[no-untyped-def]
    """Ann writes with Bob in Cc and staff answer: each gets a copy of their own,
    with its own signed Message-ID and return path."""
    gateway.send(message(sender="Ann <ann@example.com>", cc="Bob <bob@corp.example>"))
    deliver(app, sink)
    ticket = db.session.execute(select(Ticket)).scalar_one()
    service.add_message(ticket, body="We are on it.", actor=agent_actor, channel="web")
    db.session.commit()
    deliver(app, sink)
    return ticket


def test_participant_cannot_silence_another_with_a_forged_bounce(
    app, gateway, senders, sink, service, agent_actor
):
    """Bob's reply-all hands Ann the signed Message-ID of Bob's copy (in its
    In-Reply-To and References). A "bounce" Ann writes naming it, from her own
    server, must not mark Bob undeliverable: the Message-ID proves nothing about
    who sends it (docs/security.md, "Bounces")."""
    ticket = _ann_and_bob_get_a_reply(app, gateway, sink, service, agent_actor)
    bobs_copy = next(r.message for r in sink.received if r.rcpt_tos == ["bob@corp.example"])
    bobs_reply = message(
        sender="bob@corp.example",
        to=str(bobs_copy["Reply-To"]),
        cc="ann@example.com",
        subject=f"Re: {bobs_copy['Subject']}",
        in_reply_to=str(bobs_copy["Message-ID"]),
        references=str(bobs_copy["Message-ID"]),
    )
    assert gateway.send(bobs_reply) == (250, b"2.0.0 OK appended TKT-000001")
    leaked = str(bobs_reply["In-Reply-To"])  # what Ann reads in the copy Bob sent her

    forged_bounce = message(
        sender="Mail Delivery System <MAILER-DAEMON@example.com>",
        subject="Undelivered Mail Returned to Sender",
        body=f"User unknown.\n\nMessage-ID: {leaked}\n",
        in_reply_to=leaked,
        references=leaked,
    )
    for mail_from in ("ann@example.com", ""):
        forged_bounce.replace_header("Message-ID", f"<forged-{mail_from or 'null'}@example.com>")
        assert gateway.send(forged_bounce, mail_from=mail_from) == (250, b"2.0.0 OK ignored")
        assert "bounce of" not in last_inbound().reason
    assert db.session.execute(select(Contact.undeliverable_since)).scalars().all() == [None, None]
    assert "bounced" not in {row.state for row in outbox()}

    sink.received.clear()
    service.add_message(ticket, body="Fixed, Bob please confirm.", actor=agent_actor, channel="web")
    db.session.commit()
    deliver(app, sink)
    assert sorted(r.rcpt_tos[0] for r in sink.received) == ["ann@example.com", "bob@corp.example"]


def forged_return_path(how: str, app: Flask) -> str:
    """An address in the shape of outbox row 1's return path that is not its own."""
    paths = ReturnPaths.from_config(app.config)
    if how == "wrong mac":
        return "support+b-1-" + "0" * 16 + "@helpdesk.test"
    if how == "other secret":
        return ReturnPaths(b"not the helpdesk's key", paths.base).make(1, "ann@example.com")
    if how == "mac of another recipient":
        return paths.make(1, "mallory@example.com")
    if how == "mac of another row":  # row 2's MAC, given with row 1's id
        return paths.make(2, "ann@example.com").replace("b-2-", "b-1-")
    if how == "previous shape, wrong mac":
        return "support+bounce-1-" + "0" * 24 + "@helpdesk.test"
    if how == "previous shape, mac of another row":
        return previous_return_path(app, 2, "ann@example.com").replace("bounce-2-", "bounce-1-")
    if how == "previous shape, compact mac":  # row 1's own MAC, in the other shape
        return paths.make(1, "ann@example.com").replace("+b-", "+bounce-")
    assert how == "unknown row"
    return paths.make(1000, "ann@example.com")


def previous_return_path(app: Flask, row_id: int, recipient: str) -> str:
    """Row `row_id`'s return path as it was made before the compact shape:
    `support+bounce-{row}-{24 hex digits}@`, HMAC-SHA256 of `{row}.{recipient}`."""
    key = ReturnPaths.from_config(app.config).key
    mac = hmac.new(key, f"{row_id}.{recipient}".encode(), hashlib.sha256).hexdigest()[:24]
    return f"support+bounce-{row_id}-{mac}@helpdesk.test"


@pytest.mark.parametrize(
    "variant",
    [
        "delay notice",
        "genuine id, no return path",
        "forged id",
        "wrong mac",
        "other secret",
        "mac of another recipient",
        "mac of another row",
        "previous shape, wrong mac",
        "previous shape, mac of another row",
        "previous shape, compact mac",
        "unknown row",
    ],
)
def test_delay_notice_or_forged_bounce_marks_nothing(app, gateway, senders, sink, variant):
    """Only a failure report sent to the row's own return path marks anything: a
    delay notice does not, and neither does a report to the support address naming
    our Message-ID nor one to an address whose MAC does not verify for the row."""
    gateway.send(message(subject="Printer on fire"))
    (ack,) = deliver(app, sink)
    return_path = sink.received[0].mail_from
    rcpt = [return_path]
    if variant == "delay notice":
        raw = corpus_bounce(ack["Message-ID"], "ann@example.com", "delayed", return_path)
    elif variant == "genuine id, no return path":
        raw, rcpt = corpus_bounce(ack["Message-ID"], "ann@example.com"), ["support@helpdesk.test"]
    elif variant == "forged id":
        raw = corpus_bounce(forged(ack["Message-ID"], "wrong mac", app), "ann@example.com")
        rcpt = ["support@helpdesk.test"]
    else:
        rcpt = [forged_return_path(variant, app)]
        raw = corpus_bounce(ack["Message-ID"], "ann@example.com", return_path=rcpt[0])
        assert rcpt != [return_path]
    code, text = gateway.send(raw, mail_from="", rcpt=rcpt)
    assert (code, text) == (250, b"2.0.0 OK ignored")
    assert "bounce of" not in last_inbound().reason
    if variant not in ("delay notice", "forged id"):
        assert "names outbox #1 to ann@example.com but was not addressed to its return path" in (
            last_inbound().reason
        )
    assert outbox()[0].state == "sent"
    assert db.session.execute(select(Contact.undeliverable_since)).scalar() is None


def test_bounce_to_one_return_path_marks_only_that_rows_recipient(
    app, gateway, senders, sink, service, agent_actor
):
    """A report sent to Bob's return path marks Bob, whatever it says inside: here it
    quotes Ann's Message-ID and names her as the failed recipient."""
    _ann_and_bob_get_a_reply(app, gateway, sink, service, agent_actor)
    to_ann = next(r for r in sink.received[1:] if r.rcpt_tos == ["ann@example.com"])
    to_bob = next(r for r in sink.received if r.rcpt_tos == ["bob@corp.example"])
    bounce = corpus_bounce(str(to_ann.message["Message-ID"]), "ann@example.com", return_path=to_bob.mail_from)
    assert gateway.send(bounce, mail_from="", rcpt=[to_bob.mail_from]) == (250, b"2.0.0 OK ignored")
    bobs_row = next(row for row in outbox() if row.to_address == "bob@corp.example")
    assert f"bounce of outbox #{bobs_row.id} to bob@corp.example" in last_inbound().reason
    assert {row.to_address: row.state for row in outbox() if row.kind == "reply"} == {
        "ann@example.com": "sent",
        "bob@corp.example": "bounced",
    }
    undeliverable = db.session.execute(
        select(Contact.email).where(Contact.undeliverable_since.is_not(None))
    ).scalars()
    assert list(undeliverable) == ["bob@corp.example"]


@pytest.mark.parametrize("header", ["Delivered-To", "X-Original-To", "Envelope-To", "To"])
def test_bounce_fetched_by_imap_counts_by_the_return_path_in_its_headers(
    app, senders, sink, service, agent_actor, header
):
    """Through IMAP there is no envelope: the return path is read from the delivery
    headers the receiving server wrote, or from To (docs/outbound-mail.md)."""
    open_ticket(service, agent_actor)
    deliver(app, sink)
    (ack,) = sink.received
    bounce = corpus_bounce(str(ack.message["Message-ID"]), "ann@example.com")  # to someone else
    if header in ("Delivered-To", "To"):
        written = f"\n{header}: <{ack.mail_from}>".encode()
        bounce = bounce.replace(f"\n{header}: tanya@infospacemail.com".encode(), written)
        assert written in bounce
    else:
        bounce = f"{header}: {ack.mail_from}\r\n".encode() + bounce
    db.session.rollback()
    result = ingest(bounce, envelope_from_headers(header_block(bounce)), app.config)
    assert result.outcome is Outcome.IGNORED and "bounce of outbox #1 to ann@example.com" in result.reason
    db.session.expire_all()
    assert outbox()[0].state == "bounced"


def test_a_bounce_to_thousands_of_return_paths_costs_at_most_twenty_lookups(app, service, agent_actor, sink):
    """Through IMAP a bounce's To is read for return paths, and each one in our shape
    costs a lookup: a forged one naming thousands is looked at for its first
    `MAX_CANDIDATES` only (docs/security.md), and a genuine one after them is not reached."""
    open_ticket(service, agent_actor)
    deliver(app, sink)
    genuine = sink.received[0].mail_from
    paths = ReturnPaths.from_config(app.config)
    made_up = [f"support+b-{n}-{'0' * 16}@helpdesk.test" for n in range(2, 2502)]
    made_up += [f"support+bounce-{n}-{'0' * 24}@helpdesk.test" for n in range(2, 2502)]  # the previous shape
    support = ["support@helpdesk.test"]
    lookups: list[str] = []

    def count(connection, cursor, statement: str, *args: object) -> None:  # type: ignore[no-untyped-def]
        if "FROM outbox" in statement:
            lookups.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        assert return_paths.bounced_rows(db.session, paths, [*made_up, genuine], support) == []
        assert len(lookups) == return_paths.MAX_CANDIDATES == 20
        (row,) = return_paths.bounced_rows(db.session, paths, [genuine, *made_up], support)
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert row.id == 1


def test_return_paths_are_ours(app, gateway, senders, sink, service, agent_actor):
    """A return path is a support plus-address: the listener takes it, it names no
    ticket, it never becomes a participant, and mail from it is our own coming back."""
    open_ticket(service, agent_actor)
    deliver(app, sink)
    return_path = sink.received[0].mail_from
    assert RETURN_PATH.match(return_path).group(1) == "1"  # type: ignore[union-attr]
    person = message(sender="bob@corp.example", subject="New laptop", to=return_path, cc=return_path)
    assert gateway.send(person, rcpt=[return_path]) == (250, b"2.0.0 OK created TKT-000002")
    assert db.session.execute(select(Participant.email)).scalars().all() == []
    contacts = sorted(db.session.execute(select(Contact.email)).scalars())
    assert contacts == ["ann@example.com", "bob@corp.example"]
    own = message(sender=return_path, subject="Re: [TKT-000001] Printer on fire")
    assert gateway.send(own, mail_from=return_path) == (250, b"2.0.0 OK ignored")
    assert last_inbound().reason == "own address"


# A support address of a Spanish-speaking ISP: 24 characters of local part.
LONG_SUPPORT = "soporte-tecnico-clientes@isp.example"
# The largest id PostgreSQL's outbox.id (INTEGER) holds.
LARGEST_ROW = 2**31 - 1


def local_part_octets(address: str) -> int:
    return len(address.rpartition("@")[0].encode())


def test_return_paths_of_a_long_support_address_stay_within_64_octets(app):
    """RFC 5321 §4.5.3.1.1 allows 64 octets of local part and a strict relay refuses
    a longer MAIL FROM: every return path of a 24-character support local part fits,
    up to the largest row id a BIGINT holds, and still names its row."""
    paths = ReturnPaths(ReturnPaths.from_config(app.config).key, LONG_SUPPORT)
    assert paths.first_unsigned_row() is None
    for row_id in (1, 31, 32, 10**6, LARGEST_ROW, 10**18 - 1, 2**63 - 1):
        address = paths.make(row_id, "ann@example.com")
        assert local_part_octets(address) <= 64, address
        parsed = paths.parse(address, [LONG_SUPPORT])
        assert parsed is not None and parsed[0] == row_id


@pytest.mark.parametrize(
    "detail",
    [
        "b-01-" + "0" * 16,  # a leading zero
        "b--" + "0" * 16,  # no row
        "b-1_0-" + "0" * 16,  # int(text, 32) would read these three
        "b- 10-" + "0" * 16,
        "b-+10-" + "0" * 16,
        "b-w-" + "0" * 16,  # not a base32hex digit
        "b-" + "v" * 13 + "-" + "0" * 16,  # past a BIGINT
        "b-" + "1" * 14 + "-" + "0" * 16,
        "b-1-" + "0" * 15,
        "b-1-" + "0" * 17,
        "b-1-" + "0" * 15 + "w",
        "b-1-" + "0" * 24,  # the previous shape's MAC in the compact shape
        "bounce-1-" + "0" * 16,  # and the other way round
        "bounce-0-" + "0" * 24,
        "bounce-" + "1" * 19 + "-" + "0" * 24,
        "bounce-1-" + "0" * 23 + "g",
        "bounce-\uff11-" + "0" * 24,  # a fullwidth 1 is a digit to str.isdigit
        "b-1-" + "0" * 16 + "-",
        "TKT-000001",
    ],
)
def test_only_return_paths_in_their_exact_shape_are_read(app, detail):
    paths = ReturnPaths.from_config(app.config)
    assert paths.parse(f"support+{detail}@helpdesk.test", ["support@helpdesk.test"]) is None


def test_return_paths_are_read_in_either_shape_and_either_case(app):
    paths = ReturnPaths.from_config(app.config)
    support = ["support@helpdesk.test"]
    compact = paths.make(2**40 + 7, "ann@example.com")
    assert paths.parse(compact.upper(), support) == (2**40 + 7, compact.split("-")[-1].split("@")[0], False)
    previous = paths.parse(previous_return_path(app, 10**17, "ann@example.com").upper(), support)
    assert previous is not None and previous.outbox_id == 10**17 and previous.previous
    assert paths.verifies(previous, "Ann@Example.com")
    assert not paths.verifies(previous._replace(previous=False), "ann@example.com")


def _with_row_id(row_id: int) -> None:
    """The one queued outbox row gets `row_id`, as after years of mail."""
    db.session.execute(update(OutboxMessage).values(id=row_id))
    db.session.commit()


def test_bounce_to_the_return_path_of_a_long_support_address_and_a_large_row_marks_that_row(
    app, senders, sink, service, agent_actor
):
    """With `soporte-tecnico-clientes@` and row 2,147,483,647 the return path was
    67 octets of local part: a strict relay refused MAIL FROM and the mail never went
    out. Now it is sent, and the report to its return path still marks that row."""
    sink.max_local_part = 64
    for gateway in start_gateway(
        app, SUPPORT_ADDRESSES=[LONG_SUPPORT], OUTBOUND_FROM=f"Soporte <{LONG_SUPPORT}>"
    ):
        open_ticket(service, agent_actor)
        _with_row_id(LARGEST_ROW)
        (ack,) = deliver(app, sink)
        return_path = sink.received[0].mail_from
        assert local_part_octets(return_path) <= 64
        assert return_path.startswith("soporte-tecnico-clientes+") and return_path.endswith("@isp.example")
        bounce = corpus_bounce(ack["Message-ID"], "ann@example.com", return_path=return_path)
        assert gateway.send(bounce, mail_from="", rcpt=[return_path]) == (250, b"2.0.0 OK ignored")
        assert f"bounce of outbox #{LARGEST_ROW} to ann@example.com" in last_inbound().reason
        (row,) = outbox()
        assert (row.id, row.state) == (LARGEST_ROW, "bounced")


def test_a_support_address_too_long_for_a_return_path_sends_from_itself(
    app, senders, sink, service, agent_actor, caplog
):
    """When even the compact return path of a row would pass 64 octets, the row is
    sent from the plain support address: a strict relay takes it, and a report to it
    marks nothing (it proves no row), only names the notification its Message-ID is
    of (docs/outbound-mail.md, "Bounces")."""
    longest = "atencion-al-cliente-soporte-tecnico-isp1@isp.example"
    assert local_part_octets(longest) == 40
    sink.max_local_part = 64
    for gateway in start_gateway(app, SUPPORT_ADDRESSES=[longest], OUTBOUND_FROM=longest):
        open_ticket(service, agent_actor)
        _with_row_id(LARGEST_ROW)
        (ack,) = deliver(app, sink)
        assert sink.received[0].mail_from == longest
        bounce = corpus_bounce(ack["Message-ID"], "ann@example.com", return_path=longest)
        assert gateway.send(bounce, mail_from="", rcpt=[longest]) == (250, b"2.0.0 OK ignored")
        assert f"names outbox #{LARGEST_ROW} to ann@example.com but was not addressed to its return path" in (
            last_inbound().reason
        )
        assert outbox()[0].state == "sent"
        assert db.session.execute(select(Contact.undeliverable_since)).scalar() is None
        # Rows up to 32**4 of the same address still get a return path of their own,
        # and the sender warns at start from which row on they do not.
        paths = ReturnPaths.from_config(app.config)
        assert paths.first_unsigned_row() == 32**4
        assert paths.parse(paths.make(32**4 - 1, "ann@example.com"), [longest]) is not None
        assert paths.make(32**4, "ann@example.com") == longest
        with caplog.at_level(logging.WARNING, logger="mailgateway.outbound"):
            make_sender(app, sink).started()
        assert f"outbox rows from #{32**4} on are sent from {longest} itself" in caplog.text


def test_bounce_to_a_return_path_of_the_previous_shape_still_marks_its_row(
    app, gateway, senders, sink, service, agent_actor
):
    """Mail sent before the return paths were made compact went out from
    `support+bounce-{row}-{24 hex digits}@`, and its reports come days later: they
    still prove their row."""
    open_ticket(service, agent_actor)
    (ack,) = deliver(app, sink)
    previous = previous_return_path(app, 1, "ann@example.com")
    assert sink.received[0].mail_from != previous
    bounce = corpus_bounce(ack["Message-ID"], "ann@example.com", return_path=previous)
    assert gateway.send(bounce, mail_from="", rcpt=[previous]) == (250, b"2.0.0 OK ignored")
    assert "bounce of outbox #1 to ann@example.com" in last_inbound().reason
    assert outbox()[0].state == "bounced"


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("noreply@shop.example", "machine address"),
        ("mailer-daemon@mx.example", "machine address"),
        ("postmaster@example.com", "machine address"),
        ("support@helpdesk.test", "own address"),
        ("support+TKT-000009@helpdesk.test", "own address"),
        ("robot@helpdesk.helpdesk.test", "own address"),
        ("support+b-1-" + "0" * 16 + "@helpdesk.test", "own address"),  # a return path
        ("support+bounce-1-" + "0" * 24 + "@helpdesk.test", "own address"),  # one of the previous shape
        # Our domain in fullwidth letters: IDNA maps it to ours on the wire, and the
        # relay got RCPT TO:<support@helpdesk.test>.
        ("support@\uff48\uff45\uff4c\uff50\uff44\uff45\uff53\uff4b.test", "own address"),
        (
            "support+TKT-000001@\uff48\uff45\uff4c\uff50\uff44\uff45\uff53\uff4b.\uff54\uff45\uff53\uff54",
            "own address",
        ),
        ("robot@\uff48\uff45\uff4c\uff50\uff44\uff45\uff53\uff4b.helpdesk.test", "own address"),
        ("noreply@\uff53\uff48\uff4f\uff50.example", "machine address"),
        # No-reply mailboxes in the words of the customers' languages: Spanish (the
        # helpdesk writes it), Portuguese, French and Italian; a bank's or a shop's
        # notices come from them, and the acknowledgment went to nobody.
        ("no-responder@banco.example", "machine address"),
        ("noresponder.alertas@banco.example", "machine address"),
        ("no_responda@tienda.example", "machine address"),
        ("no-contestar@aseguradora.example", "machine address"),
        ("nao-responda@loja.example", "machine address"),
        ("naoresponder@banco.example", "machine address"),
        ("ne-pas-repondre@banque.example", "machine address"),
        ("non-rispondere@banca.example", "machine address"),
        # Mailing-list robots read an acknowledgment as commands and answer it, or
        # take it as the confirmation they asked for.
        ("majordomo@lists.example", "machine address"),
        ("LISTSERV@lists.example", "machine address"),
        ("users-bounces+ann=example.com@lists.example", "machine address"),
        ("users-confirm+4f2a9c@lists.example", "machine address"),
    ],
)
def test_machine_and_own_addresses_are_never_mailed(app, service, agent_actor, sink, address, reason):
    open_ticket(service, agent_actor, requester_email=address)
    assert deliver(app, sink) == []
    (row,) = outbox()
    assert row.state == "skipped" and reason in row.last_error


GMAIL_SUPPORT = {
    "SUPPORT_ADDRESSES": ["help.desk@gmail.com"],
    "OUTBOUND_FROM": "Helpdesk <help.desk@gmail.com>",
}
# Other spellings of that one Gmail inbox: dots, case, googlemail.com, a detail.
GMAIL_SPELLINGS = ["helpdesk@gmail.com", "Help.Desk@googlemail.com", "h.e.l.p.d.e.s.k+x@gmail.com"]


@pytest.mark.parametrize("address", GMAIL_SPELLINGS)
def test_every_spelling_of_a_gmail_support_inbox_is_our_own_address_never_mailed(
    app, service, agent_actor, sink, address
):
    """Gmail delivers each spelling to the support inbox (SPEC §8: no mail to our own
    addresses); the sender compared case and detail only and mailed them."""
    open_ticket(service, agent_actor, requester_email=address)
    assert deliver(app, sink, **GMAIL_SUPPORT) == []
    (row,) = outbox()
    assert row.state == "skipped" and "own address" in row.last_error


def test_a_customer_copying_spellings_of_the_gmail_support_inbox_adds_no_participant(
    app, senders, service, agent_actor, sink
):
    """A customer's mail copied other spellings of the support inbox: each became a
    participant, and a staff reply mailed every one of them (to ourselves)."""
    app.config.update(GMAIL_SUPPORT)
    mail = message(to="help.desk@gmail.com", cc=", ".join(GMAIL_SPELLINGS + ["Bob <bob@example.com>"]))
    result = ingest(
        mail.as_bytes(), Envelope("ann@example.com", ("help.desk@gmail.com",), "smtp"), app.config
    )
    assert result.outcome is Outcome.CREATED
    ticket = db.session.execute(select(Ticket)).scalar_one()
    assert [p.email for p in ticket.participants] == ["bob@example.com"]
    service.add_message(ticket, body="On our way.", actor=agent_actor, channel="web")
    db.session.commit()
    deliver(app, sink)
    assert sorted(rcpt for item in sink.received for rcpt in item.rcpt_tos) == [
        "ann@example.com",
        "ann@example.com",
        "bob@example.com",
    ]


def test_an_address_literal_in_a_mails_to_or_cc_is_no_participant_and_takes_no_place(
    app, senders, service, agent_actor, sink
):
    """`bob@[127.0.0.1]` or `carl@10.0.0.1` in a mail's Cc became a participant: never
    mailed, but shown on the ticket as one of its people and counted against
    MAX_CC_PARTICIPANTS, so two of them left Dana out. Left out now, as our own
    addresses are (docs/mail-gateway.md, "What an address is")."""
    app.config["MAX_CC_PARTICIPANTS"] = 1
    mail = message(
        to="support@helpdesk.test, Bob <bob@[127.0.0.1]>", cc="carl@10.0.0.1, Dana <dana@example.com>"
    )
    result = ingest(
        mail.as_bytes(), Envelope("ann@example.com", ("support@helpdesk.test",), "smtp"), app.config
    )
    assert result.outcome is Outcome.CREATED
    ticket = db.session.execute(select(Ticket)).scalar_one()
    assert [p.email for p in ticket.participants] == ["dana@example.com"]
    assert "were not added as participants" not in "".join(m.body for m in ticket.messages)


def test_an_address_marked_undeliverable_is_skipped_in_either_form_of_its_domain(
    app, service, agent_actor, sink
):
    """A bounce (or a refusal at RCPT) names the address as the relay saw it; the
    same mailbox stored with its Unicode domain is just as undeliverable."""
    db.session.add(Contact(email="ana@xn--bcher-kva.example", name="Ana", undeliverable_since=now()))
    db.session.commit()
    open_ticket(service, agent_actor, requester_email="ana@b\u00fccher.example")
    assert deliver(app, sink) == []
    (row,) = outbox()
    assert row.state == "skipped" and "undeliverable since" in row.last_error


def test_a_mark_on_the_punycode_spelling_skips_a_row_naming_the_mailbox_in_fullwidth_letters(
    app, service, agent_actor, sink
):
    """Mail keeps a Cc as written, `ana@\uff42\u00fccher.example`, which the relay is
    given as `ana@xn--bcher-kva.example`: a mark there holds for that row though
    `either_form` leaves a fullwidth domain only itself (addresses.mailbox_spellings;
    asking both spellings alone lost the wire form, found when two fixes met)."""
    db.session.add(Contact(email="ana@xn--bcher-kva.example", name="Ana", undeliverable_since=now()))
    db.session.commit()
    ticket = open_ticket(service, cc=[("ana@\uff42\u00fccher.example", "Ana")])
    service.add_message(ticket, body="On our way.", actor=agent_actor, channel="web")
    db.session.commit()
    deliver(app, sink)
    assert "ana@xn--bcher-kva.example" not in {rcpt for item in sink.received for rcpt in item.rcpt_tos}
    (row,) = [row for row in outbox() if row.to_address == "ana@\uff42\u00fccher.example"]
    assert row.state == "skipped" and "undeliverable since" in row.last_error


def test_a_bounce_of_a_copy_to_a_fullwidth_cc_marks_her_mailbox_in_every_spelling(
    app, gateway, senders, sink, service, agent_actor
):
    """Mail keeps a Cc as written, `ana@\uff42\u00fccher.example`, and her copy goes
    to `ana@xn--bcher-kva.example`. Its bounce marked the fullwidth spelling alone:
    a ticket of hers as `ana@b\u00fccher.example`, the same mailbox, was acknowledged
    into the bounce again, showed no mark, and clearing that address said it was not
    marked, while her fullwidth copies stayed skipped (contacts.mark_undeliverable)."""
    wide, unicode, wire = (
        "ana@\uff42\u00fccher.example",
        "ana@b\u00fccher.example",
        "ana@xn--bcher-kva.example",
    )
    ticket = open_ticket(service, cc=[(wide, "Ana")])
    service.add_message(ticket, body="On our way.", actor=agent_actor, channel="web")
    db.session.commit()
    deliver(app, sink)
    to_ana = next(item for item in sink.received if item.rcpt_tos == [wire])
    bounce = corpus_bounce(str(to_ana.message["Message-ID"]), wire, return_path=to_ana.mail_from)
    assert gateway.send(bounce, mail_from="", rcpt=[to_ana.mail_from]) == (250, b"2.0.0 OK ignored")
    assert next(row for row in outbox() if row.to_address == wide).state == "bounced"
    assert set(contacts.undeliverable_marks(db.session, [wide, unicode])) == {wide, unicode}

    sent = len(sink.received)
    open_ticket(service, agent_actor, requester_email=unicode)
    deliver(app, sink)
    assert len(sink.received) == sent
    # Acknowledged to her contact as stored: the mark's, made for the ASCII form.
    (row,) = [row for row in outbox() if row.to_address == wire]
    assert row.state == "skipped" and "undeliverable since" in row.last_error
    assert contacts.clear_undeliverable(db.session, unicode, Actor.system())
    db.session.commit()
    assert contacts.undeliverable_marks(db.session, [wide, unicode]) == {}


def test_a_mark_on_the_unicode_spelling_skips_a_row_naming_the_ascii_one(app, service, agent_actor, sink):
    """The other way round: a bounce marked the contact `ana@bücher.example`, and a CC
    participant's row names her mailbox as her mail wrote it, `ana@xn--bcher-kva.example`.
    The sender looked the mark up under the row's address and its ASCII form, both the
    `xn--` spelling, and mailed a mailbox known to bounce at every reply (found by review)."""
    db.session.add(Contact(email="ana@b\u00fccher.example", name="Ana", undeliverable_since=now()))
    db.session.commit()
    ticket = open_ticket(service, agent_actor, cc=[("ana@xn--bcher-kva.example", "Ana")])
    service.add_message(ticket, body="On our way.", actor=agent_actor, channel="web")
    db.session.commit()
    assert deliver(app, sink)
    assert {rcpt for item in sink.received for rcpt in item.rcpt_tos} == {"ann@example.com"}
    (row,) = [row for row in outbox() if row.to_address == "ana@xn--bcher-kva.example"]
    assert row.state == "skipped" and "undeliverable since" in row.last_error


def test_a_verification_code_goes_to_an_address_marked_undeliverable_and_its_proof_clears_the_mark(
    app, service, agent_actor, sink
):
    """A WhatsApp customer whose address bounced once asked for a code: the assistant
    said it was mailed, the sender skipped it as undeliverable, and only mail from
    the address cleared the mark, so the address could never be proven (found by
    review). The owner asks on purpose: the code goes, other mail stays skipped,
    and the right code given back proves the mailbox reads our mail again."""
    from tests.support import proofs

    contacts.mark_undeliverable(db.session, "lucia@example.com")
    db.session.commit()
    code = proofs.request(db.session, app.config, "+5215512345678", "lucia@example.com")
    open_ticket(service, agent_actor, requester_email="lucia@example.com")
    (mail,) = deliver(app, sink)
    assert mail["To"] == "lucia@example.com" and code in text_of(mail)
    assert [row.state for row in outbox()] == ["sent", "skipped"]
    email_proofs.confirm(db.session, app.config, "+5215512345678", "lucia@example.com", code)
    db.session.commit()
    marked = select(Contact.undeliverable_since).where(Contact.email == "lucia@example.com")
    assert db.session.execute(marked).scalar_one() is None


def test_a_code_proven_from_the_ascii_spelling_clears_the_mark_of_the_unicode_one(app):
    """The contact a bounce marked is `lucia@bücher.example`; the customer names her
    address as `lucia@xn--bcher-kva.example`, and the code proves it. The proof is
    bound to that contact (`contacts.by_email`), but only the ASCII spelling's mark
    was cleared, so every mail to her stayed skipped (found by review)."""
    from tests.support import proofs

    db.session.add(Contact(email="lucia@b\u00fccher.example", undeliverable_since=now()))
    db.session.commit()
    contact = proofs.prove(db.session, app.config, "+5215512345678", "lucia@xn--bcher-kva.example")
    assert contact.email == "lucia@b\u00fccher.example"
    db.session.expire_all()
    assert db.session.execute(select(Contact.undeliverable_since)).scalars().all() == [None]


def test_automatic_mail_is_rate_limited_per_recipient(app, service, agent_actor, sink):
    for n in range(4):
        open_ticket(service, agent_actor, subject=f"Request {n}")
    assert len(deliver(app, sink, OUTBOUND_MAX_AUTO_PER_RECIPIENT=3)) == 3
    assert [row.state for row in outbox()] == ["sent", "sent", "sent", "skipped"]
    assert "rate limit: 3 automatic mails to this address within 1 hour" in outbox()[3].last_error


def test_an_auto_responder_writing_from_plus_addresses_is_rate_limited_per_mailbox(
    app, gateway, senders, sink
):
    """A bot on an authorized domain answers each of our mails from a fresh
    `robot+t<N>@corp.example` with a fresh subject and no RFC 3834 headers: each
    answer opens a ticket. The limit counted the exact address, so 60 rounds got 60
    acknowledgments; it counts the mailbox, and the ping-pong stops at the limit."""
    gateway.send(message(sender="robot@corp.example", subject="Hello"))
    for round_ in range(10):
        sent = len(sink.received)
        if len(deliver(app, sink, OUTBOUND_MAX_AUTO_PER_RECIPIENT=3)) == sent:
            break
        gateway.send(message(sender=f"robot+t{round_}@corp.example", subject=f"Thank you #{round_}"))
    assert len(sink.received) == 3
    assert [row.state for row in outbox()] == ["sent", "sent", "sent", "skipped"]
    assert "rate limit: 3 automatic mails to this address" in outbox()[3].last_error


def test_the_rate_limit_counts_the_mailbox_whatever_its_case_or_domain_form(app, service, agent_actor, sink):
    """Detail, case and a domain written in fullwidth letters (IDNA maps it to
    `corp.example` on the wire) all name one mailbox."""
    for n, address in enumerate(
        ["robot+a@corp.example", "ROBOT+b@Corp.Example", "robot@\uff43\uff4f\uff52\uff50.example"]
    ):
        open_ticket(service, agent_actor, requester_email=address, subject=f"Request {n}")
    deliver(app, sink, OUTBOUND_MAX_AUTO_PER_RECIPIENT=2)
    assert [row.state for row in outbox()] == ["sent", "sent", "skipped"]
    assert [item.rcpt_tos for item in sink.received] == [["robot+a@corp.example"], ["robot+b@corp.example"]]


def test_the_rate_limit_counts_one_gmail_inbox_whatever_its_dots_or_googlemail(
    app, service, agent_actor, sink
):
    """Gmail delivers `v.ictim@gmail.com`, `vi.ctim@…` and `victim@googlemail.com`
    to one inbox; counted as three recipients, that inbox got an acknowledgment for
    every spelling a stranger wrote from. Each is still mailed as written."""
    for n, address in enumerate(["v.ictim@gmail.com", "vi.ctim@gmail.com", "victim@googlemail.com"]):
        open_ticket(service, agent_actor, requester_email=address, subject=f"Request {n}")
    deliver(app, sink, OUTBOUND_MAX_AUTO_PER_RECIPIENT=2)
    assert [row.state for row in outbox()] == ["sent", "sent", "skipped"]
    assert [row.to_mailbox for row in outbox()] == ["victim@gmail.com"] * 3
    assert [item.rcpt_tos for item in sink.received] == [["v.ictim@gmail.com"], ["vi.ctim@gmail.com"]]


def test_rate_limits_hold_when_rows_wait_for_a_retry(app, service, agent_actor, sink):
    """The limits counted rows sending, sent or bounced only: with the relay down,
    every row passed its first claim (the earlier ones were `pending` again, waiting
    for a retry), so 10 acknowledgments to one address went within the hour with a
    limit of 3. A row that passed the check counts until it is sent or given up."""
    for n in range(10):
        open_ticket(service, agent_actor, subject=f"Request {n}")
    _send_through_an_outage(app, sink, 20, OUTBOUND_MAX_AUTO_PER_RECIPIENT=3, OUTBOUND_BATCH_SIZE=2)
    assert len(sink.received) == 3
    assert [row.state for row in outbox()] == ["sent"] * 3 + ["skipped"] * 7


def test_the_limit_per_ticket_holds_when_rows_wait_for_a_retry(app, service, agent_actor, sink):
    ticket = open_ticket(service, agent_actor)
    for status in ("open", "in_progress", "pending_customer", "in_progress"):
        service.change_status(ticket, status, actor=agent_actor)
    db.session.commit()
    _send_through_an_outage(app, sink, 10, OUTBOUND_MAX_AUTO_PER_TICKET=2, OUTBOUND_BATCH_SIZE=1)
    assert [row.state for row in outbox()] == ["sent", "sent", "skipped", "skipped", "skipped"]


def _send_through_an_outage(app, sink, rounds: int, **settings) -> None:  # type: ignore[no-untyped-def]
    """Every row claimed while the relay is down, then `rounds` runs two minutes apart
    with it back: each row is retried, and the limits must hold through it."""
    sink.stop()
    clock = Clock()
    sender = make_sender(app, sink, clock, **settings)
    while run(sender):
        pass
    sink.start()
    for _ in range(rounds):
        clock.advance(minutes=2)
        run(sender)


def test_automatic_mail_is_rate_limited_per_ticket_but_replies_are_not(app, service, agent_actor, sink):
    ticket = open_ticket(service, agent_actor)
    service.change_status(ticket, "open", actor=agent_actor)
    service.change_status(ticket, "in_progress", actor=agent_actor)
    for n in range(3):
        service.add_message(ticket, body=f"Update {n}", actor=agent_actor, channel="web")
    db.session.commit()
    deliver(app, sink, OUTBOUND_MAX_AUTO_PER_TICKET=2)
    states = [(row.kind, row.state) for row in outbox()]
    assert states == [
        ("created", "sent"),
        ("status", "sent"),
        ("status", "skipped"),
        ("reply", "sent"),
        ("reply", "sent"),
        ("reply", "sent"),
    ]
    assert "automatic mails on this ticket" in outbox()[2].last_error


# -- the notification is part of its event's transaction --------------------------------


def test_rolled_back_event_queues_nothing(app, service, agent_actor):
    ticket = open_ticket(service)
    service.add_message(ticket, body="Draft", actor=agent_actor, channel="web")
    service.change_status(ticket, "open", actor=agent_actor)
    db.session.rollback()
    service.open_ticket(
        subject="x",
        description="y",
        requester_email="bob@example.com",
        channel="email",
        actor=Actor.customer("bob@example.com"),
    )
    db.session.rollback()
    assert [row.kind for row in outbox()] == ["created"]


def test_outbox_check_constraints_follow_the_vocabulary(app):
    db.session.add(OutboxMessage(kind="newsletter", to_address="a@example.com"))
    with pytest.raises(IntegrityError, match="ck_outbox_kind"):
        db.session.flush()
    db.session.rollback()


@contextmanager
def _outbox_of_a_newer_release(kind: str) -> Iterator[None]:
    """The outbox as a newer release's migration leaves it (as 0035 and 0038 did):
    its check admits `kind`, a kind of mail this release has no template for. Put back
    at the end, the rows of that kind gone, as that migration's downgrade does."""

    def admit(kinds: tuple[str, ...]) -> None:
        db.session.rollback()
        with db.engine.begin() as connection:
            with Operations(MigrationContext.configure(connection)).batch_alter_table("outbox") as table:
                table.drop_constraint("ck_outbox_kind", type_="check")
                table.create_check_constraint("ck_outbox_kind", f"kind IN ({', '.join(map(repr, kinds))})")

    admit((*vocabulary.NOTIFICATION_KINDS, kind))
    try:
        yield
    finally:
        db.session.rollback()
        db.session.execute(delete(OutboxMessage).where(OutboxMessage.kind == kind))
        db.session.commit()
        admit(vocabulary.NOTIFICATION_KINDS)


def test_a_row_of_a_kind_a_newer_release_added_waits_unclaimed_for_a_sender_that_knows_it(
    app, service, agent_actor, sink, caplog, monkeypatch, tmp_path
):
    """During a rolling upgrade a newer release queues a kind of mail this sender has
    no template for. It claimed the row, failed to render it and marked it failed for
    good, so the mail was lost unless an operator retried it. Now the claim leaves
    such a row pending and unclaimed, costing no retry and holding back no other
    mail, and the kind is logged once; a sender that knows the kind sends it."""
    with _outbox_of_a_newer_release("survey"):
        ticket = open_ticket(service, agent_actor)  # its acknowledgment, a kind this sender knows
        db.session.add(OutboxMessage(kind="survey", to_address="ann@example.com", ticket_id=ticket.id))
        db.session.commit()
        sender = make_sender(app, sink)
        caplog.set_level(logging.WARNING, "mailgateway.outbound")
        db.session.rollback()
        assert sender.round() is True  # the acknowledgment, alone
        sender.unknown_kinds_due = 0.0  # looked for again: still logged once
        assert sender.round() is False, "the unknown row was claimed again: a hot loop"
        db.session.expire_all()
        rows = {row.kind: row for row in outbox()}
        assert rows["created"].state == "sent" and len(sink.messages) == 1
        survey = rows["survey"]
        assert (survey.state, survey.attempts, survey.claimed_at, survey.message_id, survey.last_error) == (
            "pending",
            0,
            None,
            None,
            "",
        )
        logged = [record.getMessage() for record in caplog.records if "'survey'" in record.getMessage()]
        assert len(logged) == 1 and "1 outbox row(s) of kind 'survey' wait" in logged[0], logged

        # A sender of the release that queued it: the kind and its templates.
        monkeypatch.setattr(vocabulary, "NOTIFICATION_KINDS", (*vocabulary.NOTIFICATION_KINDS, "survey"))
        (tmp_path / "survey.txt").write_text("How did we do on {{ number }}?\n")
        (tmp_path / "survey.html").write_text("<p>How did we do on {{ number }}?</p>\n")
        newer = make_sender(app, sink, MAIL_TEMPLATES_DIR=str(tmp_path))
        assert run(newer) == 1
        assert text_of(sink.messages[-1]) == "How did we do on TKT-000001?\n"
        assert db.session.get(OutboxMessage, survey.id).state == "sent"


# -- several sender processes -----------------------------------------------------------

PROCESS_MAILS = {"postgresql": 500, "sqlite": 100}


def test_two_sender_processes_deliver_each_queued_mail_exactly_once(
    app, backend, database_url, service, agent_actor, sink
):
    mails = PROCESS_MAILS[backend]
    for n in range(mails):
        open_ticket(service, agent_actor, requester_email=f"customer{n}@example.com", subject=f"Request {n}")
    db.session.rollback()
    reported = run_processes(outbound_worker.drain, [(database_url, sink.url)] * 2)

    if backend == "postgresql":  # SQLite's busy handler is unfair: one writer may take all
        assert all(batches for batches in reported), "one process sent nothing"
    assert sum(sum(batches) for batches in reported) == mails  # each row claimed once
    counts = sink.message_ids()
    assert len(counts) == mails
    assert set(counts.values()) == {1}, "a mail arrived twice"
    rows = outbox()
    assert {row.state for row in rows} == {"sent"}
    assert set(counts) == {f"<{row.message_id}>" for row in rows}
    assert sorted(tuple(r.rcpt_tos) for r in sink.received) == sorted((row.to_address,) for row in rows)


def test_a_sender_whose_clock_runs_ahead_leaves_a_live_claim_alone(pg_app, sink):
    """Two gateways on two hosts share the outbox. The first has just claimed a mail
    and is sending it; the second's clock runs 11 minutes ahead, more than
    OUTBOUND_LEASE (10 minutes): by its clock the claim ran out long ago. Claims are
    stamped and judged by the database's clock, so it leaves the claim alone and the
    mail is not sent twice. (SQLite serves one host, whose clock is the only one.)"""
    service = TicketsService.from_config(db.session, pg_app.config)
    open_ticket(service)
    pg_app.config.update(OUTBOUND_SMTP_URL=sink.url)
    first, second = Sender(pg_app), Sender(pg_app)
    db.session.rollback()
    with pg_app.app_context():
        claimed, _outgoing = first.claim()
    assert claimed == 1
    (row,) = outbox()
    claim = (row.state, row.claimed_at)
    db.session.rollback()
    with time_machine.travel(datetime.now(timezone.utc) + timedelta(minutes=11), tick=True):
        assert run(second) == 0, "a host whose clock runs ahead took over a live claim"
    assert [(row.state, row.claimed_at) for row in outbox()] == [claim]
    assert sink.received == []


@pytest.mark.parametrize("skew", [timedelta(minutes=11), timedelta(minutes=-11)], ids=["ahead", "behind"])
def test_mail_queued_on_a_host_whose_clock_is_off_is_claimed_at_once(pg_app, sink, skew):
    """One application host, whose clock runs 11 minutes off the database's, opens a
    ticket and later an operator there retries a failed mail. The sender claims by
    the database's clock, so a row stamped by the host's clock waited the 11 minutes
    (ahead), or was given up and counted as backed up 11 minutes early (behind).
    Every time on an outbox row is the database's: both are claimed at once, and
    the row's age is the database's. (SQLite serves one host, with one clock.)"""
    pg_app.config.update(OUTBOUND_SMTP_URL=sink.url)
    service = TicketsService.from_config(db.session, pg_app.config)
    with time_machine.travel(datetime.now(timezone.utc) + skew, tick=True):
        open_ticket(service)
        sender = Sender(pg_app)
        assert run(sender) == 1, "a mail queued on this host waited for the database's clock"
        (row,) = outbox()
        assert row.state == "sent"
        row.state = "failed"
        db.session.commit()
        notifications.retry(db.session, row.id)
        db.session.commit()
        assert run(sender) == 1, "a mail retried on this host waited for the database's clock"
    (row,) = outbox()
    database_now = db.session.execute(select(database_clock(db.session))).scalar_one()
    for stamp in (row.created_at, row.next_attempt_at, row.claimed_at, row.sent_at):
        assert stamp is not None and abs(database_now - stamp) < timedelta(minutes=1)
    assert len(sink.received) == 2


def test_mail_received_on_a_host_whose_clock_runs_ahead_is_answered_in_its_thread(pg_app, sink):
    """The gateway and the web app run on a host 11 minutes ahead of the database.
    The customer's mail was stamped received by that host's clock, the notices were
    queued by the database's: the mail looked newer than both, so the acknowledgment
    answered nothing and the staff reply answered our acknowledgment. The mail is
    stamped by the database's clock too. (SQLite serves one host, with one clock.)"""
    SendersService(db.session).add("ann@example.com", "Example Ltd")
    agent, _ = StaffService(db.session).create(
        email="agent@helpdesk.test", name="Agnes Agent", role="agent", password="agent-password-1"
    )
    db.session.commit()
    service = TicketsService.from_config(db.session, pg_app.config)
    mail = message(sender="Ann Example <ann@example.com>", message_id="<first@client.example>")
    envelope = Envelope("ann@example.com", ("support@helpdesk.test",), "smtp")
    with time_machine.travel(datetime.now(timezone.utc) + timedelta(minutes=11), tick=True):
        assert ingest(mail.as_bytes(), envelope, pg_app.config).outcome is Outcome.CREATED
        (ack,) = deliver(pg_app, sink)
        ticket = db.session.execute(select(Ticket)).scalar_one()
        service.add_message(ticket, body="Which model is it?", actor=Actor.staff(agent), channel="web")
        db.session.commit()
        _ack, reply = deliver(pg_app, sink)
    assert ack["In-Reply-To"] == "<first@client.example>"
    assert reply["In-Reply-To"] == "<first@client.example>"
    assert reply["References"] == "<first@client.example>"


def test_an_outbox_row_queued_without_its_times_is_stamped_by_the_databases_clock(app):
    """Every writer names the queued and due times today; one that forgets, on a host
    11 minutes ahead of the database, must still queue by the database's clock. The
    model's default was this host's clock: the sender, judging by the database's,
    would have left the mail waiting 11 minutes and counted its age wrong. (On
    SQLite the database's clock is the host's, moved here: each row has its own.)"""
    expected = []
    for skew in (timedelta(minutes=11), timedelta(minutes=22)):
        with time_machine.travel(datetime.now(timezone.utc) + skew, tick=True):
            db.session.add(OutboxMessage(kind="created", to_address="ann@example.com"))
            db.session.commit()
            expected.append(database_now(db.session))
    for row, moment in zip(outbox(), expected, strict=True):
        for stamp in (row.created_at, row.next_attempt_at):
            assert abs(moment - stamp) < timedelta(minutes=1)


def test_an_inbound_record_written_without_its_time_is_received_by_the_databases_clock(app):
    """Threading orders a customer's mail and our notices by time (`compose`), so an
    inbound record is received by the database's clock as outbox rows are queued.
    `ingest` names that time today; a writer that forgets, on a host 11 minutes
    ahead, stamped the host's by the model's default."""
    with time_machine.travel(datetime.now(timezone.utc) + timedelta(minutes=11), tick=True):
        db.session.add(InboundMail(dedup_key="k", channel="smtp", size=0, outcome="ignored", raw=b""))
        db.session.commit()
        moment = database_now(db.session)
    assert abs(moment - last_inbound().received_at) < timedelta(minutes=1)


def test_a_batch_reads_the_databases_clock_once(pg_app, sink):
    """The sender asks the database for the time once a batch, at the claim; each
    sent time is written by its UPDATE (a SELECT per mail made a batch of 5 cost 6)."""
    pg_app.config.update(OUTBOUND_SMTP_URL=sink.url)
    service = TicketsService.from_config(db.session, pg_app.config)
    for _ in range(5):
        open_ticket(service)
    reads: list[str] = []

    def count(conn, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("SELECT TIMEZONE('UTC', CLOCK_TIMESTAMP())"):
            reads.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        assert run(Sender(pg_app)) == 5
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert len(sink.received) == 5 and len(reads) == 1
    assert all(row.state == "sent" and row.sent_at is not None for row in outbox())


def test_a_retry_is_due_by_the_databases_clock_written_in_its_update(pg_app, sink):
    """A greylisted mail is due again the backoff after its failure by the
    database's clock, which its UPDATE writes: the batch still reads it once."""
    pg_app.config.update(OUTBOUND_SMTP_URL=sink.url)
    service = TicketsService.from_config(db.session, pg_app.config)
    open_ticket(service, requester_email="bob@example.com")
    sink.refuse_rcpt["bob@example.com"] = "451 4.7.1 Greylisted, try again later"
    reads: list[str] = []

    def count(conn, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
        if "CLOCK_TIMESTAMP()" in statement.upper():
            reads.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        assert run(Sender(pg_app)) == 1
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    (row,) = outbox()
    assert row.state == "pending" and len(reads) == 2  # the claim's read, the retry's UPDATE
    assert reads[1].lstrip().upper().startswith("UPDATE OUTBOX")
    assert row.next_attempt_at - row.claimed_at >= timedelta(minutes=1)


# -- internationalised addresses (RFC 5890, RFC 6531) -------------------------------------


def test_an_internationalised_domain_is_mailed_in_its_ascii_form(app, service, sink, agent_actor):
    """Every mail to `ana@bücher.example` failed to compose (the email package takes
    ASCII addresses only); the domain has an ASCII form every relay takes."""
    ticket = open_committed_ticket(
        service, requester_email="ana@bücher.example", cc=[("luis@bücher.example", "")]
    )
    service.add_message(ticket, body="Ya está.", actor=agent_actor, channel="web")
    db.session.commit()
    deliver(app, sink)
    assert {row.state for row in outbox()} == {"sent"}
    _ack, to_ana, to_luis = sink.received
    assert (to_ana.rcpt_tos, to_luis.rcpt_tos) == (
        ["ana@xn--bcher-kva.example"],
        ["luis@xn--bcher-kva.example"],
    )
    assert to_ana.message["To"].addresses[0].addr_spec == "ana@xn--bcher-kva.example"
    assert [a.addr_spec for a in to_ana.message["Cc"].addresses] == ["luis@xn--bcher-kva.example"]


def test_a_sharp_s_domain_is_mailed_at_itself_not_at_its_ss_spelling(app, service, sink):
    """`hans@straße.de` went to `hans@strasse.de`: Python's IDNA 2003 codec folds `ß`
    into `ss`, and `strasse.de` is another registrable domain (IDNA 2008 and every
    registry give `straße.de` its own ASCII form, docs/outbound-mail.md)."""
    open_committed_ticket(service, requester_email="hans@straße.de", requester_name="Hans")
    deliver(app, sink)
    (received,) = sink.received
    assert received.rcpt_tos == ["hans@xn--strae-oqa.de"]
    assert received.message["To"].addresses[0].addr_spec == "hans@xn--strae-oqa.de"


def test_a_non_ascii_mailbox_goes_where_the_relay_speaks_smtputf8_and_fails_clearly_elsewhere(app, service):
    for smtputf8 in (True, False):
        relay = Sink(enable_SMTPUTF8=smtputf8).start()
        try:
            db.session.execute(update(OutboxMessage).values(state="sent"))
            db.session.commit()
            open_committed_ticket(service, requester_email="josé@example.com", requester_name="José")
            deliver(app, relay)
            row = outbox()[-1]
            if smtputf8:
                (received,) = relay.received
                assert (row.state, received.rcpt_tos) == ("sent", ["josé@example.com"])
                assert "José <josé@example.com>".encode() in received.data
            else:
                assert relay.received == [] and row.state == "failed"
                assert "SMTPUTF8" in row.last_error
        finally:
            relay.stop()


def test_a_domain_without_an_ascii_form_is_never_mailed(app, service, sink):
    long_label = "ü" * 60  # a label of 60 letters, but its ASCII form is longer than 63
    db.session.add(Contact(email=f"ana@{long_label}.example", name="Ana"))
    db.session.commit()
    open_committed_ticket(service, requester_email=f"ana@{long_label}.example")
    open_committed_ticket(service, requester_email="bob@example.com")
    deliver(app, sink)
    skipped, sent = outbox()
    assert (skipped.state, sent.state) == ("skipped", "sent")
    assert "ASCII form" in skipped.last_error


# A support address whose domain is beyond ASCII, and its form on the wire (IDNA).
IDN_SUPPORT = "support@b\u00fccher.example"
IDN_SUPPORT_WIRE = "support@xn--bcher-kva.example"


def test_an_internationalised_support_domain_goes_out_in_its_ascii_form_and_comes_back_as_ours(
    app, senders, sink
):
    """`support@bücher.example` with MESSAGE_ID_DOMAIN at its default: the return path
    (MAIL FROM) was built of the raw domain, which smtplib cannot write, and every
    notification failed for good; the Message-ID could not be written either
    (docs/outbound-mail.md, "Headers"). Every value we build of our own addresses is
    now in its ASCII form: the mail goes, a reply to it threads, a bounce to its
    return path marks its row, and our mail coming back is known as ours."""
    for gateway in start_gateway(
        app,
        SUPPORT_ADDRESSES=[IDN_SUPPORT],
        OUTBOUND_FROM=f"Helpdesk <{IDN_SUPPORT}>",
        MESSAGE_ID_DOMAIN="helpdesk.b\u00fccher.example",
    ):
        with smtplib.SMTP("127.0.0.1", gateway.port, timeout=30) as client:  # its banner too
            assert client.ehlo()[1].startswith(b"helpdesk.xn--bcher-kva.example")
        assert gateway.send(message(to=IDN_SUPPORT_WIRE), rcpt=[IDN_SUPPORT_WIRE])[0] == 250
        (ack,) = deliver(app, sink)
        (row,) = outbox()
        assert row.state == "sent", row.last_error
        (received,) = sink.received
        assert received.data.isascii()
        assert received.mail_from == ReturnPaths.from_config(app.config).make(row.id, "ann@example.com")
        assert received.mail_from.startswith("support+b-1-")
        assert received.mail_from.endswith("@xn--bcher-kva.example")
        assert set(sink.greetings) == {"helpdesk.xn--bcher-kva.example"}  # EHLO
        assert ack["Message-ID"] == f"<{row.message_id}>"
        assert row.message_id.endswith("@helpdesk.xn--bcher-kva.example")
        assert ack["From"] == f"Helpdesk <{IDN_SUPPORT_WIRE}>"
        assert ack["Reply-To"] == "support+TKT-000001@xn--bcher-kva.example"
        assert ack["X-Loop"] == IDN_SUPPORT_WIRE

        answer = message(subject="Thanks", in_reply_to=ack["Message-ID"], to=ack["Reply-To"])
        assert gateway.send(answer, rcpt=[ack["Reply-To"]]) == (250, b"2.0.0 OK appended TKT-000001")
        assert "by in-reply-to" in last_inbound().reason

        code, text = gateway.send(received.data, mail_from="forwarder@example.com", rcpt=[IDN_SUPPORT_WIRE])
        assert (code, text) == (250, b"2.0.0 OK ignored")
        assert last_inbound().reason == "own address"
        ack.replace_header("From", "ann@example.com")
        ack.replace_header("Message-ID", "<fwd-1@example.com>")
        forwarded = gateway.send(ack, mail_from="ann@example.com", rcpt=[IDN_SUPPORT_WIRE])
        assert forwarded == (250, b"2.0.0 OK ignored")
        assert last_inbound().reason == "x-loop: own address"

        bounce = corpus_bounce(f"<{row.message_id}>", "ann@example.com", return_path=received.mail_from)
        code, text = gateway.send(bounce, mail_from="", rcpt=[received.mail_from])
        assert (code, text) == (250, b"2.0.0 OK ignored")
        assert "bounce of outbox #1 to ann@example.com" in last_inbound().reason
        assert outbox()[0].state == "bounced"


def test_a_row_rendered_with_a_message_id_in_the_raw_idn_domain_goes_when_retried(app, service, sink):
    """Before our ids were written in ASCII, a row stored `…@helpdesk.bücher.example`
    and failed to render; `flask outbox retry` after the upgrade sent the stored id
    again, and the row failed again for good. It is signed again in the ASCII form."""
    app.config.update(
        SUPPORT_ADDRESSES=[IDN_SUPPORT],
        OUTBOUND_FROM=f"Helpdesk <{IDN_SUPPORT}>",
        MESSAGE_ID_DOMAIN="helpdesk.b\u00fccher.example",
    )
    open_ticket(service)
    deliver(app, sink)
    (row,) = outbox()
    made = row.message_id
    old = made.replace("xn--bcher-kva", "b\u00fccher")
    db.session.execute(update(OutboxMessage).values(state="failed", message_id=old))
    db.session.commit()
    notifications.retry(db.session, row.id)
    db.session.commit()
    sink.received.clear()
    (mail,) = deliver(app, sink)
    (row,) = outbox()
    assert row.state == "sent", row.last_error
    assert (row.message_id, mail["Message-ID"]) == (made, f"<{made}>")
    assert sink.received[0].data.isascii()


def test_a_support_domain_or_message_id_domain_without_an_ascii_form_refuses_to_start(app) -> None:  # type: ignore[no-untyped-def]
    """Nothing could be sent from them: refused at start, as a local part beyond ASCII is."""
    no_ascii_form = "\u00fc" * 60 + ".example"  # its ASCII form is longer than a label may be
    app.config.update(SUPPORT_ADDRESSES=[f"support@{no_ascii_form}"], OUTBOUND_FROM="")
    with pytest.raises(ConfigurationError, match="no ASCII form"):
        Sender(app)
    app.config.update(
        SUPPORT_ADDRESSES=["support@helpdesk.test"], MESSAGE_ID_DOMAIN=f"helpdesk.{no_ascii_form}"
    )
    with pytest.raises(ConfigurationError, match="MESSAGE_ID_DOMAIN.*no ASCII form"):
        Sender(app)


# -- the relay: URL, TLS, AUTH ----------------------------------------------------------


def test_outbound_urls_are_read_with_their_options() -> None:
    assert parse_outbound_url("") is None
    plain = parse_outbound_url("smtp://relay.example")
    assert (plain.host, plain.port, plain.tls, plain.starttls, plain.username) == (  # type: ignore[union-attr]
        "relay.example",
        25,
        False,
        False,
        None,
    )
    secure = parse_outbound_url("smtps://notify%40corp.example:p%3As%2Fs@relay.example")
    assert (secure.port, secure.tls, secure.username, secure.password) == (  # type: ignore[union-attr]
        465,
        True,
        "notify@corp.example",
        "p:s/s",
    )
    upgraded = parse_outbound_url("smtp://u:p@relay.example:587?starttls=true")
    assert (upgraded.port, upgraded.tls, upgraded.starttls) == (587, False, True)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("http://relay.example", "smtp:// or smtps://"),
        ("smtp://notify@relay.example", "user:password@"),
        ("smtps://relay.example?starttls=1", "already TLS"),
        ("smtp://relay.example/outbox", "no path"),
        ("smtp://relay.example?tls=1", "unknown options"),
    ],
)
def test_bad_outbound_urls_are_refused_with_a_reason(url: str, complaint: str) -> None:
    with pytest.raises(InvalidServerUrl, match=complaint):
        parse_outbound_url(url)


def test_gateway_refuses_to_start_with_a_bad_outbound_url(tmp_path) -> None:  # type: ignore[no-untyped-def]
    complaint = refused_start(tmp_path, OUTBOUND_SMTP_URL="smtp://notify@relay.example")
    assert "gateway: OUTBOUND_SMTP_URL needs user:password@" in complaint


def test_gateway_refuses_to_start_when_outbound_from_is_not_a_support_address(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """OUTBOUND_FROM is the envelope sender too: bounces come back to it, and mail
    from it is our own. `notifications@helpdesk.test`, not a support address, was
    refused at RCPT by our own listener (the bounces were lost) and a mail from it
    opened a ticket. It must be a support address or a plus-address of one."""
    complaint = refused_start(tmp_path, OUTBOUND_FROM="Acme Helpdesk <notifications@helpdesk.test>")
    assert "gateway: OUTBOUND_FROM notifications@helpdesk.test is not one of SUPPORT_ADDRESSES" in complaint


def test_outbound_from_may_be_any_support_address_or_its_plus_address(app) -> None:  # type: ignore[no-untyped-def]
    app.config.update(SUPPORT_ADDRESSES=["support@helpdesk.test", "notify@helpdesk.test"])
    for setting in ("Acme <Notify@helpdesk.test>", "support+notices@helpdesk.test"):
        app.config.update(OUTBOUND_FROM=setting)
        Sender(app)
    app.config.update(OUTBOUND_FROM="Acme <notifications@helpdesk.test>")
    with pytest.raises(ConfigurationError, match="is not one of SUPPORT_ADDRESSES"):
        Sender(app)


def test_a_support_address_beyond_ascii_before_the_at_refuses_to_start(app) -> None:  # type: ignore[no-untyped-def]
    """Our From and Reply-To are the support address: with a local part beyond ASCII
    (`sopórte@`) every mail to an ASCII recipient failed to render (7-bit mail cannot
    carry it), and before that it went with a broken From. Refused at start, as a
    bad OUTBOUND_FROM is; a domain beyond ASCII is written in its ASCII form."""
    app.config.update(SUPPORT_ADDRESSES=["sopórte@helpdesk.test"], OUTBOUND_FROM="")
    with pytest.raises(ConfigurationError, match="sopórte@helpdesk.test.*ASCII"):
        Sender(app)
    app.config.update(SUPPORT_ADDRESSES=["support@helpdesk.test", "sopórte@helpdesk.test"])
    app.config.update(OUTBOUND_FROM="sopórte+notices@helpdesk.test")
    with pytest.raises(ConfigurationError, match="ASCII"):
        Sender(app)
    app.config.update(SUPPORT_ADDRESSES=["support@hélpdesk.test"], OUTBOUND_FROM="")
    Sender(app)


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for 127.0.0.1 (the `openssl` tool comes with the
    PostgreSQL packages `make test` installs; missing, it is a failure)."""
    try:
        return Certificate(*self_signed_certificate(tmp_path_factory.mktemp("tls")))
    except OpensslMissing as exc:
        pytest.fail(str(exc))


def relay_login(server, session, envelope, mechanism, auth_data):  # type: ignore[no-untyped-def]
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == b"notify"
        and auth_data.password == b"s3cret"
    )
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535


@pytest.fixture
def tls_relay(certificate: Certificate, request: pytest.FixtureRequest) -> Iterator[Sink]:
    mode = request.param
    options: dict[str, object] = dict(authenticator=relay_login, auth_require_tls=True)
    if mode == "starttls":
        options.update(tls_context=certificate.server_context(), require_starttls=True)
    else:
        # TLS from the first byte; aiosmtpd only counts STARTTLS as TLS for AUTH.
        options.update(ssl_context=certificate.server_context(), auth_require_tls=False)
    server = Sink(**options).start()
    try:
        yield server
    finally:
        server.stop()


def relay_url(relay: Sink, password: str = "s3cret") -> str:
    if relay.options.get("ssl_context"):
        return f"smtps://notify:{password}@127.0.0.1:{relay.port}"
    return f"smtp://notify:{password}@127.0.0.1:{relay.port}?starttls=true"


@pytest.mark.parametrize("tls_relay", ["starttls", "smtps"], indirect=True)
def test_relay_with_tls_and_login_gets_the_mail(app, service, tls_relay, certificate, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate.cert))  # trust our test CA
    open_ticket(service)
    app.config.update(OUTBOUND_SMTP_URL=relay_url(tls_relay))
    run(Sender(app))
    (received,) = tls_relay.received
    assert received.authenticated
    assert outbox()[0].state == "sent"


@pytest.mark.parametrize(
    ("tls_relay", "trusted", "password", "error"),
    [
        ("starttls", True, "wrong", "535"),
        ("smtps", False, "s3cret", "CERTIFICATE_VERIFY_FAILED"),
    ],
    indirect=["tls_relay"],
)
def test_relay_refusing_login_or_certificate_is_retried_not_failed(
    app, service, tls_relay, certificate, monkeypatch, trusted, password, error
):
    if trusted:
        monkeypatch.setenv("SSL_CERT_FILE", str(certificate.cert))
    open_ticket(service)
    app.config.update(OUTBOUND_SMTP_URL=relay_url(tls_relay, password))
    run(Sender(app))
    (row,) = outbox()
    assert row.state == "pending"  # the relay's setup, not this mail's fault
    assert error in row.last_error
    assert tls_relay.received == []


def test_relay_refusing_our_helo_is_retried_not_failed(app, service, sink):
    """A relay that refuses our EHLO and HELO (`550 5.7.1 Helo command rejected:
    Host not found`) refuses our session, not a mail. smtplib greets lazily inside
    `sendmail`, and its SMTPHeloError was taken for a 5xx about the mail: every row
    of the batch failed for good. They wait for the relay to be fixed."""
    for n in range(3):
        open_ticket(service, requester_email=f"c{n}@example.com")
    sink.helo_reply = "550 5.7.1 <helpdesk.helpdesk.test>: Helo command rejected: Host not found"
    clock = Clock()
    sender = make_sender(app, sink, clock)
    for _ in range(5):
        run(sender)
        clock.advance(minutes=10)
    rows = outbox()
    assert {row.state for row in rows} == {"pending"}
    assert all("Helo command rejected" in row.last_error for row in rows)
    sink.helo_reply = None
    clock.advance(hours=1)
    run(sender)
    assert {row.state for row in outbox()} == {"sent"}
    assert len(sink.received) == 3


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_relay_demanding_a_login_the_url_does_not_give_is_retried_not_failed(app, service):
    """A relay that wants AUTH (OUTBOUND_SMTP_URL without user:password@) answers 530
    to MAIL FROM: the setup's fault, not the mail's. Every row failed for good, so
    fixing the URL sent nothing; now they wait, and go once the login is given."""
    relay = Sink(authenticator=relay_login, auth_require_tls=False, auth_required=True).start()
    try:
        open_ticket(service)
        clock = Clock()
        app.config.update(OUTBOUND_SMTP_URL=relay.url)
        run(Sender(app, clock=clock))
        (row,) = outbox()
        assert row.state == "pending", row.last_error
        assert row.last_error.startswith("530") and "OUTBOUND_SMTP_URL" in row.last_error
        app.config.update(OUTBOUND_SMTP_URL=f"smtp://notify:s3cret@127.0.0.1:{relay.port}")
        clock.advance(minutes=1)
        run(Sender(app, clock=clock))
        assert outbox()[0].state == "sent"
        assert [item.authenticated for item in relay.received] == [True]
    finally:
        relay.stop()


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
@pytest.mark.parametrize("user", ["notify", "notificación"])
def test_a_relay_login_beyond_ascii_is_sent_in_utf8(app, service, user):
    """smtplib encodes AUTH in ASCII: a password such as `contraseña` in
    OUTBOUND_SMTP_URL raised UnicodeEncodeError at every batch, and no mail went.
    AUTH PLAIN carries UTF-8 (RFC 4616), as the IMAP poller's login does; a wrong
    one is the relay's 535, retried like any refused login."""
    password = "contraseña-ü"

    def login(server, session, envelope, mechanism, auth_data):  # type: ignore[no-untyped-def]
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            user.encode(),
            password.encode(),
        )
        return AuthResult(success=ok, handled=False)

    relay = Sink(authenticator=login, auth_require_tls=False, auth_required=True).start()
    try:
        open_ticket(service)
        clock = Clock()
        for given, state, error in (("contraseña-x", "pending", "535"), (password, "sent", None)):
            app.config.update(OUTBOUND_SMTP_URL=f"smtp://{quote(user)}:{quote(given)}@127.0.0.1:{relay.port}")
            run(Sender(app, clock=clock))
            (row,) = outbox()
            assert row.state == state  # a wrong one: retried, not failed
            assert error is None or error in row.last_error
            clock.advance(minutes=10)
        assert [item.authenticated for item in relay.received] == [True]
    finally:
        relay.stop()


# -- the gateway process runs the sender --------------------------------------------------


def test_gateway_process_acknowledges_a_mailed_ticket_and_stops_on_sigterm(
    app, database_url, senders, sink, tmp_path
):
    db.session.remove()
    port = free_port()
    process = start_gateway_process(
        database_url, port, tmp_path, OUTBOUND_SMTP_URL=sink.url, OUTBOUND_POLL_SECONDS="0.2"
    )
    try:
        code, _ = send(port, message(subject="Printer on fire"))
        assert code == 250
        (ack,) = sink.wait_for(1)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    assert ack["Subject"] == "[TKT-000001] Printer on fire"
    assert outbox()[0].state == "sent"
