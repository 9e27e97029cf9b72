"""What customers read, in English and in Spanish (SPEC §13, docs/languages.md):
every customer mail, a Spanish-speaking contact's mail round trip through the real
SMTP listener, the per-language operator templates, the staff alerts in the staff
member's language and zone, and the tracker — by `Accept-Language`, by its
switch, on a mail's status link, and in a real browser.

"No English word": a Spanish text is compared with the English text of the same
mail or page; every word they share, once what people wrote (subject, names,
bodies), addresses and times are taken out, must be one Spanish uses as it is.
A string left untranslated shares its words and fails the check (the check is
tried on a catalog that forgot one text, below).
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from datetime import timedelta
from email.message import EmailMessage
from gettext import NullTranslations

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from helpdesk import customer_links, languages
from helpdesk.extensions import db
from helpdesk.languages import format_duration, format_when
from helpdesk.models import Contact, OutboxMessage, StaffUser, Ticket
from helpdesk.services import Actor, TicketsService, contacts
from helpdesk.services.lifecycle_jobs import check_sla
from helpdesk.services.staff import StaffService
from tests.support.app import Portal
from tests.support.database import open_ticket
from tests.support.lost_commit import commit_answer_lost
from tests.support.mail import message
from tests.support.outbox import deliver, html_of, text_of
from tests.test_browser import browser_page, live_portal  # noqa: F401  (fixtures)

SUBJECT = "Sin internet en Col. Roma"
DESCRIPTION = "No tengo señal desde ayer."
# Words Spanish uses as they are: the product's terms and names, the clock's zone.
SHARED_WORDS = frozenset({"ticket", "tickets", "portal", "sla", "utc", "helpdesk"})
_WORD = re.compile(r"[^\W\d_]{2,}")
_URL = re.compile(r"https?://\S+")
_ADDRESS = re.compile(r"[\w.+-]+@[\w.-]+")
_MARKUP = re.compile(r"<(script|style)\b.*?</\1>|<[^>]*>", re.S | re.I)


def _words(text: str, people_wrote: Iterable[str]) -> set[str]:
    text = html.unescape(_MARKUP.sub(" ", text))
    for value in sorted(people_wrote, key=len, reverse=True):
        text = text.replace(value, " ")
    text = _ADDRESS.sub(" ", _URL.sub(" ", text))
    return {word.lower() for word in _WORD.findall(text)}


def english_left(english: str, spanish: str, people_wrote: Iterable[str]) -> set[str]:
    """The words of the English text that the Spanish one still holds."""
    written = list(people_wrote)
    return (_words(english, written) & _words(spanish, written)) - SHARED_WORDS


def _outbox() -> list[OutboxMessage]:
    return list(db.session.execute(select(OutboxMessage).order_by(OutboxMessage.id)).scalars())


def _speaks(email: str, language: str) -> Contact:
    """A contact whose language an earlier chat or assistant request set."""
    contact = contacts.for_customer(
        db.session, email=email, phone=None, phone_vouched=False, language=language
    )
    db.session.commit()
    return contact


def _customer_mail(service: TicketsService, agent_actor: Actor, email: str, name: str) -> Ticket:
    """A ticket whose requester gets every kind of customer mail, in this order:
    created, reply, status (in progress), status (waiting for them), resolved."""
    ticket = open_ticket(service, subject=SUBJECT, requester_email=email, requester_name=name)
    service.mark_viewed(ticket, actor=agent_actor)
    service.add_message(ticket, body="Reinicia el módem, por favor.", actor=agent_actor, channel="web")
    service.change_status(ticket, "in_progress", actor=agent_actor)
    service.change_status(ticket, "pending_customer", actor=agent_actor, reason="¿Qué luces ves?")
    service.change_status(ticket, "resolved", actor=agent_actor, reason="Cambiamos el módem.")
    db.session.commit()
    return ticket


def _written_by_people(ticket: Ticket) -> list[str]:
    """What no catalog translates: names, subject, bodies, reasons, numbers, times."""
    values = [SUBJECT, "Reinicia el módem, por favor.", "¿Qué luces ves?", "Cambiamos el módem."]
    values += ["Agnes Agent", "Ana Inglés", "Lucía Pérez", "TKT-000001", "TKT-000002"]
    values += [format_when(ticket.created_at, language, "UTC") for language in languages.LANGUAGE_NAMES]
    return values


# -- every customer mail ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        (
            "en",
            [
                [
                    "Hello Lucía Pérez,",
                    "opened ticket TKT-000001.",
                    "Priority:  Medium",
                    "Category:  Support",
                    "usually within 4 hours",
                    "See this ticket at any time: http://helpdesk.test/track/",
                ],
                ["Reinicia el módem, por favor.", "To answer, just reply to this mail."],
                ['your ticket TKT-000001 ("Sin internet en Col. Roma") is now: In progress (was: Open).'],
                [
                    "is now: Waiting for your answer (was: In progress).",
                    "¿Qué luces ves?",
                    "We are waiting for your answer: just reply to this mail.",
                ],
                [
                    'your ticket TKT-000001 ("Sin internet en Col. Roma") has been resolved.',
                    "closed after 7 days",
                    "Rate this ticket from 1 (poor) to 5 (excellent):",
                ],
            ],
        ),
        (
            "es",
            [
                [
                    "Hola, Lucía Pérez:",
                    "Recibimos tu solicitud y abrimos el ticket TKT-000001.",
                    "Prioridad: Media",
                    "Categoría: Soporte",
                    "Abierto:   2 mar 2026, 8:00 UTC",
                    "normalmente en menos de 4 horas",
                    "Consulta este ticket cuando quieras: http://helpdesk.test/track/",
                ],
                ["Reinicia el módem, por favor.", "Para contestar, solo responde a este correo."],
                [
                    'El estado de tu ticket TKT-000001 ("Sin internet en Col. Roma") ahora es: '
                    "En progreso (antes: Abierto)."
                ],
                [
                    "ahora es: Esperando tu respuesta (antes: En progreso).",
                    "¿Qué luces ves?",
                    "Esperamos tu respuesta: solo responde a este correo.",
                ],
                [
                    'Tu ticket TKT-000001 ("Sin internet en Col. Roma") quedó resuelto.',
                    "se cierra después de 7 días",
                    "Califica este ticket del 1 (malo) al 5 (excelente):",
                ],
            ],
        ),
    ],
)
def test_every_customer_mail_is_written_in_the_tickets_language(
    app, service, agent_actor, sink, clock, language, expected
):
    _speaks("lucia@example.com", language)
    ticket = _customer_mail(service, agent_actor, "lucia@example.com", "Lucía Pérez")
    mails = deliver(app, sink)
    assert [row.kind for row in _outbox()] == ["created", "reply", "status", "status", "resolved"]
    for mail, phrases in zip(mails, expected, strict=True):
        text = text_of(mail)
        for phrase in phrases:
            assert phrase in text, (phrase, text)
        assert f'<html lang="{language}">' in html_of(mail)
        assert mail["Subject"] == f"[TKT-000001] {SUBJECT}"
    assert db.session.get(Ticket, ticket.id).language == language


def test_spanish_mail_holds_no_english_word_of_the_product(app, service, agent_actor, sink, clock):
    _speaks("ana@example.com", "en")
    _speaks("lucia@example.com", "es")
    english = _customer_mail(service, agent_actor, "ana@example.com", "Ana Inglés")
    _customer_mail(service, agent_actor, "lucia@example.com", "Lucía Pérez")
    mails = deliver(app, sink)
    to_ana, to_lucia = mails[:5], mails[5:]
    people = _written_by_people(english)
    for ana, lucia in zip(to_ana, to_lucia, strict=True):
        assert english_left(text_of(ana), text_of(lucia), people) == set(), text_of(lucia)
        assert english_left(html_of(ana), html_of(lucia), people) == set(), html_of(lucia)
        # And the check has something to compare: the English mail is English.
        assert {"your", "this"} & _words(text_of(ana) + html_of(ana), people)


def test_the_check_finds_a_text_a_catalog_forgot(app, service, agent_actor, sink, clock, monkeypatch):
    """The comparison above, against a Spanish catalog missing one text."""
    catalog = languages.catalog
    spanish = catalog("es")
    forgotten = "To answer, just reply to this mail."

    class Forgetful(NullTranslations):
        def gettext(self, message: str) -> str:
            return message if message == forgotten else spanish.gettext(message)

        def pgettext(self, context: str, message: str) -> str:
            return spanish.pgettext(context, message)

    monkeypatch.setattr(
        languages, "catalog", lambda language: Forgetful() if language == "es" else catalog(language)
    )
    _speaks("ana@example.com", "en")
    _speaks("lucia@example.com", "es")
    english = _customer_mail(service, agent_actor, "ana@example.com", "Ana Inglés")
    _customer_mail(service, agent_actor, "lucia@example.com", "Lucía Pérez")
    mails = deliver(app, sink)
    reply_to_ana, reply_to_lucia = mails[1], mails[6]
    left = english_left(text_of(reply_to_ana), text_of(reply_to_lucia), _written_by_people(english))
    assert left == {"to", "answer", "just", "reply", "this", "mail"}


def test_a_spanish_speaking_contacts_thread_stays_spanish_through_the_gateway(
    app, gateway, senders, sink, service, agent_actor, client
):
    """Mail in through the real SMTP listener, the acknowledgment caught by the SMTP
    sink, a staff reply, the customer's answer threading back, a status change; the
    contact switches to English on the tracker halfway, and the thread stays
    Spanish while their next ticket is English."""
    _speaks("lucia@corp.example", "es")
    code, _ = gateway.send(
        message(sender="Lucía Pérez <lucia@corp.example>", subject=SUBJECT, body="No tengo señal desde ayer.")
    )
    assert code == 250
    (ack,) = deliver(app, sink)
    assert ack["To"] == "Lucía Pérez <lucia@corp.example>"
    assert "Hola, Lucía Pérez:" in text_of(ack)
    assert "Recibimos tu solicitud y abrimos el ticket TKT-000001." in text_of(ack)
    assert "normalmente en menos de 4 horas" in text_of(ack)
    ticket = db.session.execute(select(Ticket)).scalar_one()
    assert ticket.language == "es"

    service.mark_viewed(ticket, actor=agent_actor)
    service.add_message(ticket, body="¿Ya reiniciaste el módem?", actor=agent_actor, channel="web")
    db.session.commit()
    reply = deliver(app, sink)[-1]
    assert "Para contestar, solo responde a este correo." in text_of(reply)
    answer = message(
        sender="Lucía Pérez <lucia@corp.example>",
        subject="Re: " + str(reply["Subject"]),
        body="Sí, y sigue igual.",
        in_reply_to=reply["Message-ID"],
    )
    assert gateway.send(answer) == (250, b"2.0.0 OK appended TKT-000001")

    # Lucía opens the status link of that mail and switches the tracker to English.
    status_path = re.search(r"http://helpdesk\.test(/track/\S+)", text_of(reply)).group(1)
    page = client.get(status_path, headers={"Accept-Language": "en"})
    assert "Consulta tu ticket" in page.get_data(as_text=True)  # the mail's language
    switched = client.post(
        "/track/language",
        data={
            "language": "en",
            "purpose": "status",
            "token": status_path.removeprefix("/track/"),
            "csrf_token": Portal(client).token(status_path),
        },
    )
    assert switched.status_code == 303 and switched.headers["Location"] == status_path
    assert "Track your ticket" in client.get(status_path).get_data(as_text=True)
    db.session.expire_all()
    assert (
        db.session.execute(select(Contact.language).where(Contact.email == "lucia@corp.example")).scalar()
        == "en"
    )

    ticket = db.session.get(Ticket, ticket.id)
    service.change_status(ticket, "in_progress", actor=agent_actor)
    db.session.commit()
    status = deliver(app, sink)[-1]
    assert status["Subject"] == f"[TKT-000001] {SUBJECT}"
    assert "El estado de tu ticket TKT-000001" in text_of(status)
    assert "ahora es: En progreso (antes: Abierto)." in text_of(status)
    assert db.session.get(Ticket, ticket.id).language == "es"

    gateway.send(message(sender="Lucía Pérez <lucia@corp.example>", subject="Factura duplicada"))
    new_ack = deliver(app, sink)[-1]
    assert new_ack["Subject"] == "[TKT-000002] Factura duplicada"
    assert "we have received your request and opened ticket TKT-000002." in text_of(new_ack)


def _tracker_text(app: Flask, client: FlaskClient, ticket: Ticket, address: str) -> str:
    """The words of the tracker page a mail's status link opens, markup taken out."""
    path = "/track/" + customer_links.token(app.config, "status", ticket.id, address)
    page = client.get(path, headers={"Accept-Language": "en"}).get_data(as_text=True)
    return " ".join(html.unescape(_MARKUP.sub(" ", page)).split())


