"""helpdesk.inbound.parser: long base64 bodies, read through placeholders, come out
exact (docs/mail-gateway.md, issue 19).

The standard library's MIME reader takes a body line by line; the parser hands it
each long base64 body as one placeholder line and puts the body back into the tree
afterwards. Every test here holds that path to what the line-by-line reading gives
(`line_by_line`: the same parser with the placeholders turned off), tree for tree,
and the decoded bytes to what was encoded, or to what the email package itself
decodes where the base64 is broken. No database.
"""

from __future__ import annotations

import base64
import email
import logging
import quopri
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from email.message import Message
from email.policy import compat32
from typing import Any

import pytest

from bench.realistic_mail import generate
from helpdesk.inbound import parser
from helpdesk.inbound.limits import DEFAULT, MailLimits
from helpdesk.inbound.parser import InboundMail, parse
from tests.support.corpus import CORPUS, SAMPLES

HEADER = (
    b"From: Ann <ann@example.com>\r\nTo: support@helpdesk.test\r\nSubject: Screenshot\r\n"
    b"Message-ID: <shot@example.com>\r\nDate: Mon, 2 Mar 2026 08:00:00 +0000\r\nMIME-Version: 1.0\r\n"
)
TEXT_PART = b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe printer, see attached.\r\n"


