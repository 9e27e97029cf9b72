"""HTML nested deeper than any mail needs is flattened before an HTML5 parser reads it.

nh3 (html5ever, the HTML5 tree builder of the WHATWG specification) looks through
its stack of open elements for each start tag, so the cost of a document grows with
the square of its nesting: 40,000 `<div>` with no closing tag took 3 s, a 1 MB mail
minutes. `bounded` is one forward pass over the markup that keeps an estimate of
that stack and drops each start tag that would take it past `MAX_DEPTH`; both
sanitizers (`helpdesk.html.clean`, the parser's HTML-to-text) call it first
(docs/security.md, "Bounded work").

The estimate may only err upward (a flatter result, never a deeper tree):
- tags are found the way the HTML5 tokenizer finds them (attribute values, comments,
  bogus comments, the raw text of `<style>`, `<script>`, `<textarea>`…);
- an element leaves the estimate only on a token the tree builder certainly closes
  it with, when it is the last one opened, or behind the few elements that close
  with it (`</tr>` over an unclosed `<td>`); any other unclosed element stays counted;
- inside `<svg>` or `<math>` the stack is known exactly for as long as every token
  is one the tree builder handles as SVG or MathML (not in a `<select>` or a
  `<template>`): there a start tag ending in `/>` opens and closes its element
  (an inline logo of hundreds of `<path/>`), `<style>`, `<title>` and the like hold
  markup rather than raw text, CDATA is a section of text, and an end tag closes
  the innermost element of its name. An HTML element (a `<p>`, or any tag inside
  a `<title>` or `<foreignObject>`), an end tag with no such element, and text in
  such an integration point while a formatting element is counted (the tree
  builder may open those again before the text) end the exactness: from there
  on the rules above and below apply, with the elements still counted;
- where the tokenizer's state depends on the tree otherwise (raw text or CDATA
  inside SVG, MathML, a `<select>` or a `<template>`), every `<` followed by a
  letter from there on counts as an element that is never closed, and past the
  bound becomes `&lt;`.
"""

from __future__ import annotations

import re

MAX_DEPTH = 256
# html5ever compares each attribute's name with those before it in the tag.
MAX_ATTRIBUTES = 256
_SHORT_TAG = 2048  # too short to hold more attributes than that

# The HTML5 tokenizer's tag (tag open, tag name, attribute and self-closing states):
# a name, then attributes, to the first `>` outside a quoted value. The groups are
# atomic and their quantifiers possessive: one pass, no backtracking. Every
# character but `>` is consumed, so no `>` group means the tag runs to the end.
_WS = r"\t\n\f\r "
_ATTRIBUTE = (
    rf"(?>[^{_WS}/>][^{_WS}/>=]*+"
    rf"(?:[{_WS}]*+=[{_WS}]*+(?:\"[^\"]*+\"?|'[^']*+'?|[^{_WS}>\"'][^{_WS}>]*+)?)?)"
)
# A `/` right before the `>` ends the tag as `/>`, the self-closing flag (a `/` in an
# unquoted value is the value's).
_TAIL = rf"(?>(?:[{_WS}]++|/(?!>)|{_ATTRIBUTE})*+)(/?>)?"
_MARKUP = re.compile(rf"<(?:(/?)([A-Za-z][^{_WS}/>]*+){_TAIL}|!--|!|\?|/)")
_TAG_TAIL = re.compile(_TAIL)
_NEXT_ATTRIBUTE = re.compile(rf"(?>(?:[{_WS}]++|/)*+){_ATTRIBUTE}")
_COMMENT_END = re.compile(r"--!?>")
_START_TAG = re.compile(r"<(?=[A-Za-z])")
# A tag name as long as a formatting element's at most, then what ends a name.
_FORMATTING_NAME = re.compile(r"[A-Za-z]{1,6}(?=[\t\n\f\r />]|$)")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

