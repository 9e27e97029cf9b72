"""Per-customer ticket limits on the mail channel (docs/mail-gateway.md, "Per-customer
limits"): a customer over `CUSTOMER_MAX_TICKETS_PER_HOUR` or
`CUSTOMER_MAX_OPEN_TICKETS` who mails a new request has it held in quarantine with
the reason, answered `250` and never acknowledged; replies still land on their
tickets; staff approving the held mail, or opening a ticket for the customer, are
not limited; and two gateway processes and a chat endpoint in gunicorn, racing for
one customer on PostgreSQL, open exactly the limit's number of tickets between them.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

from sqlalchemy import func, select

from helpdesk.extensions import db
from helpdesk.models import Contact, InboundMail, OutboxMessage, QuarantineItem, Ticket
from helpdesk.services.integrations import IntegrationsService
from helpdesk.services.senders import SendersService
from tests.support.app import make_app, migrate_database
from tests.support.database import resolve, tickets
from tests.support.gateway_process import start
from tests.support.mail import message, send, start_gateway
from tests.support.pgserver import PostgresServer, free_port
from tests.support.web_process import WebServer, api_call

ANN = "ann@example.com"


def outbox_to(address: str) -> list[str]:
    """The kinds of the notifications queued for `address`."""
    return list(
        db.session.execute(
            select(OutboxMessage.kind).where(OutboxMessage.to_address == address).order_by(OutboxMessage.id)
        ).scalars()
    )


def held() -> list[QuarantineItem]:
    return list(db.session.execute(select(QuarantineItem).order_by(QuarantineItem.id)).scalars())


def test_the_eleventh_new_ticket_mail_in_an_hour_is_held_and_not_answered(gateway, senders, clock):
    replies = [gateway.send(message(subject=f"Request {n}")) for n in range(1, 12)]
    assert replies[:10] == [(250, f"2.0.0 OK created TKT-{n:06d}".encode()) for n in range(1, 11)]
    assert replies[10] == (250, b"2.0.0 OK quarantined")
    assert len(tickets()) == 10
    (item,) = held()
    assert item.reason.startswith("customer limit: 10 tickets opened in the last hour")
    assert "CUSTOMER_MAX_TICKETS_PER_HOUR" in item.reason
    record = item.inbound_mail
    assert (record.subject, record.outcome, record.reason, record.ticket_id) == (
        "Request 11",
        "quarantined",
        item.reason,
        None,
    )
    assert outbox_to(ANN) == ["created"] * 10  # the held mail is not acknowledged
    assert db.session.execute(select(func.count(OutboxMessage.id))).scalar_one() == 10  # nor anyone told
    other = gateway.send(message(sender="Cy <cy@corp.example>", subject="Mine"))
    assert other == (250, b"2.0.0 OK created TKT-000011")  # the limit is per customer
    clock.shift(3601)  # out of the hour's window, but still ten open tickets
    assert gateway.send(message(subject="An hour later")) == (250, b"2.0.0 OK quarantined")
    assert held()[1].reason.startswith("customer limit: 10 open tickets (CUSTOMER_MAX_OPEN_TICKETS is 10)")


def test_a_reply_from_a_customer_over_the_limit_is_still_appended(app, senders):
    for gateway in start_gateway(app, CUSTOMER_MAX_TICKETS_PER_HOUR=1):
        gateway.send(message(message_id="<first@client.example>", subject="Laptop broken"))
        assert gateway.send(message(subject="Another thing")) == (250, b"2.0.0 OK quarantined")
        by_header = gateway.send(message(in_reply_to="<first@client.example>", subject="Re: Laptop"))
        by_subject = gateway.send(message(subject="Re: [TKT-000001] Laptop broken"))
        assert by_header == by_subject == (250, b"2.0.0 OK appended TKT-000001")
        (ticket,) = tickets()
        assert len(ticket.messages) == 3
        assert len(held()) == 1
        assert outbox_to(ANN) == ["created"]


def test_a_reply_to_a_cancelled_ticket_is_a_new_ticket_and_limited(app, senders, agent_actor, service):
    for gateway in start_gateway(app, CUSTOMER_MAX_OPEN_TICKETS=1):
        gateway.send(message(subject="Laptop broken"))
        (ticket,) = tickets()
        service.change_status(ticket, "cancelled", actor=agent_actor)
        db.session.commit()
        gateway.send(message(subject="Printer jammed"))
        assert gateway.send(message(subject="Re: [TKT-000001] Laptop broken")) == (
            250,
            b"2.0.0 OK quarantined",
        )
        (item,) = held()
        assert item.reason.startswith("customer limit: 1 open ticket ")


def test_open_tickets_limit_holds_new_mail_until_one_is_resolved(app, senders, agent_actor, service):
    for gateway in start_gateway(app, CUSTOMER_MAX_OPEN_TICKETS=2):
        first = gateway.send(message(subject="Problem 1"))
        second = gateway.send(message(subject="Problem 2"))
        assert [first, second] == [
            (250, b"2.0.0 OK created TKT-000001"),
            (250, b"2.0.0 OK created TKT-000002"),
        ]
        assert gateway.send(message(subject="Problem 3")) == (250, b"2.0.0 OK quarantined")
        (item,) = held()
        assert item.reason.startswith("customer limit: 2 open tickets (CUSTOMER_MAX_OPEN_TICKETS is 2)")
        resolve(service, tickets()[0], agent_actor)
        assert gateway.send(message(subject="Problem 4")) == (250, b"2.0.0 OK created TKT-000003")
        assert outbox_to(ANN).count("created") == 3


def test_staff_approving_held_mail_are_not_limited(app, senders, portal, runner):
    """Approval is staff opening the ticket for the customer (docs/mail-gateway.md):
    the ticket is created beyond the limit, and acknowledged as any approved mail."""
    for gateway in start_gateway(app, CUSTOMER_MAX_TICKETS_PER_HOUR=1):
        for subject in ("first", "second", "third"):
            gateway.send(message(subject=subject))
        second, third = held()
        reason = b"customer limit: 1 ticket opened in the last hour"
        assert reason in portal.get("/quarantine").data
        assert reason in portal.get(f"/quarantine/{second.id}").data
        assert reason.decode() in runner.invoke(args=["quarantine", "list"]).output
        portal.post(f"/quarantine/{second.id}/approve", page="/quarantine")
        approved = runner.invoke(args=["quarantine", "approve", str(third.id)])
        assert approved.exit_code == 0 and "created TKT-000003" in approved.output, approved.output
        db.session.expire_all()
        assert [(t.number, t.subject, t.requester.email) for t in tickets()] == [
            (1, "first", ANN),
            (2, "second", ANN),
            (3, "third", ANN),
        ]
        assert [item.state for item in held()] == ["approved", "approved"]
        assert outbox_to(ANN) == ["created"] * 3


def test_staff_opening_a_ticket_for_a_customer_over_the_limit_are_not_limited(app, senders, api):
    for gateway in start_gateway(app, CUSTOMER_MAX_TICKETS_PER_HOUR=1, CUSTOMER_MAX_OPEN_TICKETS=1):
        gateway.send(message(subject="first"))
        assert gateway.send(message(subject="second")) == (250, b"2.0.0 OK quarantined")
        response = api.post(
            "/tickets", {"subject": "Phoned in", "description": "By phone.", "requester_email": ANN}
        )
        assert response.status_code == 201, response.get_json()
        assert len(tickets()) == 2


# -- two processes, one customer, PostgreSQL ----------------------------------------------

LIMIT = 4
MAILS_EACH = 6  # to each of the two gateways
CHATS = 6
RACER = "cy@example.com"  # new to the helpdesk: even the contact row is created in the race


def test_two_gateways_and_a_chat_server_racing_for_one_customer_open_exactly_the_limit(
    pg_server: PostgresServer, tmp_path: Path
) -> None:
    url = pg_server.create_database("customer_limits")
    migrate_database(url)
    checker = make_app(url)
    with checker.app_context():
        SendersService(db.session).add("@example.com", "Example Ltd")
        _integration, token = IntegrationsService(db.session).add("site-chat", "chat")
        db.session.commit()
    limits = {"CUSTOMER_MAX_TICKETS_PER_HOUR": str(LIMIT), "CUSTOMER_MAX_OPEN_TICKETS": "100"}
    ports = [free_port(), free_port()]
    logs: list[list[str]] = [[], []]
    gateways = [
        start(
            url, port, tmp_path / f"gateway-{n}", logs[n], SMTP_PROCESSES="1", OUTBOUND_SMTP_URL="", **limits
        )
        for n, port in enumerate(ports)
    ]
    web = WebServer(url, tmp_path / "web", workers=2, **limits)
    mails: list[tuple[int, bytes]] = []
    chats: list[tuple[int, object]] = []
    barrier = threading.Barrier(2 * MAILS_EACH + CHATS)

    def mail(port: int, n: int) -> None:
        barrier.wait(60)
        mails.append(send(port, message(sender=RACER, subject=f"Mail {port} {n}")))

    def chat(n: int) -> None:
        barrier.wait(60)
        body = {"conversation_id": f"c{n}", "customer": {"email": RACER}, "transcript": f"Chat {n}"}
        chats.append(api_call(web.base, "POST", "/chat/tickets", body, token))

    threads = [threading.Thread(target=mail, args=(port, n)) for port in ports for n in range(MAILS_EACH)]
    threads += [threading.Thread(target=chat, args=(n,)) for n in range(CHATS)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        web.stop()
        for process in gateways:
            process.send_signal(signal.SIGTERM)
        codes = [process.wait(timeout=30) for process in gateways]
    assert codes == [0, 0], "".join(logs[0] + logs[1])

    assert len(mails) == 2 * MAILS_EACH and len(chats) == CHATS, "a client got no answer"
    assert {code for code, _ in mails} == {250}, mails
    outcomes = [text.decode().split()[2] for _, text in mails]
    created_by_mail = outcomes.count("created")
    assert outcomes.count("quarantined") == 2 * MAILS_EACH - created_by_mail, outcomes
    statuses = [status for status, _ in chats]
    created_by_chat = statuses.count(201)
    refused = [body for status, body in chats if status == 429]
    assert len(refused) == CHATS - created_by_chat, chats
    assert all(body["error"]["code"] == "too_many_tickets" for body in refused)  # type: ignore[index]
    assert created_by_mail + created_by_chat == LIMIT, (outcomes, statuses)

    with checker.app_context():
        racer = db.session.execute(select(Contact).where(Contact.email == RACER)).scalar_one()
        numbers = db.session.execute(select(Ticket.number).where(Ticket.requester_id == racer.id)).scalars()
        assert sorted(numbers) == list(range(1, LIMIT + 1))
        channels = db.session.execute(select(Ticket.channel, func.count()).group_by(Ticket.channel)).all()
        assert dict(channels) == {
            channel: count
            for channel, count in (("email", created_by_mail), ("chat", created_by_chat))
            if count
        }
        inbound = dict(
            db.session.execute(select(InboundMail.outcome, func.count()).group_by(InboundMail.outcome)).all()
        )
        assert inbound == {
            outcome: count
            for outcome, count in (
                ("created", created_by_mail),
                ("quarantined", 2 * MAILS_EACH - created_by_mail),
            )
            if count
        }
        reasons = db.session.execute(select(QuarantineItem.reason)).scalars().all()
        assert len(reasons) == 2 * MAILS_EACH - created_by_mail
        assert all(
            reason.startswith(f"customer limit: {LIMIT} tickets opened in the last hour")
            for reason in reasons
        )
        assert outbox_to(RACER) == ["created"] * LIMIT
        db.session.remove()
        db.engine.dispose()
