"""The staff portal and the tracker page through the Flask test client: login, roles,
CSRF, escaping, every page and form (the browser test drives the same in Chromium)."""

from __future__ import annotations

import logging
import re
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import OperationalError

from config import TestingConfig as ProductionLikeConfig
from helpdesk import create_app
from helpdesk.clock import now
from helpdesk.extensions import db
from helpdesk.inbound import quarantine
from helpdesk.inbound.ingest import Envelope, Outcome, ingest
from helpdesk.models import (
    AuthorizedSender,
    Contact,
    Message,
    Participant,
    QuarantineItem,
    StaffUser,
    Ticket,
    TicketHistory,
)
from helpdesk.services import Actor, TicketsService, contacts
from helpdesk.services.staff import StaffService
from helpdesk.services.tickets import NewAttachment
from tests.support.app import Portal
from tests.support.database import committed_after, refused_by_database, statements
from tests.support.hostile import distinct_words
from tests.support.lost_commit import commit_answer_lost
from tests.support.mail import SUPPORT, hold_strangers, message
from tests.support.memory import peak_of
from tests.support.web_process import WebServer, portal_login, post_form


def opened(
    service: TicketsService,
    subject: str = "Printer on fire",
    description: str = "It smokes.",
    **kwargs: object,
) -> Ticket:
    ticket = service.open_ticket(
        subject=subject,
        description=description,
        requester_email="ann@example.com",
        channel="email",
        actor=Actor.customer("ann@example.com"),
        **kwargs,
    )
    db.session.commit()
    return ticket


STAFF_PAGES = [
    "/tickets",
    "/tickets/new",
    "/tickets/TKT-000001",
    "/dashboard",
    "/quarantine",
    "/admin/senders",
    "/admin/staff",
    "/attachments/1",
    "/quarantine/1",
]
ADMIN_PAGES = ["/admin/senders", "/admin/staff"]