_VOID = frozenset(
    "area base basefont bgsound br col embed frame hr image img input keygen link meta "
    "param source track wbr".split()
)
# Never pushed by a fragment parser (ammonia's): their start tags are ignored.
_UNCOUNTED = frozenset({"html", "head", "body"})
# Elements whose content the tokenizer reads as text up to their own end tag.
_RAW_TEXT = frozenset("style xmp iframe noembed noframes noscript textarea title script plaintext".split())
_NOT_PUSHED = _VOID | _UNCOUNTED | _RAW_TEXT  # void ones are, inside SVG or MathML
_FOREIGN = frozenset({"svg", "math"})
_WATCHED = _FOREIGN | {"select", "template"}
# Inside SVG or MathML these start tags leave it for HTML ("breakout"; `font` only
# with some attributes, taken as always).
_BREAKOUT = frozenset(
    "b big blockquote body br center code dd div dl dt em embed h1 h2 h3 h4 h5 h6 head hr i img "
    "li listing menu meta nobr ol p pre ruby s small span strong strike sub sup table tt u ul var "
    "font".split()
)
# SVG's and MathML's elements whose content is read as HTML (both sets, whichever
# the namespace: taking one for the other only makes the pass stop trusting sooner).
_INTEGRATION_POINTS = frozenset("foreignobject desc title mi mo mn ms mtext annotation-xml".split())
# What the tree builder keeps in its list of active formatting elements, and may
# open again before text.
_FORMATTING = frozenset("a b big code em font i nobr s small strike strong tt u".split())
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
# Start tags that close an open <p> ("close a p element" in the specification).
_CLOSE_P = (
    frozenset(
        "address article aside blockquote center details dialog dir div dl fieldset figcaption "
        "figure footer header hgroup main menu nav ol p section summary ul pre listing "
        "xmp hr li dd dt plaintext".split()
    )
    | _HEADINGS
)
_P = frozenset({"p"})
_CELLS = frozenset({"td", "th"})
_SECTIONS = frozenset({"tbody", "thead", "tfoot"})
# A start tag's implied end tags, each undone only when it is the last element open,
# in this order.
_IMPLIED: dict[str, tuple[frozenset[str], ...]] = {
    "li": (frozenset({"p"}), frozenset({"li"})),
    "dd": (frozenset({"p"}), frozenset({"dd", "dt"})),
    "dt": (frozenset({"p"}), frozenset({"dd", "dt"})),
    **{heading: (frozenset({"p"}), _HEADINGS) for heading in _HEADINGS},
    "td": (frozenset({"p"}), _CELLS),
    "th": (frozenset({"p"}), _CELLS),
    "tr": (frozenset({"p"}), _CELLS, frozenset({"tr"})),
    **{section: (frozenset({"p"}), _CELLS, frozenset({"tr"}), _SECTIONS) for section in _SECTIONS},
    "option": (frozenset({"option"}),),
    "optgroup": (frozenset({"option"}),),
    "a": (frozenset({"a"}),),
    "nobr": (frozenset({"nobr"}),),
    "button": (frozenset({"button"}),),
    "select": (frozenset({"select"}),),
}
# Elements an end tag does not reach past ("has an element in scope") and the cells,
# objects and templates whose end clears the formatting elements opened in them.
_SCOPES = frozenset("applet caption marquee object table td th template svg math".split())
_COUNTED = _WATCHED | _FORMATTING | _SCOPES  # the elements `_Depth.watched` keeps a count of
# Bytes of formatting tags the tree builder may open again, past twice the markup's
# length: ordinary mail reopens a few, if any (`_Reopening`).
_REOPENED_ALLOWANCE = 64 * 1024
_RULED = frozenset(_IMPLIED) | _CLOSE_P | _WATCHED  # start tags with more to do than a push
# An end tag also closes these when they are all that stands above its element.
_BLOCKS = (
    "address article aside blockquote center details dialog dir div fieldset figcaption figure "
    "footer header hgroup main menu nav pre listing section summary caption td th li dd dt"
).split()
_CLOSES_OVER: dict[str, frozenset[str]] = {
    **{name: frozenset({"p"}) for name in (*_BLOCKS, *_HEADINGS)},
    "ul": frozenset({"p", "li"}),
    "ol": frozenset({"p", "li"}),
    "dl": frozenset({"p", "dd", "dt"}),
    "tr": frozenset({"p"}) | _CELLS,
    **{section: frozenset({"p", "tr"}) | _CELLS for section in _SECTIONS},
    "table": frozenset({"p", "tr", "caption", "colgroup"}) | _CELLS | _SECTIONS,
}
_LONGEST_CLOSE = 6  # elements an end tag is looked for behind


