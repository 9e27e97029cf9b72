"""Pages and answers whose size an outsider chooses: a ticket a mail loop filled
with messages, and a stranger's mail of megabytes held for review, stay a page
(docs/web.md, "Long threads")."""

from __future__ import annotations

import re
from email.message import EmailMessage

from sqlalchemy import select

from helpdesk.extensions import db
from helpdesk.inbound.quarantine import RAW_CHUNK_BYTES
from helpdesk.models import Message, QuarantineItem, Ticket
from helpdesk.portal.quarantine import RAW_SHOWN_BYTES
from helpdesk.services import Actor, TicketsService, history_list, links
from helpdesk.services.thread import CHARS_SHOWN, PAGE_SIZE
from helpdesk.services.tracking import REPLIES_SHOWN
from tests.support.database import open_ticket, statements

MESSAGES = 120  # the first (the request) and 119 replies: more than two pages
CUSTOMER = "ann@example.com"


def marker(index: int) -> str:
    return f"[msg-{index:04d}]"


def long_ticket(service: TicketsService) -> Ticket:
    """A customer's ticket of MESSAGES messages, each body naming its place."""
    customer = Actor.customer(CUSTOMER, "Ann")
    ticket = service.open_ticket(
        subject="Loop", description=marker(1), requester_email=CUSTOMER, channel="email", actor=customer
    )
    for index in range(2, MESSAGES + 1):
        service.add_message(ticket, body=marker(index), actor=customer, channel="email")
    db.session.commit()
    return ticket


def shown(data: bytes) -> list[int]:
    return [int(n) for n in re.findall(rb"\[msg-(\d{4})\]", data)]


def test_a_long_threads_page_shows_the_first_and_the_newest_messages_and_links_to_the_older(
    portal, service, agent
):
    """The page of a ticket of 120 messages showed all 120; now the first and the
    newest PAGE_SIZE, and a link walks back to the rest; the reply box still works."""
    ticket = long_ticket(service)
    number = f"TKT-{ticket.number:06d}"
    page = portal.get(f"/tickets/{number}").data
    newest = list(range(MESSAGES - PAGE_SIZE + 1, MESSAGES + 1))
    assert shown(page) == [1, *newest]
    left = MESSAGES - 1 - PAGE_SIZE
    assert f"{left} older messages are not shown.".encode() in page
    link = re.search(rb'href="(/tickets/[^"]+\?before=\d+)#older"', page)
    assert link is not None
    older = portal.get(link.group(1).decode()).data
    assert shown(older) == [1, *range(MESSAGES - 2 * PAGE_SIZE + 1, MESSAGES - PAGE_SIZE + 1)]
    assert b"Show the newest messages" in older
    oldest = portal.get(
        re.search(rb'href="(/tickets/[^"]+\?before=\d+)#older"', older).group(1).decode()
    ).data
    assert shown(oldest) == list(range(1, MESSAGES - 2 * PAGE_SIZE + 1))
    assert b"older messages are not shown" not in oldest
    replied = portal.post(
        f"/tickets/{number}/reply", {"body": "We are on it.", "kind": "reply"}, page=f"/tickets/{number}"
    )
    assert replied.status_code == 302
    after = portal.get(f"/tickets/{number}").data
    assert b"We are on it." in after and shown(after)[-1] == MESSAGES and len(shown(after)) == PAGE_SIZE


def test_the_api_answers_a_long_ticket_with_its_first_and_newest_messages(api, service):
    """`GET /tickets/<number>` carried every message; now the first and the newest
    PAGE_SIZE, the count, and `?before=` for the older ones."""
    ticket = long_ticket(service)
    number = f"TKT-{ticket.number:06d}"
    answer = api.get(f"/tickets/{number}").get_json()
    bodies = [int(m["body"][5:9]) for m in answer["messages"]]
    assert bodies == [1, *range(MESSAGES - PAGE_SIZE + 1, MESSAGES + 1)]
    assert answer["messages_total"] == MESSAGES and answer["messages_older"] == MESSAGES - 1 - PAGE_SIZE
    before = answer["messages"][1]["id"]
    older = api.get(f"/tickets/{number}?before={before}").get_json()
    assert [int(m["body"][5:9]) for m in older["messages"]][1:] == list(
        range(MESSAGES - 2 * PAGE_SIZE + 1, MESSAGES - PAGE_SIZE + 1)
    )
    assert api.get(f"/tickets/{number}?before=x").status_code == 422


