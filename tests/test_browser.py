"""A support desk's day in a real headless Chromium (Debian's, driven by Playwright):
log in, filter the queue, open a ticket, reply, note, resolve, approve a held mail,
authorize a domain, read the dashboard, and look the ticket up on /track as the
customer; the dashboard's charts over a month of traffic.

The portal runs on a real HTTP server on loopback with production cookie flags
(Secure, HttpOnly, SameSite=Lax) and CSRF on. Screenshots of the queue, the
ticket page and the dashboard are saved under tests/artifacts/ on every run (docs/web.md shows them), and
of the page in hand when a step fails.
"""

from __future__ import annotations

import random
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import time_machine
from sqlalchemy import select
from werkzeug.serving import make_server

from config import TestingConfig as PortalConfig
from helpdesk import create_app
from helpdesk.clock import now
from helpdesk.extensions import db
from helpdesk.models import AuthorizedSender, Message, QuarantineItem, StaffUser, Ticket
from helpdesk.services import Actor, TicketsService
from helpdesk.services.staff import StaffService
from helpdesk.services.teams import TeamsService
from tests.support.database import open_ticket, resolve
from tests.support.mail import message
from tests.support.pgserver import free_port
from tests.support.tls import self_signed_certificate

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = "/usr/bin/chromium"
ADMIN_EMAIL = "admin@helpdesk.test"  # the `admin` fixture's; ORM attributes would hit the DB
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture
def live_portal(database_url: str) -> Iterator[str]:
    """The portal on a real server thread, with the cookie flags of production."""
    with _served(database_url) as url:
        yield url


@contextmanager
def _served(database_url: str, tls: tuple[Path, Path] | None = None, **overrides: object) -> Iterator[str]:
    """The portal's URL on a server thread; over HTTPS with the certificate and key `tls`."""
    app = create_app(PortalConfig, SQLALCHEMY_DATABASE_URI=database_url, SECURE_COOKIES=True, **overrides)
    certificate = (str(tls[0]), str(tls[1])) if tls else None
    server = make_server("127.0.0.1", free_port(), app, threaded=True, ssl_context=certificate)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        with app.app_context():
            db.engine.dispose()


