"""Staff read the portal in their language and time zone (SPEC §13, docs/languages.md).

A staff member who chose Spanish reads every portal page in Spanish: each page,
filled with a ticket that went through everything a ticket can go through, is
searched for the English of every catalog entry and for English function words,
and must hold neither. What the page marks as another language (`lang="en"`: a
reason the mail gateway recorded) or as not to be translated (`translate="no"`:
a raw mail) is the customer's or the machine's, not the product's words, and is
left out. The account page stores the choice and refuses what is not one; the
browser's language counts when there is no choice; times are in the staff
member's zone and say so; staff set a customer's language on the ticket page
(and over the API). The services' English messages the portal shows are all
known to helpdesk.wording, checked by reading the services' source.
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import re
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path

import pytest
import time_machine
from babel.messages.pofile import read_po
from flask import Flask
from sqlalchemy import select

from helpdesk import languages, wording
from helpdesk.errors import InvalidTransition
from helpdesk.extensions import db
from helpdesk.inbound.ingest import Envelope, Outcome, ingest, quarantine_unfetchable, quarantine_unfinished
from helpdesk.inbound.parser import ENCLOSED_NOT_READ
from helpdesk.models import (
    Contact,
    ImapMailboxState,
    InboundDuplicates,
    InboundMail,
    QuarantineItem,
    StaffUser,
    Ticket,
    TicketHistory,
)
from helpdesk.services import Actor, TicketsService, links, satisfaction, tags
from helpdesk.services.canned import CannedRepliesService
from helpdesk.services.integrations import IntegrationsService
from helpdesk.services.senders import SendersService
from helpdesk.services.staff import StaffService
from helpdesk.services.teams import TeamsService
from helpdesk.services.tickets import NewAttachment
from helpdesk.sla import Breach
from tests.support.app import CLOCK_START, ApiClient, Portal, login_tokens
from tests.support.outbox import outbox_row
from tests.test_browser import _served, browser_page  # noqa: F401  (the browser harness)

MEXICO = "America/Mexico_City"
SPANISH_BROWSER = {"Accept-Language": "es-MX,es;q=0.9,en;q=0.5"}
CUSTOMER = Actor.customer("lucia@cliente.test", "Lucía Pérez")
CATALOG = languages.TRANSLATIONS_DIR / "es" / "LC_MESSAGES" / "messages.po"
ROOT = Path(__file__).resolve().parent.parent


# -- what is still English on a page -------------------------------------------------

# English words no Spanish sentence uses ("a", "no", "has", "me" are Spanish too; "From"
# is also a mail header's name, which Spanish sentences name as it is).
ENGLISH_ONLY_WORDS = frozenset(
    "the and with your this that been have was are not any yet for by to of on is it at or be an "
    "into only will there here these those".split()
)
_WORDS = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)*")  # "Reply-To" is one
_SETTING = re.compile(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b")  # a setting's name (MAX_HTML_TO_TEXT_CHARS)
_READ_ATTRIBUTES = ("title", "placeholder", "aria-label", "alt", "label", "data-label", "data-copied")
_VOID = frozenset("area base br col embed hr img input link meta source track wbr".split())
_PLACEHOLDER = re.compile(r"%\(\w+\)[sd]|%[sd]")


class _Reader(HTMLParser):
    """The text a person reads on a page (element text and the attributes read out),
    without scripts, styles, and parts marked as another language than the page's
    or as not to be translated."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, bool]] = []
        self.parts: list[str] = []
        self.language = "es"  # a fragment without <html lang> is meant to be Spanish

    @property
    def skipping(self) -> bool:
        return bool(self.stack) and self.stack[-1][1]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        lang = values.get("lang", "")
        if tag == "html":
            self.language = lang
        skip = (
            self.skipping
            or tag in ("script", "style")
            or (bool(lang) and not lang.startswith(self.language))
            or values.get("translate") == "no"
        )
        if not skip:
            self.parts.extend(values[name] for name in _READ_ATTRIBUTES if values.get(name))
            if values.get("data-copy-failed"):
                self.parts.append(values["data-copy-failed"])
        if tag not in _VOID:
            self.stack.append((tag, skip))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        for index in range(len(self.stack) - 1, -1, -1):
            if self.stack[index][0] == tag:
                del self.stack[index:]
                return

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


def read_text(page: str) -> str:
    reader = _Reader()
    reader.feed(page)
    return " ".join(" ".join(reader.parts).split())


@functools.cache
def english_phrases() -> tuple[str, ...]:
    """Every English text of the catalog, cut at its placeholders and markup: the
    pieces that have a word in them and that no Spanish text of the catalog keeps
    as they are ("ticket", "SLA", the header name "From")."""
    with open(CATALOG, "rb") as po:
        catalog = read_po(po, locale="es")
    messages = [message for message in catalog if message.id and message.string]
    spanish = " ".join(
        " ".join(message.string) if isinstance(message.string, tuple) else message.string
        for message in messages
    )
    found: set[str] = set()
    for message in messages:
        for msgid in message.id if isinstance(message.id, tuple) else (message.id,):
            for piece in _PLACEHOLDER.split(re.sub(r"<[^>]+>", " ", msgid)):
                piece = " ".join(piece.split()).strip(" .,:;()«»“”—·-")
                kept = re.search(rf"(?<!\w){re.escape(piece)}(?!\w)", spanish)  # "ticket", "From"
                if re.search(r"[^\W\d_]{3,}", piece) and not kept:
                    found.add(piece)
    return tuple(sorted(found, key=len, reverse=True))


