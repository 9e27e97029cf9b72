"""Where the new text of a reply ends: quoted history and signature removed.

`latest_reply` keeps the top of a mail body and cuts it at the first line that
starts quoted history or a signature:

- an attribution, "On <date>, <name> wrote:" and its de, fr, es, it, nl, pl,
  sv/da, pt, cs, ja and zh forms, also when a client wrapped it over two lines,
  when the quote follows it: ">"-quoted lines or an Outlook header block;
- an Outlook separator ("-----Original Message-----" and its translations), a
  line of 32 or more underscores with an Outlook header block below it, or such
  a header block itself ("From:" directly followed by "Sent:", "Date:" or
  "Subject:", at least three labels in a row, in those languages, bold or not,
  and an address in them unless there are four or more);
- the final block of ">"-quoted lines;
- the signature delimiter "-- " with at most `MAX_SIGNATURE_LINES` lines below it
  (up to the history, if any) and no second one, and, as the reply's last line, a
  phone footer such as "Sent from my iPhone" naming a device.

A helpdesk must not lose what the customer wrote, so the rules lean towards
keeping text: an attribution needs a date (a digit), its verb in its place and
the quote below it (a customer pasting what someone wrote them, unquoted, keeps
it), a marker in a quoted line never cuts (below it the customer may answer
between the quotes; the final quoted block is cut anyway), an attribution
followed by quoting that the customer answers further down does not cut either,
"--" twice or a line of underscores are the customer's own dividers, "From:" and
"Date:" alone are a transfer's or a trip's, a phone footer only counts as the
reply's last line and when short and naming a device, and salutations and names
stay. docs/mail-gateway.md has the rules with examples.

Hand-written because mail is written by anyone before any authorization and the
regular expressions of mail-parser-reply, used before, backtrack
super-linearly: 16 KB of newlines with text around them took 31 s, 64 KB took
500 s, 15 KB of "On On On ..." took 7.7 s. Here there is no regular expression:
each line is looked at a bounded number of times with plain string operations
(a header block is read at most `_HEADER_BLOCK` lines ahead), and markers are
only looked for in lines of at most `MAX_MARKER_LINE` characters, so the time is
linear in the length of the text, whatever it is.
"""

from __future__ import annotations

from bisect import bisect_left
from itertools import compress

from helpdesk.inputs import nothing_to_read

MAX_MARKER_LINE = 400  # a longer line is never a marker: bounds the work on each line
MAX_FOOTER_LINE = 80  # a phone footer is a short line of its own
MAX_FOOTER_WORDS = 6  # "Sent from my Verizon, Samsung Galaxy smartphone"; more is a sentence
MAX_SIGNATURE_LINES = 10  # signatures are short; more below "--" is the customer's text
_HEADER_BLOCK = 4  # labels of an Outlook header block looked at; four need no address

_COLONS = (":", "：")
_DIGITS = frozenset("0123456789")

# (start, verb, whether the name may follow the verb): "On <date>, <name> wrote:"
# ends with its verb, "Am <date> schrieb <name>:" has it in the middle.
_ATTRIBUTIONS = (
    ("On ", "wrote", False),  # en
    ("Am ", "schrieb", True),  # de
    ("Le ", "a écrit", False),  # fr
    ("El ", "escribió", False),  # es
    ("Il ", "ha scritto", False),  # it
    ("Op ", "schreef", True),  # nl
    ("W dniu ", "pisze", False),  # pl (Thunderbird)
    ("W dniu ", "napisał(a)", False),  # pl (Gmail)
    ("Dnia ", "napisał(a)", False),  # pl
    ("Den ", "skrev", True),  # sv, da
    ("Em ", "escreveu", False),  # pt
    ("Dne ", "napsal(a)", False),  # cs
)
_STARTS = tuple(dict.fromkeys(start for start, _, _ in _ATTRIBUTIONS))
# Attributions that start with their date (ja, Thunderbird) or carry a CJK one
# (zh): "2024年1月1日(月) 10:00 Support <s@x>:", "Support <s@x> 于2024年1月1日 10:00写道：".
_DATED_VERBS = ("のメッセージ", "のメール", "写道", "wrote")