@pytest.fixture
def browser_page(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing; `make test` installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(15_000)
        try:
            yield page
        finally:
            report = getattr(request.node, "rep_call", None)
            if report is not None and report.failed:
                page.screenshot(path=str(ARTIFACTS / f"failure-{request.node.name}.png"), full_page=True)
            browser.close()


def _flash(page) -> str:  # type: ignore[no-untyped-def]
    return page.locator(".flash").first.inner_text()


def _log_in(page, live_portal: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{live_portal}/login")
    page.fill("#email", ADMIN_EMAIL)
    page.fill("#password", "admin-password-1")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_portal}/tickets")


def test_a_support_day_in_a_real_browser(app, admin, gateway, live_portal, browser_page):
    service = TicketsService.from_config(db.session, app.config)
    for subject, priority in (("Printer on fire", "urgent"), ("Invoice question", "low")):
        service.open_ticket(
            subject=subject,
            description=f"{subject}: please help.",
            requester_email="ann@example.com",
            requester_name="Ann",
            priority=priority,
            channel="email",
            actor=Actor.customer("ann@example.com", "Ann"),
            is_email_originated=True,
        )
    db.session.commit()
    gateway.send(message(sender="newcomer@partner.example", subject="Access to the portal?"))
    db.session.rollback()  # from here on the test thread holds no SQLite lock between reads
    page = browser_page

    # Log in.
    page.goto(f"{live_portal}/tickets")
    assert page.url.startswith(f"{live_portal}/login")
    page.fill("#email", ADMIN_EMAIL)
    page.fill("#password", "admin-password-1")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_portal}/tickets")
    session_cookie = next(c for c in page.context.cookies() if c["name"] == "__Host-helpdesk_session")
    assert session_cookie["secure"] and session_cookie["httpOnly"]

    # Filter the queue.
    assert page.locator("tbody tr").count() == 2
    page.select_option("#priority", "urgent")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**priority=urgent**")
    assert page.locator("tbody tr").count() == 1
    page.screenshot(path=str(ARTIFACTS / "queue.png"), full_page=True)

    # Open the ticket: it becomes open.
    page.click("text=TKT-000001")
    page.wait_for_url(f"{live_portal}/tickets/TKT-000001")
    assert page.locator("aside .badge").first.inner_text() == "Open"

    # Reply, then an internal note.
    page.fill("#body", "A technician is on the way with an extinguisher.")
    page.click("button[value=reply]")
    assert _flash(page) == "Reply sent."
    page.fill("#body", "Third fire this month: replace the printer.")
    page.click("button[value=note]")
    assert _flash(page) == "Note added."
    assert page.locator("article.message.note").count() == 1

    # Move it on to resolved, through the only buttons offered.
    page.click("button[name=status][value=in_progress]")
    assert _flash(page) == "Status is now in progress."
    page.fill("#reason", "extinguished")
    page.click("button[name=status][value=resolved]")
    assert _flash(page) == "Status is now resolved."
    page.screenshot(path=str(ARTIFACTS / "ticket.png"), full_page=True)
    ticket = db.session.execute(select(Ticket).where(Ticket.number == 1)).scalar_one()
    assert ticket.status == "resolved"
    kinds = (
        db.session.execute(select(Message.kind).where(Message.ticket_id == ticket.id).order_by(Message.id))
        .scalars()
        .all()
    )
    assert kinds == ["reply", "reply", "note"]
    db.session.rollback()

    # Approve the held mail: it becomes the next ticket.
    page.click("nav >> text=Quarantine")
    assert page.locator("tbody tr").count() == 1
    page.click("text=Access to the portal?")
    assert "newcomer@partner.example" in page.locator("pre.raw").inner_text()
    page.click("button:has-text('Approve')")
    assert _flash(page).startswith("Approved: created TKT-000003")
    assert db.session.execute(select(QuarantineItem.state)).scalar_one() == "approved"
    db.session.rollback()

    # Authorize the sender's whole domain.
    page.click("nav >> text=Senders")
    page.fill("#pattern", "@partner.example")
    page.fill("#organization", "Partner Ltd")
    page.click("button:has-text('Authorize')")
    assert _flash(page) == "Authorized @partner.example for Partner Ltd."
    assert db.session.execute(select(AuthorizedSender.pattern)).scalar_one() == "@partner.example"
    db.session.rollback()

    # The dashboard shows the day's figures, with nothing inline for the CSP to block.
    blocked: list[str] = []
    page.on(
        "console",
        lambda entry: blocked.append(entry.text) if "Content Security Policy" in entry.text else None,
    )
    page.click("nav >> text=Dashboard")
    figures = page.locator("main").inner_text()
    assert "Resolution SLA met" in figures and "100%" in figures
    assert page.locator("figure.chart svg.chart-svg").count() == 6
    assert blocked == []

    # The customer looks the ticket up, without an account.
    page.click("button:has-text('Log out')")
    page.goto(f"{live_portal}/track")
    page.fill("#ticket_number", "tkt-1")
    page.fill("#email", "ann@example.com")
    page.click("button:has-text('Look up')")
    view = page.locator("main").inner_text()
    assert "TKT-000001 · Printer on fire" in view and "Resolved" in view
    assert "A technician is on the way" in view
    assert "Third fire this month" not in view  # internal notes never reach the customer
    page.fill("#email", "mallory@example.com")
    page.click("button:has-text('Look up')")
    assert page.locator("[role=alert]").inner_text() == ("No ticket matches this number and email address.")


def test_xss_in_mail_does_not_run_in_the_portal(app, admin, live_portal, browser_page):
    service = TicketsService.from_config(db.session, app.config)
    ticket = service.open_ticket(
        subject="<img src=x onerror=\"document.title='pwned'\">",
        description="<script>document.title='pwned'</script>",
        requester_email="eve@example.com",
        channel="email",
        actor=Actor.customer("eve@example.com"),
        body_html="<p>Hi</p><img src=x onerror=\"document.title='pwned'\">"
        "<a href=\"javascript:document.title='pwned'\">click</a>",
    )
    db.session.commit()
    number = f"TKT-{ticket.number:06d}"
    db.session.rollback()
    page = browser_page
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    _log_in(page, live_portal)
    page.goto(f"{live_portal}/tickets/{number}")
    page.click("summary")  # show the sanitized HTML version
    page.click("text=click")
    page.wait_for_timeout(300)
    assert page.title() != "pwned" and not dialogs
    assert "<script>document.title" in page.locator("article .body").first.inner_text()


