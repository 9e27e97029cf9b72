"""Reading ids that people and programs type into forms and query strings.

`str.isdigit()` is not enough: it accepts `²` and other Unicode digits that `int()`
then refuses, and it says nothing about size, while the database's integer columns
overflow past 2**31 - 1. Only ASCII digits within range are ids.
"""

from __future__ import annotations

import re

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