_SEPARATORS = frozenset(
    {
        "original message",
        "ursprüngliche nachricht",
        "message d'origine",
        "mensaje original",
        "messaggio originale",
        "oorspronkelijk bericht",
        "wiadomość oryginalna",
        "ursprungligt meddelande",
        "mensagem original",
        "původní zpráva",
        "oprindelig meddelelse",
    }
)
# Labels of an Outlook header block, as clients write them; bold is "*From:*".
_LABEL_TRIM = " *\t\u00a0\u202f"
_FROM_LABELS = frozenset({"From", "Von", "De", "Da", "Van", "Od", "Från", "Fra", "发件人", "差出人"})
# The line after "From:" in such a block says when or about what (Sent, Date,
# Subject), never only to whom: "From: Paris" then "To: London" is a customer's trip.
_HEADER_LABELS = frozenset(
    {
        "Enviado el",  # es, desktop Outlook
        "Enviado em",  # pt, desktop Outlook
        "Sent",
        "Date",
        "Subject",  # en
        "Gesendet",
        "Datum",
        "Betreff",  # de
        "Envoyé",
        "Objet",  # fr
        "Enviado",
        "Asunto",
        "Fecha",
        "Assunto",
        "Data",  # es, pt
        "Inviato",
        "Oggetto",  # it
        "Verzonden",
        "Onderwerp",  # nl
        "Wysłano",
        "Temat",  # pl
        "Skickat",
        "Ämne",
        "Sendt",
        "Emne",  # sv, da
        "Odesláno",
        "Předmět",  # cs
        "发送时间",
        "主题",
        "日期",
        "送信日時",
        "件名",  # zh, ja
    }
)
# The other labels such a block has: its recipients.
_RECIPIENT_LABELS = frozenset(
    {
        "To",
        "Cc",
        "CC",
        "Bcc",  # en
        "An",
        "Kopie",  # de
        "À",  # fr
        "Para",  # es, pt
        "A",  # it
        "Aan",  # nl
        "Do",
        "DW",
        "Kopia",  # pl
        "Till",
        "Til",  # sv, da
        "Komu",  # cs
        "收件人",
        "抄送",
        "宛先",  # zh, ja
    }
)
_BLOCK_LABELS = _FROM_LABELS | _HEADER_LABELS | _RECIPIENT_LABELS
# (start, end) of phone footers; "" ends anything. Between them a device must be
# named (`_DEVICES`): "Enviado desde mi casa porque ..." is the customer's sentence.
_FOOTERS = (
    ("Sent from my ", ""),
    ("Get Outlook for ", ""),
    ("Obtener Outlook para ", ""),
    ("Enviado desde mi ", ""),
    ("Enviado do meu ", ""),
    ("Gesendet von meinem ", ""),
    ("Von meinem ", " gesendet"),
    ("Envoyé de mon ", ""),
    ("Inviato da ", ""),
    ("Inviato dal mio ", ""),
    ("Verzonden vanaf mijn ", ""),
    ("Verstuurd vanaf mijn ", ""),
    ("Skickat från min ", ""),
    ("Wysłano z ", ""),
    ("Wysłane z ", ""),
    ("Odesláno z mého ", ""),
)
# The words, lowercased, of which a phone footer names one (besides a few more).
_DEVICES = frozenset(
    {
        "iphone",
        "iphonu",  # cs
        "ipad",
        "ipod",
        "ios",
        "android",
        "samsung",
        "galaxy",
        "blackberry",
        "huawei",
        "xiaomi",
        "redmi",
        "motorola",
        "nokia",
        "pixel",
        "oneplus",
        "xperia",
        "smartphone",
        "phone",
        "cellphone",
        "mobile",
        "device",
        "tablet",
        "móvil",
        "movil",
        "celular",
        "teléfono",
        "dispositivo",
        "telemóvel",
        "telefone",
        "handy",
        "telefon",
        "mobilgerät",
        "téléphone",
        "portable",
        "appareil",
        "cellulare",
        "telefono",
        "telefoon",
        "mobiel",
        "mobil",
        "mobiltelefon",
        "telefonu",  # pl
    }
)


