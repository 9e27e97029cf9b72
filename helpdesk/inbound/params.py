"""MIME parameters (Content-Type, Content-Disposition) read in one pass.

The standard library splits a parameter list by looking, for each `;`, at
everything before it again (whether that `;` sits inside quotes), and by copying
what is left after each parameter: work that grows with the square of the field.
Part headers have no size cap but the mail's, so a stranger's part whose
`filename="` is followed by 160 KB of `;` took 31 s to read, and 1 MB some twenty
minutes. `LinearParams` is the compat32 message whose parameters are split here,
with the standard library's result (tests/test_parser.py compares them), reading
each character a bounded number of times; the standard library still decodes the
RFC 2231 continuations and charsets of what it splits.
"""

from __future__ import annotations

from email import utils
from email.message import Message
from typing import Any

# Parameters read from one field, its type included: a real field has a handful, a
# long filename in RFC 2231 sections a few dozen. Past it the field is not read on,
# so a part of 100,000 parameters costs what one of 256 costs.
MAX_PARAMS = 256


def split_params(value: str) -> list[str]:
    """The first `MAX_PARAMS` parameters of a field value as
    `email.message._parseparam` gives them (the type first, `name=value` with the
    name lower-case, quotes kept), in linear time: a `;` ends a parameter unless an
    odd number of unescaped quotes stands before it in that parameter, and each
    stretch is counted once."""
    text = ";" + value
    params: list[str] = []
    start = 0
    while text.startswith(";", start) and len(params) < MAX_PARAMS:
        start += 1
        end = text.find(";", start)
        counted, odd = start, 0
        while end > start:
            odd = (odd + text.count('"', counted, end) - text.count('\\"', counted, end)) % 2
            if not odd:
                break
            # Inside quotes, no `;` before the next unescaped quote ends the parameter.
            counted, quote = end, _unescaped_quote(text, end)
            end = -1 if quote == -1 else text.find(";", quote)
        if end < 0:
            end = len(text)
        param = text[start:end]
        equals = param.find("=")
        if equals != -1:
            param = param[:equals].strip().lower() + "=" + param[equals + 1 :].strip()
        params.append(param.strip())
        start = end
    return params


def _unescaped_quote(text: str, position: int) -> int:
    """Where the first `"` after `position` not right after a backslash is; -1 if none."""
    quote = text.find('"', position)
    while quote > 0 and text[quote - 1] == "\\":
        quote = text.find('"', quote + 1)
    return quote


class LinearParams(Message):
    """A compat32 message whose parameter lists are split by `split_params`; every
    parameter reading (get_param, get_boundary, get_content_charset, get_filename,
    the feed parser's search for a boundary) goes through `_get_params_preserve`."""

    def _get_params_preserve(self, failobj: Any, header: str) -> Any:
        value = self.get(header)
        if value is None:
            return failobj
        params: list[tuple[str, str]] = []
        for param in split_params(str(value)):
            name, equals, text = param.partition("=")
            params.append((name.strip(), text.strip()) if equals else (param.strip(), ""))
        return utils.decode_params(params)