class _Depth:
    """The estimated stack of open elements (names, innermost last)."""

    def __init__(self) -> None:
        self.open: list[str] = []
        self.watched = dict.fromkeys(_COUNTED, 0)
        self.scopes = 0  # elements of `_SCOPES` among them (`_Reopening` compares it)

    def pop_to(self, index: int) -> None:
        for name in self.open[index:]:
            if name in self.watched:
                self.watched[name] -= 1
                self.scopes -= name in _SCOPES
        del self.open[index:]

    @property
    def foreign(self) -> bool:
        return self.watched["svg"] > 0 or self.watched["math"] > 0

    @property
    def formatting(self) -> bool:
        return any(self.watched[name] for name in _FORMATTING)

    def push(self, name: str) -> None:
        """An element opened with nothing implied (inside SVG or MathML)."""
        self.open.append(name)
        if name in self.watched:
            self.watched[name] += 1
            self.scopes += name in _SCOPES

    def close_foreign(self, name: str, exact: int) -> bool:
        """An end tag inside SVG or MathML whose elements from `exact` on are known:
        the tree builder closes the innermost of them with its name and all above it
        (looking no further while they are not HTML); whether one had it."""
        for index in range(len(self.open) - 1, exact - 1, -1):
            if self.open[index] == name:
                self.pop_to(index)
                return True
        return False

    def start(self, name: str) -> None:
        implied = _IMPLIED.get(name)
        if implied is None and name in _CLOSE_P:
            implied = (_P,)
        for names in implied or ():
            if self.open and self.open[-1] in names:
                self.pop_to(len(self.open) - 1)
        self.open.append(name)
        if name in self.watched:
            self.watched[name] += 1
            self.scopes += name in _SCOPES

    def end(self, name: str) -> None:
        if not self.open:
            return
        if self.open[-1] == name:
            self.pop_to(len(self.open) - 1)
            return
        over = _CLOSES_OVER.get(name)
        if over is None:
            return
        index = len(self.open) - 1
        stop = max(index - _LONGEST_CLOSE, -1)
        while index > stop and self.open[index] in over:
            index -= 1
        if index > stop and self.open[index] == name:
            self.pop_to(index)


class _Reopening:
    """What the tree builder may clone: the formatting elements it keeps in its list
    of active formatting elements and opens again before text once something else
    closed them (`<p><b title="…"></p>` then `<p>x</p>` a hundred thousand times
    clones the `<b>` and its attribute into every paragraph: 42 KB became 40 MB).
    The estimate errs upward: an entry leaves only on an end tag of its name met in
    the same scope (no table, cell or object opened or closed since), and every end
    tag or tag that closes others counts all the entries as opened again, but the
    end tag of the newest entry, which closes nothing above it. As the tree builder
    keeps three alike at most (its "Noah's Ark" clause), a tag written as three
    others in its scope adds nothing: sloppy mail that never closes its
    `<font size=2>` is not counted a hundred times."""

    def __init__(self) -> None:
        self.entries: dict[str, list[tuple[str, int, int]]] = {}  # by name: (tag, scope, number)
        self.alike: dict[tuple[str, int], int] = {}  # entries by (tag, scope)
        self.order: list[int] = []  # entries' numbers as opened, closed ones among them
        self.gone: set[int] = set()  # numbers of closed entries still in `order`
        self.bytes = 0  # of the entries
        self.reopened = 0  # bytes that may have been opened again so far

    def opened(self, name: str, tag: str, scope: int) -> None:
        if self.alike.get((tag, scope), 0) >= 3:
            return
        number = len(self.order) + len(self.gone)
        self.entries.setdefault(name, []).append((tag, scope, number))
        self.alike[tag, scope] = self.alike.get((tag, scope), 0) + 1
        self.order.append(number)
        self.bytes += len(tag)

    def closed(self, name: str, scope: int) -> bool:
        """An end tag of a formatting element: its entry leaves; whether it was the newest."""
        entries = self.entries.get(name)
        if not entries or entries[-1][1] != scope:
            return False
        tag, _, number = entries.pop()
        self.alike[tag, scope] -= 1
        self.bytes -= len(tag)
        while self.order and self.order[-1] in self.gone:
            self.gone.remove(self.order.pop())
        newest = bool(self.order) and self.order[-1] == number
        if newest:
            self.order.pop()
        else:
            self.gone.add(number)
        return newest

    def closing(self) -> None:
        self.reopened += self.bytes

    def at_most(self, tags: int) -> int:
        """What may be opened again when at most `tags` more tags are read."""
        return self.reopened + self.bytes * tags


