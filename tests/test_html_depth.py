"""HTML nested past `html_depth.MAX_DEPTH` is flattened before nh3 reads it, and
nothing else changes (docs/security.md, "Bounded work").

The tree nh3 builds is measured here by its output: every element it writes has its
end tag, so the depth of the sanitized HTML is the depth of the tree. The bound is an
estimate that may only err upward, so these check that the tree stays within a small
multiple of it for tag soup written to fool the estimate, and that mail below it is
sanitized exactly as before.
"""

from __future__ import annotations

import email
import email.policy
import random
from html.parser import HTMLParser

import nh3
import pytest

from helpdesk import html_depth
from helpdesk.html import clean
from helpdesk.inbound.parser import _WHITESPACE, _html_to_text
from tests.support.corpus import CORPUS, SAMPLES

LIMIT = 8
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
# Every element the soup below uses, kept by nh3 so that its nesting shows.
_SHOWN = {
    "div", "p", "li", "ul", "ol", "dl", "dd", "dt", "td", "th", "tr", "table", "tbody", "caption",
    "colgroup", "b", "i", "a", "span", "font", "select", "option", "optgroup", "h1", "h2", "button",
    "details", "summary", "nobr", "form", "object", "template", "svg", "math", "mi", "path",
    "foreignobject", "desc", "blockquote", "section", "center", "marquee", "applet", "pre", "listing", "g",
}  # fmt: skip
_SOUP = [
    *(f"<{name}>" for name in sorted(_SHOWN)),
    *(f"</{name}>" for name in sorted(_SHOWN)),
    *"<style> </style> <textarea> </textarea> <script> </script> <title> <xmp> <plaintext>".split(),
    *"<br> </br> <col> <img> <image> <hr> <input> <html> <body> <head> <frameset> <frame>".split(),
    *["<path/>", "<div/>", "<![CDATA[", "]]>", "<!--", "-->", "--!>", "<!x>", "<?x>", "</>", "</ x>"],
    *["<svg/>", "<g/>", "<path d=a/>", "<g title='/>'>", "<title>", "</title>", "<title>x</title>", "</p>"],
    *["x", "<", "</", ">", '"', "'", "=", "<a title='</div>'>", '<a title="<div>">', "<a =\"'><div>'\">"],
]


