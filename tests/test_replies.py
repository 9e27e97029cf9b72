"""Where the new text of a reply ends (`helpdesk.inbound.replies`).

The mails are shaped like what real clients send: Gmail, Apple Mail,
Thunderbird and Outlook, in the languages the gateway reads. What must never
happen is that the customer's own text is lost, so sentences that merely look
like markers are tested too. Last, hostile mails of 1 MB must take about as
long as an ordinary one: the old library took minutes on 64 KB.
"""

from __future__ import annotations

from functools import partial

import pytest

from helpdesk.inbound.replies import latest_reply
from tests.support.timing import cpu_seconds

QUOTE = "> Did you try turning it off and on again?\n>\n> Support\n"


def test_gmail_attribution_on_one_line():
    text = (
        "Yes, that fixed it.\n\nOn Mon, 1 Jan 2024 at 10:00, Support <support@helpdesk.test> wrote:\n" + QUOTE
    )
    assert latest_reply(text) == "Yes, that fixed it."


def test_attribution_wrapped_over_two_lines():
    text = (
        "Thanks, it works now.\n\nOn Mon, Jan 1, 2024 at 10:00 AM Helpdesk Support <\n"
        "support@helpdesk.test> wrote:\n\n" + QUOTE
    )
    assert latest_reply(text) == "Thanks, it works now."
    text = "Thanks.\n\nOn Mon, 1 Jan 2024 at 10:00, Support <support@helpdesk\n.test> wrote:\n" + QUOTE
    assert latest_reply(text) == "Thanks."


def test_apple_mail_footer_and_quoted_attribution():
    text = (
        "It works again.\n\nSent from my iPhone\n\n> On 1 Jan 2024, at 10:00, Support "
        "<support@helpdesk.test> wrote:\n> \n" + QUOTE
    )
    assert latest_reply(text) == "It works again."


def test_thunderbird_attribution_without_address():
    assert latest_reply("Thanks.\n\nOn 01.01.24 10:00, Support wrote:\n" + QUOTE) == "Thanks."


@pytest.mark.parametrize(
    "attribution",
    [
        "Am Mo., 1. Jan. 2024 um 10:00 Uhr schrieb Support <support@helpdesk.test>:",  # de, Gmail
        "Am 01.01.24 um 10:00 schrieb Support:",  # de, Thunderbird
        "Le lun. 1 janv. 2024 à 10:00, Support <support@helpdesk.test> a écrit :",  # fr
        "Le lun. 1 janv. 2024 à 10:00, Support <support@helpdesk.test> a écrit\u00a0:",
        "El lun, 1 ene 2024 a las 10:00, Support (<support@helpdesk.test>) escribió:",  # es
        "Il giorno lun 1 gen 2024 alle ore 10:00 Support <support@helpdesk.test> ha scritto:",
        "Op ma 1 jan 2024 om 10:00 schreef Support <support@helpdesk.test>:",  # nl
        "W dniu 1.01.2024 o 10:00, Support pisze:",  # pl, Thunderbird
        "W dniu pon., 1.01.2024 o 10:00 Support <support@helpdesk.test> napisał(a):",  # pl, Gmail
        "Dnia 1.01.2024 o 10:00 Support <support@helpdesk.test> napisał(a):",
        "Den mån 1 jan. 2024 kl 10:00 skrev Support <support@helpdesk.test>:",  # sv
        "Den man. 1. jan. 2024 kl. 10.00 skrev Support <support@helpdesk.test>:",  # da
        "Em seg., 1 de jan. de 2024 às 10:00, Support <support@helpdesk.test> escreveu:",  # pt
        "Dne 01. 01. 24 v 10:00 Support napsal(a):",  # cs
        "2024年1月1日(月) 10:00 Support <support@helpdesk.test>:",  # ja, Gmail
        "2024/01/01 10:00、Support のメッセージ:",  # ja
        "2024/01/01 10:00, Support wrote:",  # ja, Thunderbird
        "Support <support@helpdesk.test> 于2024年1月1日周一 10:00写道：",  # zh, Gmail
    ],
)
def test_attributions_in_other_languages(attribution):
    assert latest_reply(f"Merci / Danke / 谢谢\n\n{attribution}\n{QUOTE}") == "Merci / Danke / 谢谢"


def test_attribution_followed_by_unquoted_history():
    # HTML mail without <blockquote>, or an app, loses the ">" marks: an attribution
    # naming an address, as clients write it, ends the reply anyway.
    text = "Done.\n\nOn Mon, 1 Jan 2024 at 10:00, Support <support@helpdesk.test> wrote:\nOld text"
    assert latest_reply(text) == "Done."
    wrapped = "Done.\n\nOn Wed, May 18, 2016 at 11:10 PM Support <support@helpdesk.test>\nwrote:\n\nOld text"
    assert latest_reply(wrapped) == "Done."


