"""Phone numbers in E.164 (`+` and 8 to 15 digits), one rule for every way in
(docs/integrations.md).

A WhatsApp user id is the phone number without the `+` (`5215512345678`), and
assistant runtimes prefix it (`whatsapp:+52…`); people type spaces, dashes, dots,
parentheses and an international `00`. All of those become the same E.164 text,
so one person is one contact whichever channel they come from. Local numbers
without a country code are refused: the country cannot be guessed.
"""

from __future__ import annotations

INVALID = "is not a phone number in international form (E.164: + and 8 to 15 digits)"
_SEPARATORS = str.maketrans("", "", " -.()/\t")
MAX_INPUT = 64


def normalize(text: str | None) -> str | None:
    """The E.164 form of `text`, or None when it is no international number."""
    if not isinstance(text, str) or len(text) > MAX_INPUT:
        return None
    value = text.strip().lower().removeprefix("whatsapp:").removeprefix("tel:").translate(_SEPARATORS)
    if value.startswith("00"):
        value = "+" + value[2:]
    elif not value.startswith("+"):
        value = "+" + value  # a WhatsApp id: the number without its plus
    digits = value[1:]
    if not (digits.isascii() and digits.isdigit()) or not 8 <= len(digits) <= 15 or digits[0] == "0":
        return None
    return value
