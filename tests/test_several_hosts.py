"""Several machines on one PostgreSQL (docs/operations.md, "Running on several
machines"): two web servers and two gateways, each with an instance folder of its
own as on two hosts, all through one PgBouncer in transaction mode.

One browser session moves between the web servers as a load balancer would move
it; a staff reply mailed by one gateway is answered by mail that arrives at the
other and threads by its signed Message-ID alone; a logout on one web server ends
the tokens the other accepts, and a revoked integration is refused by both at once;
one mailbox is polled by one gateway at a time, by the other once the first is
killed; and ticket numbers taken by all four processes at once stay gap-free.
"""

from __future__ import annotations

import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import select

from helpdesk.extensions import db
from helpdesk.models import ImapMailboxState, Message, Ticket
from helpdesk.services.integrations import IntegrationsService
from helpdesk.services.senders import SendersService
from helpdesk.services.staff import StaffService
from tests.support.app import make_app, migrate_database
from tests.support.gateway_process import start
from tests.support.mail import message, send
from tests.support.outbox import text_of
from tests.support.pgserver import free_port
from tests.support.waiting import wait_until
from tests.support.web_process import WebServer, api_call, api_token, portal_login, post_form

ADMIN, PASSWORD = "ada@helpdesk.test", "ada-password-1"
EACH = 8  # tickets each of the four processes opens in the concurrent round


