"""helpdesk.inbound.parser: every corpus mail gets a defined reading (docs/mail-gateway.md).

The corpus (../shared/corpus, real mail written by other projects) is parsed file by
file with checks per MANIFEST category and words read off the files by hand; the
hand-written cases below cover what the corpus lacks (BOM, GBK-only characters,
windows-1252 quotes under an iso-8859-1 label, cp949, cp932, ...). No database.
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import email.message
import quopri
import random
import re
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpdesk.inbound import charsets
from helpdesk.inbound.limits import DEFAULT as DEFAULT_LIMITS
from helpdesk.inbound.params import MAX_PARAMS, split_params
from helpdesk.inbound.parser import MAX_FILENAME_LENGTH, Attachment, InboundMail, parse

CORPUS = Path(__file__).parents[2] / "shared" / "corpus"
NOT_MAIL_FILES = ("README.md", "MANIFEST.tsv")
with (CORPUS / "MANIFEST.tsv").open(encoding="utf-8", newline="") as manifest_file:
    MANIFEST = {row["file"]: row for row in csv.DictReader(manifest_file, delimiter="\t")}
CORPUS_FILES = sorted(path.name for path in CORPUS.iterdir() if path.name not in NOT_MAIL_FILES)


def corpus(name: str) -> InboundMail:
    return parse((CORPUS / name).read_bytes())


def mail(headers: str, body: bytes = b"body\n") -> bytes:
    """A message from readable headers (one per line) and a raw body."""
    return headers.strip("\n").encode("utf-8") + b"\n\n" + body


def raw_message_id(raw: bytes) -> str | None:
    """The Message-ID read with a plain regex from the header block, for comparison."""
    head = re.sub(rb"\A(?:\xef\xbb\xbf)?From [^\n]*\n", b"", raw).replace(b"\r\n", b"\n")
    head = head.split(b"\n\n", 1)[0]
    found = re.search(rb"^message-id:\s*<([^>]+)>", head, re.IGNORECASE | re.MULTILINE)
    return found.group(1).decode("ascii") if found else None


def text_fields(parsed: InboundMail) -> list[str]:
    fields = [
        parsed.subject,
        parsed.from_address,
        parsed.from_name,
        parsed.text_body,
        parsed.html_body or "",
        parsed.content_type,
    ]
    fields += [value for pair in parsed.to + parsed.cc for value in pair]
    fields += [value for pair in parsed.headers for value in pair]
    fields += [attachment.filename for attachment in parsed.attachments]
    return fields


def assert_well_formed(parsed: InboundMail) -> None:
    """What every other module may rely on, whatever the input."""
    for value in text_fields(parsed):
        assert isinstance(value, str)
        assert "\x00" not in value
        assert not re.search("[\ud800-\udfff]", value), "lone surrogate would not store"
    assert parsed.content_type == parsed.content_type.lower() and "/" in parsed.content_type
    for message_id in [parsed.message_id or "x", *parsed.in_reply_to, *parsed.references]:
        assert message_id and not re.search(r"[<>\s]", message_id)
    if parsed.from_address:
        assert parsed.from_address == parsed.from_address.lower() and "@" in parsed.from_address
    for _name, address in parsed.to + parsed.cc:
        assert address == address.lower() and "@" in address
    for name, _value in parsed.headers:
        assert name == name.lower()
    for attachment in parsed.attachments:
        assert_safe_filename(attachment.filename)
        assert isinstance(attachment.data, bytes)
        assert attachment.content_type == attachment.content_type.lower()
        if attachment.content_id is not None:
            assert attachment.content_id and "<" not in attachment.content_id
        assert attachment.is_inline is False or attachment.content_id


def assert_safe_filename(filename: str) -> None:
    assert filename and len(filename) <= MAX_FILENAME_LENGTH
    assert "/" not in filename and "\\" not in filename and ".." not in filename
    assert not filename.startswith(".")
    assert not any(unicodedata.category(char) in ("Cc", "Cf") for char in filename)


def no_replacement_characters(parsed: InboundMail) -> bool:
    return all(
        "\ufffd" not in value
        for value in (parsed.subject, parsed.from_name, parsed.text_body, parsed.html_body or "")
    )


# -- the corpus ------------------------------------------------------------------------


def test_manifest_lists_every_corpus_file() -> None:
    assert set(MANIFEST) == set(CORPUS_FILES)
    assert len(CORPUS_FILES) >= 100


def check_plain(parsed: InboundMail, row: dict[str, str]) -> None:
    if "headerless" in row["note"]:
        assert parsed.parse_error == "no mail headers"
        assert "mailing list submissions" in parsed.text_body
    elif "no From/Subject" in row["note"]:
        assert parsed.parse_error is None and parsed.subject == "" and parsed.from_address == ""
    else:
        assert parsed.parse_error is None
        assert parsed.text_body.strip() and parsed.from_address


def check_multipart(parsed: InboundMail, row: dict[str, str]) -> None:
    assert parsed.parse_error is None
    assert parsed.content_type.startswith(("multipart/", "message/rfc822"))
    if "single empty part" not in row["note"]:
        assert parsed.text_body.strip() or parsed.attachments


def check_html(parsed: InboundMail, row: dict[str, str]) -> None:
    assert parsed.parse_error is None
    assert parsed.html_body is not None
    assert parsed.text_body.strip()
    assert not re.search(r"<\s*(html|body|div|p|br|table|td|font)\b", parsed.text_body, re.I)


def check_attachment(parsed: InboundMail, row: dict[str, str]) -> None:
    assert parsed.parse_error is None
    assert parsed.attachments
    assert all(attachment.data for attachment in parsed.attachments)


def check_charset(parsed: InboundMail, row: dict[str, str]) -> None:
    assert parsed.parse_error is None
    assert no_replacement_characters(parsed)
    assert parsed.subject


def check_reply_quote(parsed: InboundMail, row: dict[str, str]) -> None:
    raw = parsed.raw.decode("utf-8").replace("\r\n", "\n")
    if row["note"].startswith("Body-only"):
        # Not mail: quarantined with the text kept for staff (and for quote tests).
        assert parsed.parse_error == "no mail headers"
        assert parsed.text_body == raw
    else:
        assert parsed.parse_error is None and parsed.text_body.strip()


def check_bounce(parsed: InboundMail, row: dict[str, str]) -> None:
    assert parsed.parse_error is None
    assert parsed.content_type == "multipart/report"
    assert parsed.text_body.strip()


def check_malformed(parsed: InboundMail, row: dict[str, str]) -> None:
    # Broken structure is still mail: whatever can be read is read.
    assert parsed.parse_error is None
    assert parsed.text_body.strip() or parsed.html_body or parsed.attachments


def check_other(parsed: InboundMail, row: dict[str, str]) -> None:
    if "NOT RFC 822" in row["note"]:
        assert parsed.parse_error and "OLE2" in parsed.parse_error
        assert parsed.message_id is None and parsed.from_address == ""
    else:
        assert parsed.parse_error is None and parsed.text_body.strip()


CATEGORY_CHECKS = {
    "plain": check_plain,
    "multipart": check_multipart,
    "html": check_html,
    "attachment": check_attachment,
    "charset": check_charset,
    "reply_quote": check_reply_quote,
    "bounce": check_bounce,
    "malformed": check_malformed,
    "other": check_other,
}


@pytest.mark.parametrize("name", CORPUS_FILES)
def test_corpus_mail_gets_a_defined_reading(name: str) -> None:
    raw = (CORPUS / name).read_bytes()
    row = MANIFEST[name]
    parsed = parse(raw)
    assert parsed.raw is raw
    assert_well_formed(parsed)
    if parsed.parse_error is None:
        assert parsed.message_id == raw_message_id(raw)
    CATEGORY_CHECKS[row["category"]](parsed, row)


@pytest.mark.parametrize(
    ("name", "field", "expected"),
    [
        # gb2312 label, GBK-only byte pair 0x8C 0xC2 in the subject's encoded words and body
        ("mail-parser__tests_mails_mail_test_9", "subject", "我把镜头拉近些，你们看看这个是什么"),
        ("mail-parser__tests_mails_mail_test_9", "text_body", "我把镜头拉近些"),
        # gb2312 label on a body that is really UTF-8
        ("mail-parser__tests_mails_mail_test_12", "subject", "代开各地增值税发票"),
        ("mail-parser__tests_mails_mail_test_12", "from_name", "张先生"),
        ("mail-parser__tests_mails_mail_test_12", "text_body", "你好！我公司可代开各类增值税发票"),
        # Windows-1251 label on UTF-8 bytes
        ("mail-parser__tests_mails_mail_test_4", "html_body", "Parque Tecnológico de Bizkaia"),
        ("mail-parser__tests_mails_mail_test_5", "subject", "Je prépare mon été zéro complexe !"),
        ("mail-parser__tests_mails_mail_test_10", "text_body", "vi segnalo che oggi è stato annunciato"),
        ("mail-parser__tests_mails_mail_test_1", "subject", "письмо уведом-е"),
        ("mail-parser__tests_mails_mail_test_1", "from_name", "служба ФНС Даниил Суворов"),
        ("mail-parser__tests_mails_mail_test_6", "subject", "Быстрее вкладывайте в золото!"),
        ("mail-parser__tests_mails_mail_test_6", "text_body", "Профессионалы.ru — ведущая деловая сеть"),
        ("mail-parser__tests_mails_mail_test_18", "from_name", "LastßlName, FirstName"),
        ("mail-parser__tests_mails_mail_test_17", "subject", "Transferencia Interbancaria Banca en Línea"),
        ("mail-parser__tests_mails_mail_malformed_3", "text_body", "Ver on-line"),
        (
            "django-helpdesk__tests_test_files_utf-nondecodable.eml",
            "subject",
            "Fwd: Cyklozaměstnavatel - změna vyhodnocení",
        ),
        (
            "django-helpdesk__tests_test_files_utf-nondecodable.eml",
            "text_body",
            "podle domluvy bych Tě poprosila o změnu vyhodnocení",
        ),
        ("django-helpdesk__tests_test_files_utf-nondecodable.eml", "html_body", "prostředí pro"),
        ("django-helpdesk__tests_test_files_quoted_printable.eml", "subject", "Český test"),
        (
            "django-helpdesk__tests_test_files_quoted_printable.eml",
            "text_body",
            "Tohle je test českých písmen odeslaných z gmailu.",
        ),
        ("django-helpdesk__tests_test_files_all-special-chars.eml", "text_body", "íářčšáíéřášč"),
        (
            "RustPython__Lib_test_test_email_data_msg_10.txt",
            "html_body",
            "¡This is a Quoted Printable encoded message!",
        ),
    ],
)
def test_corpus_words_decode_as_written(name: str, field: str, expected: str) -> None:
    parsed = corpus(name)
    assert expected in (getattr(parsed, field) or "")


def test_corpus_only_the_truly_broken_utf8_byte_becomes_replacement_character() -> None:
    # mail_test_6 is UTF-8 with one corrupted sequence (0xD1 followed by 'f').
    parsed = corpus("mail-parser__tests_mails_mail_test_6")
    assert parsed.html_body is not None and parsed.html_body.count("\ufffd") == 1


def test_corpus_addresses() -> None:
    comma = corpus("mail-parser__tests_mails_mail_test_18")
    assert comma.from_address == "comma.name@example.com"
    assert comma.to == [("", "tony.stark@example.com")]
    assert comma.cc == [("", "simple@example.net"), ('John "Johnny" Doe', "john.doe@example.com")]
    as_name = corpus("mail-parser__tests_mails_mail_test_19")
    assert (as_name.from_name, as_name.from_address) == ("alice@example.com", "bob@example.com")
    assert as_name.to == [("Charlie Brown", "charlie@example.com"), ("", "dave@example.com")]
    three_cc = corpus("RustPython__Lib_test_test_email_data_msg_20.txt")
    assert [address for _, address in three_cc.cc] == ["ccc@zzz.org", "ddd@zzz.org", "eee@zzz.org"]


def test_corpus_bounce_behind_mbox_line_without_boundary_is_recovered() -> None:
    parsed = corpus("RustPython__Lib_test_test_email_data_msg_25.txt")
    assert parsed.from_address == "mailer-daemon@zinfandel.lacita.com"
    assert parsed.message_id == "200104061723.JAB03225@zinfandel.lacita.com"
    assert parsed.subject.startswith("Returned mail: Too many hops 19 (17 max)")
    assert parsed.header("auto-submitted") == "auto-generated (failure)"
    assert [a.content_type for a in parsed.attachments] == ["message/delivery-status", "text/rfc822-headers"]
    assert "The original message was received at" in parsed.text_body


def test_corpus_attachment_after_reused_boundary_is_kept() -> None:
    # The nested multipart reuses the outer boundary, so the zip sits in the epilogue.
    parsed = corpus("mail-parser__tests_mails_mail_malformed_1")
    assert [a.filename for a in parsed.attachments] == ["20160523_916527.jpg_.zip"]
    assert parsed.attachments[0].data.startswith(b"PK")


def test_corpus_filenames_decode_and_stay_bounded() -> None:
    raw_utf8 = corpus("mail-parser__tests_mails_mail_test_1")
    assert [a.filename for a in raw_utf8.attachments] == ["ФНС_РФ558.zip"]
    folded = corpus("mail-parser__tests_mails_mail_test_11").attachments[0].filename
    assert folded.startswith("Prokuratura Rejonowa Warszawa-Śródmieście północ")
    assert folded.endswith(".pdf") and len(folded) == MAX_FILENAME_LENGTH
    gif = corpus("RustPython__Lib_test_test_email_data_msg_07.txt").attachments
    assert [(a.filename, a.content_type) for a in gif] == [("dingusfish.gif", "image/gif")]
    assert gif[0].data.startswith(b"GIF8")


def test_corpus_inline_images_and_digest() -> None:
    related = corpus("mail-parser__tests_mails_mail_test_5")
    images = [a for a in related.attachments if a.content_type.startswith("image/")]
    assert len(images) == 5 and all(a.is_inline and a.content_id for a in images)
    assert f"cid:{images[0].content_id}" in (related.html_body or "")
    digest = corpus("RustPython__Lib_test_test_email_data_msg_02.txt")
    assert [a.content_type for a in digest.attachments] == ["message/rfc822"] * 5
    assert digest.attachments[0].filename == "[Ppp] testing #1.eml"
    assert digest.attachments[0].data.startswith(b"Message: 1\n")
    assert b"\nSubject: [Ppp] testing #1\n" in digest.attachments[0].data
    assert digest.attachments[1].filename == "attachment-2.eml"  # that one has no Subject


def test_corpus_outlook_msg_is_refused_not_crashed() -> None:
    parsed = corpus("mail-parser__tests_mails_mail_outlook_1")
    assert parsed.parse_error == "Outlook .msg (OLE2) file, not RFC 5322 mail"
    assert parsed.raw == (CORPUS / "mail-parser__tests_mails_mail_outlook_1").read_bytes()


# -- framing: mbox line, BOM, line endings, long lines ----------------------------------


def test_mbox_from_line_and_bom_are_stripped() -> None:
    raw = (
        b"\xef\xbb\xbfFrom alice@example.com Mon Jan  1 00:00:00 2024\r\n"
        b"From: Alice <Alice@Example.COM>\r\nSubject: hello\nMessage-ID: <m1@example.com>\n"
        b"\r\nline one\r\nline two\nline three\rline four\n"
    )
    parsed = parse(raw)
    assert parsed.parse_error is None
    assert (parsed.from_name, parsed.from_address) == ("Alice", "alice@example.com")
    assert parsed.subject == "hello" and parsed.message_id == "m1@example.com"
    assert parsed.text_body == "line one\nline two\nline three\nline four"
    assert [name for name, _ in parsed.headers] == ["from", "subject", "message-id"]


def test_cr_only_line_endings_are_read() -> None:
    parsed = parse(b"From: a@example.com\rSubject: old Mac\rMessage-ID: <x@y>\r\rbody\r")
    assert (parsed.subject, parsed.message_id, parsed.text_body) == ("old Mac", "x@y", "body")


def test_over_long_lines_are_kept_whole() -> None:
    subject = "word " * 2000
    body = b"y" * 200_000 + b"\n"
    parsed = parse(mail(f"From: a@example.com\nSubject: {subject}", body))
    assert parsed.subject == subject.strip()
    assert parsed.text_body == "y" * 200_000


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"   \r\n\r\n",
        b"\x00" * 64,
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 512,
        b"From: a@example.com\nContent-Type: multipart/mixed; boundary=",
        b"Subject:",
        b'Content-Type: text/plain; charset="\xff\xfe"\n\n\xff',
        b":\n\n",
        b"From: a@example.com\nContent-Type: multipart/mixed; boundary=x\n\n--x\n--x--\n--x\n",
        b"From: a@example.com\nContent-Transfer-Encoding: base64\n\n!!!not base64",
        b"From: a@example.com\nContent-Type: text/plain; charset=undefined\n\n\xe9",
        b"From: a@example.com\nContent-Type: text/plain; charset=base64\n\nabc\xe9",
        b"From: a@example.com\nContent-Type: text/plain; charset=utf-16\n\n\x00\xd8\x00",
        b"From: a@example.com\nContent-Disposition: attachment; filename*0*=bogus'%ZZ\n\nx",
        bytes(random.Random(7).randrange(256) for _ in range(20_000)),
    ],
)
def test_junk_never_raises(raw: bytes) -> None:
    parsed = parse(raw)
    assert parsed.raw is raw
    assert_well_formed(parsed)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty message"),
        (b"just some words\nno headers at all\n", "no mail headers"),
        (b"\x00\x01\x02binary\x00", "no mail headers"),
    ],
)
def test_what_is_not_mail_gets_a_reason(raw: bytes, reason: str) -> None:
    parsed = parse(raw)
    assert parsed.parse_error == reason
    assert parsed.message_id is None and parsed.raw is raw


def test_header_less_text_is_salvaged_but_binary_is_not() -> None:
    assert parse(b"just some words\n").text_body == "just some words\n"
    assert parse(b"\x00\x01\x02binary\x00").text_body == ""


def test_mime_nested_beyond_the_cap_is_read_as_a_header_only() -> None:
    depth = 1200
    raw = (
        b"From: a@example.com\nContent-Type: multipart/mixed; boundary=b0\n\n"
        + b"".join(
            b"--b%d\nContent-Type: multipart/mixed; boundary=b%d\n\n" % (i, i + 1) for i in range(depth)
        )
        + b"--b%d\nContent-Type: text/plain\n\ndeep\n" % depth
    )
    parsed = parse(raw)
    assert parsed.parse_error is None
    assert parsed.over_limit == "MIME parts nested deeper than MAX_MIME_DEPTH (20)"
    assert (parsed.from_address, parsed.text_body, parsed.attachments) == ("a@example.com", "", [])


@pytest.mark.parametrize(("subject", "filename"), [("..", "attachment-1.eml"), ("Factura. ", "Factura.eml")])
def test_an_enclosed_message_named_from_its_subject_keeps_its_extension(subject, filename) -> None:
    """A Subject of dots (or ending in one) is no name: ".." was stored as a file
    named "eml", without its extension."""
    raw = mail(
        "From: a@example.com\nSubject: fwd\nContent-Type: message/rfc822",
        f"From: c@example.com\nSubject: {subject}\n\nthe text\n".encode(),
    )
    assert [a.filename for a in parse(raw).attachments] == [filename]


# -- mail-parser wrapped ---------------------------------------------------------------

FORWARD_WITHOUT_START_BOUNDARY = mail(
    "From: a@example.com\nSubject: fwd\nMessage-ID: <outer@example.com>\nContent-Type: message/rfc822",
    b"From: c@example.com\nSubject: inner\nContent-Type: multipart/mixed; boundary=X\n\nno delimiter here\n",
)


def test_mail_mail_parser_chokes_on_still_parses() -> None:
    # mail-parser 4.8.0 raises TypeError on this one (epilogue recovery without boundary).
    parsed = parse(FORWARD_WITHOUT_START_BOUNDARY)
    assert parsed.parse_error is None
    assert (parsed.subject, parsed.message_id) == ("fwd", "outer@example.com")
    assert [(a.filename, a.content_type) for a in parsed.attachments] == [("inner.eml", "message/rfc822")]
    assert b"no delimiter here" in parsed.attachments[0].data


def test_mime_parameter_the_standard_library_chokes_on_still_parses() -> None:
    # A NUL in an RFC 2231 boundary makes email.message_from_bytes raise ValueError.
    parsed = parse(
        b"From: a@example.com\nSubject: nul\n"
        b"Content-Type: multipart/mixed; boundary*=\"x\x00''b\"\n\n"
        b"--b\nContent-Type: text/plain\n\nhello\n--b--\n"
    )
    assert (parsed.parse_error, parsed.subject, parsed.text_body) == (None, "nul", "hello")


def test_duplicate_headers_are_all_kept_in_order_and_first_wins() -> None:
    parsed = parse(
        mail(
            "Received: from a by b\nSubject: first\nAuto-Submitted: auto-replied\n"
            "Received: from c by d\nSubject: second\nMessage-ID: <one@x>\nMessage-ID: <two@x>\n"
            "From: x@example.com\nPrecedence: bulk\nPrecedence: junk"
        )
    )
    assert parsed.subject == "first" and parsed.message_id == "one@x"
    assert parsed.header_all("received") == ["from a by b", "from c by d"]
    assert parsed.header_all("subject") == ["first", "second"]
    assert parsed.header_all("precedence") == ["bulk", "junk"]
    assert parsed.header("Auto-Submitted") == "auto-replied"
    assert [name for name, _ in parsed.headers][:3] == ["received", "subject", "auto-submitted"]


# -- charsets --------------------------------------------------------------------------


def body_in(label: str | None, data: bytes, cte: str = "8bit") -> InboundMail:
    content_type = "text/plain" + (f"; charset={label}" if label else "")
    return parse(
        mail(
            f"From: a@example.com\nSubject: s\nContent-Type: {content_type}\n"
            f"Content-Transfer-Encoding: {cte}",
            data,
        )
    )


def test_gb2312_label_reads_gbk_only_characters() -> None:
    parsed = body_in("gb2312", "朱镕基说：你好".encode("gbk"))
    assert parsed.text_body == "朱镕基说：你好"


def test_iso_8859_1_label_reads_windows_1252_smart_quotes() -> None:
    parsed = body_in('"ISO-8859-1"', b"He said \x93hello\x94 \x96 caf\xe9 \x80 5\n")
    assert parsed.text_body == "He said “hello” – café € 5"


def test_us_ascii_label_with_8bit_bytes_reads_windows_1252() -> None:
    assert body_in("us-ascii", b"na\xefve \x85").text_body == "naïve …"


def test_ks_c_5601_1987_reads_windows_949() -> None:
    parsed = body_in("ks_c_5601-1987", "똠방각하, 안녕하세요".encode("cp949"))
    assert parsed.text_body == "똠방각하, 안녕하세요"


def test_shift_jis_label_reads_windows_31j_extensions() -> None:
    parsed = body_in("Shift_JIS", "①髙橋さん～".encode("cp932"))
    assert parsed.text_body == "①髙橋さん～"


def test_iso_2022_jp_reads_nec_row_13_and_is_sniffed_without_label() -> None:
    jis = b"\x1b$B$4CmJ8\x1b(B No.\x1b$B-!\x1b(B \x1b(I12\x1b(B"  # ご注文 No.① ｱｲ
    assert body_in("ISO-2022-JP", jis, cte="7bit").text_body == "ご注文 No.① ｱｲ"
    assert body_in(None, "こんにちは".encode("iso2022_jp"), cte="7bit").text_body == "こんにちは"


def test_iso_8859_9_and_tis_620_read_their_windows_supersets() -> None:
    assert body_in("iso-8859-9", "İstanbul ‘çok’".encode("cp1254")).text_body == "İstanbul ‘çok’"
    assert body_in("tis-620", "สวัสดี…".encode("cp874")).text_body == "สวัสดี…"


def test_utf8_under_a_legacy_label_is_read_as_utf8() -> None:
    assert body_in("iso-8859-1", "Grüße, Zoë".encode("utf-8")).text_body == "Grüße, Zoë"


@pytest.mark.parametrize("label", ["x-unknown", "foo-bar-1", "unknown-8bit", "base64"])
def test_unknown_label_falls_back_to_detection(label: str) -> None:
    assert body_in(label, "Grüße aus München".encode("utf-8")).text_body == "Grüße aus München"
    assert body_in(label, b"caf\xe9 cr\xe8me br\xfbl\xe9e").text_body == "café crème brûlée"


def test_8bit_without_charset_reads_utf8_and_latin1() -> None:
    assert body_in(None, "Ça marche ✓".encode("utf-8")).text_body == "Ça marche ✓"
    assert body_in(None, b"Gr\xfc\xdfe aus M\xfcnchen").text_body == "Grüße aus München"
    russian = "Привет, как дела? Всё хорошо, спасибо.".encode("cp1251")
    assert body_in(None, russian).text_body == "Привет, как дела? Всё хорошо, спасибо."


@pytest.mark.parametrize(
    ("subject", "body"),
    [("Facturación", "Atención"), ("Inés", "Inés"), ("café", "Saludos, Begoña")],
)
def test_no_content_type_reads_short_8bit_text_as_us_ascii_does(subject: str, body: str) -> None:
    """RFC 2045: no Content-Type is text/plain; charset=us-ascii, read as windows-1252
    (after UTF-8), not detected: detection read "Facturaciуn" and "In閟"."""
    raw = f"From: {subject} <a@example.com>\nSubject: {subject}\n\n{body}\n".encode("latin-1")
    parsed = parse(raw)
    assert (parsed.subject, parsed.from_name, parsed.text_body) == (subject, subject, body)
    declared = parse(raw.replace(b"\n\n", b"\nContent-Type: text/plain; charset=us-ascii\n\n", 1))
    assert (declared.subject, declared.text_body) == (subject, body)


def test_no_content_type_still_reads_utf8_and_unlabelled_iso_2022_jp() -> None:
    parsed = parse("From: a@example.com\nSubject: Año ✓\n\nAtención ✓\n".encode())
    assert (parsed.subject, parsed.text_body) == ("Año ✓", "Atención ✓")
    jis = parse(b"From: a@example.com\nSubject: s\n\n" + "こんにちは".encode("iso2022_jp"))
    assert jis.text_body == "こんにちは"


@pytest.mark.parametrize("label", ["utf-8", None])
def test_replacement_character_only_for_the_bytes_nothing_decodes(label: str | None) -> None:
    text = "Съешь же ещё этих мягких французских булок. " * 20
    data = text.encode("utf-8") + b"\xd1f" + text.encode("utf-8")
    decoded = body_in(label, data).text_body
    assert decoded.count("\ufffd") == 1 and decoded.startswith("Съешь")


def test_html_meta_charset_is_used_when_mime_has_none() -> None:
    html_bytes = '<meta charset="windows-1251"><p>Привет</p>'.encode("cp1251")
    parsed = parse(mail("From: a@example.com\nContent-Type: text/html", html_bytes))
    assert parsed.html_body is not None and "Привет" in parsed.html_body
    assert parsed.text_body == "Привет"


@pytest.mark.parametrize(
    ("label", "codec"),
    [
        ("gb2312", "gb18030"),
        ("GBK", "gb18030"),
        ("iso-8859-1", "cp1252"),
        ("latin1", "cp1252"),
        ("us-ascii", "cp1252"),
        ("ks_c_5601-1987", "cp949"),
        ("euc-kr", "cp949"),
        ("shift_jis", "cp932"),
        ("iso-8859-9", "cp1254"),
        ("tis-620", "cp874"),
        ("big5", "big5hkscs"),
        ("UTF8", "utf-8"),
        ('"utf-8"', "utf-8"),
        ("utf-8*en", "utf-8"),
    ],
)
def test_labels_map_the_whatwg_way(label: str, codec: str) -> None:
    found = charsets.lookup(label)
    assert found is not None and found[0] == codec


@pytest.mark.parametrize("label", [None, "", "x-unknown", "base64", "rot13", "idna"])
def test_unusable_labels_are_unknown(label: str | None) -> None:
    assert charsets.lookup(label) is None


# -- headers ---------------------------------------------------------------------------


def test_rfc2047_subject_across_words_and_charsets() -> None:
    utf8 = "Grüße ".encode("utf-8")
    split_in_character = (base64.b64encode(utf8[:3]).decode(), base64.b64encode(utf8[3:]).decode())
    gbk = base64.b64encode("朱镕基".encode("gbk")).decode()
    parsed = parse(
        mail(
            "From: a@example.com\n"
            f"Subject: =?utf-8?B?{split_in_character[0]}?=\n =?UTF-8?b?{split_in_character[1]}?=\n"
            f" =?iso-8859-1?Q?=93quoted=94_?= and =?gb2312?B?{gbk}?=   plain\t  tail"
        )
    )
    assert parsed.subject == "Grüße “quoted” and 朱镕基 plain tail"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("=?us-ascii?Q?=93small_label=94?=", "“small label”"),
        ("=?x-unknown?Q?caf=C3=A9?=", "café"),
        # Not UTF-8 under an unknown label: windows-1252 (detection read "cafй").
        ("=?x-unknown?Q?caf=E9?=", "café"),
        ("=?iso-8859-3?Q?=A5?=", "\ufffd"),  # a byte the declared charset lacks
        ("=?ks_c_5601-1987?B?" + base64.b64encode("안녕".encode("cp949")).decode() + "?=", "안녕"),
        ("=?utf-8?B?w6k?=", "é"),  # padding missing
        ("=?utf-8?Q?broken", "=?utf-8?Q?broken"),  # not an encoded word: left alone
        ("", ""),
    ],
)
def test_encoded_words_with_wrong_or_small_labels(header: str, expected: str) -> None:
    assert parse(mail(f"From: a@example.com\nSubject: {header}")).subject == expected


def test_raw_8bit_subject_uses_the_body_charset() -> None:
    raw = (
        b"From: a@example.com\nSubject: \xc0\xe4\xf0\xe5\xf1\n"
        b"Content-Type: text/plain; charset=windows-1251\n\nbody"
    )
    assert parse(raw).subject == "Адрес"


def test_missing_subject_and_message_id() -> None:
    parsed = parse(mail("From: a@example.com"))
    assert parsed.subject == "" and parsed.message_id is None
    assert parsed.in_reply_to == [] and parsed.references == []


def test_message_ids_are_normalized_and_references_keep_order() -> None:
    parsed = parse(
        mail(
            "From: a@example.com\nMessage-ID:\n  <Abc.DEF@Example.COM >\n"
            "In-Reply-To: <r3@x.org> (Bob's message of Monday)\n"
            "References: <r1@x.org>\n\t<r2@x.org> <r3@x.org>,<r1@x.org>\n <r4@x.org>"
        )
    )
    assert parsed.message_id == "Abc.DEF@Example.COM"
    assert parsed.in_reply_to == ["r3@x.org"]
    assert parsed.references == ["r1@x.org", "r2@x.org", "r3@x.org", "r4@x.org"]


def test_bare_ids_without_brackets_are_read() -> None:
    parsed = parse(mail("From: a@example.com\nMessage-ID: bare@id\nReferences: one@x two@x"))
    assert parsed.message_id == "bare@id" and parsed.references == ["one@x", "two@x"]


def test_addresses_are_decoded_lowercased_and_unparseable_skipped() -> None:
    name = base64.b64encode("Jürgen Müller".encode("utf-8")).decode()
    parsed = parse(
        mail(
            f"From: =?utf-8?B?{name}?= <Juergen.Mueller@Example.DE>\n"
            'To: undisclosed-recipients:;, "Doe, Jane" <JANE@x.org>, garbage words, bob@x.org\n'
            "Cc: Team: c1@x.org, C2 <c2@x.org>;\nCc: third@x.org"
        )
    )
    assert parsed.from_name == "Jürgen Müller"
    assert parsed.from_address == "juergen.mueller@example.de"
    assert parsed.to == [("Doe, Jane", "jane@x.org"), ("", "bob@x.org")]
    assert parsed.cc == [("", "c1@x.org"), ("C2", "c2@x.org"), ("", "third@x.org")]


def test_recipients_separated_by_semicolons_are_all_read() -> None:
    """Scripts and some clients separate recipients with `;` as Outlook shows them; the
    address grammar read `a; b` as b alone, and a was never a participant."""
    parsed = parse(
        mail(
            "From: ann@example.com\n"
            "To: support@helpdesk.test; Bob <bob@example.com>\n"
            "Cc: Carla <carla@example.com>; dan@example.com, Eve <eve@example.com>"
        )
    )
    assert sorted(address for _, address in parsed.to) == ["bob@example.com", "support@helpdesk.test"]
    assert sorted(address for _, address in parsed.cc) == [
        "carla@example.com",
        "dan@example.com",
        "eve@example.com",
    ]


def test_missing_or_unreadable_from_is_empty() -> None:
    assert parse(mail("Subject: no sender")).from_address == ""
    unreadable = parse(mail("From: MAILER-DAEMON\nSubject: x"))
    assert (unreadable.from_address, unreadable.from_name) == ("", "")


# -- bodies and attachments ------------------------------------------------------------


def multipart(*parts: bytes, subtype: str = "mixed", extra_headers: str = "") -> bytes:
    body = b"".join(b"--BOUND\n" + part + b"\n" for part in parts) + b"--BOUND--\n"
    return mail(
        f"From: a@example.com\nSubject: parts\nMIME-Version: 1.0\n{extra_headers}"
        f"Content-Type: multipart/{subtype}; boundary=BOUND",
        body,
    )


def test_alternative_gives_text_and_html_as_sent() -> None:
    parsed = parse(
        multipart(
            b"Content-Type: text/plain; charset=utf-8\n\nHello text",
            b'Content-Type: text/html; charset=utf-8\n\n<p onclick="x()">Hello <b>html</b></p>',
            subtype="alternative",
        )
    )
    assert parsed.content_type == "multipart/alternative"
    assert parsed.text_body == "Hello text"
    assert parsed.html_body == '<p onclick="x()">Hello <b>html</b></p>'
    assert parsed.attachments == []


def test_html_only_mail_gets_a_text_rendering() -> None:
    html_body = (
        "<html><head><title>T</title><style>p {color: red}</style></head><body>"
        "<p>Dear&nbsp;team,</p><p>Line one<br>Line two &amp; more</p>"
        "<script>alert(1)</script><table><tr><td>a</td><td>b</td></tr></table>"
        "</body></html>"
    )
    parsed = parse(mail("From: a@example.com\nContent-Type: text/html; charset=utf-8", html_body.encode()))
    assert parsed.html_body == html_body
    assert parsed.text_body == "Dear team,\n\nLine one\nLine two & more\n\na b"


def test_attachment_filenames_are_made_safe() -> None:
    long_name = "x" * 300 + ".pdf"
    parsed = parse(
        multipart(
            b"Content-Type: text/plain\n\nsee attached",
            b"Content-Type: application/octet-stream\nContent-Disposition: attachment; "
            b'filename="../../etc/passwd"\nContent-Transfer-Encoding: base64\n\ncm9vdDp4OjA6MA==',
            b'Content-Type: application/pdf\nContent-Disposition: attachment; filename="'
            + long_name.encode()
            + b'"\n\n%PDF',
            b"Content-Type: application/x-msdownload\nContent-Disposition: attachment; "
            b"filename*=UTF-8''%E2%80%AEfdp.exe%0A\n\nMZ",
            b"Content-Type: text/plain\n"
            b'Content-Disposition: attachment; filename="..\\\\..\\\\boot.ini"\n\n[boot]',
            b"Content-Type: image/jpeg\nContent-Disposition: attachment\n\nJPEG",
            b'Content-Type: application/zip\nContent-Disposition: attachment; filename="..."\n\nPK',
        )
    )
    assert parsed.text_body == "see attached"
    names = [attachment.filename for attachment in parsed.attachments]
    assert names[0] == "passwd" and parsed.attachments[0].data == b"root:x:0:0"
    assert names[1] == "x" * (MAX_FILENAME_LENGTH - 4) + ".pdf"
    assert names[2] == "fdp.exe"
    assert names[3] == "boot.ini"
    assert names[4] == "attachment-5.jpg"
    assert names[5] == "attachment-6.zip"
    for name in names:
        assert_safe_filename(name)


def test_encoded_filenames_are_decoded() -> None:
    encoded = base64.b64encode("Přehled.xlsx".encode("utf-8")).decode()
    parsed = parse(
        multipart(
            b"Content-Type: text/plain\n\nx",
            b"Content-Type: application/octet-stream\n"
            b"Content-Disposition: attachment; filename*=iso-8859-1''caf%E9.txt\n\n1",
            b'Content-Type: application/octet-stream; name="=?utf-8?B?'
            + encoded.encode()
            + b'?="\nContent-Disposition: attachment\n\n2',
            b"Content-Type: application/octet-stream\n"
            b'Content-Disposition: attachment; filename="r\xc3\xa9sum\xc3\xa9.doc"\n\n3',
        )
    )
    names = [attachment.filename for attachment in parsed.attachments]
    assert names == ["café.txt", "Přehled.xlsx", "résumé.doc"]


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet=";\"\\= aB*'", max_size=16))
def test_parameters_are_split_as_the_standard_library_splits_them(value: str) -> None:
    assert split_params(value) == email.message._parseparam(value)[:MAX_PARAMS]


def test_parameters_split_in_one_pass_keep_quoted_semicolons_and_sections() -> None:
    parsed = parse(
        multipart(
            b"Content-Type: text/plain\n\nx",
            b'Content-Type: application/pdf; name="a;b;c.pdf"\nContent-Disposition: attachment\n\n1',
            b"Content-Type: application/pdf\nContent-Disposition: attachment;\n"
            b" filename*0*=utf-8''Inf%C3%B3rme; filename*1=\"; 2026\"; filename*2=.pdf\n\n2",
            b"Content-Type: application/pdf"
            + b"".join(b"; p%d=x" % i for i in range(MAX_PARAMS))
            + b'; name="too-late.pdf"\nContent-Disposition: attachment\n\n3',
        )
    )
    names = [attachment.filename for attachment in parsed.attachments]
    assert names == ["a;b;c.pdf", "Infórme; 2026.pdf", "attachment-3.pdf"]


def test_inline_cid_image_and_attached_image() -> None:
    parsed = parse(
        multipart(
            b'Content-Type: text/html; charset=utf-8\n\n<p>Logo: <img src="cid:logo.123@example.com"></p>',
            b"Content-Type: image/png; name=logo.png\nContent-ID: < logo.123@example.com >\n"
            b"Content-Disposition: inline; filename=logo.png\nContent-Transfer-Encoding: base64\n\n"
            + base64.b64encode(b"\x89PNG\r\n\x1a\nlogo"),
            b"Content-Type: image/gif\nContent-ID: <no-disposition@example.com>\n\nGIF89a",
            b"Content-Type: image/png; name=photo.png\nContent-ID: <photo@example.com>\n"
            b"Content-Disposition: attachment; filename=photo.png\n\nPNG",
            subtype="related",
        )
    )
    logo, no_disposition, photo = parsed.attachments
    assert (logo.filename, logo.content_id, logo.is_inline) == ("logo.png", "logo.123@example.com", True)
    assert logo.data == b"\x89PNG\r\n\x1a\nlogo" and logo.content_type == "image/png"
    assert no_disposition.is_inline and no_disposition.content_id == "no-disposition@example.com"
    assert (photo.is_inline, photo.content_id) == (False, "photo@example.com")
    assert parsed.text_body == "Logo:"


def test_forwarded_message_and_delivery_status_are_attachments() -> None:
    parsed = parse(
        multipart(
            b"Content-Type: text/plain\n\nYour message could not be delivered.",
            b"Content-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.com\n\n"
            b"Final-Recipient: rfc822; gone@example.com\nAction: failed\nStatus: 5.1.1\n",
            b"Content-Type: message/rfc822\n\nFrom: me@example.com\nSubject: Original: question\n\n"
            b"the original text\n",
            subtype="report; report-type=delivery-status",
        )
    )
    assert parsed.content_type == "multipart/report"
    assert parsed.text_body == "Your message could not be delivered."
    status, original = parsed.attachments
    assert (status.content_type, status.filename) == ("message/delivery-status", "attachment-1.txt")
    assert b"Status: 5.1.1" in status.data
    assert original.filename == "Original_ question.eml"
    assert b"Subject: Original: question\n" in original.data
    assert original.data.endswith(b"the original text\n")


def test_text_parts_marked_as_files_are_attachments() -> None:
    parsed = parse(
        multipart(
            b"Content-Type: text/plain\n\nthe body",
            b"Content-Type: text/plain; name=notes.txt\n\nnamed, no disposition",
            b"Content-Type: text/html\nContent-Disposition: attachment; filename=page.htm\n\n<p>x</p>",
            b"Content-Type: text/plain\nContent-Disposition: inline; filename=more.txt\n\nmore body",
            b"Content-Type: text/calendar; method=REQUEST\n\nBEGIN:VCALENDAR",
        )
    )
    assert parsed.text_body == "the body\n\nmore body"
    assert parsed.html_body is None
    assert [(a.filename, a.content_type) for a in parsed.attachments] == [
        ("notes.txt", "text/plain"),
        ("page.htm", "text/html"),
        ("attachment-3.ics", "text/calendar"),
    ]


def test_multipart_with_wrong_boundary_is_recovered() -> None:
    parsed = parse(
        mail(
            'From: a@example.com\nContent-Type: multipart/alternative; boundary="declared"',
            b"--actual\nContent-Type: text/plain\n\nplain part\n"
            b"--actual\nContent-Type: text/html\n\n<b>html part</b>\n--actual--\n",
        )
    )
    assert parsed.text_body == "plain part"
    assert parsed.html_body == "<b>html part</b>"


def test_attachment_type_is_plain_dataclass() -> None:
    parsed = parse(multipart(b"Content-Type: application/pdf; name=a.pdf\n\n%PDF"))
    assert parsed.attachments == [Attachment("a.pdf", "application/pdf", b"%PDF")]


# -- who sent it: From read liberally, then Sender, Reply-To, Return-Path (docs/mail-gateway.md) --


@pytest.mark.parametrize(
    ("from_value", "name", "address"),
    [
        (b"Ann <ann@example.com.>", "Ann", "ann@example.com"),  # a trailing dot
        (b"ann@example.com.", "", "ann@example.com"),
        (b"Ann Smith ann@example.com", "Ann Smith", "ann@example.com"),  # no angle brackets
        (b'"Smith, Ann" ann@example.com', "Smith, Ann", "ann@example.com"),
        (b"=?utf-8?q?Jos=C3=A9?= jose@example.es", "Jos\u00e9", "jose@example.es"),
        (b"Ann <ann@example.com", "Ann", "ann@example.com"),  # unclosed bracket
        (b"ann@example.com, bob@example.com", "", "ann@example.com"),  # several: the first
        (b"Ann <ann@example.com>, Bob <bob@example.com>", "Ann", "ann@example.com"),
        (b"root@localhost", "", "root@localhost"),  # dotless domains
        (b"Soporte <soporte@intranet>", "Soporte", "soporte@intranet"),
        # The bracketed address is the address, whatever the name says.
        (b'"ceo@victim.example" <someone@evil.example.>', "ceo@victim.example", "someone@evil.example"),
    ],
)
def test_from_is_read_liberally(from_value: bytes, name: str, address: str) -> None:
    mail = parse(b"From: " + from_value + b"\r\nSubject: s\r\n\r\nbody\r\n")
    assert (mail.from_name, mail.from_address, mail.from_source) == (name, address, "from")
    assert mail.notes == []


@pytest.mark.parametrize(
    ("head", "address", "source", "note"),
    [
        (
            b"Sender: Carl <carl@example.net>\r\n",
            "carl@example.net",
            "sender",
            "The sender was taken from Sender: the mail has no From header.",
        ),
        (
            b"From: Nobody\r\nReply-To: <r@example.net>\r\n",
            "r@example.net",
            "reply-to",
            "The sender was taken from Reply-To: the From header (Nobody) names no address.",
        ),
        (
            b"From: <>\r\nReturn-Path: <p@example.net>\r\n",
            "p@example.net",
            "return-path",
            "The sender was taken from Return-Path: the From header (<>) names no address.",
        ),
        # Sender comes before Reply-To, Reply-To before Return-Path.
        (
            b"Return-Path: <p@example.net>\r\nReply-To: r@example.net\r\nSender: s@example.net\r\n",
            "s@example.net",
            "sender",
            "The sender was taken from Sender: the mail has no From header.",
        ),
        # A From lost behind a line that ends the header block early.
        (
            b"Reply-To: Sofia <sofia@example.net>\r\nnot a header line\r\n"
            b"From: Sofia <sofia@example.net>\r\n",
            "sofia@example.net",
            "reply-to",
            "The sender was taken from Reply-To: the mail has no From header.",
        ),
    ],
)
def test_without_a_readable_from_the_sender_comes_from_the_next_header(
    head: bytes, address: str, source: str, note: str
) -> None:
    mail = parse(head + b"Subject: s\r\n\r\nbody\r\n")
    assert (mail.from_address, mail.from_source) == (address, source)
    assert mail.notes == [note]


def test_a_mail_naming_no_sender_anywhere_has_none() -> None:
    mail = parse(b"From: Ann <ann at example.com>\r\nReturn-Path: <>\r\nSubject: s\r\n\r\nbody\r\n")
    assert (mail.from_name, mail.from_address, mail.from_source, mail.notes) == ("", "", "", [])


def test_html_only_mail_reads_a_blockquote_as_quoted_lines():
    # As a text client quotes, so quote stripping tells answers between the quotes apart.
    html = (
        "<div>Yes.</div><blockquote><p>Did it work?</p><blockquote>First<br>Second</blockquote></blockquote>"
        "<div>Thanks &gt; all</div>" + "<blockquote>" * 20 + "deep" + "</blockquote>" * 20 + "<div>End.</div>"
    )
    raw = (
        "From: ann@example.com\nSubject: x\nMIME-Version: 1.0\n"
        f"Content-Type: text/html; charset=utf-8\n\n{html}"
    ).encode()
    assert parse(raw).text_body == (
        "Yes.\n\n> Did it work?\n\n>> First\n>> Second\n\nThanks > all\n\n>>>>>>>> deep\n\nEnd."
    )


def html_only(html: str) -> bytes:
    return (
        "From: ann@example.com\nSubject: x\nMIME-Version: 1.0\n"
        f"Content-Type: text/html; charset=utf-8\n\n{html}"
    ).encode()


def test_html_only_mail_keeps_preformatted_lines_list_numbers_and_link_addresses():
    """A pasted router log keeps its lines, steps keep their numbers, and a link its
    address after the text (docs/mail-gateway.md, "HTML-only mail")."""
    html = (
        "<p>The router\nsays:</p><pre>\nWAN down\n  PPPoE timeout\r\nretry 3</pre>"
        "<ol><li>Unplug it</li><li>Wait<ul><li>ten seconds</li></ul></li><li>Plug it</li></ol>"
        '<blockquote><pre>old\nlog</pre></blockquote><p>See <a href="https://speedtest.net/result/123">my'
        ' result</a>, <a href="https://speedtest.net/">speedtest.net</a>, <a href="mailto:ana@example.com">'
        'ana@example.com</a>, <a href="javascript:alert(1)">this</a>, <a href="/faq">the FAQ</a>,'
        ' <a href="https://x.example/?a=1&amp;b=2">&nbsp;<img src="logo.png"></a>and'
        ' <a href="https://x.example/"><table><tr><td>a whole</td><td>cell</td></tr></table></a></p>'
        '<p lang="es" title="t">Gracias</p>'
    )
    assert parse(html_only(html)).text_body == (
        "The router says:\n\nWAN down\n  PPPoE timeout\nretry 3\n\n"
        "1. Unplug it\n\n2. Wait\n\n- ten seconds\n\n3. Plug it\n\n> old\n> log\n\n"
        "See my result (https://speedtest.net/result/123), speedtest.net, ana@example.com, this,"
        " the FAQ, and\n\na whole cell\n\nGracias"
    )


def test_html_only_mail_shows_a_quoted_link_s_address_once():
    """A quoted line that is a link whose text is its address: the quote mark is
    not part of the text compared (docs/mail-gateway.md, "HTML-only mail")."""
    html = (
        '<blockquote><p><a href="https://status.isp.example/incident/77">'
        "https://status.isp.example/incident/77</a></p></blockquote><p>Still no line.</p>"
    )
    assert parse(html_only(html)).text_body == "> https://status.isp.example/incident/77\n\nStill no line."


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ('<ol start="3"><li>Reboot</li><li>Call</li></ol>', "3. Reboot\n\n4. Call"),
        ('<ol><li>One</li><li value="7">Seven</li><li>Eight</li></ol>', "1. One\n\n7. Seven\n\n8. Eight"),
        ("<ol reversed><li>c</li><li>b</li><li>a</li></ol>", "3. c\n\n2. b\n\n1. a"),
        # Only the list's own items count, not those of a list inside one.
        (
            "<ol reversed><li>b<ol><li>x</li><li>y</li></ol></li><li>a</li></ol>",
            "2. b\n\n1. x\n\n2. y\n\n1. a",
        ),
        ('<ol reversed start="10"><li>a</li><li value="4">b</li><li>c</li></ol>', "10. a\n\n4. b\n\n3. c"),
        ('<ol start="0" type="a"><li>a</li></ol>', "0. a"),  # the type is not shown: digits
        # Not a number of 0 to 1,000,000: as if not said.
        (
            '<ol start="-2"><li>a</li><li value="1e3">b</li><li value="1000001">c</li></ol>',
            "1. a\n\n2. b\n\n3. c",
        ),
        ('<ol start=" 5 " reversed=reversed><li value="">a</li><li>b</li></ol>', "5. a\n\n4. b"),
        ('<ol reversed start="x"><li value="">a</li><li>b</li></ol>', "2. a\n\n1. b"),
    ],
)
def test_html_only_mail_numbers_an_ordered_list_as_its_attributes_say(html, text):
    """`start`, `value` and `reversed` number the items as a browser does; the
    steps of `<ol start="3">` read 1., 2. (docs/mail-gateway.md, "HTML-only mail")."""
    assert parse(html_only(html)).text_body == text


def test_html_only_mail_marks_an_unordered_list_s_items():
    """A list of bullets reads as one in text: each item begins with "- ", as the
    ordered list's begin with their numbers, and they were paragraphs like any other
    (docs/mail-gateway.md, "HTML-only mail")."""
    html = "<p>Tried:</p><ul><li>reboot</li><li>other cable<ol><li>first</li></ol></li></ul><li>stray</li>"
    assert parse(html_only(html)).text_body == "Tried:\n\n- reboot\n\n- other cable\n\n1. first\n\nstray"


def test_html_only_mail_reads_a_carriage_return_reference_as_a_browser_shows_it():
    """`&#13;` is a space on the page (CSS treats a carriage return as one), also in
    a <pre>; it reached the text as a lone carriage return."""
    html = "<pre>a&#13;b&#13;&#10;c</pre><p>x&#13;y</p>"
    assert parse(html_only(html)).text_body == "a b\nc\n\nx y"


def test_html_only_mail_keeps_a_preformatted_block_s_lines_as_they_are():
    """A traceback or a router's table keeps its indentation, columns and blank
    lines; only spaces at a line's end go (docs/mail-gateway.md, "HTML-only mail")."""
    html = (
        "<pre>    Port   State\n    eth0\tup  \n\n\n  File &quot;x.py&quot;,&nbsp; line 1</pre>"
        "<p>Regards,   Ann</p>"
        "<blockquote><pre>  a\n    b</pre></blockquote><p>reply</p>"
    )
    assert parse(html_only(html)).text_body == (
        '    Port   State\n    eth0\tup\n\n\n  File "x.py",  line 1\n\n'
        "Regards, Ann\n\n>   a\n>     b\n\nreply"
    )