@pytest.mark.parametrize(
    "text",
    [
        'Buenas tardes:\n\nEl 3 de marzo su compañero Pedro me escribió:\n"Mañana."\n\nNo vino nadie.',
        "Hi,\nOn 3 March at 9:00 the technician came and wrote:\n- router broken\nAnn",
        "Hello,\n\nOn 3 March your colleague Pedro wrote:\n",
    ],
)
def test_attribution_without_address_or_quote_below_is_the_customers_text(text):
    # A customer pasting what someone wrote them keeps it.
    assert latest_reply(text) == text.strip()


def test_attribution_followed_by_an_outlook_header_block():
    text = "Done.\n\nOn Mon, 1 Jan 2024 at 10:00, Support wrote:\n\n" + "From: Support <s@helpdesk.test>\n"
    text += "Sent: Monday\nTo: Alice\n\nOld text"
    assert latest_reply(text) == "Done."


OUTLOOK_HEADERS = (
    "From: Support <support@helpdesk.test>\nSent: Monday, January 1, 2024 10:00 AM\n"
    "To: Alice <alice@customer.example>\nSubject: RE: [TKT-000001] Invoice\n\n"
    "Please send the invoice.\n"
)


def test_outlook_original_message_separator():
    text = "The invoice is attached.\r\n\r\n-----Original Message-----\r\n" + OUTLOOK_HEADERS.replace(
        "\n", "\r\n"
    )
    assert latest_reply(text) == "The invoice is attached."


@pytest.mark.parametrize(
    "separator",
    [
        "-----Ursprüngliche Nachricht-----",
        "-----Message d'origine-----",
        "-----Mensaje original-----",
        "-----Messaggio originale-----",
        "-----Oorspronkelijk bericht-----",
        "-----Wiadomość oryginalna-----",
        "-----Ursprungligt meddelande-----",
        "-----Mensagem original-----",
        "-----Původní zpráva-----",
        "-----Oprindelig meddelelse-----",
        "-------- Original Message --------",
    ],
)
def test_outlook_separators_in_other_languages(separator):
    assert latest_reply(f"Erledigt.\n\n{separator}\nOld text\n") == "Erledigt."


def test_a_line_of_underscores_is_a_separator_only_above_a_header_block():
    # Outlook writes its header block below the line; a form or a list draws one too.
    line = "_" * 32
    assert latest_reply(f"Erledigt.\n\n{line}\n" + OUTLOOK_HEADERS) == "Erledigt."
    assert latest_reply(
        f"Hecho.\n{line}\n\n*De:* Soporte\n*Enviado el:* lunes\n*Para:* Ana\n*Asunto:* Router\n"
    ) == ("Hecho.")
    form = f"Rellené el formulario:\n{line}\nNombre: Ana López\nDNI: 12345678Z\nMotivo: baja"
    assert latest_reply(form) == form
    assert latest_reply(f"Erledigt.\n\n{line}\nOld text") == f"Erledigt.\n\n{line}\nOld text"
    mailman = (
        "_" * 47 + "\nriak-users mailing list\nriak-users@lists.example\nhttp://lists.example/listinfo\n"
    )
    assert latest_reply("How do I clear a bucket?\n\n" + mailman) == "How do I clear a bucket?"


@pytest.mark.parametrize(
    "headers",
    [
        OUTLOOK_HEADERS,
        "*From:* Support <support@helpdesk.test>\n*Sent:* Monday, January 1, 2024 10:00\n*To:* Alice\n",
        "Von: Support <support@helpdesk.test>\nGesendet: Montag, 1. Januar 2024 10:00\nAn: Alice\n"
        "Betreff: AW: Rechnung\n",
        "De : Support <support@helpdesk.test>\nEnvoyé : lundi 1 janvier 2024 10:00\nÀ : Alice\n",
        "De: Support\nEnviado: lunes, 1 de enero de 2024 10:00\nPara: Alice\nAsunto: Factura\n",
        "Da: Support\nInviato: lunedì 1 gennaio 2024 10:00\nA: Alice\nOggetto: Fattura\n",
        "Van: Support\nVerzonden: maandag 1 januari 2024 10:00\nAan: Alice\nOnderwerp: Factuur\n",
        "Od: Support\nWysłano: poniedziałek, 1 stycznia 2024 10:00\nDo: Alice\nTemat: Faktura\n",
        "Från: Support\nSkickat: den 1 januari 2024 10:00\nTill: Alice\nÄmne: Faktura\n",
        "Od: Support\nOdesláno: pondělí 1. ledna 2024 10:00\nKomu: Alice\nPředmět: Faktura\n",
        "发件人: Support <support@helpdesk.test>\n发送时间: 2024年1月1日 10:00\n收件人: Alice\n主题: 发票\n",
        # Desktop Outlook in Spanish and Portuguese, plain and bold.
        "De: Soporte [mailto:support@helpdesk.test] \nEnviado el: lunes, 2 de marzo de 2026 10:00\n"
        "Para: Ana López <ana@example.com>\nAsunto: [TKT-000001] Router\n",
        "*De:* Soporte <support@helpdesk.test>\n*Enviado el:* lunes, 2 de marzo de 2026 10:00\n*Para:* Ana\n",
        "De: Suporte\nEnviado em: segunda-feira, 2 de março de 2026 10:00\nPara: Ana\nAssunto: Fatura\n",
        "De: Soporte <support@helpdesk.test>\nFecha: lunes, 2 de marzo de 2026 10:00\nPara: Ana\n",
    ],
)
def test_outlook_header_block(headers):
    assert latest_reply(f"Done, thanks.\n\n{headers}\nOld text\n") == "Done, thanks."