def data_of(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def wrapped(data: bytes, width: int = 76, newline: bytes = b"\r\n") -> bytes:
    """`data` in base64, in lines of `width` characters."""
    text = base64.b64encode(data)
    return b"".join(text[i : i + width] + newline for i in range(0, len(text), width))


def with_attachment(body: bytes, cte: bytes = b"base64", newline: bytes = b"\r\n") -> bytes:
    """A text part and one attachment whose transfer-encoded body is `body`."""
    raw = (
        HEADER
        + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        + TEXT_PART
        + b"--b\r\nContent-Type: application/octet-stream\r\n"
        + b'Content-Disposition: attachment; filename="scan.bin"\r\n'
        + b"Content-Transfer-Encoding: "
        + cte
        + b"\r\n\r\n"
        + body
        + b"--b--\r\n"
    )
    return raw if newline == b"\r\n" else raw.replace(b"\r\n", newline)


@contextmanager
def placeholders_off() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(parser, "_base64_runs", lambda data: [])
        yield


def line_by_line(raw: bytes, limits: MailLimits = DEFAULT) -> InboundMail:
    with placeholders_off():
        return parse(raw, limits)


def tree(raw: bytes) -> list[tuple[Any, ...]]:
    """Everything the MIME reader put into each part, as it put it there."""
    message = parser._read_tree(raw, parser._Budget.of(DEFAULT, len(raw)))
    return [
        (
            part.get_unixfrom(),
            list(part.raw_items()),
            vars(part)["_payload"] if isinstance(vars(part)["_payload"], str) else None,
            part.preamble,
            part.epilogue,
            [type(defect).__name__ for defect in part.defects],
        )
        for part in message.walk()
    ]


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def assert_read_as_line_by_line(raw: bytes, runs: int = 1) -> InboundMail:
    """The placeholders were used (`runs` of them), all came back, and changed nothing."""
    assert len(parser._base64_runs(raw)) == runs
    with placeholders_off():
        expected_tree = tree(raw)
    warnings = _Warnings()
    parser.log.addHandler(warnings)
    try:
        assert tree(raw) == expected_tree
        parsed = parse(raw)
    finally:
        parser.log.removeHandler(warnings)
    assert warnings.messages == []  # no placeholder was lost and read again line by line
    assert parsed == line_by_line(raw)
    return parsed


def stdlib_attachment(raw: bytes) -> bytes:
    """What the email package alone decodes for the mail's last leaf part."""
    message = email.message_from_bytes(raw, policy=compat32)
    leaves = [part for part in message.walk() if not part.is_multipart()]
    payload = leaves[-1].get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload


# -- attachment bytes ---------------------------------------------------------------------


@pytest.mark.parametrize("newline", [b"\r\n", b"\n"], ids=["crlf", "lf"])
@pytest.mark.parametrize("width", [4, 60, 64, 72, 76, 77, 998])
def test_base64_attachment_is_exact_at_any_line_width(width: int, newline: bytes) -> None:
    data = data_of(30_000 + width)
    raw = with_attachment(wrapped(data, width, newline), newline=newline)
    # Lines shorter than any encoder writes are left to the line-by-line reading.
    parsed = assert_read_as_line_by_line(raw, runs=1 if width >= 40 else 0)
    assert parsed.attachments[0].data == data


def test_base64_lines_of_uneven_width_are_exact() -> None:
    text = base64.b64encode(data := data_of(40_000))
    widths = random.Random(2).choices([57, 60, 76, 80, 123], k=len(text))
    lines, position = [], 0
    for width in widths:
        if position >= len(text):
            break
        lines.append(text[position : position + width] + b"\r\n")
        position += width
    raw = with_attachment(b"".join(lines))
    parsed = assert_read_as_line_by_line(raw, runs=len(parser._base64_runs(raw)))
    assert parsed.attachments[0].data == data


@pytest.mark.parametrize("cut", [1, 2, 3])
def test_base64_without_its_padding_is_exact(cut: int) -> None:
    data = data_of(30_000 + cut)  # 30,001 and 30,002 bytes need padding; cut what there is
    body = wrapped(data).rstrip(b"\r\n").rstrip(b"=")[: -cut if cut == 3 else None] + b"\r\n"
    raw = with_attachment(body)
    parsed = assert_read_as_line_by_line(raw)
    assert parsed.attachments[0].data == stdlib_attachment(raw)
    if cut < 3:
        assert parsed.attachments[0].data == data


@pytest.mark.parametrize(
    "junk",
    [b"!", b"*", b" ", b"\t", b"=", b"==", b"\x00", b"\xff", b"-"],
    ids=["bang", "star", "space", "tab", "pad", "pads", "nul", "8bit", "dash"],
)
def test_base64_with_junk_decodes_as_the_email_package_does(junk: bytes) -> None:
    lines = wrapped(data_of(30_000)).split(b"\r\n")
    lines[200] = lines[200][:30] + junk + lines[200][30:]
    lines[300] += junk  # before the line break
    raw = with_attachment(b"\r\n".join(lines))
    assert line_by_line(raw) == parse(raw)
    assert parse(raw).attachments[0].data == stdlib_attachment(raw)


def test_base64_with_a_line_break_inside_a_line_is_exact() -> None:
    lines = wrapped(data := data_of(30_000)).split(b"\r\n")
    lines[100] = lines[100][:40] + b"\r\n" + lines[100][40:]  # a short line in the middle
    lines[200] = lines[200][:40] + b"\n" + lines[200][40:]  # a bare LF among CRLF
    lines[300] = lines[300][:40] + b"\r" + lines[300][40:]  # a bare CR: a line break to the reader
    raw = with_attachment(b"\r\n".join(lines))
    parsed = assert_read_as_line_by_line(raw, runs=len(parser._base64_runs(raw)))
    assert parsed.attachments[0].data == data


def test_quoted_printable_attachment_is_exact() -> None:
    # Binary bytes but no line breaks: quoted-printable turns those into the mail's own.
    data = data_of(60_000).replace(b"\r", b"").replace(b"\n", b"") + b"= \t\x00 trailing space \t"
    raw = with_attachment(quopri.encodestring(data) + b"\r\n", cte=b"quoted-printable")
    parsed = parse(raw)
    assert parsed == line_by_line(raw)
    assert parsed.attachments[0].data == data


def test_two_megabyte_attachment_is_exact() -> None:
    data = data_of(2 * 1024 * 1024)
    for newline in (b"\r\n", b"\n"):
        raw = with_attachment(wrapped(data, 76, newline), newline=newline)
        parsed = assert_read_as_line_by_line(raw)
        assert parsed.attachments[0].data == data


def test_base64_text_body_reads_as_text() -> None:
    text = "Die Rechnung ist seit März offen, bitte prüfen Sie das.\n" * 80
    raw = (
        HEADER
        + b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + wrapped(text.encode())
    )
    parsed = assert_read_as_line_by_line(raw)
    assert parsed.text_body == text.rstrip() and not parsed.attachments


# -- where a run can stand ------------------------------------------------------------------


def test_run_at_the_end_of_the_mail_without_a_line_break() -> None:
    body = wrapped(data := data_of(30_000)) + b"QUFB"  # the last line unterminated: not in the run
    raw = HEADER + b"Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\n" + body
    parsed = assert_read_as_line_by_line(raw)
    assert parsed.attachments[0].data == data + b"AAA"


def test_run_followed_by_blank_lines_and_the_boundary() -> None:
    raw = with_attachment(wrapped(data := data_of(30_000)) + b"\r\n\r\n")
    assert assert_read_as_line_by_line(raw).attachments[0].data == data


def test_runs_in_preamble_epilogue_and_both_bodies() -> None:
    run = wrapped(data_of(5_000))
    raw = (
        HEADER
        + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        + run
        + b"--b\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + run
        + b"--b\r\n\r\n"  # a part without a header: its body is read as text/plain
        + run
        + b"--b--\r\n\r\n"
        + run
    )
    parsed = assert_read_as_line_by_line(raw, runs=4)
    assert parsed.attachments[0].data == data_of(5_000)


def test_run_where_an_enclosed_message_header_should_be() -> None:
    """A forwarded message/rfc822 whose "header" is base64: the reader ends the header at
    its first line. Lines that look like base64 but hold a colon stay header fields."""
    header_like = b"".join(b"X%059d:%014d\r\n" % (i, i) for i in range(40))  # 76 wide, a field each
    raw = (
        HEADER
        + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        + TEXT_PART
        + b"--b\r\nContent-Type: message/rfc822\r\n\r\n"
        + header_like
        + b"\r\n"
        + wrapped(data_of(10_000))
        + b"--b\r\nContent-Type: message/rfc822\r\n\r\n"
        + wrapped(data_of(20_000))
        + b"--b--\r\n"
    )
    parsed = assert_read_as_line_by_line(raw, runs=2)
    forwarded = [attachment.data for attachment in parsed.attachments]
    assert forwarded[0].startswith(b"X00000")
    assert forwarded[0].count(b":") == 40  # each field whole, in the enclosed .eml
    assert wrapped(data_of(20_000)).replace(b"\r\n", b"\n").rstrip(b"\n") in forwarded[1].replace(
        b"\r\n", b"\n"
    )


def test_nested_message_with_attachment() -> None:
    inner = with_attachment(wrapped(data_of(40_000))).replace(b"Subject: Screenshot", b"Subject: Inner")
    raw = (
        HEADER
        + b'Content-Type: multipart/mixed; boundary="outer"\r\n\r\n'
        + b"--outer\r\nContent-Type: text/plain\r\n\r\nForwarding the scan.\r\n"
        + b"--outer\r\nContent-Type: message/rfc822\r\n\r\n"
        + inner
        + b"--outer--\r\n"
    )
    parsed = assert_read_as_line_by_line(raw)
    (forwarded,) = parsed.attachments
    assert forwarded.filename == "Inner.eml"
    assert parse(forwarded.data).attachments[0].data == data_of(40_000)


def test_delivery_status_blocks_separated_by_blank_lines_stay_blocks() -> None:
    """In message/delivery-status a blank line separates header blocks: a run stops at one."""
    block = wrapped(data_of(3_000))
    raw = (
        HEADER.replace(b"From: Ann <ann@example.com>", b"From: MAILER-DAEMON@example.com")
        + b'Content-Type: multipart/report; report-type=delivery-status; boundary="r"\r\n\r\n'
        + b"--r\r\nContent-Type: text/plain\r\n\r\nYour mail could not be delivered.\r\n"
        + b"--r\r\nContent-Type: message/delivery-status\r\n\r\n"
        + block
        + b"\r\n"
        + block
        + b"\r\nReporting-MTA: dns; mx.example.com\r\n\r\nAction: failed\r\n"
        + b"--r--\r\n"
    )
    assert_read_as_line_by_line(raw, runs=2)
    assert len(tree(raw)) == 7  # root, text, status and its four blocks


def test_mbox_line_bom_and_lf_endings() -> None:
    raw = b"\xef\xbb\xbfFrom ann@example.com Mon Mar  2 08:00:00 2026\n" + with_attachment(
        wrapped(data := data_of(30_000), 76, b"\n"), newline=b"\n"
    )
    parsed = parse(raw)
    assert parsed == line_by_line(raw)
    assert parsed.attachments[0].data == data


# -- caps and the fallback ----------------------------------------------------------------


def test_attachment_at_the_part_cap_is_read_and_one_more_part_is_over_it() -> None:
    limits = replace(DEFAULT, mime_parts=4)  # the root, the text and two attachments
    second = b"--b\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    at_cap = with_attachment(wrapped(data_of(30_000)) + second + wrapped(data_of(20_000, seed=2)))
    parsed = parse(at_cap, limits)
    assert parsed == line_by_line(at_cap, limits)
    assert parsed.over_limit is None
    assert [a.data for a in parsed.attachments] == [data_of(30_000), data_of(20_000, seed=2)]
    over = at_cap.replace(b"--b--", second + wrapped(data_of(100)) + b"--b--")
    parsed = parse(over, limits)
    assert parsed == line_by_line(over, limits)
    assert parsed.over_limit == "more than MAX_MIME_PARTS (4) MIME parts"
    assert parsed.attachments == []


def test_placeholder_not_put_back_means_a_line_by_line_reading(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    second = b"--b\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    raw = with_attachment(wrapped(data_of(30_000)) + second + wrapped(data_of(20_000, seed=2)))
    limits = replace(DEFAULT, mime_parts=4)  # counting the parts of both readings would pass it
    monkeypatch.setattr(parser, "_put_back", lambda message, bodies: 0)
    with caplog.at_level(logging.WARNING, logger="helpdesk.inbound.parser"):
        parsed = parse(raw, limits)
    assert "reading the mail line by line" in caplog.text
    assert parsed == line_by_line(raw, limits)
    assert parsed.over_limit is None and len(parsed.attachments) == 2


def test_search_for_runs_is_bounded_by_the_mail_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """A mail made of nothing but candidates (a blank line, then a line of base64) is
    searched at most to about twice its size, each candidate counting `_RUN_COST`."""
    looked_at: list[int] = []
    real_run = parser._base64_run

    def counting_run(data: bytes, start: int, limit: int) -> tuple[int, int]:
        looked_at.append(start)
        return real_run(data, start, limit)

    monkeypatch.setattr(parser, "_base64_run", counting_run)
    raw = HEADER + b"\r\n" + b"\r\n\r\n".join([b"A" * 76] * 20_000)
    assert parser._base64_runs(raw) == []
    assert len(looked_at) <= 2 * len(raw) // parser._RUN_COST
    assert parse(raw) == line_by_line(raw)


# -- whole mails ------------------------------------------------------------------------------


def corpus_mails() -> list[str]:
    return sorted(
        str(path)
        for folder in (CORPUS, SAMPLES)
        for path in folder.iterdir()
        if path.name not in ("README.md", "MANIFEST.tsv", "EXPECTED.tsv")
    )


def test_every_corpus_and_sample_mail_reads_the_same() -> None:
    with_runs = 0
    for path in corpus_mails():
        with open(path, "rb") as handle:
            raw = handle.read()
        for variant in (raw, raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")):
            assert parse(variant) == line_by_line(variant), path
            with_runs += bool(parser._base64_runs(parser._unwrap(variant)))
    assert with_runs >= 10  # the corpus's attachments and base64 bodies


def test_realistic_mails_with_attachments_read_the_same() -> None:
    mails = [mail for mail in generate("realistic", 300, seed=19) if mail.attachment]
    assert len(mails) >= 30
    for mail in mails:
        parsed = assert_read_as_line_by_line(mail.raw, runs=len(parser._base64_runs(mail.raw)))
        assert len(parsed.attachments) == 1 and len(parsed.attachments[0].data) == mail.attachment_bytes


# -- base64 decoding ------------------------------------------------------------------------


def test_base64_decoding_matches_the_email_package() -> None:
    """`_base64_payload` against get_payload(decode=True) on sound, broken and random bodies."""
    rng = random.Random(19)
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
    bodies = [b"", b"=", b"QQ", b"QQ=", b"QQ==", b"QUFB=QUFB", b"Q\r\nQ\r\n==", b"QUFBQ", b"!!!!"]
    for _ in range(20_000):
        if rng.random() < 0.5:
            body = bytearray(wrapped(rng.randbytes(rng.randint(0, 80)), rng.choice([4, 8, 76])))
            for _ in range(rng.randint(0, 3)):
                at = rng.randrange(len(body) + 1)
                body[at:at] = (
                    rng.choice([b"=", b"==", b"\r\n", b"!", b" ", b"A"]) if rng.random() < 0.6 else b""
                )
                del body[at : at + rng.randint(0, 2)]
            bodies.append(bytes(body))
        else:
            bodies.append(bytes(rng.choices(alphabet + b"\r\n=! ", k=rng.randint(0, 14))))
    for body in bodies:
        part = Message()
        part["Content-Transfer-Encoding"] = "Base64"
        part.set_payload(body.decode("ascii"))
        assert parser._base64_payload(part) == part.get_payload(decode=True), body


def test_base64_decoding_leaves_other_bodies_to_the_email_package() -> None:
    part = Message()
    part["Content-Transfer-Encoding"] = "quoted-printable"
    part.set_payload("caf=C3=A9")
    assert parser._base64_payload(part) is None
    part.replace_header("Content-Transfer-Encoding", "base64")
    part.set_payload(b"QUFB\xff".decode("ascii", "surrogateescape"))  # 8-bit bytes in the body
    assert parser._base64_payload(part) is None
    assert parser._payload_bytes(part) == part.get_payload(decode=True)