CUSTOMER_CHANNELS = ("email", "web", "chat", "whatsapp", "phone", "api")


def _a_month_of_tickets(app, admin) -> None:  # type: ignore[no-untyped-def]
    """Thirty days of traffic on every customer channel, most answered (some late)
    and resolved, written through the service at the past moments (time-machine)."""
    service = TicketsService.from_config(db.session, app.config)
    staff = Actor.staff(admin)
    pick = random.Random(2026)
    moment = now()
    for back in range(29, -1, -1):
        for n in range(pick.randint(2, 5) + back % 4):
            created = moment - timedelta(days=back, hours=pick.uniform(3, 21))
            email, channel = f"customer-{back}-{n}@example.com", pick.choice(CUSTOMER_CHANNELS)
            with time_machine.travel(created, tick=False):
                ticket = open_ticket(
                    service,
                    Actor.customer(email),
                    requester_email=email,
                    channel=channel,
                    is_email_originated=channel == "email",
                    priority=pick.choice(("low", "medium", "high", "urgent")),
                    acknowledge=False,
                )
            if pick.random() < 0.85:
                with time_machine.travel(created + timedelta(minutes=pick.uniform(5, 150)), tick=False):
                    service.add_message(ticket, body="We are on it.", actor=staff, channel="web")
                    db.session.commit()
            if pick.random() < 0.7:
                with time_machine.travel(created + timedelta(hours=pick.uniform(2.5, 3)), tick=False):
                    resolve(service, ticket, staff)


def test_the_dashboard_draws_its_charts_in_a_real_browser(app, admin, live_portal, browser_page):
    """docs/web.md, "Dashboard": the trends as inline SVG under the strict CSP, with
    a size, the stylesheet's colours and the figures as text; 90 days and one
    channel a click away."""
    _a_month_of_tickets(app, admin)
    db.session.rollback()  # the test thread holds no SQLite lock while the server reads
    page = browser_page
    problems: list[str] = []
    page.on(
        "console",
        lambda entry: problems.append(entry.text) if "Content Security Policy" in entry.text else None,
    )
    page.on("pageerror", lambda error: problems.append(str(error)))
    _log_in(page, live_portal)
    page.click("nav >> text=Dashboard")
    charts = page.locator("figure.chart svg.chart-svg")
    assert charts.count() == 6
    for index in range(6):
        box = charts.nth(index).bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 80, box
    assert page.locator("#chart-created rect.bar").count() >= 30  # a bar or more every day
    assert page.locator("svg.chart-svg polyline.line").count() >= 3
    # Coloured by the stylesheet's classes: nothing inline for the CSP to block.
    web = page.locator("#chart-created rect.bar.tone-0").first.evaluate("bar => getComputedStyle(bar).fill")
    assert web == "rgb(78, 121, 167)"
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    page.click("#chart-backlog summary")  # the figures as text
    assert page.locator("#chart-backlog tbody tr").first.is_visible()
    assert page.locator("#chart-backlog tbody tr").count() == 30

    page.click("main nav >> text=90 days")
    page.wait_for_url("**days=90**")
    assert page.locator("#chart-created rect.day").count() == 90
    page.click("main nav >> text=whatsapp")
    page.wait_for_url("**channel=whatsapp**")
    assert page.locator("h1").inner_text() == "Dashboard · WhatsApp"
    assert page.locator("#chart-created rect.day").count() == 90
    assert page.locator("#chart-created rect.bar.tone-4").count() >= 1  # whatsapp's layer
    assert page.locator("#chart-created rect.bar.tone-2").count() == 0  # no email here
    assert problems == []


# Stands in for a browser without the clipboard API (an older one, or a page that is
# no secure context), and records what the script's fallback copies: the command and
# the text selected in the focused field at that moment.
WITHOUT_CLIPBOARD_API = """
Object.defineProperty(Navigator.prototype, "clipboard", {get: () => undefined});
window.copyCommands = [];
const execCommand = document.execCommand.bind(document);
document.execCommand = (command, ...rest) => {
  const field = document.activeElement;
  window.copyCommands.push([command, field.value.slice(field.selectionStart, field.selectionEnd)]);
  return execCommand(command, ...rest);
};
"""