# -- fidelity: what the sender wrote is what staff read (docs/mail-gateway.md, step 1) --


def test_html_body_beside_a_list_footer_is_the_text() -> None:
    """An HTML-only message with a plain-text list footer (Mailman, antivirus) added
    after it: the message is the text, the footer follows it."""
    parsed = parse(
        multipart(
            b"Content-Type: text/html; charset=utf-8\n\n"
            b"<html><body><p>Hola, el pedido 4411 no ha llegado.</p><p>Ana</p></body></html>",
            b"Content-Type: text/plain; charset=us-ascii\nContent-Disposition: inline\n\n"
            b"____\nCompras mailing list\nhttps://lists.example.com/mailman/listinfo/compras",
        )
    )
    assert parsed.text_body == (
        "Hola, el pedido 4411 no ha llegado.\n\nAna\n\n"
        "____\nCompras mailing list\nhttps://lists.example.com/mailman/listinfo/compras"
    )
    assert parsed.html_body is not None and "4411" in parsed.html_body


def test_body_parts_add_up_in_order_and_an_alternative_gives_one_of_them() -> None:
    alternative = (
        b'Content-Type: multipart/alternative; boundary="ALT"\n\n'
        b"--ALT\nContent-Type: text/plain; charset=utf-8\n\nplain one\n"
        b"--ALT\nContent-Type: text/html; charset=utf-8\n\n<p>html one</p>\n--ALT--\n"
    )
    html_only_alternative = (
        b'Content-Type: multipart/alternative; boundary="ALT2"\n\n'
        b"--ALT2\nContent-Type: text/html; charset=utf-8\n\n<p>html two</p>\n--ALT2--\n"
    )
    parsed = parse(
        multipart(
            alternative,
            b"Content-Type: image/png; name=a.png\nContent-Disposition: inline\n\nPNG",
            b"Content-Type: text/html; charset=utf-8\n\n<p>after the image</p>",
            html_only_alternative,
            b"Content-Type: text/plain; charset=utf-8\n\nlast words",
        )
    )
    assert parsed.text_body == "plain one\n\nafter the image\n\nhtml two\n\nlast words"
    assert [a.filename for a in parsed.attachments] == ["a.png"]


