"""Raw bytes → InboundMail. Never raises on junk (docs/mail-gateway.md).

The MIME tree (RFC 2045/2046) is the standard library's compat32 `Message`, the
tree mail-parser itself builds; mail-parser's own parse of it is not run, because
nothing of it was used and it cost half the time of reading a mail. Everything
that depends on a charset is decoded here through `helpdesk.inbound.charsets` rather
than taken from mail-parser's fields: mail-parser decodes with Python's codec for
the literal label (`gb2312` fails on GBK text) and falls back to U+FFFD, and its
header fields turn into lists when a header repeats. Its address grammar
(`get_addresses`) is used: it recovers the display-name tricks real mail carries.
Encoded words are RFC 2047, parameters RFC 2231. Bytes that are not mail at all
come back with `parse_error` set and the raw bytes kept, for the quarantine.

The standard library's reader takes a body line by line, which made a 500 KB
attachment cost 11 ms; each long base64 body is handed to it as one placeholder line
instead and put back into the tree it builds (`_read_tree`: the same tree, or the
mail is read again line by line), and decoded in one pass (`_decode_base64`).

Every byte is the sender's choice, so the work is bounded (docs/mail-gateway.md): the MIME
reader stops at the part and nesting caps of `helpdesk.inbound.limits`, the header is
measured before it is read, the search for base64 bodies stops after twice the
mail's bytes, no regular expression here can backtrack super-linearly, and control
characters never leave header text (PostgreSQL refuses NUL, and a CR or LF in a
name would break the mail we send back). A mail over a structural cap comes back
with `over_limit` set and its header only.
"""

from __future__ import annotations

import codecs
import html
import logging
import mimetypes
import re
import unicodedata
from base64 import b64decode
from binascii import Error as Base64Error
from binascii import a2b_base64, a2b_qp
from collections.abc import Callable
from dataclasses import dataclass, field
from email.errors import MessageError, MissingHeaderBodySeparatorDefect, StartBoundaryNotFoundDefect
from email.feedparser import BytesFeedParser, FeedParser
from email.message import Message
from email.parser import BytesParser
from email.policy import Compat32, compat32
from email.utils import getaddresses
from itertools import islice, pairwise
from typing import Any

import nh3
from mailparser.exceptions import MailParserError
from mailparser.utils import as_string_safe, get_addresses

from helpdesk import addresses, html_depth, inputs
from helpdesk.inbound import charsets
from helpdesk.inbound.limits import DEFAULT as DEFAULT_LIMITS
from helpdesk.inbound.limits import MailLimits
from helpdesk.inbound.params import LinearParams
from helpdesk.vocabulary import SENDER_SOURCES

log = logging.getLogger(__name__)


@dataclass
class Attachment:
    filename: str  # already safe: no path parts, no control characters, never empty
    content_type: str
    data: bytes
    content_id: str | None = None  # without <>; set for inline cid: images
    is_inline: bool = False


@dataclass
class InboundMail:
    raw: bytes
    message_id: str | None  # normalized: no <>, no whitespace; None when missing
    in_reply_to: list[str] = field(default_factory=list)  # normalized ids
    references: list[str] = field(default_factory=list)  # normalized ids, in order
    subject: str = ""
    # The sender, in `helpdesk.addresses`' normal form; "" when no header names one.
    from_address: str = ""
    from_name: str = ""
    from_source: str = ""  # where it was read (vocabulary.SENDER_SOURCES), or ""
    to: list[tuple[str, str]] = field(default_factory=list)  # (name, lower-case address)
    cc: list[tuple[str, str]] = field(default_factory=list)
    # (lower-case name, decoded value), in order, duplicates kept
    headers: list[tuple[str, str]] = field(default_factory=list)
    # The same fields as mail servers read them (`header_as_servers_read`): unfolded,
    # nothing decoded or normalised (8-bit bytes as surrogate escapes), for values
    # whose bytes matter (Authentication-Results).
    raw_headers: list[tuple[str, str]] = field(default_factory=list)
    # Why the header may not be the one the receiving mail server read, when it may
    # not (a bare CR; a line a server ends the header at and the email package reads
    # past), or its From not the one the server's checks were about (two From fields,
    # or two addresses in one): what that server wrote is then not taken (`authentication`).
    header_ambiguity: str | None = None
    content_type: str = "text/plain"  # top-level, lower-case
    text_body: str = ""
    html_body: str | None = None  # as sent (NOT sanitized here)
    attachments: list[Attachment] = field(default_factory=list)
    parse_error: str | None = None  # set when the bytes could not be read as mail at all
    over_limit: str | None = None  # a structural cap it exceeds: only its header was read
    # The header itself is over MAX_HEADER_FIELDS or MAX_HEADER_BYTES: only its first
    # fields were read, and a From further down was never seen (docs/security.md).
    header_read_in_part: bool = False
    notes: list[str] = field(default_factory=list)  # what was left out, for the people reading it

    def header(self, name: str) -> str | None:
        """First value of a header (case-insensitive name), or None."""
        name = name.lower()
        return next((value for key, value in self.headers if key == name), None)

    def header_all(self, name: str) -> list[str]:
        name = name.lower()
        return [value for key, value in self.headers if key == name]


MAX_FILENAME_LENGTH = 150
_FILENAME_SCAN = 4 * MAX_FILENAME_LENGTH  # characters of a name `safe_filename` reads
_FILENAME_SCAN_BYTES = 4 * _FILENAME_SCAN  # as many characters in any charset
# Message-IDs threading looks at: RFC 5322 §3.6.4 lets References grow with every
# answer, and a thread keeps its first id and its newest ones. Longer ids are not
# ids (RFC 5322's line limit is 998).
MAX_THREAD_IDS = 50
MAX_ID_LENGTH = 998
# An address field is read up to this many characters (about 400 addresses as people
# write them, 2,400 of the shortest), all its repetitions together: mail-parser's
# address grammar costs some 20 µs an address, and only MAX_CC_PARTICIPANTS of them
# are kept anyway. It was 32 KiB until attachments became cheap to read (issue 19):
# a field of addresses then cost 30 times ordinary mail of its size (the goal: 20).
MAX_ADDRESS_CHARS = 12 * 1024
# Who sent a mail, where From names nobody (docs/mail-gateway.md): these headers in this
# order, then the envelope (`vocabulary.SENDER_SOURCES`).
SENDER_HEADERS = ("from", "sender", "reply-to", "return-path")
# A sender header read liberally is searched this many address-like words deep: a
# real one names one or two, and a flood of invalid ones costs nothing more.
MAX_SENDER_CANDIDATES = 20
# Texts of one mail that may go to charset detection (`charsets.detection_budget`),
# each some 0.3 to 6 ms: raw 8-bit header values, filenames and body parts whose
# charset is unknown or wrong. Real mail needs one or two (the corpus: at most one);
# a mail of a thousand raw 8-bit fields or 500 such filenames took 0.3 to 1.3 s.
MAX_CHARSET_DETECTIONS = 20

_OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # Outlook .msg and other OLE files
_HEADER_LINE = re.compile(rb"[!-9;-~]+[ \t]*:")
_BOUNDARY_LINE = re.compile(rb"^--([^\s\"]{1,200}?)(?:--)?[ \t]*\r?$", re.MULTILINE)
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([BbQq])\?([^?]*)\?=")
_QP_ESCAPE = re.compile(rb"=([0-9A-Fa-f]{2})")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_LINE_BREAK = re.compile(r"\r\n?")
_WHITESPACE = re.compile(r"\s+")
_ANGLE_ID = re.compile(r"<([^<>]*)>")
# The words of an address field that the grammar could not read: what lies between
# the characters that delimit addresses.
_ADDRESS_WORD = re.compile(r"[^\s<>(),;:\"]+")
# `[^<>]`: a scan that fails stops at the next tag, so failing scans never overlap
# (a plain `[^>]*` rescans to the end of the text from every `<meta`).
_META_CHARSET = re.compile(rb"<meta[^<>]+charset\s*=\s*[\"']?\s*([A-Za-z0-9._:-]+)", re.IGNORECASE)
_UNSAFE_FILENAME_CHARS = re.compile(r'[<>:"|?*]')
_PATH_SEPARATORS = re.compile(r"[/\\]")
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]")
_ID_SEPARATORS = re.compile(r"[\s,]+")
_BLANK_LINE = re.compile(rb"\n\r?\n")
# A header field's first line as mail servers recognise one (Postfix's is_header): a
# name of visible characters other than the colon, blanks allowed before the colon.
_SERVER_FIELD = re.compile(rb"([^\x00-\x20\x7f:]+)[ \t]*:")
_BARE_CR = re.compile(rb"\r(?!\n)")
# The standard library's MIME reader takes a body line by line (a boundary test and
# a list append each, then a regular-expression search over the whole body for its
# last line break): 20 ms for a 1 MB attachment. A long base64 body is handed to
# it as one placeholder line instead (`_base64_runs`, `_read_tree`).
_BASE64_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
# Where one may start: after a blank line, a line beginning as base64 lines do
# (encoders write 60 to 76 characters a line), so that prose is passed over in C.
_BASE64_START = re.compile(rb"\n\r?\n(?=[A-Za-z0-9+/]{40})")
_LONG_RUN = 2048  # bytes; shorter bodies are left to the line-by-line reading
_PROBE_LINES = 16  # lines a candidate run is first measured over
_RUN_COST = 1024  # bytes charged for each candidate, against a mail made of candidates
# No character of mail read as ASCII with surrogate escapes is U+E000 or U+E001.
_PLACEHOLDER = re.compile("\ue000([0-9]{1,9})\ue001")
_BLANK_LINES = re.compile(r"\n{3,}")
# C0 and C1 controls (tab and line breaks included: header text is one line) and
# lone surrogates.
_CONTROLS: dict[int, str | None] = dict.fromkeys(
    [*range(0x00, 0x20), *range(0x7F, 0xA0), *range(0xD800, 0xE000)]
)
_CONTROLS[0x09] = " "
# Attachment columns (`helpdesk.models.Attachment`): a longer type or Content-ID is
# no real one.
_MAX_TYPE_LENGTH = 255
# HTML-only mail is read as text by keeping only the layout tags (see _html_to_text)
# and replacing each by what it means for the layout.
_BLOCK_TAGS = (
    "p",
    "div",
    "tr",
    "li",
    "ul",
    "ol",
    "table",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "blockquote",
    "hr",
    "pre",
    "section",
    "article",
    "header",
    "footer",
    "dd",
    "dt",
    "dl",
)
_TAG_TEXT = {
    "br": "\n",
    **{tag: "\n\n" for tag in _BLOCK_TAGS},
    **{"/" + tag: "\n\n" for tag in _BLOCK_TAGS},
    "td": "",
    "th": "",
    "/td": " ",
    "/th": " ",
}
_INVISIBLE_TAGS = {"script", "style", "head", "title"}
# A plain alternative this short may be a placeholder for the HTML one ("To view this
# message, please use an HTML-capable mail client"): `_Content._unless_placeholder`.
_PLACEHOLDER_CHARS = 200
_BODY_TYPES = frozenset(("text/plain", "text/html"))
_ENCLOSED_TYPES = ("message/rfc822", "message/global")
# What base64 skips, to count the letters of a text that ends one letter into a group.
_NOT_BASE64_LETTERS = bytes(
    set(range(256)) - set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
)
# Enclosed messages sent base64 or quoted-printable are decoded and read again, up
# to this many times the mail's size in all (docs/mail-gateway.md, step 1). Each one
# decodes to no more than its encoded text, which lies in the message enclosing it,
# so one level of them is at most the mail's size: base64 shrinks each level to 3/4,
# so a forward of a forward of base64 to any depth sums under three times, and
# quoted-printable, which keeps plain text its size, reads three levels of it.
_ENCLOSED_REREADS = 3
ENCLOSED_NOT_READ = (
    "An enclosed message was not read as text: the mail's budget for reading enclosed"
    " messages again (three times its size) was spent. It is kept as an attachment."
)
_ENCLOSED_FIELD_CHARS = 998  # of an enclosed From, Date or Subject shown (RFC 5322's line)
_WORD = re.compile(r"\w+")
# A tag as nh3 writes it: every `<` of the text itself is escaped, so a match can
# only start at a tag, and looks no further than its 12 characters and its at most
# two attributes kept (a link's `href`, a list's `start` and `reversed`, an item's
# `value`), each value up to its closing `"` (a `"` in it is written `&quot;`).
_CANONICAL_TAG = re.compile(r'<(/?[a-z0-9]{1,10})((?: [a-z]{1,8}="[^"]*+"){0,2}+)>')
_TAG_ATTRIBUTE = re.compile(r' ([a-z]{1,8})="([^"]*+)"')
# What nh3 keeps of each tag: nothing but these (docs/mail-gateway.md, "HTML-only mail").
_KEPT_ATTRIBUTES: dict[str, set[str]] = {
    "*": set(),
    "a": {"href"},
    "ol": {"start", "reversed"},
    "li": {"value"},
}
_LIST_NUMBER = re.compile(r"[0-9]{1,7}")
_MAX_LIST_NUMBER = 1_000_000  # a `start` or `value` past it is not read
# A link's address is written after its text (docs/mail-gateway.md, "HTML-only mail").
_LINK_SCHEMES = ("http://", "https://", "mailto:")
_LINK_TEXT_PIECES = 8  # a link whose text is the address is one piece of text
# A line in a <blockquote> begins with one ">" a level, as far as this depth: the
# text stays linear in the markup however deep the nesting.
_QUOTE_DEPTH = 8