@pytest.mark.parametrize("clipboard", ["clipboard_api", "fallback"])
def test_the_share_text_copy_button_copies_it(app, admin, live_portal, browser_page, clipboard):
    service = TicketsService.from_config(db.session, app.config)
    ticket = service.open_ticket(
        subject="Internet lento desde ayer",
        description="Tengo 2 Mbps y contraté 100.",
        requester_email="lucia@example.com",
        requester_name="Lucía Pérez",
        priority="high",
        category="technical",
        channel="chat",
        actor=Actor.customer("lucia@example.com", "Lucía Pérez"),
    )
    ticket.requester.language = "es"
    db.session.commit()
    db.session.rollback()
    page = browser_page
    problems: list[str] = []
    page.on(
        "console",
        lambda entry: problems.append(entry.text) if "Content Security Policy" in entry.text else None,
    )
    page.on("pageerror", lambda error: problems.append(str(error)))
    if clipboard == "fallback":
        page.add_init_script(WITHOUT_CLIPBOARD_API)
    else:
        page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_portal)
    _log_in(page, live_portal)
    page.goto(f"{live_portal}/tickets/TKT-000001")
    page.click("summary:has-text('Message for the customer')")
    text = page.input_value("#share-text")
    assert "Referencia: TKT-000001" in text and "Estado: Abierto" in text
    page.click("button[data-copy=share-text]")
    status = page.locator("[data-copy-status=share-text]")
    status.filter(has_text="Copied.").wait_for()
    if clipboard == "fallback":
        assert page.evaluate("window.copyCommands") == [["copy", text]]
    else:
        assert page.evaluate("navigator.clipboard.readText()") == text
    assert problems == []


def test_a_ticket_mailed_in_appears_in_an_open_queue_page_without_a_reload(
    app, admin, gateway, senders, database_url, browser_page
):
    """Live updates (docs/web.md): the queue page polls and swaps the new row in."""
    problems: list[str] = []
    page = browser_page
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on(
        "console",
        lambda entry: problems.append(entry.text) if "Content Security Policy" in entry.text else None,
    )
    page.on(
        "response",
        lambda answer: (
            problems.append(f"{answer.status} {answer.url}")
            if answer.status >= 400 and not answer.url.endswith("/favicon.ico")
            else None
        ),
    )
    with _served(database_url, LIVE_POLL_SECONDS=1) as portal_url:
        _log_in(page, portal_url)
        assert page.locator("#live-queue").inner_text().count("TKT-") == 0
        page.locator("[data-live-url]").wait_for(state="attached")
        url_before = page.url
        code, _ = gateway.send(message(sender="ann@example.com", subject="Sin señal en Col. Roma"))
        assert code == 250
        db.session.rollback()
        page.locator("#live-queue", has_text="Sin señal en Col. Roma").wait_for(timeout=15_000)
        assert page.url == url_before  # no navigation: the row was swapped in
        assert "TKT-000001" in page.locator("#live-queue").inner_text()
        # A ticked box survives the next swap.
        page.locator("input[name=tickets][value=TKT-000001]").check()
        gateway.send(message(sender="mario@corp.example", subject="Lentitud"))
        db.session.rollback()
        page.locator("#live-queue", has_text="Lentitud").wait_for(timeout=15_000)
        assert page.locator("input[name=tickets][value=TKT-000001]").is_checked()
    assert problems == []