def test_a_plain_placeholder_for_the_html_gives_way_to_the_html_text() -> None:
    """A plain alternative that is short and says something else than the HTML
    (the placeholder of some mailers) is not the text; a short real one is."""
    placeholder = parse(
        multipart(
            b"Content-Type: text/plain; charset=utf-8\n\n"
            b"To view this message, please use an HTML-capable mail client.",
            b"Content-Type: text/html; charset=utf-8\n\n"
            b"<p>Mi router no funciona desde el lunes. Cliente 12345.</p>",
            subtype="alternative",
        )
    )
    assert placeholder.text_body == "Mi router no funciona desde el lunes. Cliente 12345."
    short = parse(
        multipart(
            b"Content-Type: text/plain; charset=utf-8\n\nS\xc3\xad, gracias.\n\nAna",
            b"Content-Type: text/html; charset=utf-8\n\n<div>S\xc3\xad, gracias.</div>"
            b"<div>Ana L\xc3\xb3pez<br>Departamento de compras<br>Tel. 600 123 456</div>",
            subtype="alternative",
        )
    )
    assert short.text_body == "Sí, gracias.\n\nAna"


def test_alternative_nested_under_its_parents_boundary_still_gives_one_text() -> None:
    """A reused boundary flattens the alternative: its parts read as siblings after an
    empty multipart/alternative (Outlook for Mac); the text is not said twice."""
    parsed = parse(
        multipart(
            b"Content-Type: multipart/alternative; boundary=BOUND\n",
            b"Content-Type: text/plain; charset=utf-8\n\n--Sent from my iPhone",
            b"Content-Type: text/html; charset=utf-8\n\n<div>--Sent from my iPhone</div>",
            b"Content-Type: application/zip; name=a.zip\n\nPK",
        )
    )
    assert parsed.text_body == "--Sent from my iPhone"
    assert [a.filename for a in parsed.attachments] == ["a.zip"]