def latest_reply(text: str) -> str:
    """The newest part of a mail body, without quoted history and signature.

    The whole text (stripped) when nothing would be left, or nothing to read (only
    invisible characters: `inputs.nothing_to_read`): a mail that is only a quote is
    still worth reading.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    stripped = list(map(str.strip, lines))
    # The non-blank lines, picked at C speed: a mail of newlines costs little per line.
    rows = list(compress(range(len(lines)), stripped))
    quoted_from = len(rows)
    while quoted_from and stripped[rows[quoted_from - 1]][0] == ">":
        quoted_from -= 1
    end = _history_start(stripped, rows, quoted_from)
    if end is None:
        end = rows[quoted_from] if quoted_from < len(rows) else len(lines)
    end = _before_footer(stripped, rows, end)
    newest = "\n".join(lines[:end]).strip()
    return "\n".join(lines).strip() if nothing_to_read(newest) else newest


def _history_start(stripped: list[str], rows: list[int], quoted_from: int) -> int | None:
    """The first line above the final quoted block that starts history or the signature.

    `rows` are the non-blank lines, `rows[quoted_from:]` the final quoted block.
    Every line costs about the same: one label and a few tests of its ends; a
    line that may start a marker looks a bounded number of lines ahead.
    """
    signature = None  # the "--" line (its index in `rows`) that may start the signature
    dashes = 0
    for at in range(quoted_from):
        row = rows[at]
        line = stripped[row]
        start = None
        if line[0] == ">" or len(line) > MAX_MARKER_LINE:
            pass  # a marker in a quoted line above the final block has answers below it
        elif line == "--":
            dashes += 1
            signature = at if dashes == 1 else None  # two are dividers, never a signature
        elif line[0] in "-_":
            if _starts_history(stripped, rows, at, quoted_from):
                start = row
        elif _label(line) in _FROM_LABELS and _is_header_block(stripped, rows, at, quoted_from):
            start = row
        elif line.endswith(_COLONS):
            start = _attribution_start(stripped, row)
            if start is not None and not _heads_history(stripped, rows, at, quoted_from, start):
                start = None
        if start is not None:
            below = _signature_start(rows, signature, at)
            return start if below is None else below
    return _signature_start(rows, signature, quoted_from)


def _signature_start(rows: list[int], signature: int | None, end: int) -> int | None:
    """The line of the "--" at `signature` if at most `MAX_SIGNATURE_LINES` lines follow it
    before `end`: more is the customer's text."""
    if signature is None or end - signature - 1 > MAX_SIGNATURE_LINES:
        return None
    return rows[signature]


def _starts_history(stripped: list[str], rows: list[int], at: int, quoted_from: int) -> bool:
    """Whether row `at` (neither quoted nor "--") is an Outlook separator or header block."""
    line = stripped[rows[at]]
    if line[0] == "-":
        return line.startswith("-----") and line.endswith("-----") and line.strip("- ").lower() in _SEPARATORS
    if line[0] == "_":
        # Outlook's line of underscores comes with its header block, Mailman's with its
        # footer ("<list> mailing list"); alone it is a form's.
        return len(line) >= 32 and not line.strip("_") and _above_block(stripped, rows, at + 1, quoted_from)
    return _is_header_block(stripped, rows, at, quoted_from)


def _above_block(stripped: list[str], rows: list[int], at: int, quoted_from: int) -> bool:
    """Whether row `at` starts an Outlook header block or Mailman's footer."""
    if at >= quoted_from:
        return False
    line = stripped[rows[at]]
    if len(line) <= MAX_MARKER_LINE and line.endswith(" mailing list"):
        return True
    return _is_header_block(stripped, rows, at, quoted_from)


def _is_header_block(stripped: list[str], rows: list[int], at: int, quoted_from: int) -> bool:
    """Whether an Outlook header block starts at row `at`.

    "From:" then when or about what ("Sent:", "Date:", "Subject:"), at least three
    labels of such a block in a row, and an address among them unless there are
    four: "De: cuenta ES12 / Fecha: 3 de marzo / Importe: 45,90" is a transfer.
    """
    labels = 0
    address = False
    for index in range(at, min(at + _HEADER_BLOCK, quoted_from)):
        line = stripped[rows[index]]
        if len(line) > MAX_MARKER_LINE:
            break
        expected = _FROM_LABELS if labels == 0 else _HEADER_LABELS if labels == 1 else _BLOCK_LABELS
        if _label(line) not in expected:
            break
        labels += 1
        address = address or "@" in line
    return labels >= 3 and (address or labels >= _HEADER_BLOCK)