def huge_ticket(service: TicketsService) -> tuple[str, list[int]]:
    """A customer's ticket whose request and three replies are longer than shown,
    text and HTML, and one short reply: its number and the huge messages' ids."""
    customer = Actor.customer(CUSTOMER, "Ann")
    huge, html = "x" * (CHARS_SHOWN + 5000) + "TAIL", "<p>" + "y" * (CHARS_SHOWN + 5000) + "HTAIL</p>"
    ticket = service.open_ticket(
        subject="Huge", description=huge, requester_email=CUSTOMER, channel="email", actor=customer
    )
    replies = [
        service.add_message(ticket, body=huge, body_html=html, actor=customer, channel="email")
        for _ in range(3)
    ]
    service.add_message(ticket, body="Short.", actor=customer, channel="email")
    db.session.commit()
    first = db.session.execute(select(Message.id).where(Message.ticket_id == ticket.id).order_by(Message.id))
    return f"TKT-{ticket.number:06d}", [first.scalars().first(), *(reply.id for reply in replies)]


def whole_texts(read: list[str]) -> list[str]:
    """The statements that read a message's text or HTML, or a description, whole."""
    return [
        s
        for s in read
        if "messages.body" in s.replace("substr(messages.body", "")
        or "tickets.description" in s.replace("substr(tickets.description", "")
    ]


def test_a_customers_huge_replies_are_shown_cut_on_the_staff_page_and_download_whole(
    app, portal, service, agent
):
    """A customer may send their own ticket any number of mails of most of
    MAX_MESSAGE_BYTES, and the page showed the 50 newest whole, text and HTML: 10
    replies of 2 MB were a 20 MB page, fetched again by every agent watching it.
    Each is read in SQL up to CHARS_SHOWN characters, marked as cut, and a link
    downloads the whole of it, for those who may see the ticket only."""
    number, ids = huge_ticket(service)
    with statements() as read:
        page = portal.get(f"/tickets/{number}").data
    assert whole_texts(read) == []
    assert b"TAIL" not in page and len(page) < 10 * CHARS_SHOWN
    assert page.count(b"This message is longer than shown here.") == 4  # the request too
    assert page.count(b"The formatted version is longer than shown here.") == 3
    for message_id in ids:
        assert f"/tickets/{number}/messages/{message_id}/text".encode() in page
    text = portal.get(f"/tickets/{number}/messages/{ids[1]}/text")
    assert text.status_code == 200 and text.get_data(as_text=True).endswith("x" * 5000 + "TAIL")
    assert text.headers["Content-Disposition"] == f"attachment; filename=message-{ids[1]}.txt"
    assert text.headers["X-Content-Type-Options"] == "nosniff"
    html = portal.get(f"/tickets/{number}/messages/{ids[1]}/html")
    assert html.status_code == 200 and b"HTAIL</p>" in html.data
    assert html.headers["Content-Type"] == "application/octet-stream"
    assert portal.get(f"/tickets/{number}/messages/{ids[0]}/html").status_code == 404  # it has none
    other = service.open_ticket(
        subject="Other",
        description="Hello.",
        requester_email="bob@example.com",
        channel="email",
        actor=Actor.customer("bob@example.com", "Bob"),
    )
    db.session.commit()
    assert portal.get(f"/tickets/TKT-{other.number:06d}/messages/{ids[1]}/text").status_code == 404
    assert app.test_client().get(f"/tickets/{number}/messages/{ids[1]}/text").status_code == 302  # login


def test_the_api_cuts_a_tickets_huge_messages_and_gives_each_whole_by_itself(api, service):
    """`GET /tickets/<number>` carried each message, its HTML and the description
    whole; now each cut to CHARS_SHOWN in SQL with `body_truncated`, and
    `GET /tickets/<number>/messages/<id>` gives one whole."""
    number, ids = huge_ticket(service)
    with statements() as read:
        answer = api.get(f"/tickets/{number}").get_json()
    assert whole_texts(read) == []
    assert (len(answer["description"]), answer["description_truncated"]) == (CHARS_SHOWN, True)
    shown = [(len(m["body"]), m["body_truncated"], m["body_html_truncated"]) for m in answer["messages"]]
    assert shown == [(CHARS_SHOWN, True, False), *[(CHARS_SHOWN, True, True)] * 3, (6, False, False)]
    whole = api.get(f"/tickets/{number}/messages/{ids[2]}").get_json()
    assert whole["body"].endswith("TAIL") and len(whole["body"]) == CHARS_SHOWN + 5004
    assert whole["body_html"].endswith("HTAIL</p>") and whole["body_truncated"] is False
    assert api.get(f"/tickets/{number}/messages/{ids[2] + 100}").status_code == 404
    assert api.get(f"/tickets/{number}/messages/x").status_code == 404


def test_the_tracker_shows_a_customer_the_newest_replies_of_a_long_ticket(client, service):
    """The tracker's view listed every public reply; now the newest REPLIES_SHOWN,
    and says the older ones are in the customer's mail."""
    ticket = long_ticket(service)
    number = f"TKT-{ticket.number:06d}"
    view = client.post("/api/v1/public/track", json={"ticket_number": number, "email": CUSTOMER}).get_json()
    assert [int(r["body"][5:9]) for r in view["replies"]] == list(
        range(MESSAGES - REPLIES_SHOWN + 1, MESSAGES + 1)
    )
    assert view["older_replies"] is True