FLATTENED = b"Content-Type: multipart/alternative; boundary=BOUND\n"


def plain_part(text: bytes, extra: bytes = b"") -> bytes:
    return b"Content-Type: text/plain; charset=utf-8\n" + extra + b"\n" + text


def html_part(markup: bytes) -> bytes:
    return b"Content-Type: text/html; charset=utf-8\n\n" + markup


@pytest.mark.parametrize(
    ("parts", "text"),
    [
        ([plain_part(b"Hello"), html_part(b"<p>Hello</p>"), plain_part(b"More text")], "Hello\n\nMore text"),
        (
            [
                plain_part(b"Hello"),
                html_part(b"<p>Hello</p>"),
                plain_part(b"More text", b"Content-Disposition: inline\n"),
            ],
            "Hello\n\nMore text",
        ),
        (
            [plain_part(b"Hello"), html_part(b"<p>Hello</p>"), html_part(b"<p>More text</p>")],
            "Hello\n\nMore text",
        ),
        ([html_part(b"<p>Hello</p>"), plain_part(b"Hello"), plain_part(b"More text")], "Hello\n\nMore text"),
        ([plain_part(b"Hello"), plain_part(b"More text")], "Hello\n\nMore text"),
        (
            [plain_part(b"Hello"), html_part(b"<p>Hello</p>"), plain_part(b"___\nCompras mailing list")],
            "Hello\n\n___\nCompras mailing list",
        ),
    ],
    ids=["plain", "inline-plain", "html", "html-first", "plain-only", "list-footer"],
)
def test_text_after_a_flattened_alternative_is_kept(parts: list[bytes], text: str) -> None:
    """A flattened alternative holds each version once: the body part that repeats a
    type is the mail's next text, not another alternative (it was lost, or the
    alternative's own text gave way to it)."""
    assert parse(multipart(FLATTENED, *parts)).text_body == text