# A header-less body whose first line happens to look like "Word: text" is not mail:
# real mail carries at least one of these.
_MAIL_HEADERS = frozenset(
    {
        "from",
        "sender",
        "to",
        "cc",
        "bcc",
        "reply-to",
        "subject",
        "date",
        "message-id",
        "in-reply-to",
        "references",
        "received",
        "return-path",
        "delivered-to",
        "mime-version",
        "envelope-to",
        "auto-submitted",
        "precedence",
        "user-agent",
        "authentication-results",
        "dkim-signature",
        "received-spf",
        "importance",
        "thread-topic",
        "thread-index",
        "errors-to",
        "organization",
    }
)
_MAIL_HEADER_PREFIXES = ("x-", "content-", "list-", "resent-", "arc-")

_EXTENSIONS = {
    "message/rfc822": ".eml",
    "message/global": ".eml",
    "message/partial": ".eml",
    "message/delivery-status": ".txt",
    "message/disposition-notification": ".txt",
    "message/rfc822-headers": ".txt",
    "text/rfc822-headers": ".txt",
    "text/plain": ".txt",
    "text/html": ".html",
    "text/calendar": ".ics",
    "application/pgp-signature": ".asc",
    "application/ms-tnef": ".dat",
    "application/octet-stream": ".bin",
}
# mail-parser's own errors and the built-in ones its code raises on broken input
# (a forwarded multipart without its start boundary gives a TypeError).
_MAILPARSER_FAILURES = (
    MailParserError,
    MessageError,
    LookupError,
    UnicodeError,
    ValueError,
    TypeError,
    AttributeError,
    IndexError,
    KeyError,
)
# The email package's own failures on broken parameters and structures (a malformed
# RFC 2231 continuation makes get_param raise TypeError).
_EMAIL_FAILURES = (MessageError, LookupError, UnicodeError, ValueError, TypeError, IndexError, AttributeError)


class _Verbatim(Compat32):
    """Writes an enclosed message's header fields as they came, never refolded.

    compat32 sends every field through `email.header.Header.encode`, which re-measures
    the line for each word: a field of many words costs the square of its length
    (80,000 words in an attached message took two minutes; docs/security.md)."""

    def _fold(self, name: str, value: Any, sanitize: bool) -> str:
        # A folded field keeps its continuation lines, with the line breaks the rest of
        # the message is written with.
        lines = str(value).replace("\r\n", "\n").replace("\r", "\n").split("\n")
        return f"{name}: {self.linesep.join(lines)}{self.linesep}"


# Re-serialise enclosed messages without refolding their headers.
_NO_REFOLD = _Verbatim()