def english_left(page: str) -> list[str]:
    """What of the product's English a page meant to be Spanish still shows."""
    text = read_text(page)
    left = [phrase for phrase in english_phrases() if re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", text)]
    words = _WORDS.findall(_SETTING.sub(" ", text))
    left += sorted({word for word in words if word.lower() in ENGLISH_ONLY_WORDS})
    return left


def test_the_english_finder_finds_english_and_leaves_marked_parts_alone():
    assert english_left('<p>Send reply</p><button title="Enviar">x</button>') == ["Send reply"]
    assert english_left('<input placeholder="number, subject, text, requester">') != []
    assert english_left("<p>Respuesta enviada por el agente</p>") == []
    assert english_left('<p>Todo bien <span lang="en">sender is not authorized</span></p>') == []
    assert english_left('<pre translate="no">From: the customer</pre><script>let the = 1;</script>') == []
    assert {"it", "was"} <= set(english_left("<p>Esperando al cliente, it was sent</p>"))
    assert (
        english_left('<html lang="es"><option lang="en">English</option><option lang="es">Sí</option>') == []
    )
    assert english_left("<p>ninguno indicado en From, Sender, Reply-To ni en el sobre</p>") == []


# -- a helpdesk with one of everything, read by a Spanish-speaking admin ---------------


def _staff(email: str, name: str, role: str, **preferences: str) -> StaffUser:
    user, _ = StaffService(db.session).create(email=email, name=name, role=role, password=f"{role}-clave-123")
    for field, value in preferences.items():
        setattr(user, field, value)
    db.session.commit()
    return user


def _login(client, user: StaffUser, **headers: str) -> Portal:  # type: ignore[no-untyped-def]
    portal = Portal(client)
    token = portal.token()
    response = client.post(
        "/login",
        data={"email": user.email, "password": f"{user.role}-clave-123", "csrf_token": token},
        headers=headers,
    )
    assert response.status_code == 302
    return portal


@pytest.fixture
def ana(app: Flask) -> StaffUser:
    """An admin who reads Spanish in Mexico City."""
    return _staff("ana@soporte.test", "Ana Rivas", "admin", language="es", timezone=MEXICO)


@pytest.fixture
def beto(app: Flask) -> StaffUser:
    """An agent who chose nothing: his browser decides."""
    return _staff("beto@soporte.test", "Beto Luna", "agent")


def _helpdesk_with_everything(app: Flask, ana: StaffUser, beto: StaffUser) -> None:
    """Tickets through every change the ticket page shows, and a row on every
    admin page, all in Spanish data, so what English is left is the product's."""
    service = TicketsService.from_config(db.session, app.config)
    staff = Actor.staff(ana)
    teams = TeamsService(db.session)
    teams.add("soporte_n1")
    teams.add("campo")
    teams.set_route("installation_request", "campo")
    teams.add_member("soporte_n1", beto.id)
    SendersService(db.session).add("@cliente.test", "Cliente SA")
    IntegrationsService(db.session).add("bot-whatsapp", "assistant")
    canned = CannedRepliesService.from_config(db.session, app.config)
    canned.add(staff, "Saludo", "Hola {customer_name}, ya revisamos tu caso.", shared=True)
    canned.add(staff, "Cierre", "Quedamos atentos.")
    first = service.open_ticket(
        subject="Sin internet en Col. Roma",
        description="Desde ayer no tengo señal.",
        requester_email=CUSTOMER.email or "",
        requester_name="Lucía Pérez",
        channel="email",
        actor=CUSTOMER,
        is_email_originated=True,
        cc=[("mario@cliente.test", "Mario")],
        attachments=[NewAttachment("recibo.pdf", "application/pdf", b"%PDF-1.4 recibo")],
        ticket_type="outage_report",
        service_address="Av. Álvaro Obregón 12, CDMX",
        affected_services=["internet", "tv"],
        device_serials=["ZTEGC8A1B2C3"],
        conversation_id="conv-123",
    )
    db.session.commit()
    second = service.open_ticket(
        subject="Cambio de plan",
        description="Quiero 300 Mbps.",
        requester_email="lucia@cliente.test",
        channel="whatsapp",
        actor=CUSTOMER,
        priority="low",
    )
    third = service.open_ticket(
        subject="Sin internet (duplicado)",
        description="Igual que el otro.",
        requester_email="mario@cliente.test",
        channel="chat",
        actor=Actor.customer("mario@cliente.test"),
    )
    db.session.commit()
    service.mark_viewed(first, actor=staff)
    service.add_message(first, body="Ya enviamos un técnico.", actor=staff, channel="web")
    service.add_message(first, body="Revisar la OLT de la zona.", actor=staff, channel="web", internal=True)
    service.add_message(first, body="Gracias, sigo sin señal.", actor=CUSTOMER, channel="email")
    service.update(first, actor=staff, priority="urgent", category="technical", assignee_id=beto.id)
    service.update(first, actor=staff, team="soporte_n1")
    service.escalate(first, "L2", actor=staff, reason="Tres clientes en la misma OLT.", assignee_id=beto.id)
    service.set_language(first, "es", actor=staff)
    tags.set_tags(service, first, "fibra roma", staff)
    links.link(db.session, first, second, staff, app.config)
    service.merge(third, first, actor=staff, reason="Mismo corte.")
    mail = InboundMail(
        dedup_key="nota-sin-verificar",
        channel="smtp",
        mail_from="ana@soporte.test",
        from_address="ana@soporte.test",
        from_source="from",
        recipients="soporte@isp.test",
        subject="Re: Sin internet",
        size=120,
        outcome="appended",
        reason="claims a staff address without proof",
        raw=b"From: ana@soporte.test\r\nSubject: Re: Sin internet\r\n\r\nYa quedo.",
    )
    db.session.add(mail)
    db.session.flush()
    service.add_message(
        first,
        body="Ya quedó.",
        actor=Actor.unverified("ana@soporte.test", "Ana"),
        channel="email",
        internal=True,
        inbound_mail_id=mail.id,
    )
    service.mark_viewed(second, actor=staff)
    service.change_status(second, "in_progress", actor=staff)
    service.change_status(second, "resolved", actor=staff, reason="Plan cambiado.")
    satisfaction.rate(db.session, second, 4, "Rápido y amable.", "assistant", by="lucia@cliente.test")
    held = InboundMail(
        dedup_key="retenido",
        channel="smtp",
        mail_from="desconocido@otro.test",
        from_address="desconocido@otro.test",
        from_source="from",
        recipients="soporte@isp.test",
        subject="¿Me ayudan con mi factura?",
        size=90,
        outcome="quarantined",
        reason="sender is not authorized to open tickets",
        raw=b"From: desconocido@otro.test\r\nSubject: factura\r\n\r\nHola.",
    )
    db.session.add(held)
    db.session.flush()
    db.session.add(QuarantineItem(inbound_mail_id=held.id, reason=held.reason))
    db.session.add(
        ImapMailboxState(
            key="soporte@imap:143/INBOX",
            last_uid=0,
            last_error="OSError: connection refused",
            last_error_at=CLOCK_START.replace(tzinfo=None) - timedelta(hours=1),
            last_success_at=CLOCK_START.replace(tzinfo=None) - timedelta(hours=2),
        )
    )
    db.session.add(outbox_row("failed", timedelta(days=1)))
    db.session.commit()


PAGES = [
    "/tickets",
    "/tickets?status=open&priority=urgent&sort=-priority",
    "/tickets/new",
    "/tickets/TKT-000001",
    "/tickets/TKT-000001?canned=1",
    "/tickets/TKT-000002",
    "/tickets/TKT-000003",
    "/tickets/TKT-999999",  # the 404 page
    "/dashboard",
    "/dashboard?days=90&channel=whatsapp",
    "/quarantine",
    "/quarantine/1",
    "/mail",
    "/account",
    "/account/canned",
    "/canned/2/edit",
    "/admin/senders",
    "/admin/staff",
    "/admin/teams",
    "/admin/canned",
    "/admin/integrations",
]


def test_every_portal_page_reads_in_spanish_for_a_staff_member_who_chose_it(clock, app, client, ana, beto):
    _helpdesk_with_everything(app, ana, beto)
    portal = _login(client, ana)
    for path in PAGES:
        response = portal.get(path)
        assert response.status_code in (200, 404), path
        page = response.get_data(as_text=True)
        assert '<html lang="es">' in page, path
        assert english_left(page) == [], path
    ticket = read_text(portal.get("/tickets/TKT-000001").get_data(as_text=True))
    for spanish in (
        "Enviar respuesta",
        "Urgente",
        "Escalamiento",
        "Reporte de corte del servicio",
        "Idioma: — → Español",  # set from the ticket page
        "creado por Correo electrónico",  # a reason the service recorded, translated
        "Ana <ana@soporte.test> (remitente no verificado)",
        "Fusión: — → TKT-000003",
    ):
        assert spanish in ticket, spanish


def test_what_the_portal_says_after_each_form_is_spanish_too(clock, app, client, ana, beto):
    """Flash messages (done and refused), form errors and the pages shown once."""
    _helpdesk_with_everything(app, ana, beto)
    portal = _login(client, ana)
    ticket = "/tickets/TKT-000001"

    def after(path: str, form: dict[str, str], page: str = ticket) -> str:
        response = portal.post(path, form, page=page)
        if response.status_code == 302:
            response = portal.get(response.headers["Location"])
        shown = response.get_data(as_text=True)
        assert english_left(shown) == [], (path, form, english_left(shown))
        return read_text(shown)

    assert "Se envió la respuesta." in after(f"{ticket}/reply", {"body": "Vamos en camino.", "kind": "reply"})
    assert "Se agregó la nota." in after(f"{ticket}/reply", {"body": "Anotado.", "kind": "note"})
    assert "El estado ahora es: en progreso." in after(f"{ticket}/status", {"status": "in_progress"})
    refused = after(f"{ticket}/status", {"status": "closed"})
    assert "Un ticket no puede pasar de «en progreso» a «cerrado»" in refused
    after(f"{ticket}/status", {"status": "no-existe"})
    after(f"{ticket}/escalate", {"level": "L2", "reason": "otra vez"})
    after(f"{ticket}/escalate", {"level": "L3", "reason": ""})
    after(f"{ticket}/tags", {"tags": "¡mal etiquetado!"})
    after(f"{ticket}/links", {"ticket": "TKT-000001", "action": "add"})
    after(f"{ticket}/links", {"ticket": "TKT-000404", "action": "add"})
    unlinked = after(f"{ticket}/links", {"ticket": "TKT-000003", "action": "remove"})
    assert "Estos tickets no estaban vinculados." in unlinked
    after(f"{ticket}/merge", {"into": "TKT-000001"})
    after(f"{ticket}/update", {"priority": "altísima", "category": "technical"})
    after(f"{ticket}/language", {"language": "fr"})
    assert "El idioma del cliente ahora es Español." in after(f"{ticket}/language", {"language": "es"})
    assert "0 tickets modificados. Rechazados:" in after(
        "/tickets/bulk", {"tickets": "TKT-000003", "action": "status", "status": "open", "back": "/tickets"}
    )
    assert "El campo «Asunto» es obligatorio" in after("/tickets/new", {"subject": ""}, page="/tickets/new")
    after("/admin/senders", {"pattern": "nada", "organization": "X"}, page="/admin/senders")
    after("/admin/senders", {"pattern": "@cliente.test", "organization": "Cliente SA"}, page="/admin/senders")
    after("/admin/teams", {"name": "Mal Nombre"}, page="/admin/teams")
    after("/admin/teams/remove", {"name": "soporte_n1"}, page="/admin/teams")
    after(
        "/admin/staff", {"name": "Carla", "email": "carla@soporte.test", "role": "agent"}, page="/admin/staff"
    )
    after(
        "/admin/staff", {"name": "Carla", "email": "carla@soporte.test", "role": "agent"}, page="/admin/staff"
    )
    after(f"/admin/staff/{ana.id}/active", {"active": "0"}, page="/admin/staff")
    after(f"/admin/staff/{beto.id}/role", {"role": "admin"}, page="/admin/staff")
    after("/admin/integrations", {"name": "widget", "kind": "chat"}, page="/admin/integrations")
    after("/admin/integrations", {"name": "widget", "kind": "chat"}, page="/admin/integrations")
    after("/account/canned", {"title": "", "body": ""}, page="/account")
    after("/account/password", {"current_password": "otra", "new_password": "corta"}, page="/account")
    after("/quarantine/1/spam", {}, page="/quarantine")


def test_a_secret_shown_once_is_marked_as_not_to_translate(app, client, ana):
    """A generated token or password is random letters, not Spanish: a browser's
    translator must leave it as it is (a token "translated" is a token that fails), and
    it is the reason the finder above once saw "OF" in a token and "by" in a password."""
    portal = _login(client, ana)
    shown = {
        "new-token": portal.post(
            "/admin/integrations", {"name": "widget", "kind": "chat"}, page="/admin/integrations"
        ),
        "new-password": portal.post(
            "/admin/staff",
            {"name": "Carla", "email": "carla@soporte.test", "role": "agent"},
            page="/admin/staff",
        ),
    }
    for element, response in shown.items():
        page = response.get_data(as_text=True)
        [secret] = re.findall(rf'id="{element}"[^>]*>([^<]+)<', page)
        assert len(secret) >= 16 and secret not in read_text(page), element


# -- choosing a language and a zone ---------------------------------------------------


def test_the_account_page_stores_language_and_zone_and_refuses_what_is_not_one(app, client, beto):
    portal = _login(client, beto)
    assert '<html lang="en">' in portal.get("/account").get_data(as_text=True)
    saved = portal.post("/account/preferences", {"language": "es", "timezone": MEXICO}, page="/account")
    assert saved.status_code == 302 and saved.headers["Location"] == "/account"
    page = portal.get("/account").get_data(as_text=True)
    assert '<html lang="es">' in page and "Se guardaron tus preferencias." in page
    assert f'<option value="{MEXICO}" translate="no" selected>' in page
    assert '<option value="es" lang="es" selected>' in page
    db.session.refresh(beto)
    assert (beto.language, beto.timezone) == ("es", MEXICO)

    for form, message in (
        (
            {"language": "es", "timezone": "Marte/Olimpo"},
            "El campo «zona horaria» debe ser una zona horaria IANA",
        ),
        ({"language": "fr", "timezone": ""}, "El campo «idioma» debe ser uno de estos valores: en, es."),
        ({"language": "es", "timezone": "../../etc/passwd"}, "zona horaria IANA"),
        ({"language": "x" * 5000, "timezone": "y" * 5000}, "El campo «idioma»"),
    ):
        refused = portal.post("/account/preferences", form, page="/account")
        assert refused.status_code == 422, form
        assert message in refused.get_data(as_text=True), form
        db.session.refresh(beto)
        assert (beto.language, beto.timezone) == ("es", MEXICO)  # nothing half-stored
    assert portal.post("/account/preferences", {"language": "es"}, csrf=False).status_code == 400

    portal.post("/account/preferences", {"language": "", "timezone": ""}, page="/account")
    db.session.refresh(beto)
    assert (beto.language, beto.timezone) == ("", "")
    assert '<html lang="en">' in portal.get("/account").get_data(as_text=True)


def test_without_a_choice_the_browser_language_counts_and_a_choice_beats_it(app, client, beto, ana):
    portal = _login(client, beto)
    spanish = client.get("/tickets", headers=SPANISH_BROWSER).get_data(as_text=True)
    assert '<html lang="es">' in spanish and ">Cola<" in spanish and english_left(spanish) == []
    assert ">Queue<" in client.get("/tickets", headers={"Accept-Language": "fr-FR,fr"}).get_data(as_text=True)
    assert ">Queue<" in portal.get("/tickets").get_data(as_text=True)  # none asked: DEFAULT_LANGUAGE
    beto.language = "en"
    db.session.commit()
    assert ">Queue<" in client.get("/tickets", headers=SPANISH_BROWSER).get_data(as_text=True)
    # Logged out, the login page follows the browser.
    client.post("/logout", data={"csrf_token": portal.token("/tickets")})
    login = client.get("/login", headers=SPANISH_BROWSER).get_data(as_text=True)
    assert "Acceso del personal" in login and english_left(login) == []
    wrong = client.post(
        "/login",
        data={"email": "beto@soporte.test", "password": "no", "csrf_token": portal.token()},
        headers=SPANISH_BROWSER,
    )
    assert wrong.status_code == 401 and "Correo o contraseña incorrectos." in wrong.get_data(as_text=True)


def test_a_staff_member_in_mexico_city_reads_local_times_that_name_their_zone(clock, app, client, ana, beto):
    """CLOCK_START is 08:00 UTC on 2 March 2026: 02:00 in Mexico City (UTC-6)."""
    service = TicketsService.from_config(db.session, app.config)
    service.open_ticket(
        subject="Router sin luz",
        description="No enciende.",
        requester_email="lucia@cliente.test",
        channel="email",
        actor=CUSTOMER,
        priority="medium",  # first response due 4 hours later, resolution 3 days
    )
    db.session.commit()
    due = db.session.execute(select(Ticket.first_response_due_at)).scalar_one()
    mexico = read_text(_login(client, ana).get("/tickets/TKT-000001").get_data(as_text=True))
    assert "abierto el 2 mar 2026, 2:00 UTC-06:00" in mexico
    assert f"Primera respuesta antes del {languages.format_when(due, 'es', MEXICO)}" in mexico
    assert languages.format_when(due, "es", MEXICO).endswith("UTC-06:00")
    assert "8:00" not in mexico
    queue = read_text(client.get("/tickets").get_data(as_text=True))
    assert "2 mar 2026, 2:00 UTC-06:00" in queue
    # The same ticket for a staff member who chose no zone: BUSINESS_TIMEZONE (UTC).
    client.post("/logout", data={"csrf_token": Portal(client).token("/tickets")})
    business = read_text(_login(client, beto).get("/tickets/TKT-000001").get_data(as_text=True))
    assert "opened Mar 2, 2026, 8:00 AM UTC" in business
    beto.timezone = MEXICO
    db.session.commit()
    english = read_text(client.get("/tickets/TKT-000001").get_data(as_text=True))
    assert "opened Mar 2, 2026, 2:00 AM CST" in english


def test_counts_read_as_numbers_of_the_staff_members_language(app, client, monkeypatch, ana, beto):
    """Numbers are Babel's for the reader's locale (docs/languages.md): the Mail
    page's counts, the queue's total and the dashboard's cards printed 1234 in both
    languages. The counts are made large without writing 1,234 rows."""
    from helpdesk.portal import dashboard
    from helpdesk.services import queue
    from helpdesk.services.queue import QueueService

    db.session.add(InboundDuplicates(channel="smtp", count=1234))
    db.session.commit()
    monkeypatch.setattr(QueueService, "_count", lambda *args, **kwargs: 1234)
    # The page, empty, would tell the total itself (0): it is faked the same way.
    monkeypatch.setattr(queue, "settled_total", lambda *args: 1234)
    counted = dashboard.ticket_stats
    monkeypatch.setattr(dashboard, "ticket_stats", lambda *args: {**counted(*args), "total": 1234})
    for user, shown in ((ana, "1.234"), (beto, "1,234")):
        _login(client, user)
        mail = client.get("/mail").get_data(as_text=True)
        assert f"<td>{shown}</td>" in mail and ">1234<" not in mail
        queue = client.get("/tickets").get_data(as_text=True)
        assert f'<span class="muted">({shown})</span>' in queue
        assert f'<div class="stat">{shown}</div>' in client.get("/dashboard").get_data(as_text=True)
        client.post("/logout", data={"csrf_token": Portal(client).token("/tickets")})


def test_counts_inside_sentences_read_as_numbers_of_the_staff_members_language(
    app, client, monkeypatch, ana, beto
):
    """A count inside a pluralized sentence is the reader's number too ("1.234
    reaperturas", docs/languages.md): the count chooses the form, the figure shown
    is Babel's. They printed 1234 in both languages. Counts are patched in, not
    written as rows; 1 and 2 keep the singular and the plural."""
    from helpdesk.portal import dashboard
    from helpdesk.services.mailflow import UnmailedStaff

    counted = dashboard.ticket_stats

    def stats(*args):  # type: ignore[no-untyped-def]
        real = counted(*args)
        return {
            **real,
            "reopens": {"count": 1234, "tickets": 1},
            "satisfaction": {**real["satisfaction"], "count": 2},
        }

    flowed = dashboard.mail_flow

    def flow(*args, **kwargs):  # type: ignore[no-untyped-def]
        real = flowed(*args, **kwargs)
        real.outbox["failed"] = 1234
        return real

    since = datetime(2026, 3, 1, 12, 0)
    skipped = [
        UnmailedStaff(beto.id, beto.name, beto.email, since, 1),
        UnmailedStaff(ana.id, ana.name, ana.email, since, 1234),
    ]
    monkeypatch.setattr(dashboard, "ticket_stats", stats)
    monkeypatch.setattr(dashboard, "mail_flow", flow)
    monkeypatch.setattr(dashboard, "unmailed_staff", lambda session: skipped)
    expected = {
        "es": (
            "1.234 reaperturas en 1 ticket",
            "2 calificaciones",
            "1.234 notificaciones fallaron definitivamente",
            "se omitió 1 alerta.",
            "se omitieron 1.234 alertas.",
        ),
        "en": (
            "1,234 reopenings of 1 ticket",
            "2 ratings",
            "1,234 notifications failed for good",
            "1 alert skipped since.",
            "1,234 alerts skipped since.",
        ),
    }
    for user, language in ((ana, "es"), (beto, "en")):
        _login(client, user)
        shown = read_text(client.get("/dashboard").get_data(as_text=True))
        shown += read_text(client.get("/mail").get_data(as_text=True))
        for phrase in expected[language]:
            assert phrase in shown, (language, phrase)
        assert "1234" not in shown
        client.post("/logout", data={"csrf_token": Portal(client).token("/tickets")})


def test_every_pluralized_sentence_shows_its_count_as_a_number():
    """Each `{% trans %}` with a plural, in the portal, the tracker and the mail,
    chooses its form by `num` and shows `count` through the `number` filter
    (docs/languages.md): a new one written `{% trans count=n %}` would print 1234."""
    found = 0
    for path in sorted((ROOT / "helpdesk").rglob("templates/**/*.*")):
        source = path.read_text(encoding="utf-8")
        for block in source.split("{% trans ")[1:]:
            tag, _, body = block.partition("%}")
            if "{% pluralize" not in body.partition("{% endtrans %}")[0]:
                continue
            found += 1
            assigned = dict(part.strip().partition("=")[::2] for part in tag.split(", "))
            assert "num" in assigned and assigned.get("count", "").endswith("|number"), (path.name, tag)
            assert "{% pluralize num %}" in body, (path.name, tag)
    assert found >= 10


def test_a_bulk_actions_count_reads_as_a_number_of_the_staff_members_language(app):
    """The bulk form's flash message: "1.234 tickets modificados.", "1 ticket changed."."""
    from helpdesk.portal.ticket_relations import _summary
    from helpdesk.services.bulk import BulkResult

    for language, many, one in (
        ("es", "1.234 tickets modificados.", "1 ticket modificado."),
        ("en", "1,234 tickets changed.", "1 ticket changed."),
    ):
        with app.test_request_context():
            languages.use(language)
            assert _summary(BulkResult(done=["TKT-000001"] * 1234)) == many
            assert _summary(BulkResult(done=["TKT-000001"])) == one


def test_counts_the_services_wrote_read_as_numbers_of_the_reader(app):
    """A limit or a size inside a service's English text ("must be at most 5000
    characters", "10,485,760 bytes") is shown as the reader's number; an id is not
    a count and a value that is not a number is shown as written."""
    with app.app_context():
        for language, limit, size in (("es", "5.000", "10.485.760"), ("en", "5,000", "10,485,760")):
            with languages.reading(language, "UTC"):
                assert limit in wording.said("must be at most 5000 characters")
                assert f" {size} bytes" in wording.said(
                    "a.pdf is 10,485,760 bytes; a file may have at most 1,000"
                )
                assert "1234" in wording.said("No quarantine item 1234.")
                assert "12,34" in wording.said("must be at most 12,34 characters")


def test_an_sla_digests_counts_read_as_numbers_of_its_reader(app, ana, beto):
    """The SLA digest's subject and sentences count the tickets in the recipient's
    numbers (docs/languages.md): "SLA incumplido: 1.234 tickets"; 1 is singular."""
    from helpdesk.models import OutboxMessage
    from helpdesk.outbound.compose import Composer

    composer = Composer(app.config)
    for user, total, subject, phrases in (
        (ana, 1234, "SLA incumplido: 1.234 tickets", ("encontrar 1.234 tickets", "Y 1.234 tickets más.")),
        (beto, 1234, "SLA breaches: 1,234 tickets", ("found 1,234 tickets", "And 1,234 more tickets.")),
        (ana, 1, "SLA incumplido: 1 ticket", ("encontrar 1 ticket que", "Y 1 ticket más.")),
        (beto, 1, "SLA breaches: 1 ticket", ("found 1 ticket that", "And 1 more ticket.")),
    ):
        row = OutboxMessage(
            ticket_id=None,
            kind="sla_digest",
            to_address=user.email,
            cc_addresses="",
            status_reason=str(total),
            state="pending",
            attempts=0,
        )
        db.session.add(row)
        db.session.flush()
        composer.render(db.session, row)
        assert row.subject == subject
        for phrase in phrases:
            assert phrase in row.body_text and phrase in (row.body_html or ""), phrase


# -- a customer's language, set by staff ---------------------------------------------


def test_staff_set_the_customers_language_from_the_ticket_page(app, client, beto):
    service = TicketsService.from_config(db.session, app.config)
    service.open_ticket(
        subject="Consulta",
        description="Hola.",
        requester_email="lucia@cliente.test",
        channel="phone",
        actor=Actor.staff(beto),
    )
    db.session.commit()
    portal = _login(client, beto)
    page = portal.get("/tickets/TKT-000001").get_data(as_text=True)
    assert '<select id="customer-language" name="language">' in page
    assert "Not chosen yet: the default language is used." in page
    answer = portal.post("/tickets/TKT-000001/language", {"language": "es"}, page="/tickets/TKT-000001")
    assert answer.status_code == 302
    shown = portal.get("/tickets/TKT-000001").get_data(as_text=True)
    assert "The customer&#39;s language is now Español." in shown
    assert '<option value="es" lang="es" selected>Español</option>' in shown
    ticket = db.session.execute(select(Ticket)).scalar_one()
    contact = db.session.execute(select(Contact).where(Contact.email == "lucia@cliente.test")).scalar_one()
    assert (ticket.language, contact.language) == ("es", "es")
    row = db.session.execute(select(TicketHistory).where(TicketHistory.field == "language")).scalar_one()
    assert (row.old_value, row.new_value, row.actor_staff_id) == (None, "es", beto.id)
    assert "Language: — → Español" in read_text(shown)

    # Again the same: nothing changes, no second history row.
    portal.post("/tickets/TKT-000001/language", {"language": "es"}, page="/tickets/TKT-000001")
    refused = portal.post("/tickets/TKT-000001/language", {"language": "klingon"}, page="/tickets/TKT-000001")
    assert refused.status_code == 302
    assert "Invalid input. language: must be one of en, es" in portal.get("/tickets/TKT-000001").get_data(
        as_text=True
    )
    assert len(db.session.execute(select(TicketHistory).where(TicketHistory.field == "language")).all()) == 1
    assert portal.post("/tickets/TKT-000404/language", {"language": "es"}).status_code == 404


def test_the_api_reads_and_sets_a_tickets_language_in_english(app, client, beto):
    service = TicketsService.from_config(db.session, app.config)
    service.open_ticket(
        subject="Consulta",
        description="Hola.",
        requester_email="lucia@cliente.test",
        channel="api",
        actor=CUSTOMER,
    )
    db.session.commit()
    api = ApiClient(client, login_tokens(client, beto.email, "agent-clave-123")["access_token"])
    assert api.get("/tickets/TKT-000001").get_json()["language"] is None
    changed = api.patch("/tickets/TKT-000001", {"language": "es", "priority": "high"})
    assert changed.status_code == 200
    assert (changed.get_json()["language"], changed.get_json()["priority"]) == ("es", "high")
    refused = api.patch("/tickets/TKT-000001", {"language": "fr"}, headers=SPANISH_BROWSER)
    assert refused.status_code == 422
    assert refused.get_json()["error"]["fields"] == {
        "language": "must be one of en, es"
    }  # English, for programs
    assert api.patch("/tickets/TKT-000001", {"language": 7}).status_code == 422
    assert db.session.execute(select(Ticket.language)).scalar_one() == "es"


# -- the gateway's notes for staff ------------------------------------------------------


def test_the_gateway_notes_what_it_left_out_in_the_staff_members_language(app, client, ana):
    """What the gateway left out of a mail (docs/mail-gateway.md, "What is stored")
    is an internal note for staff, each line in the reader's language."""
    SendersService(db.session).add("@cliente.test", "Cliente SA")
    db.session.commit()
    app.config.update(
        MAX_ATTACHMENT_BYTES=100,
        MAX_ATTACHMENTS_TOTAL_BYTES=120,
        MAX_ATTACHMENTS=3,
        MAX_CC_PARTICIPANTS=1,
        MAX_HTML_TO_TEXT_CHARS=1000,
    )
    mail = EmailMessage()
    mail["From"] = '"Lucía Pérez"'
    mail["Reply-To"] = "lucia@cliente.test"
    mail["To"] = "support@helpdesk.test"
    mail["Cc"] = "a@cliente.test, b@cliente.test, c@cliente.test"
    mail["Subject"] = "Fotos del módem"
    mail.set_content("<p>" + "señal " * 400 + "</p>", subtype="html")
    for name, size in (("foto1.jpg", 50), ("foto2.jpg", 150), ("foto3.jpg", 80), ("foto4.jpg", 10)):
        mail.add_attachment(b"x" * size, maintype="image", subtype="jpeg", filename=name)
    envelope = Envelope("lucia@cliente.test", ("support@helpdesk.test",), "smtp")
    assert ingest(mail.as_bytes(), envelope, app.config).outcome is Outcome.CREATED
    bare = b"To: support@helpdesk.test\r\nSubject: Sin remitente\r\n\r\nHola.\r\n"
    assert ingest(bare, envelope, app.config).outcome is Outcome.CREATED
    portal = _login(client, ana)
    first = portal.get("/tickets/TKT-000001").get_data(as_text=True)
    second = portal.get("/tickets/TKT-000002").get_data(as_text=True)
    assert english_left(first) == [] and english_left(second) == []
    assert "pasarela de correo" in read_text(first)
    for line in (
        "El remitente se leyó en Reply-To: el encabezado From (Lucía Pérez) no nombra ninguna dirección.",
        "Solo se leyeron como texto los primeros 1.000 caracteres del HTML (MAX_HTML_TO_TEXT_CHARS).",
        "foto2.jpg (150 bytes) no se guardó: pesa más de 100 bytes; está en el correo original.",
        "foto3.jpg (80 bytes) no se guardó: los adjuntos pasan de 120 bytes en total; "
        "está en el correo original.",
        "1 adjunto más no se guardó: más de 3 en un correo (MAX_ATTACHMENTS); está en el correo original.",
        "2 direcciones más de Para/Cc no se añadieron como participantes: más de 1 (MAX_CC_PARTICIPANTS).",
    ):
        assert line in read_text(first), line
    assert "El remitente se leyó en el sobre SMTP (MAIL FROM): el correo no tiene encabezado From." in second


def test_the_gateway_notes_a_reused_message_id_in_the_staff_members_language(app, client, ana):
    """A mail under a Message-ID another mail used first is kept as its own
    (docs/mail-gateway.md, "Duplicates"), and its ticket says so to staff."""
    SendersService(db.session).add("@cliente.test", "Cliente SA")
    db.session.commit()
    for sender, subject in (("eva@otro.test", "hola"), ("lucia@cliente.test", "Sin red")):
        mail = EmailMessage()
        mail["From"], mail["To"], mail["Subject"] = sender, "support@helpdesk.test", subject
        mail["Message-ID"] = "<reusado@cliente.test>"
        mail.set_content("Texto.")
        ingest(mail.as_bytes(), Envelope(sender, ("support@helpdesk.test",), "smtp"), app.config)
    page = _login(client, ana).get("/tickets/TKT-000001").get_data(as_text=True)
    assert english_left(page) == []
    assert (
        "Otro correo ya había usado el Message-ID de este correo (correo entrante n.º 1); "
        "se guardó como un correo aparte, no como un duplicado."
    ) in read_text(page)


def test_approving_a_held_mail_never_read_says_why_it_cannot_be(app, client, ana, beto):
    """A mail the gateway never read from its IMAP mailbox (its taking never finished,
    or the server would not hand it over) is held by its place, with no bytes.
    Approving one was refused as "no sender address: none in From, Sender, …", which
    sent the admin looking for a sender in a mail nobody had read; the refusal now
    says the mail was never read and nothing of it is here, in the reader's language."""
    place = "imap:support@helpdesk.test/INBOX, UIDVALIDITY 7, UID 2"
    with app.app_context():
        quarantine_unfinished(place, 3, "imap:support@helpdesk.test/INBOX")
        quarantine_unfetchable(place.replace("UID 2", "UID 3"), ["NO boom", "NO boom"])
    items = db.session.execute(select(QuarantineItem.id).order_by(QuarantineItem.id)).scalars().all()
    for user, said in (
        (ana, "No se puede aprobar el elemento %s: la pasarela de correo nunca leyó este correo de su buzón"),
        (beto, "Cannot approve item %s: the mail gateway never read this mail from its mailbox"),
    ):
        portal = _login(client, user)
        for item in items:
            response = portal.post(f"/quarantine/{item}/approve", page="/quarantine")
            shown = read_text(portal.get(response.headers["Location"]).get_data(as_text=True))
            assert said % item in shown and "no sender address" not in shown, shown
        portal.post("/logout", page="/quarantine")
    assert db.session.execute(select(QuarantineItem.state)).scalars().all() == ["pending", "pending"]


def test_a_held_mail_never_read_names_no_sender_it_was_never_read_for(app, client, ana, beto):
    """The page of such a held mail said "Sender: none named in From, Sender,
    Reply-To, Return-Path or the envelope", as of a mail read and found without one;
    it says the sender is not known because the gateway never read the mail."""
    with app.app_context():
        quarantine_unfinished("imap:support@helpdesk.test/INBOX, UIDVALIDITY 7, UID 2", 3)
    item = db.session.execute(select(QuarantineItem.id)).scalar_one()
    for user, said, read in (
        (ana, "Remitente: desconocido: la pasarela de correo nunca leyó este correo de su buzón", "ninguno"),
        (beto, "Sender: not known: the mail gateway never read this mail from its mailbox", "none named"),
    ):
        portal = _login(client, user)
        page = portal.get(f"/quarantine/{item}").get_data(as_text=True)
        assert said in read_text(page) and read not in read_text(page), read_text(page)
        assert user is beto or english_left(page) == []
        portal.post("/logout", page="/quarantine")


# -- every English message the portal can show is known -------------------------------

# The modules whose messages reach the portal: the services its views call.
MESSAGE_MODULES = (
    "helpdesk.services.tickets",
    "helpdesk.services.uploads",
    "helpdesk.services.tags",
    "helpdesk.services.links",
    "helpdesk.services.bulk",
    "helpdesk.services.senders",
    "helpdesk.services.staff",
    "helpdesk.services.teams",
    "helpdesk.services.integrations",
    "helpdesk.services.canned",
    "helpdesk.services.preferences",
    "helpdesk.service_fields",
    "helpdesk.inbound.quarantine",
    "helpdesk.services.lifecycle_jobs",
)
_RAISED = {"ValidationError", "Conflict", "NotFound", "Forbidden", "_refuse"}


def _sample(node: ast.expr, namespace: dict[str, object]) -> str | None:
    """A text the expression can make: constants as they are, module-level values
    evaluated, anything else (a local value) as a stand-in word."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "strip":
        return _sample(node.func.value, namespace)
    if isinstance(node, ast.Constant):
        return node.value if isinstance(node.value, str) else None
    if isinstance(node, ast.JoinedStr):
        parts = []
        for index, value in enumerate(node.values):
            if isinstance(value, ast.Constant):
                parts.append(str(value.value))
                continue
            assert isinstance(value, ast.FormattedValue)
            try:
                parts.append(
                    format(eval(compile(ast.Expression(value.value), "<sample>", "eval"), namespace))
                )
            except Exception:  # a local value
                parts.append(f"valor{index}")
        return "".join(parts)
    if isinstance(node, (ast.Name, ast.Attribute)):
        try:
            value = eval(compile(ast.Expression(node), "<sample>", "eval"), namespace)
        except Exception:
            return None
        return value if isinstance(value, str) else None
    return None


def _messages(module_name: str) -> set[str]:
    """The texts a module raises in a domain error, puts in a form's errors, or
    records as a history reason."""
    module = importlib.import_module(module_name)
    tree = ast.parse(inspect.getsource(module))
    namespace = vars(module)
    found: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            if name in _RAISED:
                for argument in node.args[:1]:
                    found.extend(argument.values if isinstance(argument, ast.Dict) else [argument])
            if name == "_move" and len(node.args) >= 4:
                found.append(node.args[3])
            if name == "record" and len(node.args) >= 7:
                found.append(node.args[6])
            if name in ("dict", "change_status", "TicketHistory"):  # a history row's reason
                found.extend(keyword.value for keyword in node.keywords if keyword.arg == "reason")
        elif isinstance(node, ast.Assign):
            target = node.targets[0]
            if isinstance(target, ast.Subscript) and getattr(target.value, "id", "") == "errors":
                found.append(node.value)
            elif isinstance(target, ast.Name) and target.id in ("errors", "reason"):
                found.extend(
                    value
                    for inner in ast.walk(node.value)
                    if isinstance(inner, ast.Dict)
                    for value in inner.values
                )
                if target.id == "reason":
                    found.append(node.value)
        elif isinstance(node, ast.FunctionDef) and node.name.endswith("_errors"):
            found.extend(
                value for inner in ast.walk(node) if isinstance(inner, ast.Dict) for value in inner.values
            )
    return {text for text in (_sample(node, namespace) for node in found) if text and " " in text.strip()}


def test_every_message_the_portal_can_show_is_known_to_the_portal(app):
    texts = set().union(*(_messages(name) for name in MESSAGE_MODULES))
    texts |= {
        str(InvalidTransition("in_progress", "closed", ["resolved", "cancelled"])),
        str(InvalidTransition("cancelled", "open", [])),
        Breach(1, None, "first_response_breached", datetime(2026, 3, 2, 8, 15)).describe(),
        Breach(1, None, "resolution_breached", datetime(2026, 3, 2, 8, 15)).describe(),
        Actor.unverified("ana@soporte.test", "Ana").label,
        "Invalid input.",
        ENCLOSED_NOT_READ,  # a gateway note for staff (docs/mail-gateway.md)
    }
    assert len(texts) > 60  # the reading above finds them
    with app.test_request_context(headers=SPANISH_BROWSER):
        unknown = sorted(text for text in texts if wording.said(text) == text)
    assert unknown == [], "add these to helpdesk.wording.KNOWN and the catalog: " + repr(unknown)


def test_a_known_text_keeps_its_values_and_an_unknown_one_stays_as_written(app):
    with app.app_context(), app.test_request_context(headers=SPANISH_BROWSER):
        assert wording.said("No ticket TKT-000009.") == "No existe el ticket TKT-000009."
        assert wording.said("TKT-000002 is in progress; only open tickets are escalated.") == (
            "TKT-000002 está en estado «en progreso»; solo se escalan tickets abiertos."
        )
        assert (
            wording.said("merged into TKT-000001. Mismo corte.") == "fusionado con TKT-000001. Mismo corte."
        )
        assert wording.said("no reply for 3 days after it was resolved") == (
            "sin respuesta durante 3 días después de resolverse"
        )
        assert wording.said("cambio pedido por teléfono") == "cambio pedido por teléfono"
        assert wording.said("No ticket ") == "No ticket "  # a placeholder is never empty
        assert wording.said("x" * 100_000 + " is already authorized.").endswith(" ya está autorizado.")
    with app.app_context(), app.test_request_context():
        assert wording.said("No ticket TKT-000009.") == "No ticket TKT-000009."


# -- in a real browser -------------------------------------------------------------


def test_a_spanish_speaking_agent_in_mexico_city_works_in_a_real_browser(
    app,
    ana,
    beto,
    database_url,
    browser_page,  # noqa: F811
):
    """Queue, ticket page, a reply and a status change in Chromium, for someone who
    reads Spanish in Mexico City: every label, badge and message in Spanish, the
    times in their zone, naming it, and the copy button's words from the server."""
    service = TicketsService.from_config(db.session, app.config)
    opened_at = datetime(2026, 11, 20, 15, 30, tzinfo=timezone.utc)  # 09:30 in Mexico City
    with time_machine.travel(opened_at, tick=False):
        service.open_ticket(
            subject="Intermitencia en fibra",
            description="Se corta cada hora.",
            requester_email="lucia@cliente.test",
            requester_name="Lucía Pérez",
            channel="whatsapp",
            actor=CUSTOMER,
            priority="high",
        )
        db.session.commit()
    db.session.rollback()
    page = browser_page
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on(
        "console",
        lambda entry: problems.append(entry.text) if "Content Security Policy" in entry.text else None,
    )
    with _served(database_url) as url:
        page.goto(f"{url}/login")
        page.fill("#email", "ana@soporte.test")  # not ana.email: no ORM read holding SQLite's lock
        page.fill("#password", "admin-clave-123")
        page.click("button[type=submit]")
        page.wait_for_url(f"{url}/tickets")
        assert page.locator("html").get_attribute("lang") == "es"
        assert page.locator("h1").inner_text().startswith("Tickets")
        row = page.locator("#live-queue tbody tr").first.inner_text()
        assert "Intermitencia en fibra" in row and "Nuevo" in row and "Alta" in row
        assert "20 nov 2026, 9:30 UTC-06:00" in row
        assert english_left(page.content()) == []

        page.click("text=TKT-000001")
        page.wait_for_url(f"{url}/tickets/TKT-000001")
        details = page.locator("#live-details").inner_text()
        assert "Abierto" in details and "abierto el 20 nov 2026, 9:30 UTC-06:00" in details
        assert "Canal: WhatsApp" in details
        page.fill("#body", "Ya revisamos tu línea.")
        page.click("button[value=reply]")
        assert page.locator(".flash").first.inner_text() == "Se envió la respuesta."
        page.click("button[name=status][value=in_progress]")
        assert page.locator(".flash").first.inner_text() == "El estado ahora es: en progreso."
        history = page.locator("section[aria-label=Historial]").inner_text()
        assert "Estado: Abierto → En progreso" in history
        page.click("summary:has-text('Mensaje para el cliente')")
        page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=url)
        page.click("button[data-copy=share-text]")
        page.locator("[data-copy-status=share-text]", has_text="Copiado.").wait_for()
        assert english_left(page.content()) == []
        page.screenshot(path=str(ROOT / "tests" / "artifacts" / "ticket-es.png"), full_page=True)
    assert problems == []