def bounded(markup: str, limit: int = MAX_DEPTH) -> str:
    """`markup` with the start tags that would nest deeper than `limit` removed; the
    same string when none would (so ordinary mail is sanitized exactly as before).

    Markup whose formatting elements the tree builder may open again for more than
    twice its length and `_REOPENED_ALLOWANCE` (`_Reopening`) has every formatting tag
    read as a `<span>`, which is never opened again: its text is kept, its bold,
    italics and links are not."""
    result, reopened = _bounded(markup, limit, plain=False)
    if reopened <= 2 * len(markup) + _REOPENED_ALLOWANCE:
        return result
    return _bounded(markup, limit, plain=True)[0]


def _bounded(markup: str, limit: int, plain: bool) -> tuple[str, int]:
    """`bounded`'s pass: the markup within `limit` (formatting tags as `<span>` when
    `plain`), and the bytes its formatting elements may be opened again (`_Reopening`)."""
    depth = _Depth()
    reopening = _Reopening()
    pieces: list[str] = []
    kept = 0  # markup[:kept] is in pieces
    lowered: str | None = None
    position = 0
    opened, watched = depth.open, depth.watched
    # From this index on, `opened` is the tree builder's stack as it is, all SVG or
    # MathML (-1: not known so).
    exact = -1
    while (match := _MARKUP.search(markup, position)) is not None:
        previous = position
        start, position = match.span()
        closing, name, whole = match.groups()
        if exact >= 0 and (start > previous or name is None) and opened[-1] in _INTEGRATION_POINTS:
            if depth.formatting:
                exact = -1  # HTML text there first opens again formatting elements closed before
        if name is None:
            if exact >= 0 and markup.startswith("<![CDATA[", start):
                section_end = markup.find("]]>", start + 9)
                if section_end < 0:
                    break
                position = section_end + 3
                continue
            found = _skip_declaration(markup, start, depth.foreign)
            if found is None:
                break
            if found < 0:
                return _uncertain(markup, pieces, kept, start, limit - len(opened)), reopening.at_most(limit)
            position = found
            continue
        if whole is None:
            break  # a tag the end of the markup cuts: the parser reads nothing more
        name = name.lower() if name.isascii() else name.translate(_ASCII_LOWER)
        if plain and name in _FORMATTING and (closing or len(opened) < limit):
            pieces += (markup[kept : match.start(2)], "span")
            kept, name = match.end(2), "span"
        # A tag that is kept ends after its first MAX_ATTRIBUTES.
        cut = _attributes_end(markup, match.end(2)) if position - start > _SHORT_TAG else None
        if exact >= 0 and not closing and (opened[-1] in _INTEGRATION_POINTS or name in _BREAKOUT):
            exact = -1  # an HTML element; where it goes, the general rules tell
        if cut is not None and (
            closing
            or len(opened) < limit
            or (exact < 0 and name in _RAW_TEXT)
            or (exact < 0 and name in _NOT_PUSHED and (name in _UNCOUNTED or not depth.foreign))
        ):
            pieces += (markup[kept:cut], " />" if whole == "/>" else ">")
            kept = position
        if exact >= 0:
            if closing:
                if name not in ("p", "br") and depth.close_foreign(name, exact):
                    if len(opened) <= exact:
                        exact = -1
                    continue
                exact = -1  # it closes something below: the general rules
            else:
                # An SVG or MathML element, whatever its name: `/>` closes it at once,
                # and its content is read as markup (no raw text).
                if len(opened) >= limit:
                    kept = _drop(markup, pieces, kept, start, position)
                elif whole != "/>":
                    depth.push(name)
                continue
        if closing:
            if not (name in _FORMATTING and reopening.closed(name, depth.scopes)):
                reopening.closing()
            if opened and opened[-1] == name:
                opened.pop()
                if name in watched:
                    watched[name] -= 1
                    depth.scopes -= name in _SCOPES
            elif name not in _UNCOUNTED:
                depth.end(name)
            continue
        if name in _NOT_PUSHED:
            if name in _RAW_TEXT:
                if depth.foreign or watched["template"] or (name != "script" and watched["select"]):
                    # Raw text only for an HTML element the tree builder does not ignore
                    # (as it does in a <select>, or after a <col> in a <template>).
                    # This tag counts too when it was written cut (`kept` is past it).
                    room = limit - len(opened) - (kept > start)
                    return _uncertain(markup, pieces, kept, max(start, kept), room), reopening.at_most(limit)
                if name == "plaintext":
                    break  # the rest is text
                if lowered is None:
                    lowered = markup.translate(_ASCII_LOWER)
                end = _raw_text_end(markup, lowered, name, position)
                if end is None:
                    break
                if end < 0:
                    return _uncertain(markup, pieces, kept, start, limit - len(opened)), reopening.at_most(
                        limit
                    )
                position = end
                continue
            if name in _UNCOUNTED or not depth.foreign:
                continue
        if len(opened) >= limit:
            kept = _drop(markup, pieces, kept, start, position)
            continue
        if name in _FOREIGN and whole == "/>":
            continue  # opened and closed at once (or ignored, in a <select>)
        if name in _RULED:
            reopening.closing()
            depth.start(name)
        else:
            opened.append(name)
            if name in watched:
                watched[name] += 1
                depth.scopes += name in _SCOPES
        if name in _FORMATTING:
            reopening.opened(name, markup[start:position], depth.scopes)
        if name in _FOREIGN and not watched["select"] and not watched["template"]:
            exact = len(opened) - 1
    if not pieces:
        return markup, reopening.reopened
    pieces.append(markup[kept:])
    return "".join(pieces), reopening.reopened