ENCLOSED = (
    b"From: Bob Customer <bob@example.org>\nTo: ann@example.com\n"
    b"Date: Mon, 2 Nov 2026 10:00:00 +0100\nSubject: =?utf-8?q?Pedido_4411_no_lleg=C3=B3?=\n"
    b"Content-Type: text/plain; charset=utf-8\n\nEl pedido 4411 no ha llegado.\n\nBob\n"
)
ENCLOSED_TEXT = (
    "From: Bob Customer <bob@example.org>\nDate: Mon, 2 Nov 2026 10:00:00 +0100\n"
    "Subject: Pedido 4411 no lleg\u00f3\n\nEl pedido 4411 no ha llegado.\n\nBob"
)


def test_a_mail_that_only_forwards_a_message_reads_as_that_message() -> None:
    """Forward as attachment: no text of its own, so its text is the enclosed
    message's, after a short header block; the message stays an attachment."""
    attached = parse(
        multipart(
            plain_part(b"\n"),
            b'Content-Type: message/rfc822\nContent-Disposition: attachment; filename="Pedido.eml"\n\n'
            + ENCLOSED,
        )
    )
    assert attached.text_body == ENCLOSED_TEXT
    assert [(a.filename, a.content_type) for a in attached.attachments] == [("Pedido.eml", "message/rfc822")]
    whole = parse(mail("From: a@example.com\nSubject: Fwd\nContent-Type: message/rfc822", ENCLOSED))
    assert whole.text_body == ENCLOSED_TEXT
    assert [a.content_type for a in whole.attachments] == ["message/rfc822"]