class _NotMail(Exception):
    """The bytes cannot be read as mail: a short reason, and any text worth keeping."""

    def __init__(self, reason: str, text: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.text = text


class _OverLimit(Exception):
    """The mail exceeds a structural cap of `MailLimits`: only its header is read."""


def parse(raw: bytes, limits: MailLimits = DEFAULT_LIMITS) -> InboundMail:
    """Read any bytes as mail; never raises (unreadable mail goes to quarantine)."""
    try:
        with charsets.detection_budget(MAX_CHARSET_DETECTIONS):
            return _parse(raw, limits)
    except _NotMail as not_mail:
        return InboundMail(raw=raw, message_id=None, text_body=not_mail.text, parse_error=not_mail.reason)
    except Exception as exc:  # the safety net: a crash here would lose the mail
        log.exception("parser failure")
        return InboundMail(raw=raw, message_id=None, parse_error=f"parser failure: {type(exc).__name__}")


def _parse(raw: bytes, limits: MailLimits) -> InboundMail:
    unwrapped = _strip_wrapping(bytes(raw))
    data = _lines_of(unwrapped)
    if not data.strip():
        raise _NotMail("empty message")
    if data.startswith(_OLE2_MAGIC):
        raise _NotMail("Outlook .msg (OLE2) file, not RFC 5322 mail")
    budget = _Budget.of(limits, len(data))
    over_limit = header_cut = _header_over_limit(data, limits)
    try:
        if over_limit is not None:
            raise _OverLimit(over_limit)
        message = _read_message(data, budget)
        _require_mail_headers(message, data)
        content = _Content(_first_charset(message), budget)
        content.walk(message, parent="", in_attachment=False, depth=0)
    except _OverLimit as exc:
        over_limit = str(exc)
        message = BytesParser(policy=compat32).parsebytes(_bounded_header(data, limits), headersonly=True)
        _require_mail_headers(message, data)
        content = _Content(_first_charset(message), budget)
    except RecursionError:
        raise _NotMail("MIME structure nested too deeply") from None
    hint = content.hint
    notes: list[str] = []
    if over_limit is not None:
        notes.append(
            f"Only the header of this mail was read: {over_limit}. The whole mail is kept as it arrived."
        )
    html_body = "\n".join(html for html in content.html if html.strip()) or None
    text_body, html_left = _body_text(content.body, content.html_left, limits, notes)
    if not text_body and content.enclosed:
        text_body, _ = _enclosed_text(content, html_left, notes)

    from_values = _values(message, "from")
    from_found = _from_addresses(from_values, hint)
    from_name, from_address, from_source, sender_notes = _sender(message, hint, from_values, from_found)
    subject = _values(message, "subject")
    servers_read = header_as_servers_read(unwrapped, limits)
    return InboundMail(
        raw=raw,
        message_id=_message_id(_values(message, "message-id"), hint),
        in_reply_to=_id_list(_values(message, "in-reply-to"), hint),
        references=_id_list(_values(message, "references"), hint),
        # Shown as a line (the quarantine, the ticket): no bidirectional controls.
        subject=_collapse(inputs.without_bidi(_header_text(subject[0], hint))) if subject else "",
        from_address=from_address,
        from_name=from_name,
        from_source=from_source,
        to=_addresses(_values(message, "to"), hint, unread=True),
        cc=_addresses(_values(message, "cc"), hint, unread=True),
        headers=[
            (name.strip().lower(), _header_text(str(value), hint)) for name, value in message.raw_items()
        ],
        raw_headers=servers_read.fields,
        header_ambiguity=servers_read.ambiguity(message) or _from_ambiguity(from_values, from_found),
        content_type=_header_view(message).get_content_type().lower(),
        text_body=text_body,
        html_body=html_body,
        attachments=content.attachments,
        over_limit=over_limit,
        header_read_in_part=header_cut is not None,
        notes=sender_notes + notes,
    )


def _unwrap(data: bytes) -> bytes:
    """Strip what real senders put around a message: BOM, mbox `From ` line, CR-only lines."""
    return _lines_of(_strip_wrapping(data))


def _strip_wrapping(data: bytes) -> bytes:
    """The message without a byte-order mark, leading blank lines or mbox `From ` line."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        data = charsets.decode(data).encode("utf-8")
    stripped = data.lstrip(b" \t\r\n")
    if stripped.startswith(b"From ") and not _HEADER_LINE.match(stripped):
        stripped = stripped.partition(b"\n")[2]
        data = stripped
        stripped = data.lstrip(b" \t\r\n")
    if _HEADER_LINE.match(stripped):
        data = stripped
    return data


def _lines_of(data: bytes) -> bytes:
    """A message whose lines all end in a bare CR (old Mac files) with LF line ends."""
    if b"\n" not in data and b"\r" in data:
        return data.replace(b"\r", b"\n")
    return data


@dataclass(frozen=True)
class ServersReading:
    """The top-level header as a mail server reads it (`header_as_servers_read`)."""

    fields: list[tuple[str, str]]  # (lower-case name, raw value unfolded)
    bare_cr: bool  # a CR not followed by LF somewhere in the header block

    def ambiguity(self, message: Message) -> str | None:
        """Why `message` (the email package's reading of the same bytes) may hold
        other header fields than the server read, or None when both agree."""
        if self.bare_cr:
            return (
                "its header holds a bare CR (a carriage return without a line feed), which "
                "mail servers read as part of a line and this reader as a line break"
            )
        ours = [name.strip().lower() for name, _ in message.raw_items()]
        if ours != [name for name, _ in self.fields]:
            return (
                "its header has a line mail servers take for the start of the body "
                "(or read as a field where this reader does not)"
            )
        return None


def header_as_servers_read(data: bytes, limits: MailLimits = DEFAULT_LIMITS) -> ServersReading:
    """The top-level header fields the way mail servers and their milters read them:
    lines end at LF (a CR right before it belongs to the line end, any other CR is
    a character of the line), a line beginning with a space or tab continues the
    field above, and the header ends at the first line that is empty or is not a
    field (`name:`, blanks allowed before the colon as Postfix allows them).

    The trust in the receiving server's `Authentication-Results` rests on it
    removing the headers with its own authserv-id that came with the mail (RFC
    8601 §5), which it does on the fields as it read them; the email package reads
    some bytes into other fields (it also breaks lines at a bare CR, and reads on
    past a line such as `From x` or `:x` that a server takes for the body), and a
    header the server never saw as one was never stripped (docs/security.md).
    Bounded like the header itself: `MAX_HEADER_BYTES`, `MAX_HEADER_FIELDS`."""
    head = header_block(data)[: limits.header_bytes]
    fields: list[tuple[str, list[str]]] = []
    for line in head.split(b"\n"):
        if line.endswith(b"\r"):
            line = line[:-1]
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1][1].append(line.decode("ascii", "surrogateescape"))
            continue
        match = _SERVER_FIELD.match(line)
        if match is None or len(fields) >= limits.header_fields:
            break
        name = match.group(1).decode("ascii", "surrogateescape").lower()
        fields.append((name, [line[match.end() :].decode("ascii", "surrogateescape")]))
    return ServersReading(
        fields=[(name, "".join(parts).strip(" \t")) for name, parts in fields],
        bare_cr=_BARE_CR.search(head) is not None,
    )


def header_addresses(
    data: bytes, names: tuple[str, ...], most: int, limits: MailLimits = DEFAULT_LIMITS
) -> list[str]:
    """The addresses of raw mail's top-level header fields `names` (lower-case), every
    field of the first name before the next name's: at most `most`, from at most
    `most` field values; never raises.

    For the IMAP poller's envelope (Return-Path, Delivered-To and their kin), whose
    fields the sender can write too: the header is read as servers read it, within
    `MAX_HEADER_BYTES` and `MAX_HEADER_FIELDS` (`header_as_servers_read`), and the
    values as To is (`_addresses`: `MAX_ADDRESS_CHARS` in all, a grammar that reads
    nested comments without recursing, the standard library's recursed once per `(`
    and 1,000 of them raised RecursionError: docs/security.md; and every address of a
    list separated by ';', where the grammar reads the last alone)."""
    try:
        with charsets.detection_budget(MAX_CHARSET_DETECTIONS):
            fields = header_as_servers_read(data, limits).fields
            values = [value for name in names for field, value in fields if field == name][:most]
            found = _addresses(values, None, first=most == 1, unread=True)
            return [address for _name, address in found][:most]
    except Exception:  # the safety net, as `parse` has one: no mail may stop its reader
        log.exception("reading the addresses of %s failed", ", ".join(names))
        return []


def header_block(data: bytes) -> bytes:
    """The top-level header of raw mail, its blank line included (all of it if none)."""
    blank = _BLANK_LINE.search(data)  # stops there: a search for "\n\n" reads a CRLF mail whole
    return data[: blank.end() if blank else len(data)]


def _header_over_limit(data: bytes, limits: MailLimits) -> str | None:
    """Why the top-level header is over its caps, measured on the bytes before it is read."""
    head = header_block(data)
    if len(head) > limits.header_bytes:
        return f"header of {len(head)} bytes, more than MAX_HEADER_BYTES ({limits.header_bytes})"
    fields = head.count(b"\n") - head.count(b"\n ") - head.count(b"\n\t")
    if fields > limits.header_fields:
        return f"about {fields} header fields, more than MAX_HEADER_FIELDS ({limits.header_fields})"
    return None


def _bounded_header(data: bytes, limits: MailLimits) -> bytes:
    """The first header fields within the caps, for a mail that is read no further."""
    head = header_block(data)[: limits.header_bytes]
    kept: list[bytes] = []
    fields = 0
    for line in head.split(b"\n"):
        if not line.strip():
            break
        if line[:1] not in (b" ", b"\t"):
            fields += 1
            if fields > limits.header_fields:
                break
        kept.append(line)
    return b"\n".join(kept) + b"\n\n"


@dataclass
class _Budget:
    """What is left of one mail's caps while its MIME tree is read, broken
    multiparts read again (`_salvage_multipart`) included."""

    limits: MailLimits
    reread_bytes: int  # bytes of broken multiparts and epilogues read again: the mail's size
    enclosed_bytes: int  # bytes of decoded enclosed messages read again (`_ENCLOSED_REREADS`)
    parts: int = 0

    @classmethod
    def of(cls, limits: MailLimits, size: int) -> _Budget:
        """The budget of a mail of `size` bytes."""
        return cls(limits, size, _ENCLOSED_REREADS * size)


class _Part(LinearParams):
    """A compat32 message that knows how deep it sits, so that reading stops at the
    nesting cap instead of building (and later walking) a tree of any depth, and
    reads its parameters in linear time (`helpdesk.inbound.params`)."""

    depth = 0
    budget: _Budget
    _payload: Any  # Message's own: the body as read (str), or the list of parts

    def put_back(self, restore: Callable[[str | None], str | None]) -> None:
        """Put the bodies `_read_tree` took out back into this part's own texts."""
        if isinstance(self._payload, str):
            self._payload = restore(self._payload)
        self.preamble = restore(self.preamble)
        self.epilogue = restore(self.epilogue)

    def attach(self, payload: Message) -> None:  # type: ignore[override]
        if isinstance(payload, _Part):
            payload.depth = self.depth + 1
            if payload.depth > self.budget.limits.mime_depth:
                raise _OverLimit(
                    f"MIME parts nested deeper than MAX_MIME_DEPTH ({self.budget.limits.mime_depth})"
                )
        super().attach(payload)


def _read_tree(data: bytes, budget: _Budget) -> Message:
    """The standard library's MIME reader, stopped at the part and nesting caps.

    Each long base64 body reaches it as one placeholder line (`_base64_runs` says
    why that reads the same) and is put back into the tree it built. Should a
    placeholder not come back exactly once, the mail is read again the standard
    library's way, every line through its loop.
    """
    parts_before = budget.parts

    def new_part() -> _Part:
        budget.parts += 1
        if budget.parts > budget.limits.mime_parts:
            raise _OverLimit(f"more than MAX_MIME_PARTS ({budget.limits.mime_parts}) MIME parts")
        part = _Part()
        part.budget = budget
        return part

    runs = _base64_runs(data)
    if runs:
        text, bodies = _with_placeholders(data, runs)
        text_parser = FeedParser(new_part, policy=compat32)
        text_parser.feed(text)
        message = text_parser.close()
        if _put_back(message, bodies) == len(bodies):
            return message
        log.warning("base64 bodies not put back into the MIME tree; reading the mail line by line")
        budget.parts = parts_before
    parser = BytesFeedParser(new_part, policy=compat32)
    parser.feed(data)
    return parser.close()


def _base64_runs(data: bytes) -> list[tuple[int, int]]:
    """Where `data` holds long base64 bodies: (start, end) of runs of whole lines, each
    right after a blank line, every line nothing but base64 characters and all but the
    last one as long as the first.

    Such a run reads the same wherever it stands in a MIME tree: none of its lines is
    a header field, a continuation, a blank line, a boundary or "From ", so a header
    being read ends at its first line, and every line of it is then body, preamble or
    epilogue text, kept whole. A placeholder line is all of these things too. The
    search stops after looking at twice the mail's bytes (every candidate charged at
    least `_RUN_COST`), so a mail built to keep it busy costs no more than that.
    """
    runs: list[tuple[int, int]] = []
    allowance = 2 * len(data)
    position = 0
    dash = 0  # the next "-": no base64 line holds one, every boundary line does
    while allowance > 0 and len(data) - position > _LONG_RUN:
        blank = _BASE64_START.search(data, position)
        if blank is None:
            break
        start = blank.end()
        if dash < start:
            dash = data.find(b"-", start)
            dash = len(data) if dash == -1 else dash
        end, examined = _base64_run(data, start, dash)
        allowance -= start - position + examined + _RUN_COST
        if end - start >= _LONG_RUN:
            runs.append((start, end))
        position = max(start, end) - 1  # the line break a blank line after it begins with
    return runs


def _base64_run(data: bytes, start: int, limit: int) -> tuple[int, int]:
    """The end of the run of base64 lines from `start` up to `limit` (`start` itself
    when there is none), and about how many bytes were looked at to find it."""
    newline = data.find(b"\n", start, limit)
    if newline == -1:
        return start, 0
    ending = b"\r\n" if data[newline - 1 : newline] == b"\r" else b"\n"
    width = newline + 1 - start
    if width <= len(ending) or data[start : newline + 1].translate(None, _BASE64_CHARS) != ending:
        return start, width
    # Whole lines of that width, in windows growing fourfold: a run costs its length.
    lines, window = 0, _PROBE_LINES
    while True:
        stop = min(limit, start + (lines + window) * width)
        more = _lines_of_width(data, start + lines * width, stop, width, ending)
        lines += more
        if more < window:
            break
        window *= 4
    end = start + lines * width
    examined = width + lines + window + end - start
    # Every line ends at its width, and holds nothing but base64 characters.
    if len(data[start:end].translate(None, _BASE64_CHARS)) != lines * len(ending):
        return start, examined
    # The last line, shorter.
    newline = data.find(b"\n", end, min(limit, end + width))
    if newline != -1 and newline + 1 - end > len(ending):
        if data[end : newline + 1].translate(None, _BASE64_CHARS) == ending:
            end = newline + 1
    return end, examined + width


def _lines_of_width(data: bytes, start: int, stop: int, width: int, ending: bytes) -> int:
    """How many lines from `start` (ending before `stop`) have their line break at `width`."""
    last = data[start + width - 1 : stop : width]
    lines = len(last) - len(last.lstrip(b"\n"))
    if ending == b"\r\n":
        before = data[start + width - 2 : stop : width][:lines]
        lines = len(before) - len(before.lstrip(b"\r"))
    return lines


def _with_placeholders(data: bytes, runs: list[tuple[int, int]]) -> tuple[str, list[str]]:
    """`data` as feedparser reads it (ASCII, other bytes as surrogate escapes) with each
    run one placeholder line, and each run's text without its last line break (the
    reader takes that break off a body whose last line it is: RFC 2046 gives it to the
    boundary)."""
    pieces: list[str] = []
    bodies: list[str] = []
    previous = 0
    for index, (start, end) in enumerate(runs):
        ending = "\r\n" if data[end - 2 : end] == b"\r\n" else "\n"
        pieces.append(data[previous:start].decode("ascii", "surrogateescape"))
        pieces.append(f"\ue000{index}\ue001{ending}")
        bodies.append(data[start : end - len(ending)].decode("ascii"))
        previous = end
    pieces.append(data[previous:].decode("ascii", "surrogateescape"))
    return "".join(pieces), bodies


def _put_back(message: Message, bodies: list[str]) -> int:
    """Replace the placeholders in the tree's bodies, preambles and epilogues; how many."""
    restored = 0

    def restore(text: str | None) -> str | None:
        nonlocal restored
        if text is None or "\ue000" not in text:
            return text
        text, count = _PLACEHOLDER.subn(lambda match: bodies[int(match.group(1))], text)
        restored += count
        return text

    for part in message.walk():
        if isinstance(part, _Part):
            part.put_back(restore)
    return restored


def _read_message(data: bytes, budget: _Budget) -> Message:
    """The compat32 tree, or the headers alone when the MIME structure is unreadable.

    The standard library raises on a few broken MIME parameters (a NUL in an RFC
    2231 boundary); the headers are still read then, and the body kept unsplit.
    """
    try:
        return _read_tree(data, budget)
    except _EMAIL_FAILURES as exc:
        log.info("MIME structure unreadable (%s); reading the headers only", exc)
    return BytesParser(policy=compat32).parsebytes(data, headersonly=True)


def _require_mail_headers(message: Message, data: bytes) -> None:
    if not any(_is_mail_header(name) for name in message.keys()):
        raise _NotMail("no mail headers", _salvage_text(data))


def _is_mail_header(name: str) -> bool:
    name = name.strip().lower()
    return name in _MAIL_HEADERS or name.startswith(_MAIL_HEADER_PREFIXES)


def _salvage_text(data: bytes) -> str:
    """The readable text of a non-mail, for staff in the quarantine; none for binaries."""
    if b"\x00" in data[:8192]:
        return ""
    return _LINE_BREAK.sub("\n", charsets.decode(data))


def _values(message: Message, name: str) -> list[str]:
    """Raw values of a header, in order (compat32 hides 8-bit ones in Header objects)."""
    return [str(value) for key, value in message.raw_items() if key.strip().lower() == name]


def _first_charset(message: Message) -> str | None:
    """The first declared text charset: the best guess for raw 8-bit header bytes,
    and for body text that declares none.

    A part with no Content-Type field at all declares us-ascii (RFC 2045 §5.2's
    default, text/plain; charset=us-ascii), read like a declared us-ascii: UTF-8 when
    valid, else windows-1252. Detection guessed Cyrillic or CJK for a short Latin-1
    "Facturación" in mail that never declared anything.
    """
    for part in islice(message.walk(), 50):
        view = _header_view(part)
        charset = _charset(view)
        if charset:
            return charset
        if "content-type" not in view and view.get_default_type() == "text/plain":
            return "us-ascii"
    return None


# -- headers ---------------------------------------------------------------------------


def _header_text(value: str, hint: str | None) -> str:
    """Unfolded, 8-bit bytes decoded, encoded words decoded, control characters removed."""
    return clean(_decode_encoded_words(_unfolded(_eight_bit(value, hint)))).strip()


def clean(text: str) -> str:
    """One line of text fit to store: no control characters (NUL, CR, LF, escapes; a
    tab becomes a space) and no lone surrogates (undecodable bytes), both of which
    databases refuse or the mail we send back would carry."""
    return text.translate(_CONTROLS)


def _eight_bit(value: str, hint: str | None) -> str:
    """Raw 8-bit header bytes (surrogate-escaped by the parser) read as text."""
    if value.isascii():
        return value
    return charsets.decode(value.encode("utf-8", "surrogateescape"), hint=hint)


def _unfolded(value: str) -> str:
    return _FOLD.sub("", value)


def _collapse(value: str) -> str:
    return _WHITESPACE.sub(" ", value).strip()


def _decode_encoded_words(text: str) -> str:
    """RFC 2047, leniently: adjacent words joined before decoding (split characters)."""
    if "=?" not in text:
        return text
    pieces: list[str] = []
    run: list[tuple[str, bytes]] = []
    position = 0
    for match in _ENCODED_WORD.finditer(text):
        word = _encoded_word_bytes(match.group(2), match.group(3))
        if word is None:
            continue  # left in the text literally
        gap = text[position : match.start()]
        if not run or gap.strip(" \t\r\n"):
            pieces.append(_decode_run(run))
            pieces.append(gap)
            run = []
        run.append((match.group(1), word))
        position = match.end()
    pieces.append(_decode_run(run))
    pieces.append(text[position:])
    return "".join(pieces)


def _encoded_word_bytes(encoding: str, text: str) -> bytes | None:
    raw = text.encode("utf-8", "surrogateescape")
    if encoding in "Qq":
        return _QP_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), raw.replace(b"_", b" "))
    cleaned = _NOT_BASE64.sub(b"", raw)
    if len(cleaned) % 4 == 1:
        cleaned = cleaned[:-1]
    try:
        return b64decode(cleaned + b"=" * (-len(cleaned) % 4))
    except Base64Error:
        return None