def _drop(markup: str, pieces: list[str], kept: int, start: int, end: int) -> int:
    """Leave out the tag from `start` to `end`; where the markup is kept from."""
    pieces.append(markup[kept:start])
    if start and markup[start - 1] == "<" and kept < start:
        pieces.append(" ")  # "<" and the text after the tag must not make a tag
    return end


def _attributes_end(markup: str, position: int) -> int | None:
    """Where the `MAX_ATTRIBUTES`-th attribute of the tag whose name ends at `position`
    ends, when the tag has more; else None."""
    for _ in range(MAX_ATTRIBUTES):
        attribute = _NEXT_ATTRIBUTE.match(markup, position)
        if attribute is None:
            return None
        position = attribute.end()
    return position if _NEXT_ATTRIBUTE.match(markup, position) else None


def _skip_declaration(markup: str, start: int, foreign: bool) -> int | None:
    """Where a comment, bogus comment, doctype or `</…` not followed by a letter that
    starts at `start` ends; None when it runs to the end, -1 for CDATA inside SVG or
    MathML (a section there, a bogus comment elsewhere)."""
    if markup.startswith("<!--", start):
        after = start + 4
        if markup.startswith(">", after):
            return after + 1
        if markup.startswith("->", after):
            return after + 2
        comment_end = _COMMENT_END.search(markup, after)
        return comment_end.end() if comment_end else None
    if markup.startswith("</", start):
        if markup.startswith(">", start + 2):
            return start + 3
        if start + 2 >= len(markup):
            return None
    elif foreign and markup.startswith("<![CDATA[", start):
        return -1
    close = markup.find(">", start + 2)
    return close + 1 if close >= 0 else None


def _raw_text_end(markup: str, lowered: str, name: str, position: int) -> int | None:
    """Where the raw text of `name` opened at `position` ends (after its end tag); None
    when it runs to the end; -1 when a `<script>` may hold a nested script that the
    tokenizer's escaped states would read differently."""
    closing = "</" + name
    search = position
    while (found := lowered.find(closing, search)) >= 0:
        after = found + len(closing)
        if after < len(markup) and markup[after] in "\t\n\f\r />":
            if name == "script" and "<script" in lowered[position:found]:
                return -1
            tail = _TAG_TAIL.match(markup, after)
            if tail is None or tail.group(1) is None:
                return None
            return tail.end()
        search = after
    return None


def _uncertain(markup: str, pieces: list[str], kept: int, start: int, room: int) -> str:
    """From `start` on the tokenizer's state is not known: each `<` followed by a letter
    counts as an element that stays open, and past the bound becomes text. A
    formatting tag there is a `<span>`: nothing tells when the tree builder would
    open it again (`_Reopening`)."""
    for count, tag in enumerate(_START_TAG.finditer(markup, start)):
        at = tag.start()
        if count >= room:
            pieces.append(markup[kept:at])
            pieces.append("&lt;")
            kept = at + 1
            continue
        name = _FORMATTING_NAME.match(markup, at + 1)
        if name is not None and name.group().lower() in _FORMATTING:
            pieces += (markup[kept : at + 1], "span")
            kept = name.end()
    if not pieces:
        return markup
    pieces.append(markup[kept:])
    return "".join(pieces)
