"""Structured header fields (RFC 5322 §3.2.2): comments, read in one pass.

Comments nest, may hold quoted-pairs, and are not comments inside a quoted
string. Removing the innermost `(...)` with a regular expression until nothing
changes costs a pass per nesting level, so a header of a million parentheses
cost minutes; this reads each character once.
"""

from __future__ import annotations


class Malformed(ValueError):
    """An unbalanced parenthesis or an unterminated comment or quoted string."""


def strip_comments(value: str, *, strict: bool = True, replacement: str = " ") -> str:
    """The value with each comment replaced by `replacement` (one space), quoted
    strings kept.

    `strict` raises `Malformed` on unbalanced parentheses or an unterminated
    quoted string; otherwise a stray `)` is dropped and an unterminated comment
    runs to the end of the value.
    """
    out: list[str] = []
    depth = 0
    in_quotes = False
    chars = iter(value)
    for char in chars:
        if char == "\\" and (depth or in_quotes):
            escaped = next(chars, "")
            if in_quotes:
                out.append(char + escaped)
            continue
        if in_quotes:
            out.append(char)
            in_quotes = char != '"'
        elif char == "(":
            depth += 1
        elif char == ")":
            if depth == 0:
                if strict:
                    raise Malformed("unbalanced ')'")
                continue
            depth -= 1
            if depth == 0:
                out.append(replacement)
        elif depth:
            continue
        else:
            out.append(char)
            in_quotes = char == '"'
    if strict and (depth or in_quotes):
        raise Malformed("unterminated comment or quoted string")
    return "".join(out)