def test_signature_delimiter():
    text = "Please reset my password.\n\n-- \nAlice Example\nACME Corp\n+1 555 0100\n"
    assert latest_reply(text) == "Please reset my password."
    assert latest_reply("Please reset my password.\n--\nAlice") == "Please reset my password."
    signature = "Thanks.\n-- \n" + "Alice\n" * 10
    assert latest_reply(signature + "\nOn Mon, 1 Jan 2024, Support wrote:\n" + QUOTE) == "Thanks."


def test_dashes_that_are_no_signature_delimiter():
    # Twice, they are dividers; with more than ten lines below, the text is the customer's.
    twice = (
        "Mis datos para el alta:\n--\nCuenta: ES12 3456 7890\nDirección: Calle Mayor 5\n--\nQuiero 600 Mb."
    )
    assert latest_reply(twice) == twice
    long = "The log:\n--\n" + "line\n" * 11 + "Please help."
    assert latest_reply(long) == long.strip()


@pytest.mark.parametrize(
    "footer",
    [
        "Sent from my iPhone",
        "Get Outlook for iOS<https://aka.ms/o0ukef>",
        "Enviado desde mi iPhone",
        "Gesendet von meinem Samsung Galaxy",
        "Von meinem iPhone gesendet",
        "Envoyé de mon iPhone",
        "Inviato da iPhone",
        "Verzonden vanaf mijn iPad",
        "Skickat från min iPhone",
        "Wysłano z mojego telefonu",
        "Odesláno z mého iPhonu",
        "Enviado desde mi móvil",
        "Enviado desde mi smartphone Samsung Galaxy.",
        "Sent from my Verizon, Samsung Galaxy smartphone",
        "Obtener Outlook para Android",
        "Wysłane z iPhone'a",
    ],
)
def test_phone_footers(footer):
    assert latest_reply(f"Printer is fixed.\n\n{footer}\n") == "Printer is fixed."


def test_trailing_quoted_block_without_attribution():
    assert latest_reply("Yes.\n\n> Did it work?\n> > Earlier question\n>\n") == "Yes."


def test_interleaved_answers_are_kept():
    text = (
        "On Mon, 1 Jan 2024 at 10:00, Support <support@helpdesk.test> wrote:\n"
        "> Which printer is it?\nThe one on floor 3.\n\n> Since when?\nSince Monday.\n\n"
        "> Regards, Support\n> -- \n> Helpdesk\n"
    )
    assert latest_reply(text) == (
        "On Mon, 1 Jan 2024 at 10:00, Support <support@helpdesk.test> wrote:\n"
        "> Which printer is it?\nThe one on floor 3.\n\n> Since when?\nSince Monday."
    )


def test_footer_below_the_quote_is_no_answer():
    text = (
        "Thanks!\n\nOn Mon, 1 Jan 2024 at 10:00, Support <support@helpdesk.test> wrote:\n"
        + QUOTE
        + "\n-- \nYou received this message because you are subscribed to a list.\n"
    )
    assert latest_reply(text) == "Thanks!"


def test_quote_only_mail_is_kept_whole():
    assert latest_reply("> Please restart the router.\n> Support\n") == (
        "> Please restart the router.\n> Support"
    )
    forward = "-----Original Message-----\n" + OUTLOOK_HEADERS
    assert latest_reply(forward) == forward.strip()


