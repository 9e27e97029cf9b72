"""Pathological mail: what an attacker sends to stall, crash or fool a mail gateway.

Each generator targets one way in that worked on some gateway (this one before
issue 13 included): backtracking regular expressions, MIME trees that cost
memory per part or time per level, header tricks that decode into trusted values,
values the database refuses. `hostile_mails(size)` makes each about `size` bytes
(header-borne ones stay under the header caps so that the header is really read);
`ordinary_mail(size)` is a plain customer mail of the same size to compare with.
Used by `tests/test_hostile_mail.py` (through the real SMTP listener) and
`bench.hostile_bench`.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Callable
from dataclasses import dataclass

SUPPORT = b"support@helpdesk.test"
TRUSTED = b"mx.helpdesk.test"
_IDS = random.Random(13)
# Header-borne attacks stay under MAX_HEADER_BYTES (256 KiB by default) so that the
# header is read, not only measured.
HEADER_BUDGET = 200_000

_PROSE = (
    "Our internet connection drops every evening between seven and nine.",
    "The router is the model you installed last spring; its lights blink orange.",
    "I restarted it twice as your website suggests, and it works for an hour.",
    "My neighbours with the same provider have the same trouble since Monday.",
    "Could you send a technician, or tell me what else I can try first?",
    "The contract number is on the invoice I attached to my previous mail.",
    "La conexión a internet se corta todas las noches desde el lunes.",
    "El técnico vino la semana pasada pero el problema sigue igual.",
)


@dataclass(frozen=True)
class HostileMail:
    name: str
    raw: bytes


def header(
    *fields: bytes,
    sender: bytes = b"Mallory <mallory@attacker.example>",
    subject: bytes = b"Help",
    message_id: bytes | None = None,
) -> bytes:
    """A header block (CRLF, ends with the blank line): the usual fields, then `fields`."""
    lines = [
        b"From: " + sender,
        b"To: " + SUPPORT,
        b"Subject: " + subject,
        b"Message-ID: " + (message_id or b"<%d@attacker.example>" % _IDS.getrandbits(64)),
        b"Date: Mon, 2 Mar 2026 08:00:00 +0000",
        *fields,
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def prose(size: int, rng: random.Random | None = None) -> str:
    """Ordinary customer text of about `size` characters, in lines of normal length."""
    rng = rng or random.Random(size)
    lines: list[str] = []
    total = 0
    while total < size:
        line = " ".join(rng.choice(_PROSE) for _ in range(rng.randint(1, 2)))
        lines.append(line)
        total += len(line) + 1
        if rng.random() < 0.1:
            lines.append("")
    return "\n".join(lines)[:size]


def distinct_words(count: int) -> str:
    """`count` different words of four lower-case letters (aaaa, aaab, …; at most
    26**4), one space apart: a pasted log's shape, whose full-text vector is some
    8 bytes a word (140,000 of them, 700,000 characters, passed PostgreSQL's
    1 MB tsvector limit before migration 0027)."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    return " ".join("".join(letters[i // 26**place % 26] for place in (3, 2, 1, 0)) for i in range(count))


