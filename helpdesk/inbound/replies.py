"""Where the new text of a reply ends: quoted history and signature removed.

`latest_reply` keeps the top of a mail body and cuts it at the first line that
starts quoted history or a signature:

- an attribution, "On <date>, <name> wrote:" and its de, fr, es, it, nl, pl,
  sv/da, pt, cs, ja and zh forms, also when a client wrapped it over two lines;
- an Outlook separator ("-----Original Message-----" and its translations, or a
  line of 32 or more underscores) or an Outlook header block ("From:" directly
  followed by "Sent:", "To:", ... in those languages, bold or not);
- the final block of ">"-quoted lines;
- the signature delimiter "-- " and, as the reply's last line, a phone footer
  such as "Sent from my iPhone".

A helpdesk must not lose what the customer wrote, so the rules lean towards
keeping text: an attribution needs a date (a digit) and its verb in its place,
a marker in a quoted line never cuts (below it the customer may answer between
the quotes; the final quoted block is cut anyway), an attribution followed by
quoting that the customer answers further down does not cut either, a phone
footer only counts as the reply's last line, and salutations and names stay.

Hand-written because mail is written by anyone before any authorization and the
regular expressions of mail-parser-reply, used before, backtrack
super-linearly: 16 KB of newlines with text around them took 31 s, 64 KB took
500 s, 15 KB of "On On On ..." took 7.7 s. Here there is no regular expression:
each line is looked at a bounded number of times with plain string operations,
and markers are only looked for in lines of at most `MAX_MARKER_LINE`
characters, so the time is linear in the length of the text, whatever it is.
"""

from __future__ import annotations

from bisect import bisect_left
from itertools import compress

MAX_MARKER_LINE = 400  # a longer line is never a marker: bounds the work on each line
MAX_FOOTER_LINE = 80  # a phone footer is a short line of its own

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
# (start, end) of phone footers; "" ends anything.
_FOOTERS = (
    ("Sent from my ", ""),
    ("Get Outlook for ", ""),
    ("Enviado desde mi ", ""),
    ("Enviado do meu ", ""),
    ("Gesendet von meinem ", ""),
    ("Von meinem ", " gesendet"),
    ("Envoyé de mon ", ""),
    ("Inviato da ", ""),
    ("Verzonden vanaf mijn ", ""),
    ("Verstuurd vanaf mijn ", ""),
    ("Skickat från min ", ""),
    ("Wysłano z ", ""),
    ("Wysłane z ", ""),
    ("Odesláno z mého ", ""),
)


def latest_reply(text: str) -> str:
    """The newest part of a mail body, without quoted history and signature.

    The whole text (stripped) when nothing would be left: a mail that is only a
    quote is still worth reading.
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
    return "\n".join(lines[:end]).strip() or "\n".join(lines).strip()


def _history_start(stripped: list[str], rows: list[int], quoted_from: int) -> int | None:
    """The first line above the final quoted block that starts history or the signature.

    `rows` are the non-blank lines, `rows[quoted_from:]` the final quoted block.
    Every line costs about the same: one label and a few tests of its ends.
    """
    label_before = ""
    for at in range(quoted_from):
        row = rows[at]
        line = stripped[row]
        label = ""
        if line[0] == ">" or len(line) > MAX_MARKER_LINE:
            pass  # a marker in a quoted line above the final block has answers below it
        elif line[0] in "-_" and (line == "--" or _is_separator(line)):
            return row
        else:
            label = _label(line)
            if label in _HEADER_LABELS and label_before in _FROM_LABELS:
                return rows[at - 1]
            if line.endswith(_COLONS):
                start = _attribution_start(stripped, row)
                if start is not None and not _answered_below(stripped, rows, at, quoted_from):
                    return start
        label_before = label
    return None


def _answered_below(stripped: list[str], rows: list[int], at: int, quoted_from: int) -> bool:
    """Whether the customer writes again below the quote that follows the attribution `at`.

    Then "On ... wrote:" heads an answer between the quotes and stays for context.
    A signature under the quote (a list or company footer) is no answer. Each
    quoted line is walked over here once at most: the walk ends at an unquoted one.
    """
    after = at + 1
    while after < quoted_from and stripped[rows[after]][0] == ">":
        after += 1
    return at + 1 < after < quoted_from and stripped[rows[after]] != "--"


def _is_separator(line: str) -> bool:
    """Outlook's "-----Original Message-----" in any language, or its line of underscores."""
    if len(line) >= 32 and not line.strip("_"):
        return True
    return line.startswith("-----") and line.endswith("-----") and line.strip("- ").lower() in _SEPARATORS


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
    if at < 0:
        return end
    line = stripped[rows[at]]
    if len(line) <= MAX_FOOTER_LINE and any(
        line.startswith(start) and line.endswith(last) for start, last in _FOOTERS
    ):
        return rows[at]
    return end