def test_a_held_mail_of_megabytes_shows_its_start_and_downloads_whole(gateway, portal):
    """The held mail's page carried the whole raw mail (25 MiB the gateway accepts);
    now its first RAW_SHOWN_BYTES, and a download gives every byte."""
    mail = EmailMessage()
    mail["From"] = "stranger@nowhere.example"
    mail["To"] = "support@helpdesk.test"
    mail["Subject"] = "big"
    mail.set_content("hello\n")
    mail.add_attachment(bytes(range(256)) * 12_000, maintype="application", subtype="zip", filename="a.zip")
    assert gateway.send(mail)[0] == 250
    item = db.session.execute(select(QuarantineItem)).scalar_one()
    raw = item.inbound_mail.raw
    assert len(raw) > 4_000_000
    page = portal.get(f"/quarantine/{item.id}")
    assert page.status_code == 200 and len(page.data) < RAW_SHOWN_BYTES + 20_000
    assert b"Subject: big" in page.data and b"the download holds every byte" in page.data
    download = portal.get(f"/quarantine/{item.id}/raw")
    assert download.status_code == 200 and download.data == raw
    assert download.headers["Content-Disposition"].startswith("attachment")


def test_a_held_mails_download_is_streamed_a_slice_at_a_time(app, gateway, portal):
    """The download read the whole mail into the worker's memory before sending a
    byte (a 20 MiB mail: 40 MiB on PostgreSQL, a third of a second before the first
    byte). It is read RAW_CHUNK_BYTES at a time now, its length told up front, with
    the same headers, for staff only (docs/web.md, "Long threads")."""
    mail = EmailMessage()
    mail["From"] = "stranger@nowhere.example"
    mail["To"] = "support@helpdesk.test"
    mail["Subject"] = "big"
    mail.set_content("hello\n")
    mail.add_attachment(bytes(range(256)) * 10_000, maintype="application", subtype="zip", filename="a.zip")
    assert gateway.send(mail)[0] == 250
    item = db.session.execute(select(QuarantineItem)).scalar_one()
    raw = item.inbound_mail.raw
    assert len(raw) > 3 * RAW_CHUNK_BYTES
    download = portal.client.get(f"/quarantine/{item.id}/raw", buffered=False)
    assert download.status_code == 200 and download.is_streamed
    assert download.headers["Content-Length"] == str(len(raw))
    assert download.headers["Content-Disposition"] == f"attachment; filename=held-mail-{item.id}.eml"
    assert download.headers["X-Content-Type-Options"] == "nosniff"
    assert download.headers["Cache-Control"] == "private, no-store"
    parts = list(download.response)
    download.close()
    assert len(parts) == -(-len(raw) // RAW_CHUNK_BYTES) and b"".join(parts) == raw
    assert app.test_client().get(f"/quarantine/{item.id}/raw").status_code == 302  # to the login


def test_a_ticket_linked_to_many_shows_the_newest_related_and_history_and_pages_the_rest(
    app, portal, service
):
    """An outage linked to every complaint: 2,000 links made its page 1.4 MB and
    0.6 s, every related ticket and every history row listed, fetched again by every
    agent watching it. The page shows the newest links.SHOWN related tickets and
    history_list.SHOWN rows with how many it left out, and a page of their own
    lists them all, a hundred at a time."""
    outage = open_ticket(service, subject="Outage")
    complaints = [open_ticket(service, subject=f"Complaint {n:02d}") for n in range(30)]
    for complaint in complaints:
        links.link(db.session, outage, complaint, Actor.system(), app.config)
    db.session.commit()
    number = f"TKT-{outage.number:06d}"
    page = portal.get(f"/tickets/{number}").get_data(as_text=True)
    shown = re.findall(r"Complaint (\d\d)", page)
    assert shown == [f"{n:02d}" for n in range(29, 29 - links.SHOWN, -1)]  # the newest first
    assert f"{30 - links.SHOWN} more related tickets are not shown." in page
    history_rows = 32  # new, a row for each link, then open as the agent opens it
    assert page.count(" → ") == history_list.SHOWN
    assert f"{history_rows - history_list.SHOWN} older changes are not shown." in page
    related = portal.get(f"/tickets/{number}/related").get_data(as_text=True)
    assert re.findall(r"Complaint (\d\d)", related) == [f"{n:02d}" for n in range(29, -1, -1)]
    history = portal.get(f"/tickets/{number}/history").get_data(as_text=True)
    assert history.count(" → ") == history_rows
    assert portal.get(f"/tickets/{number}/history?page=2").status_code == 200
    assert portal.get("/tickets/TKT-999999/related").status_code == 404