def test_a_quote_under_nothing_to_read_is_kept_whole():
    """A zero-width space above the quote was kept as the new text: a reply showing
    nothing, which the service refuses (docs/mail-gateway.md, "What is stored")."""
    text = "\u200b\u3164\n\n> Please restart the router.\n> Support"
    assert latest_reply(text) == text


def test_line_endings_are_normalised():
    text = "Yes.\r\n\r\nSecond line.\r\nOn Mon, 1 Jan 2024 at 10:00, Support wrote:\r\n> old\r\n"
    assert latest_reply(text) == "Yes.\n\nSecond line."
    assert latest_reply("Yes.\r\rOn 1 Jan 2024, Support wrote:\r> old\r") == "Yes."


def test_salutations_and_names_stay():
    text = (
        "Thanks!\n\nBest regards,\nAlice\n\nOn Mon, 1 Jan 2024 at 10:00, Support "
        "<support@helpdesk.test> wrote:\n" + QUOTE
    )
    assert latest_reply(text) == "Thanks!\n\nBest regards,\nAlice"


@pytest.mark.parametrize(
    "text",
    [
        "On Monday the router failed again, as I wrote: it blinks red.\nIt still does.",
        "On Monday, as I wrote:\n\nthe router blinks red.",  # no date: the customer's sentence
        "Here is what I wrote:\nOn 3 May the router failed.",
        "From: Paris\nThe train was late, the ticket is attached.",
        "Our trip:\nFrom: Paris\nTo: London\nThe router stayed at home and failed.",
        "From: 1 to 3 pm nobody could print.\nNow it works.",
        "Sent from my work account because the other one is locked.\nPlease reply there.",
        "The log says:\n--- begin ---\nerror 42\n--- end ---",
        "> 100 errors a day is what we see.\nPlease help.",
        "Pagué:\nDe: cuenta ES12 3456\nFecha: 3 de marzo de 2026\nImporte: 45,90 €\nGracias.",
        "Trip:\nFrom: Paris\nDate: 3 May\nTo: London\nThe router stayed at home.",  # no address
        "Hola, no me llega la factura.\n\nEnviado desde mi casa porque en la oficina no tengo conexión.",
        "Here is another email\n\nSent from my desk, is much easier then my mobile phone.",
        "Hi.\n\nSent from my flat",
    ],
)
def test_customer_sentences_that_look_like_markers_are_kept(text):
    assert latest_reply(text) == text


LINE = "The printer on the third floor jams whenever somebody prints duplex.\n"
BENIGN = ((LINE * 40 + "Best regards,\nAlice\n\n") * 400)[:1_000_000]
# Ordinary mail in short lines (a phone, a list of steps): the scanner's work is per
# line, so this is the yardstick for inputs made of short lines.
SHORT_LINES = ("Router: model X1\nLights: orange\nSince: Monday\n\n" * 25_000)[:1_000_000]
HOSTILE = {
    "newlines": "Hello\n" + "\n" * 1_000_000 + "bye",
    "on-on-on": "On " * 333_333,
    "quoted": "> \n" * 333_333,
    "one-line": "x" * 1_000_000,
    "dashes": "-" * 1_000_000,
    "from-lines": "From: x\n" * 125_000,
    "underscores": "_" * 1_000_000,
    "on-x-wrote": "On x wrote\n" * 90_909,
    "on-x-wrote-colon": "On x wrote:\n" * 83_333,
    "attribution-answered": "On 1 x wrote:\n> q\nz\n" * 50_000,
    "header-block-almost": "From: x\nSent: x\nTo: x\nz\n" * 35_714,
    "attribution-header-almost": "On 1 x wrote:\nFrom: x\nSent: x\nz\n" * 31_250,
    "underscores-lines": ("_" * 32 + "\n") * 30_303,
    "dash-lines": "--\nx\n" * 200_000,
}


def _best_of_three(*texts: str) -> list[float]:
    """The least CPU time of three rounds for each text, the texts taking turns in each
    round: a busy machine slows the hostile and the benign input alike. Compared as
    a ratio, never as a duration (see test_linear_patterns for why these few timed
    checks are tests)."""
    best = [float("inf")] * len(texts)
    for _ in range(3):
        for index, text in enumerate(texts):
            best[index] = min(best[index], cpu_seconds(partial(latest_reply, text)))
    return best


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_mail_takes_linear_time(name):
    seconds, prose, short = _best_of_three(HOSTILE[name], BENIGN, SHORT_LINES)
    benign = max(prose, short)
    assert seconds < 2.0
    assert seconds <= 20 * benign, (name, seconds, benign)
    quarter = HOSTILE[name][: len(HOSTILE[name]) // 4]
    assert seconds <= 8 * max(_best_of_three(quarter)[0], benign / 4), "grows faster than linear"
