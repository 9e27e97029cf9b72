"""Every text a person reads exists in every language (docs/languages.md).

Three checks that fail on the first forgotten string: the texts extracted from the
code and templates (as `make messages` extracts them) each have a Spanish
translation that is neither empty nor fuzzy and keeps the same placeholders; the
compiled catalog the app reads says what the .po file says; and no template holds
human text outside a translation call, where extraction could not see it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from jinja2 import Environment

from config import LANGUAGES
from helpdesk import languages

ROOT = Path(__file__).resolve().parent.parent
KEYWORDS = {**DEFAULT_KEYWORDS, "lazy_gettext": None, "N_": None}
TRANSLATED = [language for language in LANGUAGES if language != languages.FALLBACK]
TEMPLATES = sorted(
    path
    for pattern in ("helpdesk/**/templates/**/*.html", "helpdesk/**/templates/**/*.txt")
    for path in ROOT.glob(pattern)
)
# Words that read the same in every language the product speaks: names, acronyms.
SAME_IN_EVERY_LANGUAGE = frozenset({"Helpdesk", "SLA", "CSAT", "API", "IMAP", "SMTP", "ID", "URL", "CSV"})
_ATTRIBUTES_READ = ("title", "placeholder", "aria-label", "alt")
_WORD = re.compile(r"[^\W\d_]{2,}")


def _extracted() -> dict[str, list[str]]:
    """msgid (the singular for plural forms) → where it was found."""
    with open(ROOT / "babel.cfg", encoding="utf-8") as mapping:
        method_map, options_map = parse_mapping_cfg(mapping)
    found: dict[str, list[str]] = {}
    for filename, lineno, message, _comments, context in extract_from_dir(
        str(ROOT), method_map, options_map, keywords=KEYWORDS
    ):
        msgid = message[0] if isinstance(message, tuple) else message
        if msgid:
            found.setdefault(f"{context}\x04{msgid}" if context else msgid, []).append(f"{filename}:{lineno}")
    return found


def _po(language: str):
    with open(languages.TRANSLATIONS_DIR / language / "LC_MESSAGES" / "messages.po", "rb") as po:
        return read_po(po, locale=language)


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_extracted_text_has_a_translation(language):
    catalog = _po(language)
    missing = []
    for key, places in sorted(_extracted().items()):
        context, _, msgid = key.rpartition("\x04")
        entry = catalog.get(msgid, context=context or None)
        strings = entry.string if entry is not None else None
        filled = all(strings) if isinstance(strings, tuple) else bool(strings)
        if entry is None or not filled or entry.fuzzy:
            missing.append(f"{msgid!r} ({places[0]})")
    assert not missing, f"{len(missing)} texts without a {language} translation: " + "; ".join(missing)


@pytest.mark.parametrize("language", TRANSLATED)
def test_translations_keep_their_placeholders(language):
    problems = [
        f"{message.id!r}: {', '.join(str(error) for error in errors)}"
        for message, errors in _po(language).check()
    ]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("language", TRANSLATED)
def test_the_compiled_catalog_is_the_po_file(language):
    compiled = languages.catalog(language)
    stale = []
    for message in _po(language):
        if not isinstance(message.id, str) or not message.id or message.fuzzy:
            continue  # the header, plural entries (checked through their singular), fuzzy ones
        shown = (
            compiled.pgettext(message.context, message.id)
            if message.context
            else compiled.gettext(message.id)
        )
        if shown != message.string:
            stale.append(message.id)
    assert not stale, f"run `make translations`: {stale[:5]}"


def _text_outside_translation(source: str) -> Iterator[tuple[int, str]]:
    """(line, text) of every piece of human text a template writes as a literal:
    element text and the attributes a person reads, outside `{% trans %}` blocks,
    `<script>` and `<style>`. Expressions are opaque: what they print is checked
    where their texts are defined."""
    in_trans = in_tag = False
    quote = ""
    skip_until = ""
    attribute = ""
    expecting_block_name = False
    for lineno, kind, value in Environment().lex(source):
        if kind == "whitespace":
            continue
        if kind == "block_begin":
            expecting_block_name = True
            continue
        if kind == "name" and expecting_block_name:
            in_trans = value in ("trans", "pluralize") or (in_trans and value != "endtrans")
            expecting_block_name = False
            continue
        expecting_block_name = False
        if kind != "data" or in_trans:
            continue
        index = 0
        while index < len(value):
            char = value[index]
            if skip_until:
                end = value.find(skip_until, index)
                if end < 0:
                    break
                index, skip_until = end + len(skip_until), ""
                continue
            if in_tag:
                if quote:
                    end = value.find(quote, index)
                    text = value[index : end if end >= 0 else len(value)]
                    if attribute in _ATTRIBUTES_READ:
                        yield lineno, text
                    if end < 0:
                        break
                    index, quote = end + 1, ""
                    continue
                if char in "\"'":
                    quote = char
                    attribute = re.sub(r".*?([\w-]+)\s*=\s*$", r"\1", value[:index], flags=re.S).lower()
                elif char == ">":
                    in_tag = False
                index += 1
                continue
            if char == "<":
                tag = re.match(r"<\s*(script|style)\b", value[index:], re.I)
                if tag:
                    skip_until = f"</{tag.group(1)}>"
                elif value.startswith("<!--", index):
                    skip_until = "-->"
                else:
                    in_tag = True
                index += 1
                continue
            end = value.find("<", index)
            end = len(value) if end < 0 else end
            yield lineno, value[index:end]
            index = end


def _human_words(text: str) -> list[str]:
    text = re.sub(r"&[#\w]+;", " ", text)
    return [word for word in _WORD.findall(text) if word not in SAME_IN_EVERY_LANGUAGE]


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda path: str(path.relative_to(ROOT / "helpdesk")))
def test_templates_hold_no_untranslated_text(template):
    literal = [
        f"line {lineno}: {text.strip()[:60]!r}"
        for lineno, text in _text_outside_translation(template.read_text(encoding="utf-8"))
        if _human_words(text)
    ]
    assert not literal, "text outside {% trans %} / _(): " + "; ".join(literal)


def test_the_check_sees_text_where_a_reader_sees_it():
    """The literal-text check itself: it flags text and read attributes, and lets
    translated text, markup, scripts and expressions through."""
    flagged = lambda source: [t.strip() for _, t in _text_outside_translation(source) if _human_words(t)]  # noqa: E731
    assert flagged("<p>Hello {{ name }}</p>") == ["Hello"]
    assert flagged('<input placeholder="Search tickets" name="q">') == ["Search tickets"]
    assert flagged('<a href="/x" class="muted">{{ _("Open") }}</a>') == []
    assert flagged("<p>{% trans %}Hello {{ name }}{% endtrans %}</p>") == []
    assert flagged("<script>let shown = 'text';</script><style>p { color: red }</style>") == []
    assert flagged("<!-- a note --><span>{{ number }} · {{ when }}</span>") == []
    assert flagged("Title: {{ subject }}\n") == ["Title:"]