def _bare_mail(sender: str, *, big: bool, **headers: str) -> EmailMessage:
    """A mail with no subject and no text; `big`: with a photo over the 100-byte limit."""
    mail = message(sender=sender, body="", headers=headers)
    del mail["Subject"]
    if big:
        mail.add_attachment(b"\xff" * 150, maintype="image", subtype="jpeg", filename="modem.jpg")
    return mail


def test_a_spanish_customers_bare_mail_reads_spanish_and_keeps_our_notes_for_staff(
    app, gateway, senders, sink, client
):
    """A Spanish-speaking contact mails no subject, no text and a photo over the
    limit, then answers with no text: the placeholders are stored in the ticket's
    language, the acknowledgment's subject and title and the tracker say them in
    Spanish, and the gateway's note on the photo is an internal note for staff,
    not words of ours in the customer's own message (docs/mail-gateway.md, "What is
    stored")."""
    app.config.update(MAX_ATTACHMENT_BYTES=100)
    _speaks("lucia@corp.example", "es")
    assert gateway.send(_bare_mail("Lucía Pérez <lucia@corp.example>", big=True))[0] == 250
    (ack,) = deliver(app, sink)
    ticket = db.session.execute(select(Ticket)).scalar_one()
    assert (ticket.subject, ticket.description, ticket.language) == ("(sin asunto)", "(sin texto)", "es")
    assert ack["Subject"] == "[TKT-000001] (sin asunto)"
    assert "Título:    (sin asunto)" in text_of(ack)
    assert "(sin asunto)" in html_of(ack)
    for mail_text in (text_of(ack), html_of(ack)):
        assert "no subject" not in mail_text and "not stored" not in mail_text

    answer = _bare_mail("Lucía Pérez <lucia@corp.example>", big=False, **{"In-Reply-To": ack["Message-ID"]})
    assert gateway.send(answer) == (250, b"2.0.0 OK appended TKT-000001")
    db.session.expire_all()
    ticket = db.session.get(Ticket, ticket.id)
    assert [(m.kind, m.body) for m in ticket.messages] == [
        ("reply", "(sin texto)"),
        ("note", "modem.jpg (150 bytes) not stored: larger than 100 bytes; it is in the original mail."),
        ("reply", "(sin texto)"),
    ]
    tracker = _tracker_text(app, client, ticket, "lucia@corp.example")
    assert "Consulta tu ticket" in tracker and tracker.count("(sin texto)") == 2
    for english in ("no subject", "no text", "not stored", "modem.jpg", "original mail"):
        assert english not in tracker, english


