"""Reading what people and programs type into forms, query strings and JSON: ids,
and text a database can store.

`str.isdigit()` is not enough: it accepts `²` and other Unicode digits that `int()`
then refuses, and it says nothing about size, while the database's integer columns
overflow past 2**31 - 1. Only ASCII digits within range are ids.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

MAX_ID = 2**31 - 1
_DIGITS = re.compile(r"[0-9]{1,10}")
# Control characters (line breaks among them) and Unicode's line and paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Bidirectional embeddings, overrides and isolates (docs/security.md, "One-line
# text"): they make a line read other than it is written. The implicit marks
# (U+200E, U+200F) and right-to-left letters are text and stay.
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")
# Unicode's tag characters (U+E0000-U+E007F): invisible, but a language model reads
# them as the ASCII letters they shadow, so text staff see as harmless can carry
# instructions to an assistant (docs/security.md, "Hidden text"). Kept only where
# they spell an emoji tag sequence: U+1F3F4 (a black flag), tag characters, U+E007F
# (cancel tag), a subdivision's flag such as England's. Group 1 is such a sequence.
_TAGS = re.compile("(\U0001f3f4[\U000e0020-\U000e007e]+\U000e007f)|[\U000e0000-\U000e007f]")
_TAG = re.compile("[\U000e0000-\U000e007f]")
# What an echo of caller text must not carry: the above, and lone surrogates (a
# surrogate pair is one character once JSON is decoded, so any left is alone).
_UNECHOED = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
MAX_ECHO = 100  # characters of caller text an answer repeats
# The control characters text of several lines has no use for: all but tab and line
# feed (a carriage return is a line feed by then: `typed_text`).
_LINES_CONTROL: dict[int, None] = dict.fromkeys([*range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0)])
# Unicode's categories of characters that take no place on the page: controls, and
# format characters (zero-width spaces and joiners, bidirectional marks, a BOM).
_UNSHOWN = frozenset(("Cc", "Cf"))
# Characters outside those categories that show nothing either: Unicode's
# Default_Ignorable_Code_Point characters that are letters or marks (the Hangul
# fillers, the combining grapheme joiner, the Khmer inherent vowels, the Mongolian
# and other variation selectors) and the blank braille pattern, which screen
# readers and fonts draw as nothing. A fixed list, not a rule over a category.
_BLANK_MARKS = frozenset(
    "\u034f\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u180f\u2800\u3164\uffa0"
    + "".join(chr(code) for code in range(0xFE00, 0xFE10))
    + "".join(chr(code) for code in range(0xE0100, 0xE01F0))
)
MAX_PAGE = 100_000  # the last page a portal list is asked for


def strict_json(text: str | bytes) -> Any:
    """`text` read as RFC 8259 JSON, or ValueError (RecursionError when nested deeper
    than the parser recurses): an object naming a member twice, and the `NaN`,
    `Infinity` and `-Infinity` Python's parser takes, are not JSON. Taken with its
    last value, a member named twice was judged by whatever read the first (a proxy
    in front of the API, a runtime's check of a tool call's arguments) as another
    request than the one acted on (docs/security.md, "JSON")."""
    return json.loads(text, object_pairs_hook=_one_of_each, parse_constant=_no_constant)


def _one_of_each(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        raise ValueError("a name given twice in one object")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def positive_int(text: object, maximum: int = MAX_ID) -> int | None:
    """`text` as an integer in 1..maximum, or None."""
    if isinstance(text, bool):
        return None
    if isinstance(text, int):
        value = text
    elif isinstance(text, str) and _DIGITS.fullmatch(text):
        value = int(text)
    else:
        return None
    return value if 1 <= value <= maximum else None


def page_number(text: object) -> int:
    """A portal list's page asked for in its query string (the queue's, the
    quarantine's): 1 when `text` is not a page number. Bounded, so the OFFSET it
    becomes stays an integer the database takes."""
    return positive_int(text, maximum=MAX_PAGE) or 1


def unstorable(value: Any) -> bool:
    """Text no database stores: NUL (PostgreSQL refuses it) or a lone surrogate
    (JSON's `\\ud800` escape decodes to one, and no database encoding takes it).
    Refused as input, not at the database. Looks into lists, not into objects: an
    object's reader names each of its fields (`api.payload.json_object`,
    `api.customers.named`, which echo an unknown one); for a JSON value
    read whole, keys included, see `unstorable_json`."""
    return _unstorable(value, objects=False)


def unstorable_json(value: Any) -> bool:
    """`unstorable` anywhere in a parsed JSON value, an object's keys included:
    for a value handed whole to code that may encode any of its text (a schema
    validator does: a lone surrogate in a key made jsonschema-rs raise
    UnicodeEncodeError; docs/security.md, "Keys of a tool call's arguments")."""
    return _unstorable(value, objects=True)


def _unstorable(value: Any, *, objects: bool) -> bool:
    pending = [value]  # not recursive: JSON nests lists deeper than Python recurses
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item or not _encodable(item):
                return True
        elif isinstance(item, list):
            pending.extend(item)
        elif objects and isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
    return False


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def echoed(value: object, limit: int = MAX_ECHO) -> str:
    """Caller text an answer repeats (an unknown tool's or field's name, a ticket
    number not found), cut to `limit` characters, each control character or lone
    surrogate U+FFFD. JSON's `\\ud800` escape decodes to a lone surrogate, and
    an answer repeating it is refused whole by strict decoders (serde, Go), so
    nothing the caller sent goes back out unclean; not text: its `str()`."""
    text = value if isinstance(value, str) else str(value)
    return _UNECHOED.sub("\ufffd", text[:limit])


def one_line(text: str) -> str:
    """`text` as one line of plain text: every control character a space, runs of
    spaces one, bidirectional controls and tag characters (`without_tags`) dropped.
    For what is shown as a line and put into mail headers (names, subjects): a line
    break there made mail fail to compose, an escape sequence reached terminals, an
    override turned the line."""
    return " ".join(_CONTROL.sub(" ", without_bidi(without_tags(text))).split())


def typed_text(text: str) -> str:
    """Text of several lines as the textarea it was typed into holds it: every line
    break LF. A browser sends a line break as CR LF, while the textarea's
    `maxlength` counts it as one character; a limit is counted on this text, and
    it is what is stored (docs/web.md, "Text typed into a box")."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def nothing_to_read(text: str) -> bool:
    """Whether `text` shows nothing: only whitespace, control characters,
    Unicode's format characters (category Cf: zero-width spaces and joiners, the
    bidirectional marks and controls, a BOM, a soft hyphen) and the letters and
    marks that show nothing (`_BLANK_MARKS`: Hangul fillers, the blank braille
    pattern, variation selectors), which take no place on the page. For text that
    must say something: a ticket's description and a message's body
    (`TicketsService`), a subject (`readable_line`). Reads up to the first
    character that shows."""
    return all(
        char.isspace() or char in _BLANK_MARKS or unicodedata.category(char) in _UNSHOWN for char in text
    )