def test_two_web_servers_and_two_gateways_share_one_postgresql_through_pgbouncer(
    pg_server, pgbouncer, mailbox, sink, tmp_path
):
    direct = pg_server.create_database("several_hosts")
    migrate_database(direct)
    checker = make_app(direct)
    with checker.app_context():
        StaffService(db.session).create(email=ADMIN, name="Ada Admin", role="admin", password=PASSWORD)
        SendersService(db.session).add("@example.com", "Example Ltd")
        _chat, chat_token = IntegrationsService(db.session).add("site-chat", "chat")
        db.session.commit()
    shared = pgbouncer.url("several_hosts")
    imap = mailbox.gateway_settings(SMTP_PROCESSES="1", OUTBOUND_POLL_SECONDS="1")
    logs: dict[str, list[str]] = {"a": [], "b": []}
    ports = {"a": free_port(), "b": free_port()}
    gateways = {
        "a": start(shared, ports["a"], tmp_path / "host-a", logs["a"], OUTBOUND_SMTP_URL=sink.url, **imap),
        "b": start(shared, ports["b"], tmp_path / "host-b", logs["b"], OUTBOUND_SMTP_URL="", **imap),
    }
    webs = {"a": WebServer(shared, tmp_path / "host-a"), "b": WebServer(shared, tmp_path / "host-b")}
    try:
        # -- one session, either web server -----------------------------------------------------
        browser = portal_login(webs["a"].base, ADMIN, PASSWORD)
        b, a = webs["b"].base, webs["a"].base
        landed = post_form(
            browser,
            f"{b}/tickets/new",
            {
                "subject": "Router reboots every hour",
                "description": "Since Monday.",
                "requester_email": "ann@example.com",
                "requester_name": "Ann Example",
            },
            page=f"{b}/tickets/new",
        )
        assert landed.endswith("/tickets/TKT-000001"), landed
        with browser.open(f"{a}/tickets/TKT-000001") as page:
            assert b"Router reboots every hour" in page.read()

        # -- a reply mailed by gateway a, answered through gateway b ----------------------------
        post_form(
            browser,
            f"{a}/tickets/TKT-000001/reply",
            {"body": "Please send us the router's serial number.", "kind": "reply"},
            page=f"{a}/tickets/TKT-000001",
        )
        wait_until(
            lambda: any("serial number" in text_of(mail) for mail in sink.messages),
            timeout=60,
            what=lambda: "gateway a mailing the staff reply:\n" + "".join(logs["a"][-20:]),
        )
        (reply,) = [mail for mail in sink.messages if "serial number" in text_of(mail)]
        answer = message(
            subject="Re: your question",  # no number: only the signed Message-ID can thread it
            body="The serial is RT-4455.",
            in_reply_to=str(reply["Message-ID"]),
            references=str(reply["Message-ID"]),
        )
        assert send(ports["b"], answer) == (250, b"2.0.0 OK appended TKT-000001")

        # -- four processes take numbers at once ------------------------------------------------
        tokens = {host: api_token(webs[host].base, ADMIN, PASSWORD) for host in webs}
        start_line = threading.Barrier(4)

        def through_api(host: str) -> list[int]:
            start_line.wait(30)
            codes = []
            for n in range(EACH):
                body = {"subject": f"API {host} {n}", "description": ".", "requester_email": "bo@example.com"}
                codes.append(api_call(webs[host].base, "POST", "/tickets", body, tokens[host])[0])
            return codes

        def through_mail(host: str) -> list[int]:
            start_line.wait(30)
            # A customer each: more than CUSTOMER_MAX_TICKETS_PER_HOUR from one would be held.
            return [
                send(ports[host], message(f"user-{host}{n}@example.com", f"Mail {host} {n}"))[0]
                for n in range(EACH)
            ]

        with ThreadPoolExecutor(4) as pool:
            answers = [
                pool.submit(through_api, "a"),
                pool.submit(through_api, "b"),
                pool.submit(through_mail, "a"),
                pool.submit(through_mail, "b"),
            ]
            codes = [code for future in answers for code in future.result()]
        assert codes == [201] * (2 * EACH) + [250] * (2 * EACH)

        # -- a revocation on one host holds on the other at once --------------------------------
        # Every check is read from the database on each request, never kept by a process.
        assert api_call(a, "GET", "/tickets", None, tokens["b"])[0] == 200
        assert api_call(a, "POST", "/auth/logout", {}, tokens["a"])[0] == 200  # ends Ada's every token
        assert api_call(b, "GET", "/tickets", None, tokens["b"])[0] == 401
        body = {"customer": {"email": "ann@example.com"}, "text": "TKT-000001"}
        assert api_call(b, "POST", "/chat/lookup", body, chat_token)[0] == 200
        with checker.app_context():
            IntegrationsService(db.session).revoke("site-chat")  # as `flask integrations revoke` does
            db.session.commit()
        assert [api_call(host, "POST", "/chat/lookup", body, chat_token)[0] for host in (a, b)] == [401, 401]

        # -- one mailbox, one poller; the other takes over when it dies -------------------------
        def owner() -> str:
            with checker.app_context():
                return db.session.execute(select(ImapMailboxState.owner)).scalar_one_or_none() or ""

        wait_until(owner, what="a gateway taking the mailbox")
        holder = next(host for host, process in gateways.items() if f":{process.pid}:" in owner())
        other = "b" if holder == "a" else "a"
        mailbox.append(
            *(
                message(
                    f"imap{n}@example.com", f"IMAP {n}", message_id=f"<imap-{n}@client.example>"
                ).as_bytes()
                for n in range(3)
            )
        )
        wait_until(lambda: mailbox.count(mailbox.processed) == 3, timeout=60)
        assert not any("connected (UIDVALIDITY" in line for line in logs[other]), "both gateways polled"
        os.kill(gateways[holder].pid, signal.SIGKILL)
        gateways[holder].wait(timeout=10)
        mailbox.append(
            *(
                message(
                    f"imap{n}@example.com", f"IMAP {n}", message_id=f"<imap-{n}@client.example>"
                ).as_bytes()
                for n in range(3, 5)
            )
        )
        wait_until(lambda: mailbox.count(mailbox.processed) == 5, timeout=60)
        assert f":{gateways[other].pid}:" in owner()
    finally:
        for web in webs.values():
            web.stop()
        for process in gateways.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)

    with checker.app_context():
        tickets = db.session.execute(select(Ticket).order_by(Ticket.number)).scalars().all()
        total = 1 + 4 * EACH + 5
        assert [ticket.number for ticket in tickets] == list(range(1, total + 1))
        first = tickets[0]
        bodies = (
            db.session.execute(select(Message.body).where(Message.ticket_id == first.id).order_by(Message.id))
            .scalars()
            .all()
        )
        assert bodies[-1].startswith("The serial is RT-4455.")
        db.engine.dispose()