def test_an_english_customers_bare_mail_keeps_the_english_placeholders(app, gateway, senders, sink, client):
    app.config.update(MAX_ATTACHMENT_BYTES=100)
    assert gateway.send(_bare_mail("Ann <ann@example.com>", big=True))[0] == 250
    (ack,) = deliver(app, sink)
    ticket = db.session.execute(select(Ticket)).scalar_one()
    assert (ticket.subject, ticket.description, ticket.language) == ("(no subject)", "(no text)", "en")
    assert ack["Subject"] == "[TKT-000001] (no subject)"
    assert "Title:     (no subject)" in text_of(ack)
    assert [(m.kind, m.body) for m in ticket.messages] == [
        ("reply", "(no text)"),
        ("note", "modem.jpg (150 bytes) not stored: larger than 100 bytes; it is in the original mail."),
    ]
    tracker = _tracker_text(app, client, ticket, "ann@example.com")
    assert "(no text)" in tracker and "not stored" not in tracker


def test_a_reply_with_no_text_is_written_in_the_tickets_language_not_the_contacts_new_one(
    app, gateway, senders, sink
):
    """The thread keeps its language: a contact who switched to English after their
    Spanish ticket's first mail still answers it with a Spanish placeholder."""
    contact = _speaks("lucia@corp.example", "es")
    assert gateway.send(message(sender="lucia@corp.example", subject="Sin señal"))[0] == 250
    (ack,) = deliver(app, sink)
    contact = db.session.get(Contact, contact.id)
    contact.language = "en"
    db.session.commit()
    answer = _bare_mail("lucia@corp.example", big=False, **{"In-Reply-To": ack["Message-ID"]})
    assert gateway.send(answer) == (250, b"2.0.0 OK appended TKT-000001")
    db.session.expire_all()
    ticket = db.session.execute(select(Ticket)).scalar_one()
    assert ticket.messages[-1].body == "(sin texto)"