class _Depth(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.depth = self.deepest = 0

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag not in _VOID:
            self.depth += 1
            self.deepest = max(self.deepest, self.depth)

    def handle_endtag(self, tag: str) -> None:
        if tag not in _VOID:
            self.depth -= 1


def tree_depth(markup: str, limit: int | None = LIMIT) -> int:
    """How deep the tree nh3 builds from `markup` is (after the bound, if `limit`)."""
    if limit is not None:
        markup = html_depth.bounded(markup, limit)
    shown = nh3.clean(markup, tags=_SHOWN, clean_content_tags=set(), attributes={}, link_rel=None)
    parser = _Depth()
    parser.feed(shown)
    parser.close()
    return parser.deepest


def _corpus_html() -> list[tuple[str, str]]:
    found = []
    for path in sorted([*CORPUS.rglob("*"), *SAMPLES.rglob("*")]):
        if not path.is_file() or path.suffix in (".tsv", ".md"):
            continue
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        for part in message.walk():
            if part.get_content_type() == "text/html":
                try:
                    found.append((path.name, part.get_content()))
                except (LookupError, ValueError):
                    continue
    return found


def test_the_html_of_real_mail_is_sanitized_as_before() -> None:
    """The corpus' HTML mails (newsletters and client HTML among them) reach nh3 as
    they are (the same string), their estimated depth far from the bound."""
    found = _corpus_html()
    assert len(found) > 20
    for name, markup in found:
        assert html_depth.bounded(markup) is markup, name
        assert html_depth.bounded(markup, 64) is markup, name
        flat = _WHITESPACE.sub(" ", markup)  # as the parser's HTML-to-text reads it
        assert html_depth.bounded(flat) is flat, name


@pytest.mark.parametrize(
    "unit",
    [
        "<div>",
        "<details>",
        "<div><ul><li><table><tr><td><p>",
        "<section><li><td><blockquote>",
        "<b><div></b>",
        "<p><b></p>",
        "<select><ul></select><li></ul>",
        "<option><optgroup>",
        "<div><table></div>",
        "<td><div></td>",
        "<svg><p><div/>",
        "<svg><style></style><div>",
        "<svg><![CDATA[</div>]]><div>",
        "<h2><foreignObject><template><col><a><style></template>",
        "<select><style></select><div>",
        "<a title='</div>'><div>",
        "<div><!-- </div> -->",
        "<div><style></div></style>",
        "<div><textarea></div></textarea>",
        "<div><script><!--<script></div></script>",
        "<div></ div>",
        "<div><a =\"'></div>'\">",
        "<svg><path d=a/>",
        "<svg><g title='/>'>",
        "<svg><title>x</title><g>",
        "<svg><g></svg><g>",
        "<p><b></p><svg><title>x</title></svg><path/>",
        "<svg><foreignObject><path/>",
        "<math><mi>x</mi><g>",
    ],
)
def test_repeated_nesting_stays_within_the_bound(unit: str) -> None:
    """The shapes of the review, and markup where a tokenizer that read `</div>` in an
    attribute, comment or raw text as a tag would let the tree grow unseen."""
    assert tree_depth(unit * 400) <= 3 * LIMIT


@pytest.mark.parametrize("unit", ["<div>", "<details>", "<div><ul><li><table><tr><td><p>", "<b><div></b>"])
def test_without_the_bound_these_nest_without_end(unit: str) -> None:
    assert tree_depth(unit * 400, limit=None) >= 400


def test_tag_soup_stays_within_the_bound() -> None:
    """Short random sequences of the tokens above, each repeated: the shapes no list
    of cases thinks of (the one through a <template> above was found this way)."""
    deepest = 0
    for seed in range(400):
        rng = random.Random(seed)
        unit = "".join(rng.choice(_SOUP) for _ in range(rng.randint(2, 8)))
        deepest = max(deepest, tree_depth(unit * 150))
    assert deepest <= 3 * LIMIT


def test_ordinary_nesting_below_the_bound_is_kept() -> None:
    markup = "<div><table><tr><td><p><b>x</b></p><ul><li>a<li>b</ul></td></tr></table></div>" * 50
    assert html_depth.bounded(markup, LIMIT) is markup
    sloppy = "<table><tr><td>a<td>b<tr><td>c</table><p>one<p>two<dl><dt>t<dd>d</dl>" * 50
    assert html_depth.bounded(sloppy, LIMIT) is sloppy


def test_start_tags_past_the_bound_are_dropped_and_the_text_kept() -> None:
    markup = "<div>" * 300 + "deep text" + "</div>" * 300 + "<p>after</p>"
    bounded = html_depth.bounded(markup)
    assert bounded.count("<div>") == html_depth.MAX_DEPTH
    assert "deep text" in bounded and bounded.endswith("<p>after</p>")
    assert "deep text" in clean(markup) and "after" in clean(markup)
    # A "<" before a dropped tag stays text: it does not open a tag with what follows.
    assert html_depth.bounded("<div>" * 4 + "<<div>div>x", 4).startswith("<div>" * 4 + "< div>x")


def test_past_an_uncertain_point_every_tag_counts_and_then_becomes_text() -> None:
    # Past a <p> inside SVG the pass no longer knows whether SVG is still open, nor
    # when a formatting element would be opened again: those kept are <span>.
    markup = "<svg><p><![CDATA[" + "<b>" * 20
    bounded = html_depth.bounded(markup, LIMIT)
    assert bounded.count("<span>") == LIMIT - 2 and bounded.count("&lt;b>") == 20 - (LIMIT - 2)
    # Right inside SVG it knows: CDATA, a section of text.
    known = "<svg><![CDATA[" + "<b>" * 20
    assert html_depth.bounded(known, LIMIT) is known


def test_an_svg_logo_of_many_shapes_is_not_flattened() -> None:
    """An ordinary signature with its logo as inline SVG (a title, a style sheet,
    hundreds of `<path/>`, each closed by its `/>`): the depth estimate counted each
    shape, and the raw text of <style> and <title> inside SVG made every later tag
    count, so the signature's markup past the bound was shown as text
    (docs/security.md, "Bounded work")."""
    shapes = "".join(f'<path class="a" d="M{i} 0h1v1h-1z"/>' for i in range(400))
    style = "<defs><style>.a{fill:#05a}</style></defs>"
    logo = f"<svg viewBox='0 0 400 20'><title>ACME</title>{style}{shapes}</svg>"
    markup = f"<div><p>El router se reinicia.</p></div><table><tr><td>{logo}</td></tr></table>"
    markup += "<p>Saludos,<br><b>Ana</b> | <a href='https://acme.example'>acme.example</a></p>"
    assert html_depth.bounded(markup) is markup
    assert clean(markup).endswith(
        '<p>Saludos,<br><b>Ana</b> | <a href="https://acme.example" rel="noopener noreferrer nofollow">'
        "acme.example</a></p>"
    )
    assert _html_to_text(markup) == "El router se reinicia.\n\nSaludos,\nAna | acme.example"
    # A `/` in an unquoted value is the value's: that shape stays open.
    assert tree_depth("<svg>" + "<path d=a/>" * 50) <= LIMIT + 1


def test_html_only_mail_nested_past_the_bound_is_still_read_as_text() -> None:
    text = _html_to_text("<div>" * 5000 + "Hello" + "</div>" * 5000 + "<p>Regards</p>")
    assert text.split() == ["Hello", "Regards"]


@pytest.mark.parametrize(
    "opening",
    [
        '<p><b title="' + "t" * 10_000 + '"></p>',  # one element of a long attribute
        "<p>" + "".join(f'<b title="{n}">' for n in range(250)) + "</p>",  # many, no two alike
        '<p><a href="https://x.example/' + "t" * 10_000 + '"></p>',
        '<table><td><p><i title="' + "t" * 10_000 + '"></p>',  # inside a cell
        '<p><b title="' + "t" * 10_000 + '"><table><td></b></td></table></p>',  # an end tag out of scope
    ],
)
@pytest.mark.parametrize("text", ["<p>x</p>", "<p>x", "<li>x", "x</span><span>"])
def test_formatting_the_tree_builder_opens_again_costs_what_its_markup_costs(opening: str, text: str) -> None:
    """The tree builder keeps formatting elements in a list and opens again, before
    text, those something else closed, with their attributes: 42 KB of this became
    40 MB of sanitized HTML, and an HTML-only mail of 260 KB took 4 s and 1.9 GB to
    read as text. Past the allowance every formatting tag is a <span>; the text stays."""
    markup = opening + text * 20_000
    shown = clean(markup)
    assert len(shown) <= 3 * len(markup) + html_depth._REOPENED_ALLOWANCE
    assert _html_to_text(markup).count("x") == 20_000


def test_formatting_across_paragraphs_of_ordinary_mail_is_kept() -> None:
    markup = '<p><b>Urgent:</p><p>the router</b> is down. <a href="https://x.example">Status</a></p>'
    assert html_depth.bounded(markup) is markup


def test_a_tag_keeps_its_first_attributes() -> None:
    """html5ever compares each attribute's name with the tag's others, so a tag keeps
    its first `MAX_ATTRIBUTES`; what the rest hold (a quoted `>`) is not read as text."""
    names = " ".join(f"a{i}" for i in range(1000))
    markup = f'<p title=x {names} class="<b>">text</p>'
    bounded = html_depth.bounded(markup)
    assert (
        bounded
        == "<p title=x " + " ".join(f"a{i}" for i in range(html_depth.MAX_ATTRIBUTES - 1)) + ">text</p>"
    )
    assert clean(markup) == '<p title="x">text</p>'
    ordinary = '<td style="color: red" class="x" width="10">' * 100
    assert html_depth.bounded(ordinary) is ordinary
