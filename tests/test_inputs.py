"""Ids typed by people: ASCII digits in range only."""

from __future__ import annotations

import pytest

from helpdesk.inputs import MAX_ID, positive_int


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