def test_a_merged_in_customers_thread_keeps_its_own_language(app, service, agent_actor, sink, client):
    # A Spanish customer's ticket merged into an English one: their mail and their
    # status link go on in Spanish, the survivor's customer's in English
    # (docs/isp-operations.md, "Merge and links").
    contacts.find_or_create(db.session, "bob@example.com", "Bob").language = "es"
    kept = open_ticket(service, subject="Internet down")
    merged = open_ticket(service, subject="Sin internet", requester_email="bob@example.com")
    deliver(app, sink)  # the acknowledgments fix the threads' languages: en, es
    service.merge(merged, kept, actor=agent_actor)
    service.add_message(kept, body="We are on it.", actor=agent_actor, channel="web")
    db.session.commit()
    mails = {str(mail["To"]).split("<")[-1].rstrip(">"): text_of(mail) for mail in deliver(app, sink)}
    assert "just reply to this mail" in mails["ann@example.com"]
    bobs = mails["bob@example.com"]
    assert "just reply to this mail" not in bobs and "responde a este correo" in bobs, bobs
    link = re.search(r"http://helpdesk\.test(/track/\S+)", bobs)
    assert link is not None
    assert 'lang="es"' in client.get(link.group(1)).data.decode()
    assert (kept.language, merged.language) == ("en", "es")


def test_a_contact_without_a_language_gets_the_default_and_keeps_it(app, service, agent_actor, sink):
    app.config["DEFAULT_LANGUAGE"] = "es"
    ticket = open_ticket(service, subject=SUBJECT)
    (ack,) = deliver(app, sink)
    assert "Recibimos tu solicitud" in text_of(ack)
    app.config["DEFAULT_LANGUAGE"] = "en"  # a later change of the default: the thread stays
    service.add_message(ticket, body="Ya lo vemos.", actor=agent_actor, channel="web")
    db.session.commit()
    reply = deliver(app, sink)[-1]
    assert "Para contestar, solo responde a este correo." in text_of(reply)


def test_fixing_the_language_leaves_the_tickets_last_update_alone(app, service, sink, clock):
    ticket = open_ticket(service, subject=SUBJECT)
    updated = ticket.updated_at
    clock.shift(timedelta(hours=1))
    deliver(app, sink)
    fixed = db.session.get(Ticket, ticket.id)
    assert (fixed.language, fixed.updated_at) == ("en", updated)


# -- operator templates -------------------------------------------------------------------


