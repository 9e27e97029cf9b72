"""Pages and answers whose size an outsider chooses: a ticket of 5,000 messages and
a held mail of 20 MiB, on a private PostgreSQL.

A customer (or a mail loop) adds messages to a ticket without end, and the gateway
accepts mails up to MAX_MESSAGE_BYTES; each page or answer that shows a thread or a
raw mail is timed (server time through the test client, median of a few requests)
and weighed (response bytes). The messages go through `TicketsService.add_message`,
each a mail-sized letter from `bench.realistic_mail`; the held mail goes through
`ingest` from a stranger, as the gateway files one.

A second ticket holds a customer's huge replies (`--huge-replies` of `--huge-mb` MB,
text and HTML): what the ticket page and the API show of each is cut.

Run from the project root:
    .venv/bin/python -m bench.thread_size_bench [--messages 5000] [--mib 20] [--huge-replies 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from email.message import EmailMessage
from typing import Any

from bench.realistic_mail import generate
from bench.report import plain_table
from helpdesk.extensions import db
from helpdesk.inbound.ingest import Envelope, ingest
from helpdesk.models import QuarantineItem
from helpdesk.services import Actor, TicketsService
from helpdesk.services.integrations import IntegrationsService
from helpdesk.services.staff import StaffService
from tests.support.app import ApiClient, Portal, login_tokens, make_app, migrate_database
from tests.support.pgserver import PostgresServer

EMAIL, PASSWORD = "bench-admin@helpdesk.test", "bench-password-1"
CUSTOMER = "ann@example.com"


def seed(app: Any, messages: int, mib: int) -> tuple[str, int]:
    """The ticket (its number) and the held item's id."""
    with app.app_context():
        staff = StaffService(db.session)
        admin, _ = staff.create(email=EMAIL, name="Bench Admin", password=PASSWORD, role="admin")
        db.session.commit()
        service = TicketsService.from_config(db.session, app.config)
        letters = [mail.text for mail in generate("realistic", 50)]
        ticket = service.open_ticket(
            subject="A long thread",
            description=letters[0],
            requester_email=CUSTOMER,
            requester_name="Ann",
            channel="web",
            actor=Actor.staff(admin),
        )
        db.session.commit()
        customer = Actor.customer(CUSTOMER, "Ann")
        for index in range(1, messages):
            by = customer if index % 2 else Actor.staff(admin)
            service.add_message(ticket, body=letters[index % len(letters)], actor=by, channel="email")
            if index % 500 == 0:
                db.session.commit()
        db.session.commit()
        number = ticket.number
        mail = EmailMessage()
        mail["From"] = "stranger@nowhere.example"
        mail["To"] = "support@helpdesk.test"
        mail["Subject"] = "a big one"
        mail["Message-ID"] = "<big@nowhere.example>"
        mail.set_content("hello\n")
        mail.add_attachment(b"\x00" * (mib * 1024 * 1024 * 3 // 4), maintype="application", subtype="zip")
        result = ingest(
            mail.as_bytes(),
            Envelope("stranger@nowhere.example", ("support@helpdesk.test",), "smtp"),
            app.config,
        )
        item = db.session.query(QuarantineItem).filter_by(inbound_mail_id=result.inbound_id).one()
        return f"{app.config['TICKET_PREFIX']}{number:0{app.config['TICKET_NUMBER_WIDTH']}d}", item.id


def huge_replies(app: Any, replies: int, mb: int) -> str:
    """A customer's ticket with `replies` replies of `mb` MB each, text and HTML as
    a mail client sends them: what a customer may send their own ticket, no limit."""
    with app.app_context():
        service = TicketsService.from_config(db.session, app.config)
        customer = Actor.customer(CUSTOMER, "Ann")
        ticket = service.open_ticket(
            subject="Huge replies",
            description="Hello.",
            requester_email=CUSTOMER,
            channel="email",
            actor=customer,
        )
        line = "All of this is quoted again and again in my reply. " * 2 + "\n"
        text = line * (mb * 1_000_000 // len(line))
        for _ in range(replies):
            service.add_message(
                ticket,
                body=text,
                body_html=f"<p>{text[: len(text) // 2]}</p>",
                actor=customer,
                channel="email",
            )
        db.session.commit()
        return f"{app.config['TICKET_PREFIX']}{ticket.number:0{app.config['TICKET_NUMBER_WIDTH']}d}"


def timed(call: Any, repeat: int) -> tuple[float, int, int]:
    """Median milliseconds, bytes of the answer, its status."""
    times, size, status = [], 0, 0
    for _ in range(repeat):
        start = time.perf_counter()
        response = call()
        times.append((time.perf_counter() - start) * 1000)
        size, status = len(response.get_data()), response.status_code
    return statistics.median(times), size, status


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--mib", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--huge-replies", type=int, default=10)
    parser.add_argument("--huge-mb", type=int, default=2)
    args = parser.parse_args()
    server = PostgresServer().start()
    try:
        url = server.create_database("thread_size")
        migrate_database(url)
        app = make_app(url, MAX_MESSAGE_BYTES=(args.mib + 8) * 1024 * 1024)
        started = time.perf_counter()
        number, item_id = seed(app, args.messages, args.mib)
        huge = huge_replies(app, args.huge_replies, args.huge_mb)
        print(f"seeded in {time.perf_counter() - started:.0f} s")
        client = app.test_client()
        portal = Portal(client)
        portal.login(EMAIL, PASSWORD)
        api = ApiClient(app.test_client(), login_tokens(app.test_client(), EMAIL, PASSWORD)["access_token"])
        with app.app_context():
            token = IntegrationsService(db.session).add("bench", kind="assistant")[1]
            db.session.commit()
        assistant = ApiClient(app.test_client(), token)
        tracker = app.test_client()
        calls = {
            "portal ticket page": lambda: client.get(f"/tickets/{number}"),
            "portal ticket page, huge replies": lambda: client.get(f"/tickets/{huge}"),
            "API GET /tickets/<n>, huge replies": lambda: api.get(f"/tickets/{huge}"),
            "portal held mail page": lambda: client.get(f"/quarantine/{item_id}"),
            "portal held mail download": lambda: client.get(f"/quarantine/{item_id}/raw"),
            "API GET /tickets/<n>": lambda: api.get(f"/tickets/{number}"),
            "API POST /public/track": lambda: tracker.post(
                "/api/v1/public/track", json={"ticket_number": number, "email": CUSTOMER}
            ),
            "tracker lookup page": lambda: Portal(tracker).post(
                "/track", {"ticket_number": number, "email": CUSTOMER}, page="/track"
            ),
            "assistant get_ticket_information": lambda: assistant.post(
                "/assistant/tool-calls",
                {
                    "customer": {"email": CUSTOMER},
                    "channel": "chat",
                    "tool_calls": [
                        {
                            "id": "1",
                            "type": "function",
                            "function": {
                                "name": "get_ticket_information",
                                "arguments": json.dumps({"ticketId": number}),
                            },
                        }
                    ],
                },
            ),
        }
        rows = []
        for name, call in calls.items():
            ms, size, status = timed(call, args.repeat)
            rows.append([name, str(status), f"{ms:,.0f}", f"{size:,}"])
        print(
            f"{args.messages:,} messages, a held mail of {args.mib} MiB, "
            f"{args.huge_replies} replies of {args.huge_mb} MB (text, and HTML of half)"
        )
        print(plain_table(["page or answer", "status", "server ms (median)", "bytes"], rows))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