def _decode_run(run: list[tuple[str, bytes]]) -> str:
    """Decode adjacent encoded words, concatenating bytes of words in the same charset
    however its label is spelled (`utf-8`, `UTF8`): a character split between them
    is whole again."""
    known: dict[str, object] = {}

    def charset(label: str) -> object:
        if label not in known:
            known[label] = charsets.lookup(label) or label.lower()
        return known[label]

    text: list[str] = []
    index = 0
    while index < len(run):
        label, data = run[index]
        chunks = [data]
        index += 1
        while index < len(run) and charset(run[index][0]) == charset(label):
            chunks.append(run[index][1])
            index += 1
        text.append(charsets.decode(b"".join(chunks), label, detect=False))
    return "".join(text)


def _addresses(
    values: list[str], hint: str | None, first: bool = False, unread: bool = False
) -> list[tuple[str, str]]:
    """(display name, address) pairs, addresses in `helpdesk.addresses`' normal form
    and valid by its rule; what is no address is skipped.

    A value the address grammar cannot read is read liberally (`_liberal_mailboxes`):
    `Ann ann@example.com`, `"Smith, Ann" ann@example.com` and `<ann@example.com.`
    are how real clients and scripts write From, and the sender is plainly there.
    `first`: only the first address is wanted (a sender), and no more is read.
    `unread`: after the addresses the grammar read, those of the parts of the value
    it left unread beside them (`bob@a.example; eve@b.example` reads as the second
    alone, where the standard library and a DMARC module may read the first).
    """
    result: list[tuple[str, str]] = []
    seen: set[str] = set()
    budget = MAX_ADDRESS_CHARS  # for the field, however many times it is repeated
    for value in values:
        if budget <= 0:
            break
        text = _unfolded(_eight_bit(value, hint))
        if len(text) > budget:
            text = text[: text.rfind(",", 0, budget) + 1 or budget]
        budget -= len(text)
        left: list[str] = []
        found = [
            (name, address)
            for name, address in (
                (name, addresses.normalize(clean(raw)))
                for name, raw in _mailboxes(text, left if unread else None)
            )
            if addresses.is_valid(address)
        ]
        if found:
            found += [pair for part in left for pair in _liberal_mailboxes(part)]
        for name, address in found or _liberal_mailboxes(text, first):
            if address in seen:
                continue
            seen.add(address)
            name = _display_name(_collapse(clean(_decode_encoded_words(name))))
            result.append(("" if name.lower() == address else name, address))
        if first and result:
            break
    return result[:1] if first else result


def _display_name(name: str) -> str:
    """A display name without the quotes around it: a pair enclosing it, or a quote
    left alone at an end (a liberal reading cut it from its partner). Quotes inside
    it stay: 'Ana "La Jefa"' lost its closing one to a strip of every quote."""
    name = name.strip("<> ")
    if name[:1] in ('"', "'"):
        quote = name[0]
        pairs = min(len(name) - len(name.lstrip(quote)), len(name) - len(name.rstrip(quote)))
        name = name[pairs : len(name) - pairs].strip("<> ")
    for quote in "\"'":
        if name.count(quote) % 2:
            name = name.strip(quote).strip("<> ")
    return name


def _mailboxes(text: str, unread: list[str] | None = None) -> list[tuple[str, str]]:
    """The address grammar's mailboxes; into `unread`, the parts of `text` naming an
    address (an `@`) that it did not read as one, such as a list cut by `;`."""
    defects: list[dict[str, Any]] = []
    try:
        found = get_addresses(text, defects=defects)
    except _MAILPARSER_FAILURES as exc:
        log.info("mail-parser address parsing failed (%s); using email.utils", exc)
    else:
        if unread is not None:
            unread += [
                str(defect["raw"])
                for defect in defects
                if not defect.get("recovered") and "@" in str(defect.get("raw", ""))
            ]
        return found
    try:
        return getaddresses([text])
    except (*_EMAIL_FAILURES, RecursionError):  # it recurses once per nested comment
        return []