def test_operator_templates_are_chosen_per_language(app, service, sink, tmp_path):
    (tmp_path / "es").mkdir()
    (tmp_path / "es" / "created.txt").write_text(
        "Ticket {{ number }}: ya es nuestro, {{ recipient_name }}.\n"
    )
    (tmp_path / "created.txt").write_text("Ticket {{ number }} is ours now, {{ recipient_name }}.\n")
    (tmp_path / "reply.txt").write_text("{{ _('To answer, just reply to this mail.') }}\n{{ reply.body }}\n")
    _speaks("lucia@example.com", "es")
    lucia = open_ticket(service, requester_email="lucia@example.com", requester_name="Lucía")
    open_ticket(service, requester_email="ann@example.com", requester_name="Ann")
    service.add_message(lucia, body="Hola.", actor=Actor.system("test"), channel="web")
    db.session.commit()
    to_lucia, to_ann, reply = deliver(app, sink, MAIL_TEMPLATES_DIR=str(tmp_path))
    assert text_of(to_lucia) == "Ticket TKT-000001: ya es nuestro, Lucía.\n"
    assert text_of(to_ann) == "Ticket TKT-000002 is ours now, Ann.\n"
    # Where the operator wrote none for a language, the built-in one in that language.
    assert "Recibimos tu solicitud" in html_of(to_lucia)
    assert "we have received your request" in html_of(to_ann)
    # An operator's template for every language reads the catalogs too.
    assert text_of(reply) == "Para contestar, solo responde a este correo.\nHola.\n"


# -- staff mail -------------------------------------------------------------------------


@pytest.fixture
def lupe(app: Flask) -> StaffUser:
    """An agent in Mexico City who reads Spanish."""
    user, _ = StaffService(db.session).create(
        email="lupe@helpdesk.test", name="Lupe Ramírez", role="agent", password="lupe-password-1"
    )
    user.language, user.timezone = "es", "America/Mexico_City"
    db.session.commit()
    return user


def test_staff_alerts_are_written_in_the_staff_members_language_and_zone(
    app, service, agent, agent_actor, lupe, sink, clock
):
    ticket = open_ticket(service, subject=SUBJECT, priority="urgent", assignee_id=lupe.id)
    english = open_ticket(service, subject="Router down", priority="urgent", assignee_id=agent.id)
    clock.shift(timedelta(minutes=16))
    check_sla(db.session, app.config)
    db.session.commit()
    service.escalate(
        db.session.get(Ticket, ticket.id),
        "L2",
        actor=agent_actor,
        reason="Tres clientes en la misma OLT.",
        assignee_id=lupe.id,
    )
    db.session.commit()
    mails = [
        mail
        for mail in deliver(app, sink, OUTBOUND_MAX_AUTO_PER_RECIPIENT=0)
        if "helpdesk.test>" in mail["To"]
    ]
    by_subject = {str(mail["Subject"]): mail for mail in mails}

    alert = by_subject[f"[TKT-000001] SLA incumplido: {SUBJECT}"]
    due = format_when(ticket.created_at + timedelta(minutes=15), "es", "America/Mexico_City")
    assert due == "2 mar 2026, 2:15 UTC-06:00"  # Mexico City's clock, its offset named
    text = text_of(alert)
    assert text.startswith("Hola, Lupe Ramírez:")
    assert f"La primera respuesta vencía el {due}." in text
    assert (
        "Prioridad: Urgente" in text
        and "Ábrelo en el portal: http://helpdesk.test/tickets/TKT-000001" in text
    )
    assert "Recibes esta alerta una vez por cada objetivo incumplido" in text
    assert (
        english_left(
            text_of(by_subject["[TKT-000002] SLA breach: Router down"]),
            text,
            [
                SUBJECT,
                "Router down",
                "Lupe Ramírez",
                "Agnes Agent",
                "TKT-000001",
                "TKT-000002",
                due,
                format_when(english.created_at + timedelta(minutes=15), "en", "UTC"),
            ],
        )
        == set()
    )

    escalated = by_subject[f"[TKT-000001] Escalado: {SUBJECT}"]
    text = text_of(escalated)
    assert "El ticket TKT-000001" in text and "ahora es tuyo." in text
    assert (
        "Escalado de L1 a L2 por Agnes Agent <agent@helpdesk.test>:\nTres clientes en la misma OLT." in text
    )
    assert "Recibes este correo porque te escalaron el ticket." in html_of(escalated)

    # Staff who chose nothing: DEFAULT_LANGUAGE and BUSINESS_TIMEZONE.
    text = text_of(by_subject["[TKT-000002] SLA breach: Router down"])
    assert (
        f"First response was due {format_when(english.created_at + timedelta(minutes=15), 'en', 'UTC')}."
        in text
    )


# -- the tracker --------------------------------------------------------------------------


@pytest.fixture
def lucias_ticket(service: TicketsService, agent_actor: Actor, clock) -> Ticket:  # type: ignore[no-untyped-def]
    """Lucía's ticket, with a reply and a status change, all at one moment (so every
    time the tracker shows is the same one)."""
    ticket = open_ticket(
        service,
        subject=SUBJECT,
        description=DESCRIPTION,
        requester_email="lucia@example.com",
        requester_name="Lucía",
    )
    service.mark_viewed(ticket, actor=agent_actor)
    service.add_message(ticket, body="Reinicia el módem, por favor.", actor=agent_actor, channel="web")
    service.change_status(ticket, "in_progress", actor=agent_actor)
    db.session.commit()
    return ticket