def test_a_forwarded_message_reads_as_its_html_or_its_own_forward_and_nothing_else() -> None:
    """The enclosed message's text is read as the mail's would be (its HTML as text,
    its own enclosed message when it has no text); its files stay in the .eml."""
    html_only = (
        b'From: bob@example.org\nSubject: Hi\nContent-Type: multipart/mixed; boundary="IN"\n\n'
        b"--IN\nContent-Type: text/html; charset=utf-8\n\n<p>Mi router no funciona.</p>\n"
        b"--IN\nContent-Type: application/pdf; name=f.pdf\n\n%PDF\n--IN--\n"
    )
    parsed = parse(multipart(b"Content-Type: message/rfc822\n\n" + html_only))
    assert parsed.text_body == "From: bob@example.org\nSubject: Hi\n\nMi router no funciona."
    assert [a.content_type for a in parsed.attachments] == ["message/rfc822"]
    twice = parse(
        multipart(
            b"Content-Type: message/rfc822\n\nFrom: c@example.com\nContent-Type: message/rfc822\n\n"
            + ENCLOSED
        )
    )
    assert twice.text_body == "From: c@example.com\n\n" + ENCLOSED_TEXT
    own_text = parse(multipart(plain_part(b"See below."), b"Content-Type: message/rfc822\n\n" + ENCLOSED))
    assert own_text.text_body == "See below."