def _heads_history(stripped: list[str], rows: list[int], at: int, quoted_from: int, start: int) -> bool:
    """Whether the attribution from line `start` to row `at` heads history that is not answered.

    History is ">"-quoted lines or an Outlook block right below. Text that is not
    quoted is history only under an attribution naming an address, as clients
    write it ("Support <support@example.com> wrote:"; the quote lost its marks in
    an app or in HTML without <blockquote>); under "El 3 de marzo Pedro me
    escribió:" it is what the customer pasted. When the customer writes again
    below the quote, "On ... wrote:" heads an answer between the quotes and stays
    for context. A signature under the quote (a list or company footer) is no
    answer. Each quoted line is walked over here once at most: the walk ends at
    an unquoted one.
    """
    after = at + 1
    if after >= len(rows):
        return False
    if after == quoted_from:
        return True
    line = stripped[rows[after]]
    if line[0] != ">":
        if "@" in stripped[start] or "@" in stripped[rows[at]]:
            return True
        return len(line) <= MAX_MARKER_LINE and _starts_history(stripped, rows, after, quoted_from)
    while after < quoted_from and stripped[rows[after]][0] == ">":
        after += 1
    return after == quoted_from or stripped[rows[after]] == "--"


def _label(line: str) -> str:
    """The label of a header-ish line: "Sent" for "Sent: ..." or "*Sent:* ...", else ""."""
    end = line.find(":", 0, 32)
    if not line.isascii():
        wide = line.find("：", 0, 32)
        if wide > 0 and not 0 < end < wide:
            end = wide
    return line[:end].strip(_LABEL_TRIM) if end > 0 else ""


def _attribution_start(stripped: list[str], row: int) -> int | None:
    """Where an attribution ending in line `row` starts: that line or, wrapped, the one before."""
    line = stripped[row]
    if _is_attribution(line):
        return row
    previous = stripped[row - 1] if row else ""
    if (
        previous
        and previous[0] != ">"
        and not previous.endswith(_COLONS)
        and len(previous) <= MAX_MARKER_LINE
        and _is_attribution(previous + " " + line)
    ):
        return row - 1
    return None


def _is_attribution(line: str) -> bool:
    """Whether `line` (ending in a colon) says who wrote the quote below and when.

    Needs a start word, the verb at its place and a date: "On Monday the router
    failed again, as I wrote:" is the customer's own sentence.
    """
    body = line[:-1].rstrip()
    if not (body.startswith(_STARTS) or body[:1].isdigit() or "年" in body):
        return False
    if _DIGITS.isdisjoint(body):
        return False
    for start, verb, verb_inside in _ATTRIBUTIONS:
        if body.startswith(start) and (body.endswith(" " + verb) or verb_inside and f" {verb} " in body):
            return True
    dated = ":" in body and (body[:1].isdigit() or "年" in body)
    return dated and (body.endswith(_DATED_VERBS) or body.endswith(">") and "@" in body)


def _before_footer(stripped: list[str], rows: list[int], end: int) -> int:
    """`end`, or the line of a phone footer when it is the last non-blank line before."""
    at = bisect_left(rows, end) - 1
    if at >= 0 and _is_footer(stripped[rows[at]]):
        return rows[at]
    return end


def _is_footer(line: str) -> bool:
    """Whether `line` is a phone footer: "Sent from my iPhone", not "Sent from my desk, ..."."""
    if len(line) > MAX_FOOTER_LINE:
        return False
    for start, last in _FOOTERS:
        if line.startswith(start) and line.endswith(last):
            device = line[len(start) : len(line) - len(last)]
            if len(device.split()) > MAX_FOOTER_WORDS:
                return False
            words = "".join(char if char.isalnum() else " " for char in device.lower()).split()
            return not _DEVICES.isdisjoint(words)
    return False