def test_an_sla_digest_is_written_in_the_staff_members_language_and_zone(
    app, service, lupe, agent, sink, clock
):
    tickets = [
        open_ticket(service, subject=SUBJECT, priority="urgent", assignee_id=lupe.id) for _ in range(4)
    ]
    english = [
        open_ticket(service, subject="Router down", priority="urgent", assignee_id=agent.id) for _ in range(4)
    ]
    clock.shift(timedelta(minutes=16))
    check_sla(db.session, app.config)
    db.session.commit()
    mails = {
        mail["To"].addresses[0].addr_spec: mail
        for mail in deliver(app, sink)
        if "helpdesk.test>" in mail["To"]
    }

    digest = mails[lupe.email]
    assert digest["Subject"] == "SLA incumplido: 4 tickets"
    due = format_when(tickets[0].created_at + timedelta(minutes=15), "es", "America/Mexico_City")
    text = text_of(digest)
    assert text.startswith("Hola, Lupe Ramírez:\n\nLa revisión de SLA acaba de encontrar 4 tickets")
    assert f"TKT-000001  {SUBJECT}\n    La primera respuesta vencía el {due}.\n" in text
    assert "Recibes una sola lista en lugar de una alerta por ticket" in text
    english_digest = mails[agent.email]
    assert english_digest["Subject"] == "SLA breaches: 4 tickets"
    shared = [SUBJECT, "Router down", "Lupe Ramírez", "Agnes Agent", due]
    shared += [f"TKT-{n:06d}" for n in range(1, 9)]
    shared.append(format_when(english[0].created_at + timedelta(minutes=15), "en", "UTC"))
    # "no" is a word of both ("belongs to no ticket" / "no pertenece").
    assert english_left(text_of(english_digest), text, shared) <= {"no"}
    assert english_left(html_of(english_digest), html_of(digest), shared) <= {"no"}


def _look_up(client, language: str, email: str = "lucia@example.com", number: str = "tkt-1"):  # type: ignore[no-untyped-def]
    headers = {"Accept-Language": language}
    token = Portal(client).token("/track")
    data = {"ticket_number": number, "email": email, "csrf_token": token}
    return client.post("/track", data=data, headers=headers)


@pytest.mark.parametrize(
    ("browser", "language"),
    [
        ("es-419,en;q=0.5", "es"),
        ("es-AR,en;q=0.5", "es"),
        ("es-MX,en-US;q=0.7,en;q=0.3", "es"),
        ("en-US,es;q=0.5", "en"),
        ("en-GB,es;q=0.3", "en"),
        ("fr-FR, ES;q=0.2, en;q=0.1", "es"),
        ("es;q=0, en-US", "en"),
        (",".join(["fr"] * 40 + ["es"]), "en"),  # past the entries read
    ],
)
def test_the_browsers_first_language_wins_whatever_its_region(client, browser, language):
    """SPEC §13: the language the browser prefers, by its q-values. Werkzeug's
    best_match took an exact tag ("en") before any main language ("es" of
    "es-419"), whatever the q-values: "es-419,en;q=0.5" read English and
    "en-US,es;q=0.5" Spanish, on the tracker, the login and the error pages."""
    for path in ("/track", "/login", "/no-such-page"):
        page = client.get(path, headers={"Accept-Language": browser}).get_data(as_text=True)
        assert f'<html lang="{language}"' in page, path


def test_the_tracker_speaks_the_browsers_language(client, lucias_ticket):
    form = client.get("/track", headers={"Accept-Language": "es-MX,es;q=0.9,en;q=0.5"}).get_data(as_text=True)
    assert "<h1>Consulta tu ticket</h1>" in form and "Número de ticket" in form
    assert "Consultar un ticket" in form  # the title
    spanish = _look_up(client, "es-MX").get_data(as_text=True)
    for phrase in (
        "Estado",
        "En progreso",
        "Prioridad",
        "Media",
        "Soporte",
        "Mensajes",
        "Historial",
        "Abierto el " + format_when(lucias_ticket.created_at, "es", "UTC"),
        "Reinicia el módem",
        "Agnes Agent",
    ):
        assert phrase in spanish, phrase
    english = _look_up(client, "en-US").get_data(as_text=True)
    assert (
        "In progress" in english and "Opened " + format_when(lucias_ticket.created_at, "en", "UTC") in english
    )
    people = [
        SUBJECT,
        DESCRIPTION,
        "Reinicia el módem, por favor.",
        "Agnes Agent",
        "Lucía",
        "TKT-000001",
        "TKT-000078",
        *languages.LANGUAGE_NAMES.values(),
    ]
    people += [format_when(lucias_ticket.created_at, language, "UTC") for language in ("en", "es")]
    assert english_left(english, spanish, people) == set()
    refused = _look_up(client, "es", email="otra@example.com")
    assert refused.status_code == 404
    assert "Ningún ticket coincide con este número y correo electrónico." in refused.get_data(as_text=True)