@pytest.mark.parametrize("encoding", ["base64", "quoted-printable"])
def test_a_forwarded_message_sent_with_a_transfer_encoding_reads_decoded(encoding: str) -> None:
    """RFC 2046 §5.2.1 allows a message/rfc822 no base64 or quoted-printable, yet
    some servers send it so: its text is read decoded, not as base64; each read
    again counts in MAX_MIME_PARTS, and a cap met keeps the messages read before it."""
    data = base64.encodebytes(ENCLOSED) if encoding == "base64" else quopri.encodestring(ENCLOSED)
    part = f"Content-Type: message/rfc822\nContent-Transfer-Encoding: {encoding}\n\n".encode() + data
    assert parse(multipart(part)).text_body == ENCLOSED_TEXT
    capped = parse(multipart(part, part, part), dataclasses.replace(DEFAULT_LIMITS, mime_parts=8))
    assert capped.text_body == ENCLOSED_TEXT and capped.over_limit is None
    assert capped.notes == [
        "The enclosed messages were read as text up to a cap: more than MAX_MIME_PARTS (8) MIME parts."
    ]


@pytest.mark.parametrize("encoding", ["base64", "quoted-printable"])
def test_a_forward_of_a_forward_both_sent_with_a_transfer_encoding_reads_the_innermost_text(
    encoding: str,
) -> None:
    """Each enclosure decoded is read again within the mail's budget for reading
    enclosed messages again; it was the mail's own size, the first level's decoded
    text used nearly all of it and the innermost message (2 KB of text) was left out
    with no note."""
    innermost = ENCLOSED + b"x" * 2000 + b"\n"

    def forward(sender: bytes, enclosed: bytes) -> bytes:
        data = base64.encodebytes(enclosed) if encoding == "base64" else quopri.encodestring(enclosed)
        header = f"Content-Type: message/rfc822\nContent-Transfer-Encoding: {encoding}\n\n".encode()
        return multipart(plain_part(b"\n"), header + data).replace(b"a@example.com", sender, 1)

    middle = forward(b"carla@example.org", innermost).replace(b"BOUND", b"MIDDLE")  # its own boundary
    parsed = parse(forward(b"ann@example.com", middle))
    assert "El pedido 4411 no ha llegado." in parsed.text_body, parsed.text_body
    assert parsed.notes == []


def test_an_enclosed_message_not_read_again_for_the_budget_says_so() -> None:
    """Quoted-printable keeps plain text its size, so each level of a chain of such
    forwards is read again at nearly the mail's size: the levels the budget for
    reading enclosed messages again has no room for are left out of the text with
    a note to staff."""
    enclosed = b"From: bob@example.org\nSubject: Pedido\n\nINNERMOST\n" + b"word\n" * 400
    header = b"From: c@example.com\nContent-Type: message/rfc822\nContent-Transfer-Encoding: quoted-printable"
    for _ in range(6):
        enclosed = header + b"\n\n" + quopri.encodestring(enclosed)
    parsed = parse(b"Subject: Fwd\n" + enclosed)  # the outermost forward is the mail
    assert "INNERMOST" not in parsed.text_body and parsed.text_body.startswith("From: c@example.com")
    assert parsed.notes == [
        "An enclosed message was not read as text: the mail's budget for reading enclosed"
        " messages again (three times its size) was spent. It is kept as an attachment."
    ]


