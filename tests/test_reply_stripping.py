"""What the gateway stores of a customer's mail, quote stripping included (docs/mail-gateway.md).

The mails of the mail-fidelity review, through the real pipeline (`ingest`: parse,
HTML read as text, quote and signature stripping, storage): customers who paste
what someone wrote them without quoting it, use "--" or a line of underscores as
dividers, describe a transfer "De: … / Fecha: …", or answer between the quotes of
an HTML-only reply lost everything below those lines; Spanish desktop Outlook's
header block ("Enviado el:") kept the whole history. `tests/test_replies.py` tests
the rules one by one.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from helpdesk.extensions import db
from helpdesk.inbound.ingest import Envelope, Outcome, ingest
from helpdesk.models import Ticket
from tests.support.mail import SUPPORT


def stored(app, body: str, content_type: str = "text/plain", subject: str = "Router") -> str:  # type: ignore[no-untyped-def]
    """The description of the ticket a mail with `body` opens."""
    app.config.update(UNKNOWN_SENDER_POLICY="accept")
    raw = (
        "From: Ana López <ana@example.com>\nTo: support@helpdesk.test\n"
        f"Subject: {subject}\nMessage-ID: <{abs(hash(body))}@example.com>\nMIME-Version: 1.0\n"
        f"Content-Type: {content_type}; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n{body}"
    ).encode()
    result = ingest(raw, Envelope("ana@example.com", (SUPPORT,), "smtp"), app.config)
    assert result.outcome is Outcome.CREATED, result
    db.session.commit()
    ticket = db.session.execute(select(Ticket).order_by(Ticket.id.desc()).limit(1)).scalar_one()
    assert ticket.messages[0].body == ticket.description
    return ticket.description


KEPT_WHOLE = {
    # The customer's own "El … escribió:" / "On … wrote:" with no quote below it.
    "q1_el_lun": "Hola,\nEl lun, 2 de marzo a las 10:00, el técnico vino y escribió:\n"
    "que el router estaba roto y que lo cambiarían en 48 horas. Ahora sigue igual.\nSaludos, Ana",
    "q2_on_wrote": "Hi,\nOn 3 March at 9:00 the technician came and wrote:\n- router broken\n"
    "- needs replacement within 2 days\nNothing happened since. Please advise.\nAnn",
    "q6_pasted_quote": "Buenas tardes:\n\nEl 3 de marzo su compañero Pedro me escribió:\n"
    '"La avería quedará resuelta en 48 horas."\n\nHa pasado una semana y sigo sin línea. '
    "Quiero la devolución de la cuota de marzo o me doy de baja.\n\nAna López\nDNI 12345678Z",
    "q7_pasted_quote_en": "Hello,\n\nOn 3 March your colleague Pedro wrote:\n"
    '"The fault will be fixed within 48 hours."\n\nIt has been a week and I still have no line. '
    "I want March refunded or I will cancel.\n\nAnn",
    # "--" as a divider, twice.
    "q3_dashdash": "Mis datos para el alta:\n--\nCuenta: ES12 3456 7890\nDirección: Calle Mayor 5, Madrid\n"
    "--\nQuiero la tarifa de 600 Mb.",
    # "De:" and "Fecha:" of a bank transfer, no header block.
    "q4_de_fecha": "Les hice la transferencia del recibo:\nDe: cuenta ES12 3456\nFecha: 3 de marzo de 2026\n"
    "Importe: 45,90 €\nPor favor, quiten el corte del servicio.",
    # A line of underscores in a form, no header block below.
    "q5_underscores": "Rellené el formulario:\n" + "_" * 32 + "\nNombre: Ana López\nDNI: 12345678Z\n"
    "Motivo: baja del servicio",
    # A last line that starts like a phone footer and is a sentence.
    "c14_enviado_desde_mi_casa": "Hola, no me llega la factura.\n\n"
    "Enviado desde mi casa porque en la oficina no tengo conexión.",
}


@pytest.mark.parametrize("name", KEPT_WHOLE)
def test_customer_text_that_looks_like_a_marker_is_stored_whole(app, name):
    assert stored(app, KEPT_WHOLE[name] + "\n") == KEPT_WHOLE[name]


OUTLOOK_ES = (
    "Sí, dos veces y sigue igual.\n\nDe: Soporte [mailto:support@helpdesk.test] \n"
    "Enviado el: lunes, 2 de marzo de 2026 10:00\nPara: Ana López <ana@example.com>\n"
    "Asunto: [TKT-000001] Router\n\nHola Ana, ¿ha probado a reiniciar el router?\nUn saludo,\n"
    "Soporte técnico\n"
)


def test_spanish_outlook_header_block_ends_the_reply(app):
    assert stored(app, OUTLOOK_ES, subject="RE: Router") == "Sí, dos veces y sigue igual."
    portuguese = OUTLOOK_ES.replace("Enviado el:", "Enviado em:").replace("Asunto:", "Assunto:")
    assert stored(app, portuguese, subject="RE: Router") == "Sí, dos veces y sigue igual."
    bold = (
        "Sí.\n\n*De:* Soporte <support@helpdesk.test>\n*Enviado el:* lunes, 2 de marzo de 2026\n*Para:* Ana\n"
    )
    assert stored(app, bold + "\nHola Ana\n", subject="RE: Router") == "Sí."


def test_spanish_outlook_html_header_block_ends_the_reply(app):
    body = (
        "<html><body><p>Sí, dos veces y sigue igual.</p><div style='border-top:solid #E1E1E1 1.0pt'>"
        "<p><b>De:</b> Soporte &lt;support@helpdesk.test&gt; <br><b>Enviado el:</b> lunes, 2 de marzo de "
        "2026 10:00<br><b>Para:</b> Ana López &lt;ana@example.com&gt;<br><b>Asunto:</b> [TKT-000001] Router"
        "</p></div><p>Hola Ana, ¿ha probado a reiniciar el router?</p><p>Un saludo,<br>Soporte técnico</p>"
        "</body></html>"
    )
    assert stored(app, body, "text/html", subject="RE: Router") == "Sí, dos veces y sigue igual."


ATTRIBUTION = "El lun, 2 mar 2026 a las 10:00, Soporte &lt;support@helpdesk.test&gt; escribió:"


def test_html_answers_between_the_quotes_are_kept(app):
    body = (
        f"<div>Respondo entre líneas.</div><div>{ATTRIBUTION}</div><blockquote>¿Ha reiniciado?</blockquote>"
        "<div>Sí.</div><blockquote>¿Qué luz ve?</blockquote><div>La roja.</div>"
    )
    assert stored(app, body, "text/html") == (
        "Respondo entre líneas.\n\n"
        "El lun, 2 mar 2026 a las 10:00, Soporte <support@helpdesk.test> escribió:\n\n"
        "> ¿Ha reiniciado?\n\nSí.\n\n> ¿Qué luz ve?\n\nLa roja."
    )


def test_an_html_only_mail_ending_in_an_indented_block_keeps_it(app):
    """Gmail's "indent more" writes a <blockquote>: read as "> " lines, a block
    nothing follows was the final quoted block and was cut, the address with it
    (found by the review of the day's fixes). A blockquote is quoted only when the
    customer's own text follows it."""
    body = (
        "<div>Please install the line at our new address:</div>"
        '<blockquote style="margin:0 0 0 40px;border:none;padding:0px">'
        "<div>Calle Mayor 12, 3B</div><div>28013 Madrid</div></blockquote>"
    )
    assert stored(app, body, "text/html") == (
        "Please install the line at our new address:\n\nCalle Mayor 12, 3B\n\n28013 Madrid"
    )


def test_html_bottom_post_is_kept(app):
    body = (
        f"<div>{ATTRIBUTION}<blockquote>¿Ha reiniciado el router?</blockquote></div>"
        "<div>Sí, dos veces, y la luz roja sigue parpadeando.</div>"
    )
    assert stored(app, body, "text/html").endswith("Sí, dos veces, y la luz roja sigue parpadeando.")


def test_html_reply_above_the_quote_keeps_only_the_reply(app):
    gmail = (
        '<div dir="ltr">Sí, ya funciona.</div><br><div class="gmail_quote"><div class="gmail_attr">'
        f"{ATTRIBUTION}<br></div><blockquote class='gmail_quote'><div>¿Ha reiniciado?</div>"
        "<div class='gmail_quote'>El dom, 1 mar 2026 a las 9:00, Ana &lt;ana@example.com&gt; escribió:"
        "<blockquote><div>No tengo línea.</div></blockquote></div></blockquote></div>"
    )
    assert stored(app, gmail, "text/html") == "Sí, ya funciona."
    apple = (
        "<div>Ya funciona.</div><div><br><blockquote type='cite'><div>On 2 Mar 2026, at 10:00, Support "
        "&lt;support@helpdesk.test&gt; wrote:</div><br><div>Did you restart it?</div></blockquote></div>"
    )
    assert stored(app, apple, "text/html") == "Ya funciona."


def test_phone_footers_are_still_left_out(app):
    for footer in (
        "Enviado desde mi iPhone",
        "Sent from my Samsung Galaxy smartphone.",
        "Enviado desde mi móvil",
    ):
        assert stored(app, f"No me llega la factura.\n\n{footer}\n") == "No me llega la factura."


def test_a_signature_and_an_outlook_separator_still_end_the_reply(app):
    signature = "No me llega la factura.\n\n-- \nAna López\nCalle Mayor 5\nMadrid\n"
    assert stored(app, signature) == "No me llega la factura."
    separator = "Hecho.\n\n" + "_" * 32 + "\n" + OUTLOOK_ES.split("\n\n", 1)[1]
    assert stored(app, separator) == "Hecho."