def test_the_switch_chooses_the_trackers_language_and_needs_its_token(client, lucias_ticket):
    token = Portal(client).token("/track")
    assert client.post("/track/language", data={"language": "es"}).status_code == 400  # no CSRF token
    answer = client.post("/track/language", data={"language": "es", "csrf_token": token})
    assert answer.status_code == 303 and answer.headers["Location"] == "/track"
    page = client.get("/track", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "Consulta tu ticket" in page  # the choice beats the browser
    assert '<strong lang="es" aria-current="true">Español</strong>' in page
    assert '<button type="submit" class="link" name="language" value="en" lang="en">English</button>' in page
    client.post("/track/language", data={"language": "xx", "csrf_token": token})  # unknown: no change
    assert "Consulta tu ticket" in client.get("/track").get_data(as_text=True)


def test_switching_on_a_status_link_sets_the_contacts_language_not_the_tickets(app, client, lucias_ticket):
    lucias_ticket.language = "en"  # its mail so far was English
    db.session.commit()
    token = customer_links.token(app.config, "status", lucias_ticket.id, "lucia@example.com")
    answer = client.post(
        "/track/language",
        data={
            "language": "es",
            "purpose": "status",
            "token": token,
            "csrf_token": Portal(client).token("/track"),
        },
    )
    assert answer.status_code == 303 and answer.headers["Location"] == f"/track/{token}"
    shown = client.get(answer.headers["Location"]).get_data(as_text=True)
    assert "Consulta tu ticket" in shown and "Reinicia el módem, por favor." in shown
    db.session.expire_all()
    assert (
        db.session.execute(select(Contact.language).where(Contact.email == "lucia@example.com")).scalar()
        == "es"
    )
    assert db.session.get(Ticket, lucias_ticket.id).language == "en"
    forged = client.post(
        "/track/language",
        data={
            "language": "es",
            "purpose": "status",
            "token": token + "x",
            "csrf_token": Portal(client).token("/track"),
        },
    )
    assert forged.status_code == 404
    assert "Este enlace no es válido" in forged.get_data(as_text=True)


def test_a_switch_whose_commit_answer_was_lost_says_it_may_or_may_not_be_saved(app, client, lucias_ticket):
    """The connection drops as the contact's language is committed: the page said the
    helpdesk cannot reach its database, try again, as if nothing had been kept. It
    says what every form says of a lost answer, in the language just chosen, which
    the visitor's session keeps either way (docs/web.md, "A lost answer")."""
    token = customer_links.token(app.config, "status", lucias_ticket.id, "lucia@example.com")
    form = {
        "language": "es",
        "purpose": "status",
        "token": token,
        "csrf_token": Portal(client).token("/track"),
    }
    with commit_answer_lost(lambda statement: statement.startswith("UPDATE contacts")):
        answer = client.post("/track/language", data=form)
    said = answer.get_data(as_text=True)
    assert answer.status_code == 503 and "puede que se haya guardado o no" in said
    assert "no puede acceder a su base de datos" not in said
    assert "Consulta tu ticket" in client.get(f"/track/{token}").get_data(as_text=True)
    db.session.expire_all()
    assert (
        db.session.execute(select(Contact.language).where(Contact.email == "lucia@example.com")).scalar()
        == "es"
    )


def test_switching_after_a_lookup_shows_the_ticket_again_and_leaves_the_contact(client, lucias_ticket):
    """A lookup proves a number and an address, not the mail (docs/security.md,
    "Customer links"): its switch changes the visitor's language only."""
    page = _look_up(client, "en").get_data(as_text=True)
    token = re.search(r'name="token" value="([^"]+)"', page).group(1)
    answer = client.post(
        "/track/language",
        data={
            "language": "es",
            "purpose": "lookup",
            "token": token,
            "csrf_token": Portal(client).token("/track"),
        },
    )
    assert answer.status_code == 303 and answer.headers["Location"] == f"/track/lookup/{token}"
    shown = client.get(answer.headers["Location"]).get_data(as_text=True)
    assert "Consulta tu ticket" in shown and "Reinicia el módem, por favor." in shown
    db.session.expire_all()
    language = select(Contact.language).where(Contact.email == "lucia@example.com")
    assert db.session.execute(language).scalar() == ""


def test_a_mails_status_link_opens_in_the_tickets_language(app, client, lucias_ticket):
    path = "/track/" + customer_links.token(app.config, "status", lucias_ticket.id, "lucia@example.com")
    lucias_ticket.language = "es"
    db.session.commit()
    page = client.get(path, headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "Consulta tu ticket" in page and "En progreso" in page
    lucias_ticket.language = ""  # no mail yet: the browser's language
    db.session.commit()
    assert "Consulta tu ticket" in client.get(path, headers={"Accept-Language": "es"}).get_data(as_text=True)
    assert "Track your ticket" in client.get(path, headers={"Accept-Language": "en"}).get_data(as_text=True)


@pytest.mark.parametrize("browser", [None, "pt-BR,pt;q=0.9", "pt-BR,pt;q=0.9,*;q=0.1", "*"])
def test_without_a_browser_language_we_speak_the_tracker_reads_the_contacts(
    app, client, lucias_ticket, browser
):
    """SPEC §13: the tracker speaks the browser's language or the contact's. A
    visitor whose browser names none we speak read DEFAULT_LANGUAGE even after
    proving they are Lucía, whose contact reads Spanish; now her lookup and her
    status link (a ticket with no mail language yet) are in Spanish. A browser that
    names a language we speak still wins, and before the lookup she is nobody. A
    wildcard (`*`, "anything else") names none: it made the tracker English."""
    db.session.execute(update(Contact).where(Contact.email == "lucia@example.com").values(language="es"))
    lucias_ticket.language = ""  # no mail language yet
    db.session.commit()
    headers = {"Accept-Language": browser} if browser else {}
    token = Portal(client).token("/track")
    data = {"ticket_number": "tkt-1", "email": "lucia@example.com", "csrf_token": token}
    assert "Track your ticket" in client.get("/track", headers=headers).get_data(as_text=True)
    looked_up = client.post("/track", data=data, headers=headers).get_data(as_text=True)
    assert "Consulta tu ticket" in looked_up and "En progreso" in looked_up
    path = "/track/" + customer_links.token(app.config, "status", lucias_ticket.id, "lucia@example.com")
    linked = client.get(path, headers=headers).get_data(as_text=True)
    assert "Consulta tu ticket" in linked and "En progreso" in linked
    assert "In progress" in client.post("/track", data=data, headers={"Accept-Language": "en"}).get_data(
        as_text=True
    )


def test_the_rating_page_and_its_answers_in_spanish(app, client, service, agent_actor, lucias_ticket):
    lucias_ticket.language = "es"
    service.change_status(lucias_ticket, "resolved", actor=agent_actor)
    db.session.commit()
    path = "/rate/" + customer_links.token(app.config, "rating", lucias_ticket.id, "lucia@example.com")
    page = client.get(path).get_data(as_text=True)
    assert "¿Cómo lo hicimos?" in page and "Tu calificación, del 1 (malo) al 5 (excelente)" in page
    assert "Calificar TKT-000001" in page and "Enviar calificación" in page
    token = Portal(client).token(path)
    refused = client.post(path, data={"rating": "9", "csrf_token": token})
    assert refused.status_code == 422
    assert (
        "Elige una calificación del 1 al 5; el comentario puede tener hasta 2.000 caracteres."
        in refused.get_data(as_text=True)
    )
    rated = client.post(path, data={"rating": "5", "comment": "¡Gracias!", "csrf_token": token})
    assert rated.status_code == 303
    shown = client.get(rated.headers["Location"]).get_data(as_text=True)
    assert "Gracias por tu calificación." in shown
    assert "Tu calificación: <strong>5 de 5</strong>" in shown and "Cambiar tu calificación" in shown
    lucias_ticket = db.session.get(Ticket, lucias_ticket.id)
    service.change_status(lucias_ticket, "closed", actor=agent_actor)
    db.session.commit()
    closed = client.post(path, data={"rating": "4", "csrf_token": token})
    assert closed.status_code == 409
    assert "Este ticket está cerrado; su calificación ya no se puede cambiar." in closed.get_data(
        as_text=True
    )


def test_mail_durations_and_times_come_from_babel():
    assert format_duration(timedelta(days=7), "es") == "7 días"
    assert format_duration(timedelta(minutes=90), "en") == "90 minutes"


# -- in a real browser ----------------------------------------------------------------------


def test_the_tracker_in_spanish_in_a_real_browser(app, service, agent_actor, live_portal, browser_page):  # noqa: F811
    open_ticket(
        service,
        subject=SUBJECT,
        description=DESCRIPTION,
        requester_email="lucia@example.com",
        requester_name="Lucía",
    )
    db.session.rollback()
    page = browser_page
    page.context.set_extra_http_headers({"Accept-Language": "es-MX,es;q=0.9"})
    page.goto(f"{live_portal}/track")
    assert page.locator("h1").inner_text() == "Consulta tu ticket"
    page.fill("#ticket_number", "tkt-1")
    page.fill("#email", "lucia@example.com")
    page.click("button:has-text('Buscar')")
    view = page.locator("main").inner_text()
    assert f"TKT-000001 · {SUBJECT}" in view and "Nuevo" in view and "Mensajes" in view
    # The switch: English, then back to Spanish, without a script.
    page.click("button:has-text('English')")
    page.wait_for_load_state()
    assert page.locator("h1").inner_text() == "Track your ticket"
    assert "New" in page.locator("main").inner_text()
    page.click("button:has-text('Español')")
    page.wait_for_load_state()
    assert page.locator("h1").inner_text() == "Consulta tu ticket"
    page.screenshot(path="tests/artifacts/tracker-es.png", full_page=True)