def test_an_isp_day_routing_escalation_merge_and_bulk_tags(
    app, admin, gateway, senders, live_portal, browser_page
):
    """docs/isp-operations.md in a real browser: a new installation goes to field
    operations, an outage is escalated to L2, its duplicate merged, both tagged."""
    teams = TeamsService(db.session)
    for name in ("support_team", "field_ops"):
        teams.add(name)
    teams.set_route("general_inquiry", "support_team")
    teams.set_route("installation_request", "field_ops")
    second, _ = StaffService(db.session).create(
        email="sol@helpdesk.test", name="Sol Segundo", role="agent", password="second-password-1"
    )
    db.session.commit()
    second_id = second.id  # read now: the test thread must hold no SQLite lock later
    gateway.send(message(sender="ann@example.com", subject="Sin internet en Col. Roma"))
    gateway.send(message(sender="zed@other.example", subject="Sin internet"))
    db.session.rollback()
    page = browser_page
    _log_in(page, live_portal)

    # A new installation: routed to field operations by its type.
    page.click("nav >> text=New ticket")
    page.fill("#requester_email", "lucia@example.com")
    page.fill("#subject", "Instalación fibra 300 Mbps")
    page.fill("#description", "Cliente nuevo.")
    page.select_option("#ticket_type", "installation_request")
    page.fill("#service_address", "Av. Insurgentes Sur 1602, CDMX")
    page.check("input[name=affected_services][value=internet]")
    page.click("button:has-text('Open ticket')")
    assert _flash(page) == "Opened TKT-000003."
    details = page.locator("#live-details").inner_text()
    assert "field ops" in details and "Av. Insurgentes Sur 1602, CDMX" in details

    # The outage goes to the second level, to Sol, with the reason.
    page.goto(f"{live_portal}/tickets/TKT-000001")
    page.select_option("#level", "L2")
    page.select_option("#escalate-assignee", str(second_id))
    page.fill("#escalate-reason", "Tres clientes en la misma OLT.")
    page.click("button:has-text('Escalate')")
    assert _flash(page) == "Escalated to L2."
    assert page.locator("section[aria-label=Escalation] .badge").inner_text() == "L2"
    page.screenshot(path=str(ARTIFACTS / "isp-ticket.png"), full_page=True)

    # Its duplicate is merged into it.
    page.goto(f"{live_portal}/tickets/TKT-000002")
    page.fill("#merge-into", "tkt-1")
    page.click("button:has-text('Merge and close this ticket')")
    assert _flash(page) == "Merged into TKT-000001."
    assert "Merged into" in page.locator("main").inner_text()

    # Both outage tickets get a tag at once from the queue.
    page.goto(f"{live_portal}/tickets")
    page.check("input[name=tickets][value=TKT-000001]")
    page.check("input[name=tickets][value=TKT-000002]")
    page.select_option("#bulk-action", "tag")
    page.fill("#bulk-tags", "olt-roma")
    page.click("button:has-text('Apply to selected')")
    assert _flash(page) == "2 tickets changed."
    page.goto(f"{live_portal}/tickets?tag=olt-roma")
    assert page.locator("#live-queue tbody tr").count() == 2
    page.goto(f"{live_portal}/tickets?team=field_ops")
    assert page.locator("#live-queue tbody tr").count() == 1
    page.screenshot(path=str(ARTIFACTS / "isp-queue.png"), full_page=True)
    page.click("nav >> text=Teams")
    page.screenshot(path=str(ARTIFACTS / "teams.png"), full_page=True)
    db.session.rollback()
    outage = db.session.execute(select(Ticket).where(Ticket.number == 1)).scalar_one()
    assert (outage.escalation_level, outage.assignee_id) == ("L2", second_id)


def test_mail_html_makes_the_browser_ask_the_portal_for_nothing(app, admin, live_portal, browser_page):
    """An <img> back to the portal loaded with the staff cookie (the CSP allows
    `img-src 'self'`), even folded away in a closed <details>: GET /tickets/<number>
    moved each named ticket from new to open in the viewer's name. The row is written
    as it was stored before the fix: the ticket page cleans it again."""
    service = TicketsService.from_config(db.session, app.config)
    carrier = open_ticket(service, subject="Carrier")
    victims = [open_ticket(service, subject=f"Victim {n}", requester_email=f"v{n}@x.test") for n in range(2)]
    numbers = [service.display_number(victim) for victim in victims]
    path = f"{live_portal}/tickets/{service.display_number(carrier)}"
    carrier.messages[0].body_html = "".join(
        f'<p>hi</p><img src="/tickets/{n}" alt=""><img src="{live_portal}/tickets/{n}" alt="">'
        for n in numbers
    )
    db.session.commit()  # and nothing read until the page is done: SQLite's lock is the writer's
    asked: list[str] = []
    page = browser_page
    page.on("request", lambda request: asked.append(request.url))
    _log_in(page, live_portal)
    page.goto(path)
    page.click("details.html summary")
    page.wait_for_load_state("networkidle")
    assert not [url for url in asked if any(url.endswith(f"/tickets/{n}") for n in numbers)], asked
    db.session.rollback()
    assert [db.session.get(Ticket, victim.id).status for victim in victims] == ["new", "new"]