@pytest.mark.parametrize("pad", [b"", b"x", b"xy", b"xyz"])
def test_a_forwarded_message_labelled_base64_but_written_plain_is_kept_as_written(pad: bytes) -> None:
    """A plain message under `Content-Transfer-Encoding: base64` (its fields read as a
    header, which base64 never is, and not strict base64) is kept and read as it came,
    named after its Subject; it was decoded into bytes of no meaning."""
    enclosed = ENCLOSED.replace(b"llegado.", b"llegado" + pad + b".")
    header = b"Content-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\n"
    parsed = parse(multipart(header + enclosed))
    assert [(a.filename, a.data) for a in parsed.attachments] == [("Pedido 4411 no lleg\u00f3.eml", enclosed)]
    assert parsed.text_body == ENCLOSED_TEXT.replace("llegado.", "llegado" + pad.decode() + ".")


# A Received line longer than a quoted-printable line: its encoder breaks it with a soft
# line break ("=" at the end), which the email package reads as the end of a header.
RECEIVED = (
    b"Received: from mail.example.org (mail.example.org [192.0.2.7]) by mx.example.com with ESMTPS id 4411;\n"
    b"\tMon, 2 Nov 2026 10:00:01 +0100\n"
)


@pytest.mark.parametrize("encoding", ["base64", "quoted-printable"])
def test_a_forwarded_message_sent_with_a_transfer_encoding_is_kept_decoded_under_its_subject(
    encoding: str,
) -> None:
    """The .eml of an enclosed message sent base64 or quoted-printable held that text
    itself (base64 lines after a blank line: no mail client opens it as a message),
    named attachment-1.eml or after the still encoded Subject; it holds the message
    as it was enclosed, named after its Subject as any enclosed message is."""
    enclosed = RECEIVED + ENCLOSED
    data = base64.encodebytes(enclosed) if encoding == "base64" else quopri.encodestring(enclosed)
    header = f"Content-Type: message/rfc822\nContent-Transfer-Encoding: {encoding}"
    kept = [("Pedido 4411 no lleg\u00f3.eml", "message/rfc822", enclosed)]
    for raw in (multipart(header.encode() + b"\n\n" + data), mail(f"From: a@example.com\n{header}", data)):
        parsed = parse(raw)
        assert [(a.filename, a.content_type, a.data) for a in parsed.attachments] == kept
        assert parsed.text_body == ENCLOSED_TEXT  # the soft line break ended its header


def test_a_plain_and_an_html_copy_of_one_text_read_once() -> None:
    """Some clients put both copies in a multipart/mixed, not an alternative: the
    part that says word for word what the part before it said is not said again."""
    parsed = parse(
        multipart(
            plain_part(b"Hola,\nel pedido 4411 no ha llegado.\n\nAna"),
            b"Content-Type: image/png; name=a.png\n\nPNG",
            html_part(b"<div>Hola,<br>el pedido 4411 no ha llegado.</div><div><br></div><div>Ana</div>"),
            html_part(b"<p>Ana L\xc3\xb3pez</p>"),
        )
    )
    assert parsed.text_body == "Hola,\nel pedido 4411 no ha llegado.\n\nAna\n\nAna López"


@pytest.mark.parametrize(
    "text",
    [
        "Gracias, José",
        "Hola, me llamo José y tengo un problema con la facturación de este mes: me han "
        "cobrado dos veces el recibo. ¿Pueden revisarlo? Gracias.",
        "Año",
        "Nombre: Ana\nMensaje: Quiero darme de baja.\nCiudad: Cádiz",
        "Précisément, ça marche pas",
        "€50, “ok” – don’t",
        "Grüße aus München",
    ],
)
def test_content_type_without_charset_reads_latin_text_as_windows_1252(text: str) -> None:
    """RFC 2045 §5.2: no charset parameter is us-ascii; 8-bit text that reads as
    ordinary Western text in windows-1252 is read so (detection read 'Josй', 'żPueden')."""
    raw = mail(
        "From: a@example.com\nMIME-Version: 1.0\nContent-Type: text/plain\nContent-Transfer-Encoding: 8bit",
        text.encode("cp1252") + b"\n",
    ).replace(b"MIME-Version", b"Subject: " + "Consulta de José".encode("cp1252") + b"\nMIME-Version")
    parsed = parse(raw)
    assert parsed.text_body == text
    assert parsed.subject == "Consulta de José"


@pytest.mark.parametrize(
    ("text", "codec"),
    [
        ("Привет, как дела? Всё хорошо, спасибо.", "cp1251"),
        ("Zażółć gęślą jaźń", "iso8859-2"),
        ("Zażółć gęślą jaźń, proszę o pomoc z fakturą.", "cp1250"),
        ("您好，我的发票有问题，请帮忙查看。", "gbk"),
    ],
)
def test_content_type_without_charset_still_detects_what_is_not_western(text: str, codec: str) -> None:
    assert body_in(None, text.encode(codec)).text_body == text


def test_format_flowed_is_unflowed() -> None:
    """RFC 3676: a line ending in a space continues on the next; delsp=yes drops that
    space; a leading space was stuffed; quotes and the signature line stay lines."""
    delsp = parse(
        mail(
            "From: a@example.com\nContent-Type: text/plain; charset=utf-8; format=flowed; delsp=yes",
            "お世話になっております。再起動しまし \nたが、まだ直りません。\n"
            "Mi contraseña es supercalifragilisticoexpialido \nso123 y no funciona.\n".encode(),
        )
    )
    assert delsp.text_body == (
        "お世話になっております。再起動しましたが、まだ直りません。\n"
        "Mi contraseña es supercalifragilisticoexpialidoso123 y no funciona."
    )
    flowed = parse(
        mail(
            'From: a@example.com\nContent-Type: text/plain; charset="utf-8"; Format="Flowed"',
            b"Esta es una linea muy \nlarga que fluye.\n From the start\n\n"
            b"> quoted and \n> flowed\n>> deeper\n-- \nAna \nLopez\n",
        )
    )
    assert flowed.text_body == (
        "Esta es una linea muy larga que fluye.\nFrom the start\n\n"
        "> quoted and flowed\n>> deeper\n-- \nAna Lopez"
    )
    fixed = parse(mail("From: a@example.com\nContent-Type: text/plain; charset=utf-8", b"one \ntwo\n"))
    assert fixed.text_body == "one \ntwo"


def test_a_flowed_line_before_the_signature_separator_does_not_swallow_it() -> None:
    """RFC 3676 §4.3: the "-- " line is never joined, so a flowed line before it
    ends there (the signature read as part of the text)."""
    parsed = parse(
        mail(
            "From: a@example.com\nContent-Type: text/plain; charset=utf-8; format=flowed",
            b"El router no funciona desde el \nlunes. Gracias \n-- \nAna Lopez\n> cita \n> -- \n> Bob\n",
        )
    )
    assert parsed.text_body == (
        "El router no funciona desde el lunes. Gracias \n-- \nAna Lopez\n> cita \n> -- \n> Bob"
    )


def test_slashes_inside_a_filename_are_kept_apart_from_paths() -> None:
    pdf = b"Content-Type: application/pdf\nContent-Disposition: attachment; "
    parsed = parse(
        multipart(
            b"Content-Type: text/plain\n\nfacturas",
            pdf + b'filename="Factura 01/2026.pdf"\n\n%PDF',
            pdf + b'filename="Factura 02/2026.pdf"\n\n%PDF',
            pdf + b'filename="Informe A\\\\B.pdf"\n\n%PDF',
            pdf + b'filename="/home/ana/factura.pdf"\n\n%PDF',
            pdf + b'filename="C:\\\\Users\\\\ana\\\\Desktop\\\\oferta.pdf"\n\n%PDF',
            pdf + b'filename="docs/../../etc/passwd"\n\n%PDF',
            pdf + b'filename="./notas.pdf"\n\n%PDF',
        )
    )
    names = [attachment.filename for attachment in parsed.attachments]
    assert names == [
        "Factura 01_2026.pdf",
        "Factura 02_2026.pdf",
        "Informe A_B.pdf",
        "factura.pdf",
        "oferta.pdf",
        "passwd",
        "notas.pdf",
    ]
    for name in names:
        assert_safe_filename(name)


def test_encoded_words_in_one_charset_spelled_two_ways_join_and_names_keep_inner_quotes() -> None:
    parsed = parse(
        mail(
            "From: =?utf-8?q?Ana_=22La_Jefa=22?= <ana@example.com>\n"
            "Cc: 'Bob' <bob@example.com>, \"O'Brien\" <ob@example.com>\n"
            "Subject: =?utf-8?q?Caf=C3?= =?UTF8?q?=A9?="
        )
    )
    assert parsed.subject == "Café"
    assert parsed.from_name == 'Ana "La Jefa"'
    assert parsed.cc == [("Bob", "bob@example.com"), ("O'Brien", "ob@example.com")]
    liberal = parse(b'From: "Smith, Ann ann@example.com\nSubject: s\n\nbody\n')
    assert (liberal.from_name, liberal.from_address) == ("Smith, Ann", "ann@example.com")