def has_invisible(text: str) -> bool:
    """Whether `text` holds a character that shows nothing, or shows as a space and
    is none: a control or format character (a zero-width space, a BOM, a soft
    hyphen), a letter or mark that shows nothing (`_BLANK_MARKS`), or whitespace
    other than the space (a no-break space). For a key that is compared as given
    (a chat's conversation id): with one of these it reads as another key, or as
    none (docs/integrations.md)."""
    return any(
        (char.isspace() and char != " ") or char in _BLANK_MARKS or unicodedata.category(char) in _UNSHOWN
        for char in text
    )


def readable_line(text: str) -> str:
    """`text` as a subject is stored (`one_line`), or "" where that line has nothing
    to read (`nothing_to_read`): a subject of zero-width spaces, joiners, Hangul
    fillers or blank braille is no subject, answered as an empty one is (required,
    or a channel's stand-in: docs/security.md, "One-line text"). A line with
    something to read keeps every character, invisible ones among them (the joiner
    inside an emoji sequence)."""
    line = one_line(text)
    return "" if nothing_to_read(line) else line


def without_tags(text: str) -> str:
    """`text` without Unicode's tag characters, but for those of an emoji tag sequence
    (a subdivision's flag): see `_TAGS`. Invisible to staff, they were kept in a
    subject or a description and handed to the assistant's language model, which
    reads them as text: hidden instructions (docs/security.md, "Hidden text")."""
    if text.isascii() or _TAG.search(text) is None:  # the common case, without a substitution's cost
        return text
    return _TAGS.sub(lambda found: found.group(1) or "", text)


def plain_lines(text: str) -> str:
    """Text of several lines (`typed_text`) without tag characters (`without_tags`)
    and without control characters but tab and line feed: a terminal's escape
    sequence, a bell. For a customer's rating comment, which is shown to staff and
    handed to whoever reads the API, and has no use for either."""
    return without_tags(text).translate(_LINES_CONTROL)


def without_bidi(text: str) -> str:
    """`text` without bidirectional embeddings, overrides and isolates (see `_BIDI`)."""
    return _BIDI.sub("", text)


# What text of several lines holds besides its characters (`has_control(lines=True)`).
_LINE_LAYOUT = frozenset("\t\n\r")


def has_control(text: str, *, lines: bool = False) -> bool:
    """Whether `text` holds a control character, a line separator or a bidirectional
    control (`one_line` would change more than spacing). `lines`: text of several
    lines typed by staff (a reason), where tab, line feed and carriage return (a
    form's CRLF) are text, and every other control still counts (docs/security.md)."""
    if _BIDI.search(text) is not None:
        return True
    if not lines:
        return _CONTROL.search(text) is not None
    return any(found.group() not in _LINE_LAYOUT for found in _CONTROL.finditer(text))