def test_an_opened_formatted_version_stays_open_through_a_live_refresh(
    app, admin, database_url, browser_page
):
    """The live refresh swapped the thread in whole and folded up the "Formatted
    version" a staff member had just opened; opening a new ticket is a change, so it
    happened on every first look (found by review). Open details stay open, as ticked
    boxes stay ticked."""
    service = TicketsService.from_config(db.session, app.config)
    ticket = open_ticket(service, subject="Factura")
    ticket.messages[0].body_html = "<p>Adjunto la <b>factura</b>.</p>"
    path, ticket_id, admin_id = service.display_number(ticket), ticket.id, admin.id
    db.session.commit()  # and nothing read until the page is done: SQLite's lock is the writer's
    page = browser_page
    with _served(database_url, LIVE_POLL_SECONDS=1) as portal_url:
        _log_in(page, portal_url)
        page.goto(f"{portal_url}/tickets/{path}")
        page.locator("[data-live-url]").wait_for(state="attached")
        page.click("details.html summary")
        assert page.locator("details.html").get_attribute("open") is not None
        service.add_message(
            db.session.get(Ticket, ticket_id),
            body="Mirando.",
            actor=Actor.staff(db.session.get(StaffUser, admin_id)),
            internal=True,
            channel="web",
        )
        db.session.commit()
        page.locator("#live-thread", has_text="Mirando.").wait_for(timeout=15_000)
        assert page.locator("details.html").get_attribute("open") is not None


@contextmanager
def _page_served(html: str, tls: tuple[Path, Path]) -> Iterator[int]:
    """One HTML page, over HTTPS on a port of its own (the port is yielded)."""
    body = html.encode()

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", free_port()), Page)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(tls[0]), str(tls[1]))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_a_sibling_hosts_pictures_and_frames_open_no_ticket_in_a_real_browser(
    app, admin, database_url, tmp_path
):
    """The portal at helpdesk.isp.example, over HTTPS with the production cookie
    (`__Host-`, Secure, SameSite=Lax), and a page at pages.isp.example, a sibling host
    (an ISP's customer web space, say): the same site, so Chromium sends the staff
    cookie with that page's `<img>` and `<iframe>` of portal pages. Each moved its
    ticket from new to open in the name of the admin who looked at the page. Now
    they are refused (Fetch Metadata, docs/security.md); a link on the same page,
    followed, still opens its ticket."""
    from playwright.sync_api import sync_playwright

    service = TicketsService.from_config(db.session, app.config)
    numbers = [service.display_number(open_ticket(service, subject=f"Outage {n}")) for n in range(3)]
    db.session.commit()  # and nothing read until the page is done: SQLite's lock is the writer's
    tls = self_signed_certificate(tmp_path)
    with _served(database_url, tls=tls) as served:
        portal = served.replace("127.0.0.1", "helpdesk.isp.example")
        sibling_page = (
            f'<img src="{portal}/tickets/{numbers[0]}" alt="">'
            f'<iframe src="{portal}/tickets/{numbers[1]}"></iframe>'
            f'<a id="follow" href="{portal}/tickets/{numbers[2]}">the outage</a>'
        )
        with _page_served(sibling_page, tls) as port, sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM,
                args=[*LAUNCH_ARGS, "--host-resolver-rules=MAP *.isp.example 127.0.0.1"],
            )
            try:
                page = browser.new_context(ignore_https_errors=True).new_page()
                page.set_default_timeout(15_000)
                _log_in(page, portal)
                page.goto(f"https://pages.isp.example:{port}/")
                page.wait_for_load_state("networkidle")
                page.click("#follow")
                page.wait_for_url(f"{portal}/tickets/{numbers[2]}")
                assert numbers[2] in page.locator("h1").inner_text()
            finally:
                browser.close()
    db.session.rollback()
    statuses = db.session.execute(select(Ticket.status).order_by(Ticket.number)).scalars().all()
    assert statuses == ["new", "new", "open"]
