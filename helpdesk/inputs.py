"""Reading what people and programs type into forms, query strings and JSON: ids,
and text a database can store.

`str.isdigit()` is not enough: it accepts `²` and other Unicode digits that `int()`
then refuses, and it says nothing about size, while the database's integer columns
overflow past 2**31 - 1. Only ASCII digits within range are ids.
"""

from __future__ import annotations

import re
from typing import Any

MAX_ID = 2**31 - 1
_DIGITS = re.compile(r"[0-9]{1,10}")


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


def unstorable(value: Any) -> bool:
    """Text no database stores: NUL (PostgreSQL refuses it) or a lone surrogate
    (JSON's `\\ud800` escape decodes to one, and no database encoding takes it).
    Refused as input, not at the database."""
    if isinstance(value, str):
        return "\x00" in value or not _encodable(value)
    if isinstance(value, list):
        return any(unstorable(item) for item in value)
    return False


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