def _liberal_mailboxes(text: str, first: bool = False) -> list[tuple[str, str]]:
    """The words of `text` that are valid addresses, the first one with the text
    before it as its display name. Words in angle brackets come first: in
    `"ceo@victim.example" <someone@evil.example.>` the address is the bracketed
    one, as the receiving server's DMARC check reads it too. `first`: only the
    one a sender is read from, without checking every other word."""
    bracketed: list[tuple[int, str]] = []
    plain: list[tuple[int, str]] = []
    candidates = 0
    for match in _ADDRESS_WORD.finditer(text):
        word, start = match.group(), match.start()
        in_brackets = text[start - 1 : start] == "<"
        if word.count("@") != 1 or (first and plain and not in_brackets):
            continue
        candidates += 1
        if first and candidates > MAX_SENDER_CANDIDATES:
            break
        address = addresses.normalize(clean(word.strip("'")))
        if addresses.is_valid(address):
            (bracketed if in_brackets else plain).append((start, address))
            if first and in_brackets:
                break
    found = bracketed or plain
    return [
        (text[:start] if index == 0 else "", address)
        for index, (start, address) in enumerate(found[:1] if first else found)
    ]


def _from_addresses(values: list[str], hint: str | None) -> list[tuple[str, str]]:
    """The addresses of the From fields: every one when the first field may name more
    than one (each address has an `@` of its own in the raw value), else the first.
    Read once for both the sender (`_sender`) and the question whether it is the
    From a signature was about (`_from_ambiguity`): a 200 KB From of invalid address
    words read twice cost 21 times ordinary mail of its size (the limit is 20). The
    addresses the grammar left unread come last: they are no sender, but they make
    the From name more than one address."""
    several = bool(values) and values[0].count("@") > 1
    return _addresses(values, hint, first=not several, unread=several)


def _sender(
    message: Message, hint: str | None, from_values: list[str], from_found: list[tuple[str, str]]
) -> tuple[str, str, str, list[str]]:
    """(display name, address, the header it was read from, notes) of the person who
    sent the mail: From (`from_found`, its addresses as `_from_addresses` read them),
    else Sender, Reply-To, Return-Path, in that order (docs/mail-gateway.md
    step 5), with a note for staff when it is not From; empty strings when none
    names an address. The envelope, the last fallback, is the pipeline's
    (`helpdesk.inbound.ingest.with_envelope_sender`)."""
    from_text = _header_text(from_values[0], hint) if from_values else None
    for header in SENDER_HEADERS:
        found = from_found if header == "from" else _addresses(_values(message, header), hint, first=True)
        if found:
            name, address = found[0]
            notes = [] if header == "from" else [sender_note(header, from_text)]
            return name, address, header, notes
    return "", "", "", []


def _from_ambiguity(values: list[str], found: list[tuple[str, str]]) -> str | None:
    """Why the From read here (`_sender`: the first address of the first From field)
    may not be the From a DKIM signature or the receiving server's DMARC check was
    about, or None. RFC 5322 allows one From field, and more than one address in it
    only with a Sender; a signature covers the bottom-most From field (RFC 6376
    §5.4.2), so a sender signed by its own provider could put someone else's address
    above its own, and a DMARC module may judge another of several addresses (RFC 7489
    §6.6.1). docs/security.md. `values`: the From fields; `found`: their addresses
    (`_from_addresses`)."""
    if len(values) > 1:
        return f"its header has {len(values)} From fields (RFC 5322 allows one)"
    if len(found) > 1:
        return "its From names more than one address"
    return None


def sender_note(source: str, from_text: str | None) -> str:
    """What staff read on a ticket whose sender is not its From address."""
    where = SENDER_SOURCES[source]
    if from_text is None:
        return f"The sender was taken from {where}: the mail has no From header."
    return (
        f"The sender was taken from {where}: the From header ({from_text[:200] or 'empty'}) names no address."
    )


def _message_id(values: list[str], hint: str | None) -> str | None:
    if not values:
        return None
    text = _header_text(values[0], hint)
    match = _ANGLE_ID.search(text)
    normalized = _WHITESPACE.sub("", match.group(1) if match else text).strip("<>")
    return normalized or None


def _id_list(values: list[str], hint: str | None) -> list[str]:
    """Message-IDs in order, without <>; bare ids only when they look like ids (have @).

    At most MAX_THREAD_IDS: the first and the newest, as RFC 5322 trims References.
    """
    ids: dict[str, None] = {}
    for value in values:
        text = _header_text(value, hint)
        found = _ANGLE_ID.findall(text) or [token for token in _ID_SEPARATORS.split(text) if "@" in token]
        for item in found:
            item = _WHITESPACE.sub("", item).strip("<>")
            if item and len(item) <= MAX_ID_LENGTH:
                ids[item] = None
    listed = list(ids)
    if len(listed) > MAX_THREAD_IDS:
        listed = listed[:1] + listed[-(MAX_THREAD_IDS - 1) :]
    return listed


# -- MIME parts --------------------------------------------------------------------------


def _header_view(part: Message) -> Message:
    """The part's Content-Type/-Disposition with 8-bit bytes as Latin-1 characters.

    compat32 hands back a header holding raw 8-bit bytes as an email.header.Header,
    and its parameter parser then replaces those bytes; Latin-1 maps each byte to one
    character, so a filename can be turned back into the sender's bytes and decoded.
    """
    view = LinearParams()
    view.set_default_type(part.get_default_type())
    for name, value in part.raw_items():
        if name.strip().lower() in ("content-type", "content-disposition"):
            value = str(value)
            if not value.isascii():
                value = value.encode("utf-8", "surrogateescape").decode("latin-1")
            view[name.strip()] = value
    return view


def _charset(view: Message) -> str | None:
    try:
        return view.get_content_charset()
    except _EMAIL_FAILURES:
        return None


def _latin1_bytes(text: str) -> bytes:
    return text.encode("latin-1", "replace")


def _body_text(
    body: list[tuple[str, str]], html_left: int, limits: MailLimits, notes: list[str]
) -> tuple[str, int]:
    """The mail's text: its body parts in order, HTML ones read as text, at most
    `MAX_HTML_TO_TEXT_CHARS` of HTML in all, `html_left` of it still unread; a part
    that says word for word what the part before it said (a plain and an HTML copy
    side by side) is said once (docs/mail-gateway.md, step 1). Also the HTML then
    left unread."""
    texts: list[str] = []
    words_before: str | None = None  # the last text's words, read once a second one comes
    for content_type, text in body:
        if not text.strip():
            continue
        if content_type == "text/html":
            if html_left <= 0:
                continue
            if len(text) > html_left:
                notes.append(
                    f"Only the first {limits.html_text_chars} characters of the HTML "
                    "were read as text (MAX_HTML_TO_TEXT_CHARS)."
                )
            markup, html_left = text[:html_left], html_left - len(text)
            text = _html_to_text(markup)
        if not text.strip():
            continue
        if texts:
            if words_before is None:
                words_before = " ".join(texts[-1].split())
            words = " ".join(text.split())
            if words == words_before:
                continue
            words_before = words
        texts.append(text.rstrip())
    return "\n\n".join(texts), html_left


def _enclosed_text(content: _Content, html_left: int, notes: list[str]) -> tuple[str, int]:
    """The text of a mail that has none of its own but encloses messages (forward as
    attachment): each enclosed message's From, Date and Subject, then its text read
    as a mail's is (its own enclosed messages when it has none), within what is left
    of the mail's `MAX_HTML_TO_TEXT_CHARS`; its files stay in the .eml kept as an
    attachment (docs/mail-gateway.md, step 1). The messages before a cap is met,
    with a note; and the HTML left unread."""
    texts: list[str] = []
    limits = content.budget.limits
    for part, decoded, depth in content.enclosed:
        try:
            if decoded is not None and len(decoded) > content.budget.enclosed_bytes:
                if ENCLOSED_NOT_READ not in notes:
                    notes.append(ENCLOSED_NOT_READ)
                continue
            message = _enclosed_message(part, decoded, content.budget)
            if message is None:
                continue
            hint = _first_charset(message) or content.hint
            inner = _Content(hint, content.budget, files=False)
            inner.html_left = html_left
            inner.walk(message, parent="message/rfc822", in_attachment=False, depth=depth)
        except _OverLimit as exc:
            notes.append(f"The enclosed messages were read as text up to a cap: {exc}.")
            break
        text, html_left = _body_text(inner.body, inner.html_left, limits, notes)
        if not text and inner.enclosed:
            text, html_left = _enclosed_text(inner, html_left, notes)
        fields: list[str] = []
        for label in ("From", "Date", "Subject"):
            raw = next(iter(_values(message, label.lower())), "")[:_ENCLOSED_FIELD_CHARS]
            value = _collapse(inputs.without_bidi(_header_text(raw, hint)))
            if value:
                fields.append(f"{label}: {value}")
        block = "\n".join(fields)
        if block or text:
            texts.append(f"{block}\n\n{text}".strip("\n"))
    return "\n\n".join(texts), html_left