@pytest.mark.parametrize("path", STAFF_PAGES)
def test_every_staff_page_requires_login(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")


@pytest.mark.parametrize(
    "path",
    [
        "/tickets/TKT-000001/reply",
        "/tickets/TKT-000001/status",
        "/tickets/TKT-000001/update",
        "/quarantine/1/approve",
        "/admin/senders",
        "/admin/senders/remove",
        "/admin/staff",
        "/admin/staff/1/active",
        "/admin/staff/1/deliverable",
        "/tickets/new",
    ],
)
def test_every_staff_form_requires_login(client, path):
    client.get("/login")
    response = client.post(path, data={"csrf_token": Portal(client).token()})
    assert response.status_code == 302 and "/login" in response.headers["Location"]


@pytest.mark.parametrize("path", ADMIN_PAGES)
def test_agents_cannot_administer(portal, path):
    assert portal.get(path).status_code == 403
    assert (
        portal.post(
            path,
            {
                "pattern": "@evil.example",
                "organization": "Evil",
                "email": "x@y.zz",
                "name": "X",
                "role": "admin",
            },
        ).status_code
        == 403
    )
    assert db.session.execute(select(AuthorizedSender)).first() is None
    assert db.session.execute(select(StaffUser).where(StaffUser.email == "x@y.zz")).first() is None


# Portal routes anyone may ask for; every other one demands a login.
OPEN_TO_ALL = {"portal.home", "portal.login", "portal.logout"}
# Admin routes outside /admin/ (every route under /admin/ is one).
ADMIN_ELSEWHERE = {"portal.mark_deliverable"}


def _portal_requests(app) -> list[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    """(endpoint, method, path) of every portal route in the URL map, with its
    placeholders filled in, so a route added later is checked without being listed."""
    values = {"number": "TKT-000001", "decision": "approve", "part": "text"}
    requests = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("portal.") or rule.endpoint in OPEN_TO_ALL:
            continue
        path = rule.build({name: values.get(name, 1) for name in rule.arguments})[1]
        requests += [(rule.endpoint, method, path) for method in sorted(rule.methods - {"HEAD", "OPTIONS"})]
    return requests


def test_every_portal_route_in_the_url_map_demands_a_login(app, client):
    token = Portal(client).token()
    for endpoint, method, path in _portal_requests(app):
        response = client.open(path, method=method, data={"csrf_token": token} if method == "POST" else None)
        assert response.status_code == 302, (endpoint, method, response.status_code)
        assert response.headers["Location"].startswith("/login?next="), endpoint


def test_every_admin_route_in_the_url_map_refuses_an_agent_and_no_other_does(app, portal):
    token = portal.token()
    for endpoint, method, path in _portal_requests(app):
        admin_only = path.startswith("/admin/") or endpoint in ADMIN_ELSEWHERE
        response = portal.client.open(
            path, method=method, data={"csrf_token": token} if method == "POST" else None
        )
        assert (response.status_code == 403) == admin_only, (endpoint, method, response.status_code)


def test_login_failure_and_logout(client, agent):
    session = Portal(client)
    response = session.login(agent.email, "wrong")
    assert response.status_code == 401 and b"Wrong email or password." in response.data
    assert session.login(agent.email, "agent-password-1").headers["Location"] == "/tickets"
    assert session.get("/tickets").status_code == 200
    assert session.post("/logout", page="/tickets").status_code == 302
    assert session.get("/tickets").status_code == 302


def test_login_redirects_only_to_local_pages(client, agent):
    session = Portal(client)
    for target, expected in (
        ("/tickets/TKT-000001", "/tickets/TKT-000001"),
        ("https://evil.example/", "/tickets"),
        ("//evil.example", "/tickets"),
    ):
        response = session.client.post(
            f"/login?next={target}",
            data={"email": agent.email, "password": "agent-password-1", "csrf_token": session.token()},
        )
        assert response.headers["Location"] == expected


def test_forms_without_a_csrf_token_are_refused(portal, service):
    ticket = opened(service)
    response = portal.post("/tickets/TKT-000001/reply", {"body": "forged", "kind": "reply"}, csrf=False)
    assert response.status_code == 400 and b"form expired" in response.data
    response = portal.client.post(
        "/tickets/TKT-000001/reply", data={"body": "forged", "kind": "reply", "csrf_token": "bogus"}
    )
    assert response.status_code == 400
    db.session.rollback()
    assert len(db.session.get(Ticket, ticket.id).messages) == 1


def test_deactivated_staff_are_logged_out_at_the_next_click(portal, agent):
    assert portal.get("/tickets").status_code == 200
    db.session.get(StaffUser, agent.id).is_active = False
    db.session.commit()
    assert portal.get("/tickets").status_code == 302


def test_user_strings_are_escaped_everywhere(portal, service):
    script = "<script>alert(1)</script>"
    ticket = opened(service, subject=script, requester_name="<img src=x onerror=alert(2)>")
    TicketsService.add_message(
        service,
        ticket,
        body=script,
        actor=Actor.customer("ann@example.com"),
        channel="email",
        body_html='<p onclick="alert(3)">hi<script>x()</script></p>',
    )
    db.session.commit()
    for page in ("/tickets", "/tickets/TKT-000001", "/tickets?q=%3Cscript%3E"):
        html = portal.get(page).data
        assert b"<script>alert" not in html and b"<img src=x" not in html
        assert b"onclick" not in html
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in portal.get("/tickets/TKT-000001").data


def test_security_headers_on_every_page(client):
    response = client.get("/login")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"


def test_production_cookie_flags(database_url):
    """Over HTTPS the session cookie is `__Host-`: a browser takes it only Secure,
    with Path=/ and no Domain, so a sibling host cannot set one beside it (a cookie of
    the same name from `Domain=.example` was read first and logged a browser in as
    whoever tossed it; websusp review, docs/security.md "Sessions and tokens")."""
    app = create_app(ProductionLikeConfig, SQLALCHEMY_DATABASE_URI=database_url, SECURE_COOKIES=True)
    client = app.test_client()
    answer = client.get("/login", base_url="https://localhost")
    cookie = client.get_cookie("__Host-helpdesk_session", domain="localhost")
    assert cookie is not None and cookie.secure and cookie.http_only
    assert cookie.same_site == "Lax" and cookie.path == "/" and "Domain=" not in answer.headers["Set-Cookie"]
    plain = create_app(ProductionLikeConfig, SQLALCHEMY_DATABASE_URI=database_url, SECURE_COOKIES=False)
    assert plain.config["SESSION_COOKIE_NAME"] == "helpdesk_session"  # no prefix a browser would refuse


def test_opening_a_new_ticket_moves_it_to_open(portal, service):
    ticket = opened(service)
    page = portal.get("/tickets/TKT-000001")
    assert page.status_code == 200 and b"Printer on fire" in page.data
    ticket = db.session.get(Ticket, ticket.id)
    assert ticket.status == "open"
    assert (ticket.history[-1].new_value, ticket.history[-1].automated) == ("open", True)


def test_the_ticket_page_offers_the_share_text_with_a_copy_button(portal, service, client):
    ticket = opened(service, subject="</textarea><b>Router</b>", requester_name="Ann")
    ticket.requester.language = "es"
    db.session.commit()
    page = portal.get("/tickets/TKT-000001").get_data(as_text=True)
    assert 'Message for the customer <span class="muted">(Español)</span>' in page
    assert (
        '<textarea id="share-text" readonly rows="14" lang="es">Un agente ya vio tu ticket.\n\n'
        "Referencia: TKT-000001\nTítulo: &lt;/textarea&gt;&lt;b&gt;Router&lt;/b&gt;\nEstado: Abierto\n"
    ) in page  # opening the page moved it to open; the subject stays inside the field
    # Without JavaScript the button stays hidden and the text is there to select.
    assert '<button type="button" class="secondary" data-copy="share-text" hidden>Copy</button>' in page
    assert '<script src="/static/copy.js" defer></script>' in page
    script = client.get("/static/copy.js")
    assert script.status_code == 200 and script.mimetype == "text/javascript"
    assert "navigator.clipboard.writeText" in script.get_data(as_text=True)


def test_reply_note_status_and_properties_from_the_ticket_page(portal, service, agent, admin):
    ticket = opened(service)
    portal.get("/tickets/TKT-000001")
    portal.post("/tickets/TKT-000001/reply", {"body": "On my way.", "kind": "reply"})
    portal.post("/tickets/TKT-000001/reply", {"body": "Toner everywhere.", "kind": "note"})
    portal.post(
        "/tickets/TKT-000001/update", {"priority": "high", "category": "technical", "assignee": str(admin.id)}
    )
    portal.post("/tickets/TKT-000001/status", {"status": "in_progress"})
    response = portal.post("/tickets/TKT-000001/status", {"status": "closed"})
    assert response.status_code == 302
    page = portal.get("/tickets/TKT-000001").data
    assert b"Cannot move a ticket from in progress to closed" in page
    portal.post("/tickets/TKT-000001/status", {"status": "resolved", "reason": "toner replaced"})
    ticket = db.session.get(Ticket, ticket.id)
    assert [m.kind for m in ticket.messages] == ["reply", "reply", "note"]
    assert (ticket.priority, ticket.category, ticket.assignee_id) == ("high", "technical", admin.id)
    assert ticket.status == "resolved" and ticket.history[-1].reason == "toner replaced"
    page = portal.get("/tickets/TKT-000001").data
    # The note's label is shown by CSS from the header's data-label, in the reader's language.
    assert b'class="message note' in page and b'<header data-label="Internal note">' in page
    assert b'value="closed"' in page and b'value="reopened"' in page
    assert b'value="in_progress"' not in page  # only allowed transitions are offered


def test_the_status_forms_reason_says_the_customer_reads_it(portal, service, agent):
    # It is mailed to the requester as typed (docs/outbound-mail.md); the merge form's
    # reason, only for the history, had the same label.
    opened(service)
    page = portal.get("/tickets/TKT-000001").data.decode()
    status_form = page[page.index('/tickets/TKT-000001/status"') :]
    label = status_form[: status_form.index("</label>")]
    assert "Reason for the customer (optional; mailed with the new status, not with a cancellation)" in label


def test_queue_filters_search_and_pages(portal, service, agent):
    for n in range(30):
        opened(
            service,
            subject=f"Ticket {n}",
            priority={7: "urgent", 8: "medium"}.get(n, "low"),
            category="billing" if n in (4, 5) else "support",
        )
    service.assign(service.get(3), agent.id, actor=Actor.staff(agent))
    service.change_status(service.get(10), "open", actor=Actor.staff(agent))  # "Ticket 9"
    db.session.commit()
    page = portal.get("/tickets").data.decode()
    assert 'Tickets <span class="muted">(30)</span>' in page and "Page 1 of 2" in page
    assert "Ticket 7" in portal.get("/tickets?priority=urgent").data.decode()
    assert "(1)" in portal.get("/tickets?priority=urgent").data.decode()
    # SPEC §4: `normal` is `medium` (the queue ignored it and listed all 30).
    assert 'Tickets <span class="muted">(1)</span>' in portal.get("/tickets?priority=normal").data.decode()
    assert "(1)" in portal.get("/tickets?assignee=mine").data.decode()
    assert "(29)" in portal.get("/tickets?assignee=none").data.decode()
    assert "(1)" in portal.get("/tickets?q=Ticket+12").data.decode()
    assert "(1)" in portal.get("/tickets?sla=due_soon").data.decode()  # the urgent one
    assert "Page 2 of 2" in portal.get("/tickets?page=2").data.decode()

    def shown(query: str) -> int:
        page = portal.get(f"/tickets?{query}").data.decode()
        return int(page.split('Tickets <span class="muted">(', 1)[1].split(")", 1)[0])

    assert shown("status=open") == 1 and "Ticket 9<" in portal.get("/tickets?status=open").data.decode()
    assert shown("category=billing") == 2
    # values of one field are alternatives, fields narrow each other
    assert shown("category=billing&status=open&status=new") == 2
    assert shown("category=billing&status=open") == 0
    assert shown("status=open&status=new") == 30
    oldest = portal.get("/tickets?sort=created_at").data.decode()
    assert oldest.index("Ticket 0<") < oldest.index("Ticket 1<") < oldest.index("Ticket 2<")
    newest = portal.get("/tickets?sort=-created_at").data.decode()
    assert newest.index("Ticket 29<") < newest.index("Ticket 28<")
    assert portal.get("/tickets?page=abc&sort=evil&status=bogus").status_code == 200
    assert portal.get("/tickets?assignee=%C2%B2&page=%C2%B2").status_code == 200
    assert portal.get("/quarantine/99999999999").status_code == 404


def test_the_queue_never_reads_the_descriptions_it_does_not_show(portal, service, api):
    """A mail's text becomes the description whole (up to MAX_MESSAGE_BYTES, 25 MB):
    the queue, its search, the dashboard and a bulk action loaded every listed
    ticket's, 65 MB of Python memory for an 8.7 KB page of three 20 MB mails, and
    the live refresh fetches the page again on every change (found by review)."""
    size = 4_000_000
    for n in range(3):
        opened(service, subject=f"Log {n}", description=f"router log {n} " * (size // 13))
    db.session.expunge_all()
    numbers = [f"TKT-{n:06d}" for n in (1, 2, 3)]
    bulk = {"tickets": numbers, "action": "tag", "tags": ["logs"]}
    for label, call in (
        ("queue", lambda: portal.get("/tickets")),
        ("search", lambda: portal.get("/tickets?q=router")),
        ("dashboard", lambda: portal.get("/dashboard")),
        ("bulk", lambda: api.post("/tickets/bulk", bulk)),
        ("tag filter", lambda: portal.get("/tickets?tag=logs")),
    ):
        call()  # the first answer compiles its templates and statements
        db.session.expunge_all()
        answer, peak = peak_of(call)
        assert answer.status_code == 200, label
        assert peak < size // 4, f"{label}: {peak:,} bytes at the peak"
    assert portal.get("/tickets?tag=logs").data.count(b"Log ") >= 3


def test_new_ticket_form(portal, agent):
    response = portal.post(
        "/tickets/new",
        {
            "subject": "Phone call",
            "description": "Caller",
            "requester_email": "carl@example.com",
            "priority": "high",
            "category": "sales",
            "assignee": str(agent.id),
        },
        page="/tickets/new",
    )
    assert response.headers["Location"] == "/tickets/TKT-000001"
    ticket = db.session.execute(select(Ticket)).scalar_one()
    assert (ticket.channel, ticket.priority, ticket.assignee_id) == ("web", "high", agent.id)
    bad = portal.post("/tickets/new", {"subject": "", "requester_email": "nope"}, page="/tickets/new")
    assert bad.status_code == 422 and b"Subject is required" in bad.data


def test_a_new_ticket_for_an_address_literal_is_refused_in_the_readers_language(portal, agent):
    """`carl@[127.0.0.1]` is valid mail syntax, but a relay mailing it connects to that
    host: the form opened a ticket for it and queued its acknowledgment. A fullwidth
    domain is the mailbox IDNA maps it to (docs/integrations.md, "Who the customer is")."""
    agent.language = "es"
    db.session.commit()
    form = {"subject": "Llamada", "description": "Cliente", "requester_email": "carl@[127.0.0.1]"}
    bad = portal.post("/tickets/new", form, page="/tickets/new")
    assert bad.status_code == 422
    assert "Correo del solicitante» no es una dirección de correo válida" in bad.get_data(as_text=True)
    assert db.session.execute(select(Ticket)).first() is None
    form["requester_email"] = "carl@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com"
    assert portal.post("/tickets/new", form, page="/tickets/new").status_code == 302
    assert db.session.execute(select(Ticket)).scalar_one().requester.email == "carl@example.com"


def test_a_new_ticket_or_reply_with_nothing_to_read_is_refused_as_an_empty_one(portal, service):
    """Only invisible characters (zero-width space, joiner, Hangul filler, blank
    braille) were a subject and a description: the queue listed an empty-looking
    ticket. They are none given (docs/web.md, "The staff portal")."""
    invisible = "\u200b\u200d\u3164\u2800"
    form = {"subject": invisible, "description": invisible, "requester_email": "carl@example.com"}
    bad = portal.post("/tickets/new", form, page="/tickets/new")
    assert bad.status_code == 422
    assert b"Subject is required" in bad.data and b"Description is required" in bad.data
    assert db.session.execute(select(Ticket)).first() is None
    opened(service)
    refused = portal.post("/tickets/TKT-000001/reply", {"body": invisible, "kind": "note"})
    assert refused.status_code == 422 and b"body: is required" in refused.data
    assert len(db.session.execute(select(Message)).all()) == 1


def test_a_description_of_more_words_than_a_tsvector_holds_opens_its_ticket(portal):
    """700,000 characters of different words, under the request cap: PostgreSQL refused
    the numbering statement (the description's words index, before migration 0027),
    a 500 page."""
    description = distinct_words(140_000)
    response = portal.post(
        "/tickets/new",
        {"subject": "Log", "description": description, "requester_email": "carl@example.com"},
        page="/tickets/new",
    )
    assert response.headers["Location"] == "/tickets/TKT-000001"
    assert db.session.execute(select(Ticket.description)).scalar_one() == description


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_input_the_database_refuses_as_too_large_is_refused_on_the_form(app, portal):
    """SQLSTATE class 54 (a text too long for an index) from the new-ticket form and
    from approving a held mail was a 500 page; it is refused like bad input, and the
    held mail stays pending."""
    refused = b"This is larger than the database can store; nothing was changed."
    with refused_by_database("poison", "54000", "tickets", "description"):
        response = portal.post(
            "/tickets/new",
            {"subject": "Log", "description": "poison", "requester_email": "carl@example.com"},
            page="/tickets/new",
        )
        assert response.status_code == 422 and refused in response.data
        held = ingest(
            message(sender="stranger@nowhere.example", body="poison").as_bytes(),
            Envelope("stranger@nowhere.example", (SUPPORT,), "smtp"),
            app.config,
        )
        assert held.outcome is Outcome.QUARANTINED
        item = db.session.execute(select(QuarantineItem)).scalar_one()
        assert portal.post(f"/quarantine/{item.id}/approve", page="/quarantine").status_code == 302
        assert refused in portal.get("/quarantine").data
    db.session.expire_all()
    assert item.state == "pending" and db.session.execute(select(Ticket)).first() is None


def test_attachments_download_never_render(portal, service):
    ticket = opened(
        service, attachments=[NewAttachment("evil.html", "text/html", b"<script>alert(1)</script>")]
    )
    attachment = ticket.messages[0].attachments[0] if ticket.messages else None
    db.session.expire_all()
    attachment = db.session.execute(select(Message)).scalar_one().attachments[0]
    response = portal.get(f"/attachments/{attachment.id}")
    assert response.status_code == 200
    assert response.headers["Content-Disposition"] == "attachment; filename=evil.html"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.mimetype == "application/octet-stream"
    assert portal.get("/attachments/999").status_code == 404


def test_quarantine_review_in_the_portal(portal, gateway):
    gateway.send(message(sender="stranger@example.org", subject="Let me in"))
    gateway.send(message(sender="spammer@example.org", subject="Cheap pills"))
    gateway.send(message(sender="lost@example.org", subject="Wrong address, sorry"))
    items = db.session.execute(select(QuarantineItem).order_by(QuarantineItem.id)).scalars().all()
    page = portal.get("/quarantine").data
    assert b"Let me in" in page and b"Cheap pills" in page and b"Wrong address" in page
    assert b"stranger@example.org" in portal.get(f"/quarantine/{items[0].id}").data
    assert b"(read from From)" in portal.get(f"/quarantine/{items[0].id}").data
    gateway.send(
        b"To: support@helpdesk.test\r\nSubject: anonymous\r\n\r\nhi\r\n", mail_from="quiet@example.org"
    )
    held = db.session.execute(select(QuarantineItem).order_by(QuarantineItem.id.desc())).scalars().first()
    shown = portal.get(f"/quarantine/{held.id}").data
    assert b"quiet@example.org" in shown and b"(read from the SMTP envelope (MAIL FROM))" in shown
    portal.post(f"/quarantine/{held.id}/reject", page="/quarantine")
    portal.post(f"/quarantine/{items[0].id}/approve", page="/quarantine")
    portal.post(f"/quarantine/{items[1].id}/spam", page="/quarantine")
    portal.post(f"/quarantine/{items[2].id}/reject", page="/quarantine")
    ticket = db.session.execute(select(Ticket)).scalar_one()
    assert (ticket.subject, ticket.number) == ("Let me in", 1)
    states = db.session.execute(select(QuarantineItem.state).order_by(QuarantineItem.id)).scalars().all()
    assert states == ["approved", "spam", "rejected", "rejected"]
    assert b"Nothing is waiting" in portal.get("/quarantine").data
    assert portal.post(f"/quarantine/{items[0].id}/bogus", page="/quarantine").status_code == 404


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_held_mail_decided_between_the_count_and_the_page_leaves_no_false_count(app, gateway):
    """The held-mail list is a count and a page, two statements: a reviewer deciding
    an item between them (PostgreSQL's READ COMMITTED lets the page see it) left
    "3 waiting, page 2 of 2" over an empty page, and a first page of 2 items under a
    count of 3. As the queue's (docs/web.md, "Queue"), a page not full tells the
    total itself and an empty page past the first is counted again."""
    for index in range(3):
        gateway.send(message(sender=f"stranger{index}@example.org", subject=f"Held {index}"))
    oldest = db.session.execute(select(func.min(QuarantineItem.id))).scalar_one()
    db.session.rollback()

    def listed(page: int, per_page: int) -> tuple[int, int, int]:
        decided = update(QuarantineItem).where(QuarantineItem.id == oldest).values(state="rejected")
        try:
            with committed_after(lambda statement: "count(quarantine_items.id)" in statement, decided):
                shown = quarantine.pending(db.session, page=page, per_page=per_page)
        finally:
            db.session.rollback()
        db.session.execute(update(QuarantineItem).values(state="pending"))
        db.session.commit()
        return shown.total, shown.pages, len(shown.items)

    assert listed(page=2, per_page=2) == (2, 1, 0)
    assert listed(page=1, per_page=5) == (2, 1, 2)


HELD_LINK = re.compile(r'href="/quarantine/(\d+)"')


def test_the_quarantine_page_is_paged_at_a_cost_that_does_not_grow_with_the_held_mail(app, portal):
    """Anyone can get mail held, and the page listed all of it, reading each item's
    inbound mail in a statement of its own: 2,000 held mails were 2,003 statements,
    2.2 s and 1.4 MB per view on PostgreSQL. Now it shows `quarantine.PER_PAGE` items,
    oldest first, in the same statements for 2 held mails as for 3 pages of them,
    never reading a raw mail; its pager reaches every item and the heading counts
    them all."""
    hold_strangers(app.config, range(2))
    portal.get("/quarantine")
    with statements() as few:
        shown = portal.get("/quarantine").get_data(as_text=True)
    assert len(HELD_LINK.findall(shown)) == 2 and "(2 waiting)" in shown
    held = 3 * quarantine.PER_PAGE - 4
    hold_strangers(app.config, range(2, held))
    pending = (
        db.session.execute(
            select(QuarantineItem.id).where(QuarantineItem.state == "pending").order_by(QuarantineItem.id)
        )
        .scalars()
        .all()
    )
    assert len(pending) == held
    listed: list[int] = []
    for number in (1, 2, 3):
        with statements() as sent:
            shown = portal.get(f"/quarantine?page={number}").get_data(as_text=True)
        assert len(sent) == len(few), number
        assert not any("inbound_mails.raw" in statement for statement in sent)
        assert f"({held} waiting)" in shown and f"Page {number} of 3" in shown
        assert ("?page=2" in shown) is (number in (1, 3))
        on_page = [int(item) for item in HELD_LINK.findall(shown)]
        assert len(on_page) == (quarantine.PER_PAGE if number < 3 else quarantine.PER_PAGE - 4)
        listed += on_page
    assert listed == pending
    assert "Cheap pills 0<" in portal.get("/quarantine?page=x").get_data(as_text=True)
    past = portal.get("/quarantine?page=4").get_data(as_text=True)
    assert not HELD_LINK.findall(past) and f"({held} waiting)" in past
    assert "Nothing is waiting on this page." in past


def test_the_quarantine_can_be_read_newest_first(app, portal):
    """Under a flood of held spam the mail that came in today was on the last page:
    `?order=newest` turns the list round, its pager and a decision taken on it keep
    that order, and any other value is the oldest first."""
    hold_strangers(app.config, range(quarantine.PER_PAGE + 2))
    pending = (
        db.session.execute(
            select(QuarantineItem.id).where(QuarantineItem.state == "pending").order_by(QuarantineItem.id)
        )
        .scalars()
        .all()
    )
    newest = portal.get("/quarantine?order=newest").get_data(as_text=True)
    assert [int(item) for item in HELD_LINK.findall(newest)] == pending[::-1][: quarantine.PER_PAGE]
    assert "order=newest" in newest.partition('class="pager"')[2]
    second = portal.get("/quarantine?order=newest&page=2").get_data(as_text=True)
    assert [int(item) for item in HELD_LINK.findall(second)] == pending[1::-1]
    unknown = portal.get("/quarantine?order=x").get_data(as_text=True)
    assert [int(item) for item in HELD_LINK.findall(unknown)] == pending[: quarantine.PER_PAGE]
    assert f"/quarantine/{pending[-1]}/reject?order=newest" in newest
    decided = portal.post(f"/quarantine/{pending[-1]}/reject?order=newest", page="/quarantine?order=newest")
    assert decided.status_code == 302 and decided.location.endswith("/quarantine?order=newest")
    shown = portal.get(decided.location).get_data(as_text=True)
    assert [int(item) for item in HELD_LINK.findall(shown)][0] == pending[-2]
    oldest = portal.post(f"/quarantine/{pending[0]}/reject?order=x", page="/quarantine")
    assert oldest.location.endswith("/quarantine")


def test_admin_manages_senders_and_staff(admin_portal, admin):
    admin_portal.post(
        "/admin/senders", {"pattern": "@Corp.Example", "organization": "Corp"}, page="/admin/senders"
    )
    rule = db.session.execute(select(AuthorizedSender)).scalar_one()
    assert (rule.pattern, rule.organization.name) == ("@corp.example", "Corp")
    page = admin_portal.get("/admin/senders").data
    assert b"@corp.example" in page
    admin_portal.post("/admin/senders", {"pattern": "nonsense", "organization": "X"}, page="/admin/senders")
    assert b"is not a valid email address (a@b.c) nor a domain" in admin_portal.get("/admin/senders").data
    admin_portal.post("/admin/senders/remove", {"pattern": "@corp.example"}, page="/admin/senders")
    assert db.session.execute(select(AuthorizedSender)).first() is None

    response = admin_portal.post(
        "/admin/staff", {"name": "Neo", "email": "neo@helpdesk.test", "role": "agent"}, page="/admin/staff"
    )
    assert response.status_code == 200  # the generated password, shown once (tests/test_sessions.py)
    assert b'id="new-password"' in response.data
    neo = db.session.execute(select(StaffUser).where(StaffUser.email == "neo@helpdesk.test")).scalar_one()
    admin_portal.post(f"/admin/staff/{neo.id}/active", {"active": "0"}, page="/admin/staff")
    db.session.refresh(neo)
    assert neo.is_active is False
    admin_portal.post(f"/admin/staff/{admin.id}/active", {"active": "0"}, page="/admin/staff")
    assert db.session.get(StaffUser, admin.id).is_active is True


def test_the_last_active_admin_cannot_step_down(admin_portal, admin):
    """A deactivated admin counted as the other admin: the only one who could log in
    could make themselves an agent and leave nobody to run the helpdesk."""
    StaffService(db.session).create(email="old@helpdesk.test", name="Old Admin", role="admin")
    old = db.session.execute(select(StaffUser).where(StaffUser.email == "old@helpdesk.test")).scalar_one()
    StaffService(db.session).set_active(old, False)
    db.session.commit()
    admin_portal.post(f"/admin/staff/{admin.id}/role", {"role": "agent"}, page="/admin/staff")
    page = admin_portal.get("/admin/staff").get_data(as_text=True)
    assert "is the only admin; make someone else admin first." in page
    assert db.session.get(StaffUser, admin.id).role == "admin"


def test_dashboard_shows_counts(portal, service):
    opened(service, priority="urgent")
    opened(service)
    page = portal.get("/dashboard").data.decode()
    assert '<div class="stat">2</div>' in page
    assert "Urgent</a> <strong>1</strong>" in page


@pytest.mark.parametrize(
    "query, days",
    [
        ("", 30),
        ("?days=30", 30),
        ("?days=90", 90),
        ("?days=7", 30),
        ("?days=ninety", 30),
        ("?days=", 30),
        ("?days=90.0", 30),
        ("?days=-90", 30),
    ],
)
def test_dashboard_charts_cover_30_or_90_days_and_nothing_else(clock, portal, service, query, days):
    # `clock` first: a login before the clock went back would be one from the future.
    opened(service)
    response = portal.get(f"/dashboard{query}")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert page.count('class="chart-svg"') == 6
    first = date(2026, 3, 2) - timedelta(days=days - 1)
    assert page.count(f"per day from {first} to 2026-03-02") == 6
    assert f'aria-current="page">{days} days</a>' in page
    # Today in the created-and-resolved chart's table: one created, none resolved.
    assert '<th scope="row" class="nowrap">2026-03-02</th><td>1</td><td>0</td></tr>' in page


def test_dashboard_narrowed_to_a_channel(clock, portal, service):
    opened(service)  # by email
    service.open_ticket(
        subject="Sin señal desde ayer",
        description="No tengo internet.",
        requester_email="lucia@example.com",
        channel="whatsapp",
        actor=Actor.customer("lucia@example.com"),
    )
    db.session.commit()
    page = portal.get("/dashboard?channel=whatsapp&days=90").get_data(as_text=True)
    assert "<h1>Dashboard · WhatsApp</h1>" in page and '<div class="stat">1</div>' in page
    assert 'aria-current="page">WhatsApp</a>' in page and 'aria-current="page">90 days</a>' in page
    # Created per day by channel (web, api, email, chat, whatsapp, phone, system), today.
    today = "".join(f"<td>{n}</td>" for n in (0, 0, 0, 0, 1, 0, 0))
    assert f'<th scope="row" class="nowrap">2026-03-02</th>{today}</tr>' in page
    assert 'href="/tickets?channel=whatsapp&amp;priority=medium"' in page  # the queue, as narrowed
    everything = portal.get("/dashboard?channel=fax").get_data(as_text=True)
    assert "<h1>Dashboard</h1>" in everything and '<div class="stat">2</div>' in everything
    assert 'aria-current="page">All channels</a>' in everything


def test_tracker_page_shows_the_customer_view(client, service, agent):
    ticket = opened(service)
    service.add_message(ticket, body="We sent a technician.", actor=Actor.staff(agent), channel="web")
    service.add_message(
        ticket, body="INTERNAL: billing dispute", actor=Actor.staff(agent), channel="web", internal=True
    )
    db.session.commit()
    session = Portal(client)
    token = session.token("/track")
    page = client.post(
        "/track", data={"ticket_number": "tkt-1", "email": "ANN@example.com", "csrf_token": token}
    )
    assert page.status_code == 200
    text = page.data.decode()
    assert "TKT-000001" in text and "We sent a technician." in text
    assert "INTERNAL" not in text and "agent@helpdesk.test" not in text
    wrong = client.post(
        "/track", data={"ticket_number": "TKT-000001", "email": "eve@example.com", "csrf_token": token}
    )
    unknown = client.post(
        "/track", data={"ticket_number": "TKT-000042", "email": "ann@example.com", "csrf_token": token}
    )
    assert wrong.status_code == unknown.status_code == 404

    def answer(page: bytes, number: bytes, email: bytes) -> bytes:
        # The form's fresh CSRF token carries the second it was made in: two requests a
        # second apart differ there and nowhere else (it failed once that way).
        fresh_token = re.sub(rb'name="csrf_token" value="[^"]*"', b"", page)
        return fresh_token.replace(number, b"N").replace(email, b"E")

    assert answer(wrong.data, b"TKT-000001", b"eve@example.com") == answer(
        unknown.data, b"TKT-000042", b"ann@example.com"
    )


def test_tracker_and_login_forms_are_rate_limited_with_a_page(client, app, agent):
    """The HTML forms share the API's limits and answer 429 with a page, not JSON."""
    session = Portal(client)
    token = session.token("/track")
    limit = int(app.config["TRACK_RATE_LIMIT_PER_IP"].split()[0])
    codes = [
        client.post(
            "/track", data={"ticket_number": f"TKT-{n:06d}", "email": "a@b.cc", "csrf_token": token}
        ).status_code
        for n in range(limit + 1)
    ]
    assert codes == [404] * limit + [429]
    logins = int(app.config["LOGIN_RATE_LIMIT"].split()[0])
    for _ in range(logins):
        assert session.login(agent.email, "guess-guess").status_code == 401
    blocked = session.login(agent.email, "agent-password-1")
    assert blocked.status_code == 429
    assert blocked.mimetype == "text/html"
    assert b"Too many attempts" in blocked.data


class _DatabaseSaid(Exception):
    """What psycopg2 raises, reduced to the SQLSTATE `is_transient` reads."""

    def __init__(self, pgcode: str) -> None:
        super().__init__(f"SQLSTATE {pgcode}")
        self.pgcode = pgcode


def test_a_form_the_database_fails_now_is_undone_and_asked_again_not_a_500(portal, service, monkeypatch):
    """A deadlock or a serialization failure PostgreSQL still reports (docs/lifecycle.md,
    "Concurrent changes") was a 500 page; the API answers it 503. The form's change is
    rolled back and the page it came from says to try again. Input larger than the
    database can store (SQLSTATE class 54, an index row too large) is refused as the
    input's fault, rolled back too; any other database error (an undefined column) is
    still a bug, never hidden."""
    duplicate, kept = opened(service), opened(service)
    merge = TicketsService.merge

    def merge_then_fail(self: TicketsService, *args: object, **kwargs: object) -> Ticket:
        merge(self, *args, **kwargs)  # type: ignore[arg-type]
        raise OperationalError("SELECT ... FOR NO KEY UPDATE", {}, _DatabaseSaid(sqlstate))

    monkeypatch.setattr(TicketsService, "merge", merge_then_fail)
    sqlstate = "40P01"  # deadlock detected
    page = f"/tickets/{service.display_number(duplicate)}"
    response = portal.post(f"{page}/merge", {"into": service.display_number(kept)}, page=page)
    assert response.status_code == 302 and response.location.endswith(page)
    said = portal.get(page).data
    assert b"The database could not do this just now; nothing was changed. Try again." in said
    db.session.rollback()
    assert db.session.get(Ticket, duplicate.id, populate_existing=True).merged_into_id is None

    sqlstate = "54000"  # program limit exceeded: the same form would fail again
    response = portal.post(f"{page}/merge", {"into": service.display_number(kept)}, page=page)
    assert response.status_code == 302 and response.location.endswith(page)
    assert b"This is larger than the database can store; nothing was changed." in portal.get(page).data
    db.session.rollback()
    assert db.session.get(Ticket, duplicate.id, populate_existing=True).merged_into_id is None

    sqlstate = "42703"  # undefined column: a bug
    with pytest.raises(OperationalError):
        portal.post(f"{page}/merge", {"into": service.display_number(kept)}, page=page)


def test_a_new_ticket_or_reply_the_database_fails_now_comes_back_as_typed_not_a_500(
    portal, service, monkeypatch
):
    """The new-ticket form and the reply box do not go through `perform`: a deadlock,
    a serialization failure or a dropped connection there was a 500 page and the text
    typed was gone (review of writes under failure). Now 503, the form again with the
    text as typed and "try again"; nothing was kept, so no number was taken."""
    existing = opened(service)
    open_ticket, add_message = TicketsService.open_ticket, TicketsService.add_message

    def fails(write):  # type: ignore[no-untyped-def]
        def written_then_failed(self: TicketsService, *args: object, **kwargs: object) -> object:
            write(self, *args, **kwargs)
            raise OperationalError("COMMIT", {}, _DatabaseSaid("40001"))  # serialization failure

        return written_then_failed

    monkeypatch.setattr(TicketsService, "open_ticket", fails(open_ticket))
    monkeypatch.setattr(TicketsService, "add_message", fails(add_message))
    again = b"The database could not do this just now; nothing was changed. Try again."
    form = {
        "subject": "Modem blinks",
        "description": "Red light since noon",
        "requester_email": "c@example.com",
    }
    response = portal.post("/tickets/new", form, page="/tickets/new")
    assert response.status_code == 503 and again in response.data
    assert b"Red light since noon" in response.data and b'value="Modem blinks"' in response.data
    page = f"/tickets/{service.display_number(existing)}"
    response = portal.post(f"{page}/reply", {"body": "Restart the ONT please", "kind": "reply"}, page=page)
    assert response.status_code == 503 and again in response.data
    assert b"Restart the ONT please" in response.data
    db.session.rollback()
    assert db.session.scalars(select(Ticket.number)).all() == [1]
    assert len(db.session.scalars(select(Message)).all()) == 1
    monkeypatch.undo()
    response = portal.post("/tickets/new", form, page="/tickets/new")
    assert response.headers["Location"] == "/tickets/TKT-000002"  # the number not taken before


def test_a_ticket_action_whose_commit_answer_was_lost_says_the_outcome_is_unknown(portal, service):
    """A status change whose COMMIT the database kept while its answer was lost: the
    page said "nothing was changed. Try again." though the ticket had moved, and the
    staff member did it again. The outcome is unknown; the page says so and to look
    before doing it again (docs/web.md, "A lost answer")."""
    ticket = opened(service)
    page = f"/tickets/{service.display_number(ticket)}"
    portal.get(page)  # opened by a person: `new` to `open`
    with commit_answer_lost(lambda statement: statement.startswith("UPDATE tickets")):
        response = portal.post(f"{page}/status", {"status": "in_progress"}, page=page)
    assert response.status_code == 302 and response.location.endswith(page)
    said = portal.get(page).get_data(as_text=True)
    assert "nothing was changed" not in said
    assert "may or may not have been saved" in said
    db.session.rollback()
    assert db.session.get(Ticket, ticket.id, populate_existing=True).status == "in_progress"


@pytest.mark.parametrize("kept", [True, False])
def test_a_ticket_page_whose_move_to_open_lost_its_commit_answer_shows_the_ticket(portal, service, kept):
    """Opening a new ticket moves it to open; the connection drops as that COMMIT
    goes. Staff who only wanted to read the ticket got the outage page, "cannot reach
    its database". The page is shown as the database has it, saying the move may or
    may not have happened and that a reload settles it (docs/web.md, "A lost answer")."""
    ticket = opened(service)
    page = f"/tickets/{service.display_number(ticket)}"
    with commit_answer_lost(lambda statement: statement.startswith("UPDATE tickets"), kept=kept):
        response = portal.get(page)
    said = response.get_data(as_text=True)
    assert response.status_code == 200 and "it may or may not have moved" in said
    assert "Printer on fire" in said and "cannot reach its database" not in said
    shown = "open" if kept else "new"
    assert f'<span class="badge {shown}">' in said
    portal.get(page)  # the reload moves a ticket still new
    db.session.rollback()
    assert db.session.get(Ticket, ticket.id, populate_existing=True).status == "open"


@pytest.mark.parametrize(
    ("path", "form", "page", "table"),
    [
        (
            "/account/canned",
            {"title": "Restart", "body": "Restart the ONT."},
            "/account/canned",
            "canned_replies",
        ),
        ("/account/preferences", {"language": "", "timezone": "Europe/Madrid"}, "/account", "staff_users"),
    ],
)
def test_a_form_outside_perform_whose_commit_answer_was_lost_says_the_outcome_is_unknown(
    portal, path, form, page, table
):
    """Forms that commit by themselves (canned replies, the account page, the admin's
    and the tracker's) showed "cannot reach its database. Try again" when the
    COMMIT's answer was lost, of a change the database may have kept. They say what
    `perform`'s forms say: it may or may not have been saved; check first
    (docs/web.md, "A lost answer")."""
    with commit_answer_lost(
        lambda statement: statement.startswith(("INSERT INTO " + table, "UPDATE " + table))
    ):
        response = portal.post(path, form, page=page)
    said = response.get_data(as_text=True)
    assert response.status_code == 503 and "may or may not have been saved" in said
    assert "cannot reach its database" not in said


def test_a_new_ticket_or_reply_kept_though_its_commit_answer_was_lost_says_done(portal, service):
    """The connection drops as the COMMIT goes, and the database kept the ticket or
    the reply: the form must not say "nothing was changed, try again", which sent
    the same ticket or reply (to the customer) twice. The row is looked for on a new
    connection (docs/web.md, "A lost answer")."""
    existing = opened(service)

    def writes(statement: str) -> bool:
        return statement.startswith("INSERT INTO messages") or "INSERT INTO tickets" in statement

    with commit_answer_lost(writes):
        form = {"subject": "Modem blinks", "description": "Red light", "requester_email": "c@example.com"}
        created = portal.post("/tickets/new", form, page="/tickets/new")
        page = f"/tickets/{service.display_number(existing)}"
        replied = portal.post(f"{page}/reply", {"body": "Restart the ONT please", "kind": "reply"}, page=page)
    assert created.status_code == 302 and created.headers["Location"] == "/tickets/TKT-000002"
    assert replied.status_code == 302


def _mark(email: str) -> object:
    db.session.rollback()
    return db.session.execute(select(Contact.undeliverable_since).where(Contact.email == email)).scalar()


def test_an_admin_clears_a_customers_undeliverable_mark_on_the_ticket_page(app, admin_portal, agent, service):
    """A bounce marked the requester's address; they fixed their mailbox and phoned.
    Only `flask addresses deliverable` on the server could resume their mail. The
    ticket page shows the mark to every staff member, and an admin clears it there:
    a POST with its CSRF token and the confirmation box ticked, for an address of
    this ticket only; done twice, the second says there was nothing to do
    (docs/outbound-mail.md, "Loop rules")."""
    ticket = opened(service)
    contacts.mark_undeliverable(db.session, "ann@example.com")
    contacts.mark_undeliverable(db.session, "bob@example.com")  # not on this ticket
    db.session.commit()
    page = f"/tickets/{service.display_number(ticket)}"
    clear = f"{page}/deliverable"
    shown = admin_portal.get(page).get_data(as_text=True)
    assert "notifications are not mailed" in shown and f'action="{clear}"' in shown

    as_agent = Portal(app.test_client())
    assert as_agent.login(agent.email, "agent-password-1").status_code == 302
    seen = as_agent.get(page).get_data(as_text=True)
    assert "notifications are not mailed" in seen and f'action="{clear}"' not in seen
    form = {"address": "ann@example.com", "confirm": "yes"}
    assert as_agent.post(clear, form, page=page).status_code == 403
    assert admin_portal.post(clear, form, page=page, csrf=False).status_code == 400
    unconfirmed = admin_portal.post(clear, {"address": "ann@example.com"}, page=page)
    assert unconfirmed.status_code == 302 and unconfirmed.location.endswith(page)
    assert "Tick the box to confirm" in admin_portal.get(page).get_data(as_text=True)
    elsewhere = admin_portal.post(clear, {"address": "bob@example.com", "confirm": "yes"}, page=page)
    assert elsewhere.status_code == 302
    assert "That address is not on this ticket." in admin_portal.get(page).get_data(as_text=True)
    assert _mark("ann@example.com") is not None and _mark("bob@example.com") is not None

    done = admin_portal.post(clear, form, page=page)
    assert done.status_code == 302 and done.location.endswith(page)
    assert _mark("ann@example.com") is None and _mark("bob@example.com") is not None
    shown = admin_portal.get(page).get_data(as_text=True)
    assert "Mail to ann@example.com goes again from now on." in shown
    assert "notifications are not mailed" not in shown
    again = admin_portal.post(clear, form, page=page)
    assert again.status_code == 302
    assert "ann@example.com was not marked undeliverable." in admin_portal.get(page).get_data(as_text=True)


def test_clearing_an_undeliverable_mark_on_the_ticket_page_writes_its_history(admin_portal, admin, service):
    """ "Mail works again" left nothing on the ticket: its history's field CHECK
    allowed no row for it (docs/outbound-mail.md, "Loop rules"). Since migration 0048
    it writes one, shown on the page in the reader's language: the admin, the
    address, and undeliverable → works again; a click that finds no mark writes none."""
    ticket = opened(service)
    contacts.mark_undeliverable(db.session, "ann@example.com")
    db.session.commit()
    page = f"/tickets/{service.display_number(ticket)}"
    form = {"address": "ann@example.com", "confirm": "yes"}
    for _ in range(2):
        assert admin_portal.post(f"{page}/deliverable", form, page=page).status_code == 302
    db.session.rollback()
    rows = (
        db.session.execute(
            select(TicketHistory).where(
                TicketHistory.ticket_id == ticket.id, TicketHistory.field == "deliverable"
            )
        )
        .scalars()
        .all()
    )
    assert [(r.old_value, r.new_value, r.reason, r.actor_staff_id) for r in rows] == [
        ("undeliverable", "deliverable", "ann@example.com", admin.id)
    ]
    shown = admin_portal.get(page).get_data(as_text=True)
    assert "Mail delivery: undeliverable → works again" in shown and "— ann@example.com" in shown
    admin.language = "es"
    db.session.commit()
    shown = admin_portal.get(page).get_data(as_text=True)
    assert "Entrega de correo: no entregable → vuelve a funcionar" in shown


def _clearings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "helpdesk.services.contacts"]


def test_clearing_an_undeliverable_mark_logs_who_cleared_which_addresses(
    admin_portal, admin, service, caplog
):
    """Clearing a mark resumes mail to an address that bounced, and left no trace: when
    it bounced again nobody could tell who had cleared it, or when. One INFO line now
    names the address given, the contacts cleared (every spelling of the mailbox) and
    who cleared it; a click that finds no mark logs nothing (docs/outbound-mail.md)."""
    caplog.set_level(logging.INFO, logger="helpdesk.services.contacts")
    ticket = opened(service)
    db.session.add(Contact(email="ann@xn--bcher-kva.example", name="Ann"))
    ticket.participants.append(Participant(email="ann@bücher.example", name="Ann"))
    db.session.commit()
    db.session.execute(update(Contact).values(undeliverable_since=now()))
    db.session.commit()
    page = f"/tickets/{service.display_number(ticket)}"
    for address in ("ann@bücher.example", "ann@example.com", "ann@example.com"):
        form = {"address": address, "confirm": "yes"}
        assert admin_portal.post(f"{page}/deliverable", form, page=page).status_code == 302
    assert _clearings(caplog) == [
        "undeliverable mark cleared: address='ann@bücher.example' "
        "contacts=['ann@xn--bcher-kva.example'] by='Ada Admin <admin@helpdesk.test>' "
        f"kind=staff staff_id={admin.id}",
        "undeliverable mark cleared: address='ann@example.com' contacts=['ann@example.com'] "
        f"by='Ada Admin <admin@helpdesk.test>' kind=staff staff_id={admin.id}",
    ]


def test_a_clearing_in_the_portal_is_logged_by_gunicorn_as_operators_run_it(
    database_url, admin, service, tmp_path
):
    """The clearing's INFO line reached no log from the portal: gunicorn configures
    only its own loggers, so Python passed on the app's warnings alone and the line
    that says who resumed mail to a bounced address was dropped (gunicorn.conf.py
    gives the app's loggers a handler; docs/operations.md)."""
    ticket = opened(service)
    db.session.execute(update(Contact).values(undeliverable_since=now()))
    db.session.commit()
    page = f"/tickets/{service.display_number(ticket)}"
    email = admin.email
    db.session.rollback()  # on SQLite an open transaction holds the write lock gunicorn needs
    server = WebServer(database_url, tmp_path)
    try:
        browser = portal_login(server.base, email, "admin-password-1")
        form = {"address": "ann@example.com", "confirm": "yes"}
        post_form(browser, f"{server.base}{page}/deliverable", form, page=f"{server.base}{page}")
    finally:
        server.stop()
    assert server.process.stderr is not None
    logged = server.process.stderr.read()
    assert "undeliverable mark cleared: address='ann@example.com'" in logged, logged
    assert f"by='Ada Admin <admin@helpdesk.test>' kind=staff staff_id={admin.id}" in logged


def test_the_ticket_page_shows_and_clears_a_mark_on_the_mailbox_a_fullwidth_address_is_sent_to(
    admin_portal, service
):
    """A requester stored under a fullwidth spelling is mailed at the punycode form,
    and a bounce there marks that spelling; the mark is shown on their ticket and
    cleared from it (`addresses.mailbox_spellings`). Marked after her mail: her own
    mail clears it (`contacts.heard_from`)."""
    wide = "ana@\uff42\u00fccher.example"
    db.session.add_all(
        [Contact(email=wide, name="Ana"), Contact(email="ana@xn--bcher-kva.example", name="Ana")]
    )
    db.session.commit()
    ticket = service.open_ticket(
        subject="Router",
        description="No sync.",
        requester_email=wide,
        channel="email",
        actor=Actor.customer(wide),
    )
    db.session.execute(
        update(Contact).where(Contact.email == "ana@xn--bcher-kva.example").values(undeliverable_since=now())
    )
    db.session.commit()
    assert ticket.requester.email == wide
    page = f"/tickets/{service.display_number(ticket)}"
    assert "notifications are not mailed" in admin_portal.get(page).get_data(as_text=True)
    assert (
        admin_portal.post(f"{page}/deliverable", {"address": wide, "confirm": "yes"}, page=page).status_code
        == 302
    )
    assert _mark("ana@xn--bcher-kva.example") is None
    assert "notifications are not mailed" not in admin_portal.get(page).get_data(as_text=True)
