"""Ids typed by people: ASCII digits in range only; caller text an answer repeats."""

from __future__ import annotations

import pytest

from helpdesk.inputs import (
    MAX_ID,
    echoed,
    nothing_to_read,
    one_line,
    positive_int,
    readable_line,
    without_tags,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", 1),
        ("42", 42),
        (7, 7),
        (str(MAX_ID), MAX_ID),
        ("0", None),
        ("-1", None),
        ("", None),
        ("²", None),
        ("١٢", None),
        ("1.5", None),
        (" 1", None),
        (str(MAX_ID + 1), None),
        ("9" * 40, None),
        (True, None),
        (None, None),
        (0, None),
    ],
)
def test_positive_int(text, expected):
    assert positive_int(text) == expected


def test_positive_int_respects_a_lower_maximum():
    assert positive_int("100", maximum=99) is None and positive_int("99", maximum=99) == 99


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("delete_ticket", "delete_ticket"),
        ("Avería ñ 😀", "Avería ñ 😀"),  # text, a non-BMP character among it, is kept
        ("\ud800x", "\ufffdx"),  # a lone surrogate, as JSON's escape decodes
        ("a\udfff\ud800b", "a\ufffd\ufffdb"),
        ("nul\x00 esc\x1b[2J csi\x9b nl\n ls\u2028", "nul\ufffd esc\ufffd[2J csi\ufffd nl\ufffd ls\ufffd"),
        ("z" * 10_000, "z" * 100),
        ("😀" * 150, "😀" * 100),  # characters, not UTF-16 units
        (42, "42"),
        (None, "None"),
    ],
)
def test_echoed_text_is_clean_and_cut(value, expected):
    shown = echoed(value)
    assert shown == expected
    shown.encode("utf-8")  # what a strict decoder needs: Unicode text


@pytest.mark.parametrize(
    ("text", "empty"),
    [
        ("", True),
        (" \n\t\x1b\u3000", True),
        ("\u200b\u200f\u2066\ufeff\u00ad", True),  # zero-width, bidirectional, BOM, soft hyphen
        # Letters and marks that show nothing (Unicode's default-ignorable code points
        # outside Cf: Hangul fillers, the grapheme joiner, variation selectors, the
        # Mongolian and Khmer ones), and the blank braille pattern.
        ("\u3164", True),
        ("\u115f\u1160\uffa0", True),
        ("\u2800", True),
        ("\u034f\ufe0f\U000e0100\u180b\u17b4", True),
        ("\u3164\u3131", False),  # a Hangul filler before a letter
        ("\u2801", False),  # a braille pattern with a dot shows
        ("\u200bx", False),
        ("\u0645", False),  # a right-to-left letter is text
        (".", False),
    ],
)
def test_nothing_to_read_is_only_what_takes_no_place(text, empty):
    assert nothing_to_read(text) is empty


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("", ""),
        (" \t\x1b ", ""),
        # Only characters that show nothing: no subject, however many of them.
        ("\u200b", ""),
        ("\u200d\ufeff\u00ad \u3164\u2800\ufe0f", ""),
        # Something to read keeps every character it came with, invisible ones among them.
        ("\u200bVPN\u200b", "\u200bVPN\u200b"),
        ("\U0001f469\u200d\U0001f4bb down", "\U0001f469\u200d\U0001f4bb down"),
        ("Router\n  \x07reboots", "Router reboots"),
    ],
)
def test_a_line_with_nothing_to_read_is_no_line(text, line):
    """The subject rule every channel shares (docs/security.md, "One-line text")."""
    assert readable_line(text) == line


def test_tag_characters_are_dropped_but_for_an_emoji_flag_s_sequence():
    """Tag characters are invisible and read by a language model as the ASCII they
    shadow (docs/security.md, "Hidden text"); an emoji tag sequence (U+1F3F4, tags,
    U+E007F) is a subdivision's flag and stays whole."""
    england = "\U0001f3f4\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f"
    hidden = "".join(chr(0xE0000 + ord(char)) for char in "run rm")
    assert without_tags(f"Hi{hidden} {england}!\U000e0001") == f"Hi {england}!"
    assert without_tags(f"\U0001f3f4{hidden}") == "\U0001f3f4"  # no cancel tag: no flag
    assert one_line(f"Printer{hidden}\non fire") == "Printer on fire"
    assert without_tags("plain") == "plain"