@dataclass
class _Content:
    """Body texts and attachments collected while walking the MIME tree.

    `body` holds the body parts that make the mail's text, in order, as
    (content type, text): within a multipart/alternative only the alternative
    chosen (`_choose`); `html` every HTML body part, the formatted version;
    `enclosed` each message/rfc822 or message/global part met, with the message
    decoded when it was sent base64 or quoted-printable (`_decoded_enclosure`) and
    the depth of the message it encloses, whose text is the mail's when it has none
    (`_enclosed_text`). Without `files` it collects no attachments: an enclosed
    message's are kept whole in its .eml."""

    hint: str | None
    budget: _Budget
    files: bool = True
    body: list[tuple[str, str]] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    enclosed: list[tuple[Message, bytes | None, int]] = field(default_factory=list)  # (part, decoded, depth)
    html_left: int = 0  # of MAX_HTML_TO_TEXT_CHARS, for the whole mail

    def __post_init__(self) -> None:
        self.html_left = self.budget.limits.html_text_chars

    def walk(self, part: Message, *, parent: str, in_attachment: bool, depth: int) -> str:
        """Sort a part into body text or attachment; enclosed messages stay whole.
        The part's content type, as read."""
        # `_Part` counts depth within one reading; a broken multipart read again
        # (`_salvage_multipart`) starts a new tree, so the walk counts as well.
        if depth > self.budget.limits.mime_depth:
            raise _OverLimit(
                f"MIME parts nested deeper than MAX_MIME_DEPTH ({self.budget.limits.mime_depth})"
            )
        view = _header_view(part)
        content_type = view.get_content_type().lower()
        if content_type.startswith("message/"):
            decoded = _decoded_enclosure(part) if content_type in _ENCLOSED_TYPES else None
            if content_type in _ENCLOSED_TYPES:
                self.enclosed.append((part, decoded, depth + 1))
            self._attach(part, view, content_type, parent, decoded)
        elif part.is_multipart():
            inside = in_attachment or view.get_content_disposition() == "attachment"
            start = len(self.body)
            # (where its body parts begin, its type, whether it is an empty alternative)
            children: list[tuple[int, str, bool]] = []
            for child in [*part.get_payload(), *_epilogue_parts(part, self.budget)]:
                if isinstance(child, Message):
                    begin = len(self.body)
                    kind = self.walk(child, parent=content_type, in_attachment=inside, depth=depth + 1)
                    empty = kind == "multipart/alternative" and not child.is_multipart()
                    children.append((begin, kind, empty and not str(child.get_payload()).strip()))
            if content_type == "multipart/alternative":
                self.body[start:] = self._choose([begin for begin, _, _ in children], len(self.body))
            else:
                self._regroup_flattened(children)
        elif content_type.startswith("multipart/"):
            salvaged = _salvage_multipart(part, content_type, self.budget)
            if salvaged is not None:
                self.walk(salvaged, parent=parent, in_attachment=in_attachment, depth=depth + 1)
            elif in_attachment:
                self._attach(part, view, content_type, parent)
            else:
                self.body.append(("text/plain", self._text(part, view, "text/plain")))
        elif self._is_body(view, content_type, in_attachment):
            text = self._text(part, view, content_type)
            self.body.append((content_type, text))
            if content_type == "text/html":
                self.html.append(text)
        else:
            self._attach(part, view, content_type, parent)
        return content_type

    def _choose(self, starts: list[int], end: int) -> list[tuple[str, str]]:
        """The body parts of one alternative of a multipart/alternative whose children's
        parts begin at `starts` and end at `end` (RFC 2046 §5.1.4): the first one with
        plain text, else the last one with any text, the sender's most faithful version."""
        spans = [self.body[begin:stop] for begin, stop in zip(starts, [*starts[1:], end], strict=True)]
        for index, span in enumerate(spans):
            if any(kind == "text/plain" and text.strip() for kind, text in span):
                return self._unless_placeholder(span, spans[index + 1 :])
        for span in reversed(spans):
            if any(text.strip() for _, text in span):
                return span
        return []

    def _unless_placeholder(
        self, plain: list[tuple[str, str]], later: list[list[tuple[str, str]]]
    ) -> list[tuple[str, str]]:
        """The plain alternative, unless it is a short placeholder for a later HTML one:
        at most `_PLACEHOLDER_CHARS` characters, fewer than half of its words found in
        the HTML's text, and that text at least half as many words long (an HTML of images
        alone says nothing). Only such short plain texts cost the HTML's reading, and
        only while the mail's `MAX_HTML_TO_TEXT_CHARS` hold the whole HTML: what is
        read here is not read again."""
        text = "\n".join(part for kind, part in plain if kind == "text/plain").strip()
        if len(text) > _PLACEHOLDER_CHARS:
            return plain
        markup = next(
            (part for span in reversed(later) for kind, part in span if kind == "text/html" and part.strip()),
            None,
        )
        if markup is None or len(markup) > self.html_left:
            return plain
        self.html_left -= len(markup)
        html_text = _html_to_text(markup)
        shown = html_text.lower()
        words = set(_WORD.findall(text.lower()))
        # Its first words are enough to count, and a word is found as C finds a
        # substring: a plain alternative of 200 characters has at most 100 words.
        if 2 * sum(1 for _ in islice(_WORD.finditer(shown), (len(words) + 1) // 2)) < len(words):
            return plain
        if 2 * sum(1 for word in words if word in shown) >= len(words):
            return plain
        return [("text/plain", html_text)]

    def _regroup_flattened(self, children: list[tuple[int, str, bool]]) -> None:
        """An alternative nested with its parent's boundary (Outlook for Mac, some phones)
        reads as an empty multipart/alternative followed by its parts as siblings: the
        text parts right after it are its alternatives, and one of them is the text.
        An alternative holds each version once, so a part whose type came already is
        the parent's next text, not an alternative (docs/mail-gateway.md, step 1)."""
        runs: list[tuple[int, int]] = []  # (first child, child after the last) per flattened one
        index = 0
        while index < len(children):
            empty_alternative = children[index][2]
            index += 1
            if not empty_alternative:
                continue
            first = index
            taken: set[str] = set()
            while index < len(children) and children[index][1] in _BODY_TYPES - taken:
                taken.add(children[index][1])
                index += 1
            if index - first > 1:
                runs.append((first, index))
        for first, after in reversed(runs):
            end = children[after][0] if after < len(children) else len(self.body)
            starts = [begin for begin, _, _ in children[first:after]]
            self.body[starts[0] : end] = self._choose(starts, end)

    def _is_body(self, view: Message, content_type: str, in_attachment: bool) -> bool:
        """text/plain and text/html are the body unless marked (or named) as a file.

        An explicitly inline text part with a filename stays body (mutt and Apple Mail
        send bodies that way); one without any disposition but with a name is a file.
        """
        if in_attachment or content_type not in ("text/plain", "text/html"):
            return False
        disposition = view.get_content_disposition()
        if disposition == "attachment":
            return False
        return disposition == "inline" or not _filename(view, self.hint)

    def _text(self, part: Message, view: Message, content_type: str) -> str:
        data = _payload_bytes(part)
        label = _charset(view)
        if label is None and content_type == "text/html":
            meta = _META_CHARSET.search(data[:4096])
            label = meta.group(1).decode("ascii") if meta else None
        text = _LINE_BREAK.sub("\n", charsets.decode(data, label, hint=self.hint))
        if content_type == "text/plain" and _is_flowed(view):
            text = _unflowed(text, delete_space=_param_text(view, "delsp") == "yes")
        return text

    def _attach(
        self, part: Message, view: Message, content_type: str, parent: str, decoded: bytes | None = None
    ) -> None:
        """Keep a part as a file; an enclosed message sent base64 or quoted-printable
        as `decoded`, the message as it was enclosed (docs/mail-gateway.md, step 1)."""
        if not self.files:
            return
        name = _filename(view, self.hint)
        if content_type.startswith("message/"):
            data = _message_bytes(part) if decoded is None else decoded
            if not name and content_type in _ENCLOSED_TYPES:
                name = _enclosed_subject(part, decoded, self.hint).rstrip(" .")  # ".." is no name
                name = f"{name}.eml" if name else ""
        else:
            data = _payload_bytes(part)
        content_id = _content_id(part, self.hint)
        disposition = view.get_content_disposition()
        # Outlook omits the disposition of cid: images inside multipart/related.
        inline = content_id is not None and (
            disposition == "inline" or (disposition is None and parent == "multipart/related")
        )
        index = len(self.attachments) + 1
        self.attachments.append(
            Attachment(
                filename=safe_filename(name, content_type, index),
                content_type=safe_content_type(content_type),
                data=data,
                content_id=content_id,
                is_inline=inline,
            )
        )


def _is_flowed(view: Message) -> bool:
    """format=flowed: the parameters are parsed (5 µs) only where the word is."""
    return "flowed" in str(view.get("content-type", "")).lower() and _param_text(view, "format") == "flowed"


def _param_text(view: Message, name: str) -> str:
    """A Content-Type parameter, lower-case; "" when absent or unreadable."""
    value = _param(view, name, "content-type")
    if isinstance(value, tuple):
        value = value[2]
    return value.strip().lower() if isinstance(value, str) else ""


def _unflowed(text: str, *, delete_space: bool) -> str:
    """format=flowed text (RFC 3676 §4) as the lines its writer meant.

    A line ending in a space goes on in the next line of the same quote depth (with
    delsp=yes that space was added by the sender's mail program and goes); one
    leading space after the quote marks was stuffed in and goes; the signature
    separator "-- " is never flowed nor flowed into. Quoted lines keep their marks
    ("> " once the depth is read). One pass over the lines, and none where no line
    ends in a space and none is quoted or stuffed."""
    if " \n" not in text and "\n>" not in text and "\n " not in text and text[:1] not in (">", " "):
        return text
    lines: list[str] = []
    paragraph: list[str] = []
    paragraph_depth = 0
    for line in text.split("\n"):
        if line[:1] == ">":
            content = line.lstrip(">")
            depth = len(line) - len(content)
        else:
            content, depth = line, 0
        if content[:1] == " ":
            content = content[1:]
        # A paragraph ends at a change of depth and before the signature separator,
        # which is never joined (RFC 3676 §4.3).
        if paragraph and (depth != paragraph_depth or content == "-- "):
            lines.append(_quoted(paragraph_depth, "".join(paragraph)))
            paragraph = []
        if content[-1:] == " " and content != "-- ":
            paragraph.append(content[:-1] if delete_space else content)
            paragraph_depth = depth
        elif paragraph:
            paragraph.append(content)
            lines.append(_quoted(depth, "".join(paragraph)))
            paragraph = []
        else:
            lines.append(">" * depth + (" " + content if content else "") if depth else content)
    if paragraph:
        lines.append(_quoted(paragraph_depth, "".join(paragraph)))
    return "\n".join(lines)


def _quoted(depth: int, text: str) -> str:
    return ">" * depth + (" " + text if text else "") if depth else text


def _payload_bytes(part: Message) -> bytes:
    """The part's body with its transfer encoding undone (the sender's 8-bit bytes kept)."""
    try:
        base64_data = _base64_payload(part)
        data = base64_data if base64_data is not None else part.get_payload(decode=True)
    except _EMAIL_FAILURES as exc:
        log.info("undecodable part payload (%s); keeping it as sent", exc)
        data = None
        payload = part.get_payload()
        if isinstance(payload, str):
            data = payload.encode("utf-8", "surrogateescape")
    return data if isinstance(data, bytes) else b""


def _base64_payload(part: Message) -> bytes | None:
    """What get_payload(decode=True) gives for a base64 body of ASCII text, without
    splitting the body into a list of lines and joining them; None for any other body."""
    if part.is_multipart() or str(part.get("content-transfer-encoding", "")).lower() != "base64":
        return None
    payload = part.get_payload()
    if not isinstance(payload, str) or not payload.isascii():
        return None
    return _decode_base64(payload.encode("ascii"))


def _decode_base64(text: bytes, whole_groups: bool = False) -> bytes:
    """The email package's lenient base64 (`email._encoded_words.decode_b` over the
    body's lines joined), without joining them. With `whole_groups`, base64 cut one
    letter into a group of four (which no padding completes) gives its whole groups
    decoded instead of the text itself: an enclosed message cut short is kept as the
    message it begins with (docs/mail-gateway.md, step 1).

    The email package tries strict decoding with the padding completed, then skipping
    stray characters, then that with "==" added, and keeps the text itself when all
    fail. Skipping stray characters skips line breaks too, leaving nothing to join;
    and where the strict attempt succeeds, the first lenient one that does gives the
    same bytes (it fails only where padding is missing, which "==" completes).
    """
    for attempt in (text, text + b"=="):
        try:
            return a2b_base64(attempt)
        except Base64Error:
            pass
    if whole_groups:
        letters = text.translate(None, _NOT_BASE64_LETTERS)
        return a2b_base64(letters[: len(letters) - len(letters) % 4])
    return text.translate(None, b"\r\n")


def _message_bytes(part: Message) -> bytes:
    """An enclosed message (or delivery-status blocks) serialised back to bytes."""
    payload = part.get_payload()
    if not isinstance(payload, list):
        return _payload_bytes(part)
    chunks: list[bytes] = []
    for child in payload:
        if not isinstance(child, Message):
            continue
        chunks.append(_flatten(child))
    return b"".join(chunks)


def _flatten(message: Message) -> bytes:
    try:
        return message.as_bytes(policy=_NO_REFOLD)
    except _EMAIL_FAILURES as exc:
        log.info("re-serialising an enclosed message failed (%s); trying mail-parser's way", exc)
    try:
        return as_string_safe(message).encode("utf-8", "surrogateescape")
    except _EMAIL_FAILURES as exc:
        log.warning("enclosed message left out, it cannot be serialised: %s", exc)
        return b""


def _decoded_enclosure(part: Message) -> bytes | None:
    """The message a message/rfc822 or message/global part encloses, decoded, when the
    part was sent base64 or quoted-printable; None for any other part. RFC 2046 §5.2.1
    allows it no transfer encoding but 7bit, 8bit or binary, yet some servers send it
    so, and the email package reads the encoded text as a message. A part labelled
    base64 that is a message written plain (the email package found header fields
    in it, which base64 lines never are, and it is no strict base64) is no
    encoded text: None, and it is kept and read as it came, not decoded into bytes
    of no meaning."""
    payload = part.get_payload()
    if not isinstance(payload, list) or not payload or not isinstance(payload[0], Message):
        return None
    encoding = str(part.get("content-transfer-encoding", "")).strip().lower()
    if encoding not in ("base64", "quoted-printable"):
        return None
    data = _encoded_text(payload[0])
    if encoding == "quoted-printable":
        return _lines_of(a2b_qp(data))
    if any(_is_mail_header(name) for name in payload[0].keys()) and not _strict_base64(data):
        return None
    return _lines_of(_decode_base64(data, whole_groups=True))


def _strict_base64(data: bytes) -> bool:
    """Whether `data` is base64 and nothing else once its line breaks are left out."""
    try:
        a2b_base64(data.translate(None, b"\r\n"), strict_mode=True)
    except Base64Error:
        return False
    return True


def _encoded_text(message: Message) -> bytes:
    """The encoded text the email package read as `message`, its line breaks as they
    came. Base64 lines are no header: all of it is the body, taken as it is. Quoted-
    printable lines read as a header up to a line that is none (a soft line break in
    a long field), which became the body's first: no blank line is put before it.
    The fields are written as they came (`_NO_REFOLD`), never refolded."""
    body = message.get_payload()
    if not isinstance(body, str):
        return _flatten(message)
    first = body.find("\n")
    policy = _NO_REFOLD.clone(linesep="\r\n") if first > 0 and body[first - 1] == "\r" else _NO_REFOLD
    unixfrom = message.get_unixfrom()
    lines = [unixfrom + policy.linesep] if unixfrom else []
    lines += [policy.fold(name, value) for name, value in message.raw_items()]
    if not any(isinstance(defect, MissingHeaderBodySeparatorDefect) for defect in message.defects):
        lines.append(policy.linesep)  # the blank line that ended the header
    return ("".join(lines) + body).encode("utf-8", "surrogateescape")


def _enclosed_message(part: Message, decoded: bytes | None, budget: _Budget) -> Message | None:
    """The message a message/rfc822 or message/global part encloses; one sent base64
    or quoted-printable (`decoded`) is read again, within the mail's budget for it
    (`_ENCLOSED_REREADS`; `_enclosed_text` notes one it has no room for)."""
    payload = part.get_payload()
    if not isinstance(payload, list) or not payload or not isinstance(payload[0], Message):
        return None
    if decoded is None:
        return payload[0]
    if len(decoded) > budget.enclosed_bytes:
        return None
    budget.enclosed_bytes -= len(decoded)
    try:
        return _read_tree(decoded, budget)
    except _EMAIL_FAILURES:
        return None


def _enclosed_subject(part: Message, decoded: bytes | None, hint: str | None) -> str:
    """An attached message's subject, which names its file: only as much of it as a
    file name can keep is decoded (an enclosed header is under no header cap). Of a
    message sent base64 or quoted-printable, the header of the `decoded` bytes alone
    is read (not the whole message, and not from the budget its text is read with)."""
    payload = part.get_payload()
    if decoded is not None:
        try:
            payload = [BytesParser(policy=compat32).parsebytes(header_block(decoded), headersonly=True)]
        except _EMAIL_FAILURES:
            return ""
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        subject = _values(payload[0], "subject")
        if subject:
            return _collapse(inputs.without_bidi(_header_text(subject[0][:_FILENAME_SCAN_BYTES], hint)))
    return ""


def _reread(data: bytes, budget: _Budget) -> Message | None:
    """Read part of a mail a second time, within the mail's budget; None when it is
    spent (the mail's own size, once) or the bytes are unreadable."""
    if len(data) > budget.reread_bytes:
        return None
    budget.reread_bytes -= len(data)
    try:
        return _read_tree(data, budget)
    except _EMAIL_FAILURES:
        return None


def _salvage_multipart(part: Message, content_type: str, budget: _Budget) -> Message | None:
    """Re-read a multipart whose boundary is missing or wrong, using the one it uses.

    Spam tools and old clients declare one boundary and write another (or none);
    the delimiter lines in the body say which one was meant.
    """
    payload = part.get_payload()
    if not isinstance(payload, str):
        return None
    body = payload.encode("utf-8", "surrogateescape")
    for match in islice(_BOUNDARY_LINE.finditer(body), 5):
        header = f'Content-Type: {content_type}; boundary="'.encode() + match.group(1) + b'"\n\n'
        candidate = _reread(header + body, budget)
        if candidate is None:
            continue
        payload_parts = candidate.get_payload()
        if (
            candidate.is_multipart()
            and payload_parts
            and not any(isinstance(defect, StartBoundaryNotFoundDefect) for defect in candidate.defects)
        ):
            return candidate
    return None


def _epilogue_parts(part: Message, budget: _Budget) -> list[Message]:
    """Parts written after the closing delimiter (a nested multipart reused its boundary)."""
    epilogue = part.epilogue
    try:
        boundary = part.get_boundary()
    except _EMAIL_FAILURES:
        return []
    if not epilogue or not boundary or f"--{boundary}" not in epilogue:
        return []
    header = f'Content-Type: multipart/mixed; boundary="{boundary}"\n\n'
    wrapper = _reread((header + epilogue).encode("utf-8", "surrogateescape"), budget)
    if wrapper is None:
        return []
    payload = wrapper.get_payload()
    if not isinstance(payload, list):
        return []
    return [child for child in payload if isinstance(child, Message)]


def _param(view: Message, name: str, header: str) -> str | tuple[str | None, str | None, str] | None:
    try:
        return view.get_param(name, header=header)
    except _EMAIL_FAILURES:
        return None


def _filename(view: Message, hint: str | None) -> str:
    """Decoded filename: RFC 2231 parameters, RFC 2047 words in quotes, or raw 8-bit.

    Only the bytes `safe_filename` can keep are decoded (charset detection costs
    with the length: 3 ms for 10 KB)."""
    for name, header in (("filename", "content-disposition"), ("name", "content-type")):
        value = _param(view, name, header)
        if value is None:
            continue
        if isinstance(value, tuple):
            charset, _language, text = value
            decoded = charsets.decode(_latin1_bytes(text)[-_FILENAME_SCAN_BYTES:], charset or None, hint=hint)
        else:
            decoded = charsets.decode(_latin1_bytes(value)[-_FILENAME_SCAN_BYTES:], None, hint=hint)
        decoded = _decode_encoded_words(_unfolded(decoded)).strip()
        if decoded:
            return decoded
    return ""


def _content_id(part: Message, hint: str | None) -> str | None:
    values = _values(part, "content-id")
    if not values:
        return None
    content_id = _WHITESPACE.sub("", _header_text(values[0], hint)).strip("<>")
    return content_id if 0 < len(content_id) <= _MAX_TYPE_LENGTH else None


def safe_filename(name: str, content_type: str, index: int) -> str:
    """A name safe to show and store: no path, no controls, bounded, never empty.

    Also the name of a file staff attach to a reply (helpdesk.services.uploads):
    whoever names a file, mail or browser, the stored name follows one rule.

    A name that is a path (`_is_path`: absolute, a drive, `.`, `..` or `~` in it)
    keeps its last part; in any other name a slash or backslash is a character of
    the name ("Factura 01/2026.pdf") and becomes "_" (docs/mail-gateway.md, step 6).

    Only the name's last `_FILENAME_SCAN` characters are read: the kept part (the
    last path component, its extension) is there, and cleaning reads every
    character (a hundred 10,000-character names took 40 times what a plain mail of
    their size costs; docs/security.md)."""
    name = "".join(
        char
        for char in unicodedata.normalize("NFC", name[-_FILENAME_SCAN:])
        if unicodedata.category(char) not in ("Cc", "Cf", "Cs")
    )
    components = _PATH_SEPARATORS.split(name)
    if _is_path(components):
        kept = [item for item in components if item.strip(" .")]
        name = kept[-1] if kept else ""
    else:
        name = "_".join(components)
    name = _collapse(_UNSAFE_FILENAME_CHARS.sub("_", name)).strip(" .")
    if not name:
        extension = (
            _EXTENSIONS.get(content_type) or mimetypes.guess_extension(content_type, strict=False) or ".bin"
        )
        name = f"attachment-{index}{extension}"
    if len(name) <= MAX_FILENAME_LENGTH:
        return name
    stem, dot, extension = name.rpartition(".")
    if dot and stem and 0 < len(extension) <= 16:
        return stem[: MAX_FILENAME_LENGTH - len(extension) - 1].rstrip(" .") + "." + extension
    return name[:MAX_FILENAME_LENGTH].rstrip(" .")


def _is_path(components: list[str]) -> bool:
    """Whether a name split at its slashes and backslashes is a path: it starts at a
    root or a drive (`/`, `\\server`, `C:`), or goes through `.`, `..` or `~`."""
    if len(components) < 2:
        return False
    first = components[0].strip()
    if not first or (len(first) == 2 and first[1] == ":" and first[0].isascii() and first[0].isalpha()):
        return True
    return any(item.strip() in (".", "..", "~") for item in components)


def safe_content_type(content_type: str) -> str:
    """A sender's content type as stored: shown, never trusted (downloads are
    `application/octet-stream`); one that does not fit its column is no type."""
    return clean(content_type) if len(content_type) <= _MAX_TYPE_LENGTH else "application/octet-stream"


def _html_to_text(markup: str) -> str:
    """A readable plain-text rendering of an HTML-only mail (tags stripped, not laid out).

    nh3 (an HTML5 parser, linear in its input) keeps only the layout tags, without
    attributes and in one canonical spelling, with every other `<` escaped; each
    kept tag is then replaced by the line break or space it stands for. Nesting past
    `html_depth.MAX_DEPTH` is flattened first (docs/mail-gateway.md, "HTML-only mail").
    """
    layout = nh3.clean(
        html_depth.bounded(markup),
        tags=set(_TAG_TEXT) - {"/" + tag for tag in _TAG_TEXT} | {"a"},
        # No attribute but a link's address and a list's numbering (nh3 keeps `lang`
        # and `title` on every tag unless told, and such a tag was left in the text
        # as written).
        attributes=_KEPT_ATTRIBUTES,
        url_schemes=set(scheme.rstrip(":/") for scheme in _LINK_SCHEMES),
        clean_content_tags=_INVISIBLE_TAGS,
        link_rel=None,
    )
    texts: list[str] = []
    for run, text in enumerate(_layout_text(layout)):
        # A carriage return written `&#13;` is a space on the page, in a <pre> too.
        lines = html.unescape(text).replace("\xa0", " ").replace("\r", " ").split("\n")
        if run % 2:  # a <pre>'s lines as written, but for spaces at their end
            text = "\n".join(line.rstrip() for line in lines).strip("\n")
        else:
            text = _BLANK_LINES.sub("\n\n", "\n".join(_collapse(line) for line in lines)).strip("\n")
        if text:
            texts.append(text)
    return "\n\n".join(texts)  # a <pre> is a paragraph of its own


def _layout_text(layout: str) -> list[str]:
    """nh3's layout-only markup with each tag replaced by the line break or space it
    stands for, and each line of text in a <blockquote> that text outside any quote
    follows begun with "> " (">> " a level deeper), as a text client quotes: quote
    stripping then tells an HTML reply's quote from the answers between its quotes,
    as in a text reply. A blockquote nothing follows is left unmarked: it is an
    indented paragraph as often as a quote (Gmail's "indent more"), and marked, the
    final quoted block was cut, the customer's text with it; a quoted history there
    is cut by its attribution (docs/mail-gateway.md, "HTML-only mail").

    Whitespace is one space, as a browser shows it, but inside a <pre> it stays
    as written; an item of an ordered list begins with its number ("2. ", as the
    list's `start`, `reversed` and the item's `value` say), one of an unordered
    list with "- "; a link's http, https or
    mailto address follows its text in parentheses, unless that text is the
    address. The text comes in runs, still escaped, every second one (the second,
    the fourth…) a <pre>'s, each run beginning and ending a line."""
    last_outside = _last_text_outside_quotes(layout)
    # Items of each reversed list with no `start`: it counts down from them.
    items = _list_items(layout) if ' reversed="' in layout else {}
    pieces: list[str] = []
    runs: list[int] = []  # where each <pre> run begins and ends in `pieces`
    depth = 0
    marked = False
    line_start = True
    preformatted = 0
    lists: list[tuple[int, int] | None] = []  # (next number, step) of each open list; None: unordered
    links: list[tuple[int, str]] = []  # (first piece of its text, address or "")
    at = 0
    for tag in _CANONICAL_TAG.finditer(layout):
        text = layout[at : tag.start()]
        if not preformatted:
            text = _WHITESPACE.sub(" ", text)
        line_start = _add_text(pieces, text, depth if marked else 0, line_start)
        name = tag.group(1)
        if name == "blockquote":
            if depth == 0:
                marked = tag.start() < last_outside
            depth += 1
        elif name == "/blockquote" and depth:
            depth -= 1
        elif name == "/pre" and preformatted:
            preformatted -= 1
            if not preformatted:
                runs.append(len(pieces))
        elif name == "ol":
            attributes = dict(_TAG_ATTRIBUTE.findall(tag.group(2)))
            start = _list_number(attributes.get("start"))
            if "reversed" in attributes:
                lists.append((items.get(tag.start(), 0) if start is None else start, -1))
            else:
                lists.append((1 if start is None else start, 1))
        elif name == "ul":
            lists.append(None)
        elif name in ("/ol", "/ul") and lists:
            lists.pop()
        elif name == "a":
            links.append((len(pieces), _link_address(dict(_TAG_ATTRIBUTE.findall(tag.group(2))).get("href"))))
        elif name == "/a" and links:
            first, address = links.pop()
            if address and _address_adds(pieces, first, address):
                pieces.append(f" ({address})")
        replacement = _TAG_TEXT.get(name, "")
        pieces.append(replacement)
        line_start = line_start or "\n" in replacement
        if name == "pre":
            preformatted += 1
            if preformatted == 1:
                runs.append(len(pieces))
        elif name == "li" and lists and (numbering := lists[-1]) is not None:
            value = _list_number(dict(_TAG_ATTRIBUTE.findall(tag.group(2))).get("value"))
            number = numbering[0] if value is None else value
            lists[-1] = (number + numbering[1], numbering[1])
            line_start = _add_text(pieces, f"{number}. ", depth if marked else 0, line_start)
        elif name == "li" and lists:
            line_start = _add_text(pieces, "- ", depth if marked else 0, line_start)
        at = tag.end()
    text = layout[at:] if preformatted else _WHITESPACE.sub(" ", layout[at:])
    _add_text(pieces, text, depth if marked else 0, line_start)
    bounds = [0, *runs, len(pieces)]
    return ["".join(pieces[start:end]) for start, end in pairwise(bounds)]


def _list_number(text: str | None) -> int | None:
    """A list's `start` or an item's `value` as nh3 wrote it, when it is a number
    of 0 to `_MAX_LIST_NUMBER` (spaces around it as a browser skips them); anything
    else is as if not said."""
    if text is None:
        return None
    text = text.strip(" \t\n\r\f")
    if not _LIST_NUMBER.fullmatch(text) or int(text) > _MAX_LIST_NUMBER:
        return None
    return int(text)


def _list_items(layout: str) -> dict[int, int]:
    """The items of each ordered list, by where its tag begins in `layout`; an item
    of a list inside an item is that inner list's (HTML's numbering of a reversed
    list with no `start` counts down from it)."""
    items: dict[int, int] = {}
    lists: list[int] = []  # where each open list begins; -1 for an unordered one
    for tag in _CANONICAL_TAG.finditer(layout):
        name = tag.group(1)
        if name in ("ol", "ul"):
            lists.append(tag.start() if name == "ol" else -1)
        elif name in ("/ol", "/ul") and lists:
            lists.pop()
        elif name == "li" and lists and lists[-1] >= 0:
            items[lists[-1]] = items.get(lists[-1], 0) + 1
    return items


def _link_address(href: str | None) -> str:
    """The address of a link as nh3 wrote it (escaped, as the text is), when it is
    one to show: http, https or mailto, on one line."""
    if not href or not href.lower().startswith(_LINK_SCHEMES):
        return ""
    return _WHITESPACE.sub(" ", href).strip()


def _address_adds(pieces: list[str], first: int, address: str) -> bool:
    """Whether a link's address says more than its text, written in `pieces` from
    `first` on: a text of one line that is not the address (with or without the
    scheme or a trailing slash). An image link has no text, and a link around
    blocks (a whole table cell of a newsletter) has several lines or more than a
    few pieces: the address alone on a line would say nothing of what it is."""
    if len(pieces) - first > _LINK_TEXT_PIECES:
        return False
    # A piece that begins with ">" is a line's quote mark, not the link's text: nh3
    # writes every ">" of the text "&gt;".
    text = "".join(piece for piece in pieces[first:] if not piece.startswith(">"))
    text = html.unescape(text).strip().lower()  # "&nbsp;" is no text
    if not text or "\n" in text:
        return False
    address = html.unescape(address).lower()
    for scheme in _LINK_SCHEMES:
        if address.startswith(scheme):
            address = address[len(scheme) :]
            text = text.removeprefix(scheme)
            break
    return text.rstrip("/") != address.rstrip("/")


def _last_text_outside_quotes(layout: str) -> int:
    """Where the last text outside every <blockquote> begins (-1: none), so a quote
    can be told from a trailing indented block in one more pass."""
    depth = 0
    last = -1
    at = 0
    for tag in _CANONICAL_TAG.finditer(layout):
        if depth == 0 and not layout[at : tag.start()].isspace() and tag.start() > at:
            last = at
        name = tag.group(1)
        if name == "blockquote":
            depth += 1
        elif name == "/blockquote" and depth:
            depth -= 1
        at = tag.end()
    if depth == 0 and layout[at:].strip():
        last = at
    return last


def _add_text(pieces: list[str], text: str, depth: int, line_start: bool) -> bool:
    """Append `text`, each of its lines that begins a line quoted `depth` levels deep
    (a <pre> keeps its line breaks); whether a line still begins."""
    if not text or text.isspace():
        pieces.append(text)
        return line_start or (depth > 0 and "\n" in text)
    if not depth:
        pieces.append(text)
        return text.endswith("\n")
    mark = ">" * min(depth, _QUOTE_DEPTH) + " "
    for index, line in enumerate(text.split("\n")):
        if index:
            pieces.append("\n")
            line_start = True
        if line and not line.isspace():
            if line_start:
                pieces.append(mark)
            line_start = False
        pieces.append(line)
    return line_start