def ordinary_mail(size: int, seed: int = 0) -> bytes:
    """A customer mail of about `size` bytes: text and HTML alternatives of the same
    words (a few KB each), and an attachment (a photo of the router) for the rest."""
    rng = random.Random(seed)
    text = prose(min(8_000, max(200, size // 8)), rng)
    html = "".join(f"<p>{line}</p>\n" for line in text.split("\n") if line)
    boundary, inner = b"==outer%d==" % seed, b"==inner%d==" % seed
    head = header(
        b"MIME-Version: 1.0",
        b'Content-Type: multipart/mixed; boundary="' + boundary + b'"',
        sender=b"Ana Torres <ana@customer.example>",
        subject=b"Internet drops every evening",
        message_id=b"<ordinary-%d-%d@customer.example>" % (size, seed),
    )
    body = b"\r\n".join(
        [
            b"--" + boundary,
            b'Content-Type: multipart/alternative; boundary="' + inner + b'"',
            b"",
            b"--" + inner,
            b"Content-Type: text/plain; charset=utf-8",
            b"Content-Transfer-Encoding: 8bit",
            b"",
            text.encode(),
            b"",
            b"--" + inner,
            b"Content-Type: text/html; charset=utf-8",
            b"Content-Transfer-Encoding: 8bit",
            b"",
            html.encode(),
            b"",
            b"--" + inner + b"--",
            b"",
        ]
    )
    room = size - len(head) - len(body) - 200
    if room > 0:
        photo = base64.encodebytes(rng.randbytes(room * 3 // 4))
        body += b"\r\n".join(
            [
                b"--" + boundary,
                b"Content-Type: image/jpeg",
                b"Content-Transfer-Encoding: base64",
                b'Content-Disposition: attachment; filename="router.jpg"',
                b"",
                photo.replace(b"\n", b"\r\n"),
            ]
        )
    return head + body + b"\r\n--" + boundary + b"--\r\n"


# A newsletter's layout, none of it closed: each cell opens the next list.
NESTED_LAYOUT = "<div><ul><li><table><tr><td><p>"


def _html(body: bytes) -> bytes:
    return header(b"Content-Type: text/html") + body


def _cjk_label(length: int) -> bytes:
    """A domain label of `length` CJK characters, in UTF-8."""
    return "".join(chr(0x4E00 + i % 20_000) for i in range(length)).encode()


def _text(body: bytes, *fields: bytes, **kwargs: bytes) -> bytes:
    return header(b"Content-Type: text/plain; charset=utf-8", *fields, **kwargs) + body


def _multipart(parts: list[bytes], boundary: bytes = b"b") -> bytes:
    return (
        header(b'Content-Type: multipart/mixed; boundary="' + boundary + b'"')
        + b"".join(b"--" + boundary + b"\r\n" + part for part in parts)
        + b"--"
        + boundary
        + b"--\r\n"
    )


def _deep_multipart(size: int) -> bytes:
    level = b'--b%d\r\nContent-Type: multipart/mixed; boundary="b%d"\r\n\r\n'
    depth = size // len(level % (99999, 99999))
    return (
        header(b'Content-Type: multipart/mixed; boundary="b0"')
        + b"".join(level % (i, i + 1) for i in range(depth))
        + b"deep\r\n"
    )


def _deep_rfc822(size: int) -> bytes:
    level = b"From: a@x.example\r\nSubject: fwd\r\nContent-Type: message/rfc822\r\n\r\n"
    return header(b"Content-Type: message/rfc822") + level * (size // len(level)) + b"end\r\n"


def _auth_results(value: bytes) -> bytes:
    return (
        header(
            b"Authentication-Results: " + value,
            b"Received: from mail.example.com by mx.helpdesk.test; Mon, 2 Mar 2026",
            sender=b"Ann <ann@example.com>",
            subject=b"Invoice",
        )
        + b"Please pay.\r\n"
    )


def _generators(size: int, staff: bytes) -> dict[str, Callable[[], bytes]]:
    head_room = min(size, HEADER_BUDGET)
    passing = TRUSTED + b"; dmarc=pass header.from=example.com"
    return {
        # Regular expressions that backtracked on mail content.
        "html: unclosed <br": lambda: _html(b"<br" * (size // 3)),
        "html: unclosed <meta": lambda: _html(b"<meta" * (size // 5)),
        "html: nested formatting tags": lambda: _html(b"<b><i><u>" * (size // 9)),
        "html: unclosed comment and quotes": lambda: _html(b'<!--<a href="' * (size // 13)),
        # nh3's tree builder looks through its open elements for each start tag.
        "html: nested <div>": lambda: _html(b"<div>" * (size // 5)),
        "html: nested <details>": lambda: _html(b"<details>" * (size // 9)),
        "html: nested layout": lambda: _html(NESTED_LAYOUT.encode() * (size // len(NESTED_LAYOUT))),
        # The tree builder opens again, before each text, the formatting elements a
        # paragraph's end closed, attributes and all.
        "html: formatting opened again": lambda: _html(
            b"<p>"
            + b"".join(b'<b title="%d">' % i for i in range(200))
            + b'<a title="'
            + b"t" * 2000
            + b'"></p>'
            + b"<p>x</p>" * ((size - 5000) // 8)
        ),
        "auto-submitted: nested comments": lambda: _text(
            b"hi\r\n", b"Auto-Submitted: " + b"(" * (head_room // 2) + b"x" + b")" * (head_room // 2)
        ),
        "x-loop: one long token": lambda: _text(b"hi\r\n", b"X-Loop: " + b"a" * head_room),
        # International domains: IDNA's punycode step costs the square of a label's
        # length, and one label of 16,000 CJK characters took 30 s to encode.
        "x-loop: an address with one long international domain": lambda: _text(
            b"hi\r\n", b"X-Loop: a@" + _cjk_label(head_room // 3 - 20) + b".example"
        ),
        "x-loop: many addresses with international labels": lambda: _text(
            b"hi\r\n",
            b"X-Loop: " + b", ".join([b"a@" + _cjk_label(63) + b".example"] * (head_room // 210)),
        ),
        "from: an address with a long international domain": lambda: _text(
            b"hi\r\n", sender=b"Ann <a@" + _cjk_label(4000) + b".example>"
        ),
        "body: message-id line of at signs": lambda: _text(
            (b"Message-ID: " + b"a@" * 400 + b" x\r\n") * (size // 815),
            sender=b"MAILER-DAEMON <mailer-daemon@attacker.example>",
            subject=b"Undelivered Mail Returned to Sender",
        ),
        "body: unclosed bounce phrase": lambda: _text(b"the following message to <" * (size // 27)),
        "body: boundary-like lines": lambda: _text((b"--" + b"x" * 300 + b"\r\n") * (size // 304)),
        "body: quote-stripper bomb (newlines)": lambda: _text(
            b"Hello\r\n" + b"\r\n" * (size // 2) + b"Bye\r\n"
        ),
        "body: quote-stripper bomb (On On On)": lambda: _text(b"On " * (size // 3)),
        "body: one long line": lambda: _text(b"word " * (min(size, 900_000) // 5) + b"\r\n"),
        "subject: many encoded words": lambda: (
            header(subject=b"=?utf-8?q?caf=C3=A9?= " * (head_room // 22)) + b"hi\r\n"
        ),
        "subject: broken encoded words": lambda: (
            header(subject=b"=?x?Q?=?=?utf-8?B?####?= " * (head_room // 24)) + b"hi\r\n"
        ),
        # Encoded words whose bytes their charset does not read: each run of them went
        # to charset detection, about 0.3 ms each however short.
        "subject: encoded words in an unknown charset": lambda: (
            header(subject=b"=?x-unknown?q?caf=E9?=, " * (head_room // 24)) + b"hi\r\n"
        ),
        "subject: ticket prefix with zeros": lambda: (
            header(subject=b"TKT-" + b"0" * (head_room - 10)) + b"hi\r\n"
        ),
        # Ticket numbers, the highest first, so that those of existing tickets come
        # last: each one named was a SELECT of its own, and 20,000 in a Subject took
        # 14 s of a gateway thread on PostgreSQL (the plus-addresses of To and Cc alike).
        "subject: thousands of ticket numbers": lambda: (
            header(subject=b" ".join(b"TKT-%d" % n for n in range(head_room // 10, 0, -1))) + b"hi\r\n"
        ),
        "cc: thousands of plus-addresses naming tickets": lambda: _text(
            b"hi\r\n",
            b"Cc: " + b", ".join(b"support+TKT-%d@helpdesk.test" % n for n in range(head_room // 32, 0, -1)),
        ),
        # MIME trees that cost memory per part or time per level.
        "mime: flat multipart of tiny parts": lambda: _multipart([b"\r\nx\r\n"] * (size // 10)),
        # Each short plain alternative makes the parser read its HTML (a placeholder?).
        "mime: alternatives with placeholder plain parts": lambda: _multipart(
            [
                b'Content-Type: multipart/alternative; boundary="a%d"\r\n\r\n' % i
                + b"--a%d\r\nContent-Type: text/plain\r\n\r\nView it in a browser.\r\n" % i
                + b"--a%d\r\nContent-Type: text/html\r\n\r\n" % i
                + b"<p>other words</p>" * (size // 160 // 18)
                + b"\r\n--a%d--\r\n" % i
                for i in range(150)
            ]
        ),
        "body: format=flowed lines": lambda: (
            header(b"Content-Type: text/plain; charset=utf-8; format=flowed; delsp=yes")
            + b">> flowed \r\n" * (size // 13)
        ),
        "charset: 8-bit text without a charset": lambda: (
            header(b"Content-Type: text/plain") + b"caf\xe9 cr\xe8me " * (size // 12)
        ),
        "mime: deep multipart nesting": lambda: _deep_multipart(size),
        "mime: deep message/rfc822 nesting": lambda: _deep_rfc822(size),
        "mime: wrong boundary with many delimiter lines": lambda: (
            header(b'Content-Type: multipart/mixed; boundary="declared"')
            + b"".join(
                b"--real%d\r\nContent-Type: text/plain\r\n\r\nx\r\n" % (i % 5) for i in range(size // 40)
            )
        ),
        "mime: many attachments": lambda: _multipart(
            [
                b"Content-Type: application/octet-stream\r\nContent-Disposition: attachment; "
                b'filename="f%d.bin"\r\n\r\nxx\r\n' % i
                for i in range(400)
            ]
        ),
        "mime: long raw 8-bit filenames": lambda: _multipart(
            [
                b"Content-Type: application/octet-stream\r\nContent-Disposition: attachment; "
                b'filename="' + b"caf\xe9 " * 2000 + b'.pdf"\r\n\r\nxx\r\n'
            ]
            * (size // 10_200)
        ),
        "mime: filenames of encoded words": lambda: _multipart(
            [
                b"Content-Type: application/octet-stream\r\nContent-Disposition: attachment; "
                b'filename="' + b"=?gb2312?b?//8=?=, " * (size // 20 // 20) + b'"\r\n\r\nxx\r\n'
            ]
            * 20
        ),
        "mime: attached messages with subjects of encoded words": lambda: _multipart(
            [
                b"Content-Type: message/rfc822\r\n\r\nFrom: a@x.example\r\nSubject: "
                + b"=?iso-8859-3?q?=A5?=, " * (size // 20 // 22)
                + b"\r\n\r\nx\r\n"
            ]
            * 20
        ),
        "mime: attached messages with long subjects": lambda: _multipart(
            [
                b"Content-Type: message/rfc822\r\n\r\nFrom: a@x.example\r\nSubject: "
                + b"=?utf-8?q?=C3=A9?=, " * (size // 20 // 21)
                + b"\r\n\r\nx\r\n"
            ]
            * 20
        ),
        "mime: long content type and id": lambda: _multipart(
            [
                b"Content-Type: image/"
                + b"x" * 5000
                + b"\r\nContent-ID: <"
                + b"c" * 5000
                + b">\r\nContent-Disposition: inline\r\n\r\nxx\r\n"
            ]
        ),
        # The standard library splits parameters in time that grows with the square of
        # the field; a part's header has no cap but the mail's size.
        "mime: semicolons in a quoted filename": lambda: _multipart(
            [b'Content-Type: application/pdf\r\nContent-Disposition: attachment; filename="' + b";" * size]
        ),
        "mime: many parameters": lambda: _multipart(
            [
                b"Content-Type: application/pdf"
                + b"".join(b"; p%d=a" % i for i in range(size // 12))
                + b"\r\n\r\nx\r\n"
            ]
        ),
        "header: semicolons in a quoted charset": lambda: (
            header(b'Content-Type: text/plain; charset="' + b";" * (head_room - 300) + b'"') + b"hi\r\n"
        ),
        "mime: junk charset labels": lambda: _multipart(
            [b'Content-Type: text/plain; charset="' + b"x" * 500 + b'"\r\n\r\n\xff\xfe\r\n'] * 300
        ),
        # Header structure.
        "header: many fields": lambda: header(*[b"X-Filler: %d" % i for i in range(size // 16)]),
        "header: one giant folded field": lambda: header(
            b"X-Giant: " + b"\r\n\t".join([b"w" * 70] * (size // 73))
        ),
        "header: many cc addresses": lambda: _text(
            b"hi\r\n",
            b"Cc: " + b", ".join(b"Person %d <p%d@example.com>" % (i, i) for i in range(head_room // 30)),
        ),
        "header: many cc fields": lambda: _text(
            b"hi\r\n",
            *[
                b"Cc: " + b", ".join(b"p%d@example.com" % i for i in range(2000))
                for _ in range(head_room // 32_000)
            ],
        ),
        "header: raw 8-bit fields": lambda: _text(
            b"hi\r\n", *[b"X-Note: " + b"caf\xe9 " * 30 for _ in range(min(990, head_room // 200))]
        ),
        "header: many references": lambda: _text(
            b"hi\r\n", b"References: " + b" ".join(b"<%d@x.example>" % i for i in range(head_room // 16))
        ),
        "header: sender fields of invalid address words": lambda: (
            header(
                b"Sender: " + b"a@-b " * (head_room // 15),
                b"Reply-To: " + b"a@-b " * (head_room // 15),
                sender=b"a@-b " * (head_room // 15),
            )
            + b"hi\r\n"
        ),
        "body: unclosed list-notice phrase": lambda: _text(
            b"you are not a member o" * (size // 22), sender=b"lista-owner@lists.example"
        ),
        "header: long display names": lambda: (
            header(
                b"Cc: " + b"B" * 10_000 + b" <bob@example.com>", sender=b"A" * 10_000 + b" <ann@example.com>"
            )
            + b"hi\r\n"
        ),
        # Values the database refuses.
        "value: 5,000-character Message-ID": lambda: (
            header(message_id=b"<" + b"a" * 5000 + b"@attacker.example>") + b"hi\r\n"
        ),
        "value: NUL and control bytes": lambda: (
            header(
                b"X-Ctl: \x00\x01\x1b[31m",
                subject=b"nul \x00 and \x07 bell\x1b",
                message_id=b"<n\x00ul@attacker.example>",
            )
            + b"body \x00 with NUL\r\n"
        ),
        "value: four-byte characters in a long Message-ID": lambda: (
            header(message_id=b"<" + "\U0001f600".encode() * 900 + b"@attacker.example>") + b"hi\r\n"
        ),
        "value: 8-bit junk, BOM and broken encodings": lambda: (
            b"\xef\xbb\xbf"
            + header(
                b"Content-Type: text/plain",
                b"Content-Transfer-Encoding: base64",
                subject=b"\xff\xfe\x80 junk",
            )
            + b"!!!not base64###\r\n" * (size // 19)
        ),
        "value: broken quoted-printable": lambda: (
            header(b"Content-Type: text/plain", b"Content-Transfer-Encoding: quoted-printable") + b"=" * size
        ),
        # Forged headers.
        "forged: encoded Authentication-Results": lambda: _auth_results(
            b"=?utf-8?b?" + base64.b64encode(passing) + b"?="
        ),
        "forged: no-break space Authentication-Results": lambda: _auth_results(b"\xc2\xa0" + passing),
        "forged: staff From on a ticket": lambda: (
            header(sender=staff, subject=b"Re: [TKT-000001] your ticket") + b"Pay here first.\r\n"
        ),
        "forged: signed Message-ID": lambda: (
            header(
                b"In-Reply-To: <tkt.1.1." + b"0" * 24 + b"@helpdesk.helpdesk.test>",
                sender=b"Ann <ann@example.com>",
            )
            + b"hi\r\n"
        ),
        "forged: bounce of our mail": lambda: (
            header(
                b"Content-Type: multipart/report; report-type=delivery-status; boundary=r",
                sender=b"MAILER-DAEMON <mailer-daemon@attacker.example>",
            )
            + b"--r\r\n\r\nfailed\r\n--r\r\nContent-Type: message/delivery-status\r\n\r\n"
            b"Action: failed\r\n--r\r\nContent-Type: text/rfc822-headers\r\n\r\n"
            b"Message-ID: <tkt.1.1." + b"0" * 24 + b"@helpdesk.helpdesk.test>\r\n--r--\r\n"
        ),
    }


def hostile_mails(
    size: int = 1_000_000, *, staff: bytes = b"agent@helpdesk.test", seed: int = 13
) -> list[HostileMail]:
    """Every pathological mail, each about `size` bytes (header-borne ones at most
    HEADER_BUDGET in their header), with random Message-IDs from `seed`."""
    _IDS.seed(seed)
    return [HostileMail(name, make()) for name, make in _generators(size, staff).items()]
