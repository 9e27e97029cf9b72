"""Every regular expression applied to mail content runs in linear time (docs/mail-gateway.md).

Python's `re` backtracks: a pattern such as `<\\s*br\\b[^>]*>` rescans the rest of
the text from every `<br`, so 90 KB of `<br` took 2.5 s and 1 MB minutes, holding
the GIL of a listener that serves every other connection. Each pattern here is fed
1 MB built to make it work hardest, the way the code applies it (`match` at one
place, `search` or `finditer` across the text, `sub`, `split`), and must stay
within a small ratio of a benign input of the same size (ordinary customer text),
and grow linearly (1 MB against 256 KB). A pattern applied with `match` stops at
once on ordinary text, so the benign cost is taken as at least one linear pass
over the same text (the parser's own whitespace collapse): reading a mail costs
that anyway. A quadratic pattern fails both by orders of magnitude at this size.

`test_every_pattern_is_covered` finds the patterns by looking at the modules, so a
new one without a case here fails the suite.

These are the suite's only timed assertions, on purpose: a ratio within one run,
not a duration, failing only by orders of magnitude, and a security regression
(one mail holding a listener for minutes) that must fail CI rather than show up
in a benchmark table.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from helpdesk import html_depth, numbering
from helpdesk.addresses import is_valid
from helpdesk.html import clean
from helpdesk.inbound.automail import is_machine_address
from helpdesk.inbound.dedup import dedup_keys
from helpdesk.inbound.headerfields import strip_comments
from helpdesk.inbound.parser import InboundMail, _html_to_text
from tests.support.hostile import prose
from tests.support.timing import least_cpu

SIZE = 1_000_000
RATIO = 20
GROWTH = 8  # 4× the input: 4× the time if linear, 16× if quadratic
# The modules that read mail content: their module-level patterns must all be here.
MAIL_MODULES = (
    "helpdesk.inbound.parser",
    "helpdesk.inbound.automail",
    "helpdesk.inbound.authentication",
    "helpdesk.inbound.charsets",
    "helpdesk.message_ids",
    "helpdesk.inbound.matching",
    "helpdesk.inbound.dedup",
    "helpdesk.inbound.storage",
    "helpdesk.inbound.headerfields",
    "mailgateway.imap",
    "mailgateway.smtp",
    "helpdesk.numbering",
    "helpdesk.addresses",
    "helpdesk.inputs",
    "helpdesk.cli",
    # Web input (forms, JSON, uploads) with patterns of their own.
    "helpdesk.service_fields",
    "helpdesk.services.tags",
    "helpdesk.services.teams",
    "helpdesk.services.canned",
    "helpdesk.outbound.compose",
    # A relay's reply, which may repeat the recipient's server's words.
    "mailgateway.outbound",
    # Stored and service texts read back in the reader's language.
    "helpdesk.wording",
    # Mail HTML's tags, read before nh3 reads them.
    "helpdesk.html_depth",
    # A setting (SMTP_LISTEN) made a folder's name.
    "mailgateway.smtp_takings",
)


@dataclass(frozen=True)
class Case:
    module: str
    name: str  # the module-level pattern
    apply: str  # how the code applies it
    bad: Callable[[int], Any]  # a pathological input of n characters or bytes
    binary: bool = False

    @property
    def pattern(self) -> re.Pattern[Any]:
        return getattr(importlib.import_module(self.module), self.name)

    def run(self, data: Any) -> None:
        pattern = self.pattern
        if self.apply == "finditer":
            for _ in pattern.finditer(data):
                pass
        elif self.apply == "sub":
            pattern.sub(b"" if self.binary else "", data)
        else:
            getattr(pattern, self.apply)(data)


def rep(unit: str, n: int, tail: str = "") -> str:
    return (unit * (n // len(unit) + 1))[: n - len(tail)] + tail


def brep(unit: bytes, n: int, tail: bytes = b"") -> bytes:
    return (unit * (n // len(unit) + 1))[: n - len(tail)] + tail


P, A, AU, C, H = (
    "helpdesk.inbound.parser",
    "helpdesk.inbound.automail",
    "helpdesk.inbound.authentication",
    "helpdesk.inbound.charsets",
    "helpdesk.html_depth",
)
CASES = [
    # names and terminal output (a name decoded from a header, a quarantined mail shown)
    Case("helpdesk.inputs", "_CONTROL", "sub", lambda n: rep("\r\n", n)),
    Case("helpdesk.inputs", "_BIDI", "sub", lambda n: rep("\u202ea", n)),
    Case("helpdesk.inputs", "_DIGITS", "fullmatch", lambda n: rep("1", n, "x")),
    Case("helpdesk.inputs", "_UNECHOED", "sub", lambda n: rep("\ud800\x1b\u2028", n)),
    # A flag's tag run that never ends in a cancel tag, then each tag character removed.
    Case("helpdesk.inputs", "_TAGS", "sub", lambda n: "\U0001f3f4" + rep("\U000e0061", n - 1)),
    Case("helpdesk.inputs", "_TAGS", "sub", lambda n: rep("\U0001f3f4\U000e0067\U000e0062", n)),
    Case("helpdesk.inputs", "_TAGS", "sub", lambda n: rep("\U0001f3f4" + "\U000e0061" * 100, n)),
    Case("helpdesk.inputs", "_TAG", "search", lambda n: rep("a\u00e9\U0001f3f4", n)),
    Case("helpdesk.cli", "_UNSHOWN", "sub", lambda n: rep("\x1b[31m", n)),
    Case("helpdesk.service_fields", "_SERIAL", "fullmatch", lambda n: rep("A:", n, " ")),
    Case("helpdesk.service_fields", "_SEPARATORS", "split", lambda n: rep(" ,;\t", n, "x")),
    Case("helpdesk.services.teams", "_NAME", "fullmatch", lambda n: rep("a_", n, "!")),
    Case("helpdesk.services.canned", "_PLACEHOLDER", "sub", lambda n: rep("{customer_nam", n)),
    Case("helpdesk.outbound.compose", "_MIME_TOKEN", "fullmatch", lambda n: rep("a.", n, "/")),
    Case("helpdesk.outbound.compose", "_WRITABLE_ID", "fullmatch", lambda n: "<" + rep("a@", n, "<")),
    Case("helpdesk.wording", "_PLACEHOLDER", "split", lambda n: rep("%(aaaa", n)),
    # parser
    Case(P, "_HEADER_LINE", "match", lambda n: brep(b"!", n), binary=True),
    Case(P, "_BOUNDARY_LINE", "finditer", lambda n: brep(b"--" + b"x" * 199 + b"-\n", n), binary=True),
    Case(P, "_ENCODED_WORD", "finditer", lambda n: rep("=?utf-8?B?", n)),
    Case(P, "_ENCODED_WORD", "finditer", lambda n: rep("=?", n)),
    Case(P, "_WORD", "finditer", lambda n: rep("a ", n)),
    Case(P, "_QP_ESCAPE", "sub", lambda n: brep(b"=", n), binary=True),
    Case(P, "_FOLD", "sub", lambda n: rep("\r\n", n)),
    Case(P, "_LINE_BREAK", "sub", lambda n: rep("\r", n)),
    Case(P, "_WHITESPACE", "sub", lambda n: rep(" ", n, "x")),
    Case(P, "_ANGLE_ID", "search", lambda n: rep("<", n)),
    Case(P, "_ANGLE_ID", "search", lambda n: "<" + rep("a", n - 1)),
    Case(P, "_ADDRESS_WORD", "finditer", lambda n: rep("a@", n)),
    Case(P, "_ADDRESS_WORD", "finditer", lambda n: rep("<", n)),
    Case(P, "_ADDRESS_WORD", "finditer", lambda n: rep("a@b.c, ", n)),
    Case(P, "_META_CHARSET", "search", lambda n: brep(b"<meta", n), binary=True),
    Case(P, "_META_CHARSET", "search", lambda n: b"<meta " + brep(b"charset ", n - 6), binary=True),
    Case(
        P, "_META_CHARSET", "search", lambda n: b"<meta " + brep(b"charset" + b" " * 50, n - 6), binary=True
    ),
    Case(P, "_UNSAFE_FILENAME_CHARS", "sub", lambda n: rep("<", n)),
    Case(P, "_PATH_SEPARATORS", "split", lambda n: rep("/", n)),
    Case(P, "_NOT_BASE64", "sub", lambda n: brep(b"!", n), binary=True),
    Case(P, "_ID_SEPARATORS", "split", lambda n: rep(" ,", n)),
    Case(P, "_BLANK_LINE", "search", lambda n: brep(b"\n\rx", n), binary=True),
    Case(P, "_SERVER_FIELD", "match", lambda n: brep(b"a", n), binary=True),
    Case(P, "_SERVER_FIELD", "match", lambda n: brep(b"a ", n), binary=True),
    Case(P, "_BARE_CR", "search", lambda n: brep(b"\r\n", n), binary=True),
    Case(P, "_BASE64_START", "search", lambda n: brep(b"\n", n), binary=True),
    Case(P, "_BASE64_START", "search", lambda n: brep(b"\r\n\r\n" + b"A" * 39 + b"!", n), binary=True),
    Case(P, "_PLACEHOLDER", "sub", lambda n: rep("\ue000" + "1" * 9, n)),
    Case(P, "_BLANK_LINES", "sub", lambda n: rep("\n\nx", n)),
    Case(P, "_BLANK_LINES", "sub", lambda n: rep("\n", n)),
    Case(P, "_CANONICAL_TAG", "finditer", lambda n: rep("<" + "a" * 10, n)),
    Case(P, "_CANONICAL_TAG", "finditer", lambda n: rep("</", n)),
    Case(P, "_CANONICAL_TAG", "finditer", lambda n: "<" + rep("a", n - 1)),
    Case(P, "_CANONICAL_TAG", "finditer", lambda n: rep("<blockquote>", n)),
    Case(P, "_CANONICAL_TAG", "finditer", lambda n: rep('<a href="', n)),
    Case(P, "_CANONICAL_TAG", "finditer", lambda n: '<a href="' + rep("a", n - 9)),
    Case(P, "_CANONICAL_TAG", "finditer", lambda n: rep('<a href="x"', n)),
    Case(P, "_CANONICAL_TAG", "finditer", lambda n: rep('<ol start="1" reversed=""', n)),
    Case(P, "_CANONICAL_TAG", "finditer", lambda n: "<ol" + rep(' a=""', n - 3)),
    Case(P, "_CANONICAL_TAG", "finditer", lambda n: rep('<ol a=" b="', n)),
    Case(P, "_TAG_ATTRIBUTE", "findall", lambda n: rep(' start="', n)),
    Case(P, "_TAG_ATTRIBUTE", "findall", lambda n: ' href="' + rep("a", n - 7)),
    Case(P, "_TAG_ATTRIBUTE", "findall", lambda n: rep(" aaaaaaaa=", n)),
    Case(P, "_LIST_NUMBER", "fullmatch", lambda n: rep("1", n, "x")),
    # automail
    Case(A, "_BOUNCE_SENDER_NAMES", "match", lambda n: "mailer-daemon" + rep(" ", n - 13, "x")),
    Case(A, "_OUT_OF_OFFICE_SUBJECT", "match", lambda n: "automatic reply" + rep(" ", n - 15, "x")),
    Case(A, "_OUT_OF_OFFICE_PHRASE", "search", lambda n: rep("out of office ", n)),
    Case(A, "_OUT_OF_OFFICE_PHRASE", "search", lambda n: "automatic reply" + rep(" ", n - 15, "x")),
    Case(A, "_BOUNCE_SUBJECT", "match", lambda n: "undeliverable mail" + rep(" ", n - 18, "x")),
    # The alternatives this change added: each word then `_END`'s whitespace run.
    Case(A, "_BOUNCE_SUBJECT", "match", lambda n: "配信不能" + rep(" ", n - 4, "x")),
    Case(A, "_BOUNCE_SUBJECT", "match", lambda n: "メール" + rep("メール", n - 3)),
    Case(A, "_BOUNCE_SUBJECT", "match", lambda n: "не доставлено" + rep("\t", n - 13, "x")),
    Case(A, "_DELAY_SUBJECT", "match", lambda n: rep(" ", n, "x")),
    Case(A, "_DELAY_SUBJECT", "match", lambda n: "delivery status notification" + rep(" ", n - 28, "x")),
    Case(A, "_MAIL_SYSTEM_NAME", "search", lambda n: rep("maile", n)),
    Case(A, "_BOUNCE_BODY", "search", lambda n: rep("the following message to <", n)),
    Case(A, "_BOUNCE_BODY", "search", lambda n: rep("this is the mail system at hos ", n)),
    Case(A, "_BOUNCE_BODY", "search", lambda n: rep("no se ha pudo ", n)),
    Case(A, "_BOUNCE_BODY", "search", lambda n: rep("配信でき", n)),
    Case(A, "_LIST_NOTICE_BODY", "search", lambda n: rep("you are not a member o", n)),
    Case(A, "_LIST_NOTICE_BODY", "search", lambda n: rep("only subscribers may pos", n)),
    Case(A, "_LIST_NOTICE_BODY", "search", lambda n: rep("no es no está no tiene permiso para ", n)),
    Case(A, "_LIST_NOTICE_SUBJECT", "match", lambda n: "your message to " + rep("x", n - 16)),
    Case(A, "_LIST_NOTICE_SUBJECT", "match", lambda n: rep(" ", n - 16) + "your message to "),
    Case(
        A,
        "_LIST_NOTICE_SUBJECT",
        "match",
        lambda n: "your message to " + rep("x" * 199 + " awaits moderator ", n - 16),
    ),
    Case(A, "_LIST_NOTICE_SUBJECT", "match", lambda n: "request to mailing list " + rep("x", n - 24)),
    Case(A, "_REPORT_TYPE", "search", lambda n: "report-type=" + rep(" ", n - 12, '"')),
    Case(A, "_REPORT_TYPE", "search", lambda n: rep("report-type", n)),
    Case(A, "_REPORT_TYPE", "search", lambda n: rep("report-type" + " " * 50 + "=" + " " * 50, n)),
    Case(A, "_DSN_ACTION", "finditer", lambda n: rep("action:" + " " * 100 + "\n", n)),
    Case(A, "_DSN_ACTION", "finditer", lambda n: "action:" + rep("\n", n - 7)),
    Case(A, "_ANGLE_ID", "search", lambda n: "<" + rep("a", n - 1)),
    Case(A, "_ANGLE_ID", "search", lambda n: rep("<a", n)),
    Case(A, "_ADDRESS_SEPARATORS", "split", lambda n: rep("a", n)),
    Case(A, "_BODY_MESSAGE_ID", "finditer", lambda n: rep("message-id: " + "a@" * 400 + " x\n", n)),
    Case(A, "_BODY_MESSAGE_ID", "finditer", lambda n: "message-id: a@" + rep("b", n - 14, " x")),
    Case(A, "_BODY_MESSAGE_ID", "finditer", lambda n: "message-id: " + rep("a", n - 12)),
    Case(A, "_BODY_MESSAGE_ID", "finditer", lambda n: rep(">", n, "x")),
    # authentication
    Case(AU, "_KEYWORD", "fullmatch", lambda n: "a" + rep("-", n - 2, "!")),
    Case(AU, "_PAIR", "match", lambda n: rep("a", n)),
    Case(AU, "_PAIR", "match", lambda n: 'a="' + rep("\\a", n - 3)),
    Case(AU, "_PAIR", "match", lambda n: rep("a", n // 2) + rep(" ", n - n // 2)),
    Case(AU, "_PAIR", "match", lambda n: "a" + rep(" ", n // 2) + "=" + rep(" ", n - n // 2 - 2)),
    Case(AU, "_PAIR", "match", lambda n: "a=" + rep("\x00", n - 2)),
    Case(AU, "_QUOTED_PAIR", "sub", lambda n: rep("\\", n)),
    Case(AU, "_SERVER_TEXT", "fullmatch", lambda n: rep(" ", n, "\xa0")),
    Case(AU, "_SERVER_TEXT", "fullmatch", lambda n: rep("a", n, "\x00")),
    # charsets
    Case(C, "_JIS_ESCAPE", "split", lambda n: brep(b"\x1b(", n), binary=True),
    Case(C, "_SURROGATE", "sub", lambda n: rep("\ud800", n)),
    # message ids
    Case("helpdesk.message_ids", "_LOCAL_PART", "match", lambda n: "tkt." + rep("1", n - 4)),
    Case("mailgateway.outbound", "_BAD_MAILBOX", "match", lambda n: rep("5.1.1", n, "0")),
    Case("mailgateway.outbound", "_BAD_MAILBOX", "match", lambda n: "5.1." + rep("1", n - 4)),
    # html_depth: one tag's attributes, whatever quotes and equals signs they hold
    Case(H, "_MARKUP", "search", lambda n: "<a" + rep(" b", n - 2)),
    Case(H, "_MARKUP", "search", lambda n: "<a" + rep(" b = ", n - 2)),
    Case(H, "_MARKUP", "search", lambda n: "<a" + rep(' b="c"', n - 2)),
    Case(H, "_MARKUP", "search", lambda n: "<a" + rep(' b="', n - 2)),
    Case(H, "_MARKUP", "search", lambda n: "<a" + rep(" =/'", n - 2)),
    Case(H, "_MARKUP", "search", lambda n: rep("<", n)),
    Case(H, "_MARKUP", "search", lambda n: rep("</ ", n)),
    Case(H, "_MARKUP", "search", lambda n: "<a" + rep("/ /", n - 2)),
    Case(H, "_TAG_TAIL", "match", lambda n: rep(" b =", n)),
    Case(H, "_TAG_TAIL", "match", lambda n: rep("\t\n", n)),
    Case(H, "_TAG_TAIL", "match", lambda n: rep("a=b/", n)),
    Case(H, "_COMMENT_END", "search", lambda n: rep("--!", n)),
    Case(H, "_COMMENT_END", "search", lambda n: rep("-", n)),
    Case(H, "_START_TAG", "finditer", lambda n: rep("<a", n)),
    Case(H, "_FORMATTING_NAME", "match", lambda n: rep("a", n)),
    Case("mailgateway.smtp_takings", "_NOT_IN_A_NAME", "sub", lambda n: rep("[::1]:25 ", n)),
    Case(H, "_NEXT_ATTRIBUTE", "match", lambda n: rep(" /", n)),
    Case(H, "_NEXT_ATTRIBUTE", "match", lambda n: " a" + rep(" =", n - 2)),
    Case(H, "_NEXT_ATTRIBUTE", "match", lambda n: " a=" + rep("b", n - 3)),
]


def benign(case: Case, n: int) -> Any:
    text = prose(n)
    return text.encode() if case.binary else text


def baseline(data: Any) -> float:
    """One linear pass over the text: the least reading any mail costs."""
    collapse = re.compile(rb"\s+" if isinstance(data, bytes) else r"\s+")
    return least_cpu(lambda: collapse.sub(b" " if isinstance(data, bytes) else " ", data))


def assert_linear(label: str, work: Callable[[Any], object], bad: Callable[[int], Any], good: Any) -> None:
    big, small = bad(SIZE), bad(SIZE // 4)
    t_big = least_cpu(lambda: work(big))
    t_small = least_cpu(lambda: work(small))
    t_good = max(least_cpu(lambda: work(good)), baseline(good))
    assert t_big <= RATIO * t_good, (
        f"{label}: {t_big * 1e3:.1f} ms on 1 MB of pathological input, "
        f"{t_good * 1e3:.2f} ms on benign input of the same size"
    )
    assert t_big <= GROWTH * max(t_small, t_good / 4), (
        f"{label}: {t_small * 1e3:.1f} ms at 256 KB but {t_big * 1e3:.1f} ms at 1 MB"
    )


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.module.rsplit('.', 1)[1]}.{c.name}")
def test_pattern_runs_in_linear_time(case: Case) -> None:
    assert_linear(f"{case.module}.{case.name}.{case.apply}", case.run, case.bad, benign(case, SIZE))


def _keys(data: str) -> object:
    return dedup_keys(InboundMail(data.encode(), None))


def _number_patterns() -> tuple[re.Pattern[str], re.Pattern[str]]:
    return numbering._patterns("TKT-")


@pytest.mark.parametrize(
    ("label", "work", "bad"),
    [
        (
            "numbering exact",
            lambda data: _number_patterns()[0].match(data),
            lambda n: "TKT-" + rep("0", n - 4, "x"),
        ),
        ("numbering exact", lambda data: _number_patterns()[0].match(data), lambda n: rep(" ", n, "x")),
        (
            "numbering anywhere",
            lambda data: list(_number_patterns()[1].finditer(data)),
            lambda n: rep("TKT-", n),
        ),
        (
            "numbering anywhere",
            lambda data: list(_number_patterns()[1].finditer(data)),
            lambda n: rep("tkt-0000000000000000000", n),
        ),
        ("addresses.is_valid", is_valid, lambda n: rep("a", n - 2, "@b")),
        # Each prefix before a separator was compacted anew: 1 MB of `-` took 4 minutes.
        ("automail.is_machine_address", is_machine_address, lambda n: rep("-", n - 2, "@b")),
        ("automail.is_machine_address", is_machine_address, lambda n: rep("no-", n - 2, "@b")),
        # The keys of a mail without Message-ID. The author's fields (`written_hash`):
        # each line looked at once, a header of a million short fields without a Date
        # read to its end, a field of a million folds unfolded once, a million fields.
        ("dedup.dedup_keys", _keys, lambda n: rep("X:\n", n)),
        ("dedup.dedup_keys", _keys, lambda n: "Received: x\n" + rep("D" * 60 + "\n", n - 12)),
        ("dedup.dedup_keys", _keys, lambda n: "Date:" + rep("\n x", n - 5)),
        ("dedup.dedup_keys", _keys, lambda n: rep("Date: x\r\n", n)),
        # With a Date, the key from before the upgrade leaves the trace block on top
        # out: a line, or a fold, looked at once.
        ("dedup.dedup_keys", _keys, lambda n: rep("Received: x\r\n", n, "x\nDate: x\n")),
        ("dedup.dedup_keys", _keys, lambda n: "Received:" + rep("\n ", n - 9, " x\nDate: x\n")),
        ("dedup.dedup_keys", _keys, lambda n: rep("ARC-Seal" + " " * 50 + ":\n", n, "x:\nDate: x\n")),
        (
            "strip_comments",
            lambda data: strip_comments(data, strict=False),
            lambda n: rep("(", n // 2) + rep(")", n // 2),
        ),
    ],
)
def test_pattern_built_at_run_time_or_one_pass_function_runs_in_linear_time(
    label: str, work: Callable[[Any], object], bad: Callable[[int], str]
) -> None:
    assert_linear(label, work, bad, prose(SIZE))


# A newsletter's layout, none of it closed: each cell opens the next list.
NESTINGS = ["<div>", "<details>", "<div><ul><li><table><tr><td><p>"]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("unit", NESTINGS)
@pytest.mark.parametrize(
    "reader", [html_depth.bounded, clean, _html_to_text], ids=["bounded", "html.clean", "html_to_text"]
)
def test_nested_html_costs_what_flat_html_of_its_size_costs(reader: Callable[[str], str], unit: str) -> None:
    """nh3's HTML5 tree builder looks through its stack of open elements for each
    start tag: 100,000 unclosed `<div>` took 19 s, a 1 MB HTML-only mail 188 s of the
    gateway's CPU before anyone knew who sent it. Nesting past `html_depth.MAX_DEPTH`
    is flattened before nh3 reads it (docs/security.md, "Bounded work"); the benign
    input here is flat HTML of the same size, which costs more than prose."""
    flat = rep("<p>A line of the mail.</p>\n", SIZE)
    assert_linear(f"{reader.__name__} on {unit}", reader, lambda n: rep(unit, n), flat)


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    "reader", [html_depth.bounded, clean, _html_to_text], ids=["bounded", "html.clean", "html_to_text"]
)
def test_a_tag_of_many_attributes_costs_what_flat_html_of_its_size_costs(
    reader: Callable[[str], str],
) -> None:
    """html5ever compares each attribute's name with the tag's others: one tag of
    200,000 distinct attributes (1.5 MB) took 8 s. A tag keeps its first
    `html_depth.MAX_ATTRIBUTES` (docs/security.md, "Bounded work")."""
    flat = rep("<p>A line of the mail.</p>\n", SIZE)

    def attributes(n: int) -> str:
        return rep("<a " + " ".join(f"a{i}" for i in range(n // 4)), n - 1) + ">"

    assert_linear(f"{reader.__name__} on one tag's attributes", reader, attributes, flat)


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    "prefix", ["<svg><title>x</title>", "<p><b></p><svg><title>x</title>", "<svg><foreignObject>"]
)
def test_shapes_inside_svg_cost_what_flat_html_of_its_size_costs(prefix: str) -> None:
    """Inside SVG a `<path/>` closes itself and the nesting bound does not count it;
    where the tree builder reads it as HTML instead (an HTML element, or text in a
    title that may open formatting elements again) it must (docs/security.md)."""
    flat = rep("<p>A line of the mail.</p>\n", SIZE)
    shapes = lambda n: prefix + rep("<path/>", n - len(prefix))  # noqa: E731
    assert_linear(f"clean on {prefix}<path/>", clean, shapes, flat)


@pytest.mark.parametrize(
    "bad",
    [
        lambda n: rep("<style></styl", n),
        lambda n: rep("<script></script", n),
        lambda n: "<textarea>" + rep("</textarea", n - 10),
        lambda n: rep("<!--<div>-", n),
        lambda n: rep("<![CDATA[<div>", n),
        lambda n: rep("<a b='</div>'>", n),
        lambda n: "<svg>" + rep("<![CDATA[<div>]]>", n - 5),
        lambda n: "<div>" * 300 + rep("<<div>", n - 1500),
    ],
)
def test_the_nesting_bound_reads_any_markup_in_one_pass(bad: Callable[[int], str]) -> None:
    assert_linear("html_depth.bounded", html_depth.bounded, bad, prose(SIZE))


def test_every_pattern_is_covered() -> None:
    covered = {(case.module, case.name) for case in CASES}
    found = {
        (name, key)
        for name in MAIL_MODULES
        for key, value in vars(importlib.import_module(name)).items()
        if isinstance(value, re.Pattern)
    }
    assert found - covered == set(), "patterns applied to mail without a linear-time case"
    assert covered - found == set(), "cases for patterns that no longer exist"


_INLINE = re.compile(r"\bre\.(?:compile|sub|subn|search|match|fullmatch|findall|finditer|split)\(")


@pytest.mark.parametrize("module", MAIL_MODULES)
def test_no_pattern_is_compiled_inside_a_function(module: str) -> None:
    """Patterns live at module level, where the coverage test above finds them."""
    source = inspect.getsource(importlib.import_module(module))
    inside = [
        line.strip() for line in source.splitlines() if _INLINE.search(line) and line.startswith((" ", "\t"))
    ]
    allowed = [
        line for line in inside if "exact = re.compile" in line or "anywhere = re.compile" in line
    ]  # numbering: per prefix, covered above
    assert inside == allowed
