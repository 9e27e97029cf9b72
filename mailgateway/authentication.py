"""May the From address be believed? (SPEC §7 step 5, RFC 8601, RFC 7489.)

Anyone can write any From address. We believe it only when the receiving mail
server we trust (`TRUSTED_AUTHSERV_ID`) recorded in an `Authentication-Results`
header (RFC 8601) that DMARC passed (RFC 7489), or that SPF (RFC 7208) or DKIM
(RFC 6376) passed for a domain aligned with the From domain.

Only headers whose authserv-id is the trusted one are read; any other header was
written by someone else, possibly the sender. That is only safe because the
trusted server removes headers carrying its own authserv-id from incoming mail
before adding its own (RFC 8601 §5 requires this; Postfix with OpenDKIM/OpenDMARC,
rspamd and Exchange Online do it). We cannot tell a forged header from a genuine
one by position: a server may add several (one per milter), so all trusted ones
count. If the receiving server does not strip them, leave `TRUSTED_AUTHSERV_ID`
unset rather than believe what the sender wrote.

Alignment is RFC 7489's relaxed alignment, approximated without the Public Suffix
List: the two domains are equal, or one is a subdomain of the other and the
shorter has at least two labels. This wrongly aligns sibling tenants under a
shared suffix (`evil.github.io` and `github.io`); such a suffix is no support
customer's mail domain, and DMARC itself, when it passed, is exact.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from mailgateway.parser import InboundMail

_KEYWORD = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_.-]*[A-Za-z0-9])?")
_PAIR = re.compile(
    r"\s*([A-Za-z0-9][A-Za-z0-9_.\-/]*)\s*=\s*(\"(?:[^\"\\]|\\.)*\"|[^\s\"=]+)"
)


class Unparseable(ValueError):
    """An Authentication-Results header that does not follow RFC 8601."""


@dataclass
class Result:
    """One resinfo: `dkim=pass header.d=example.com` → method, result, properties."""

    method: str
    result: str
    properties: dict[str, str] = field(default_factory=dict)


def sender_is_authenticated(mail: InboundMail, trusted_authserv_id: str) -> bool:
    """True when the From address can be believed, see the module docstring.

    Always True when no trusted server is configured. False when the From address
    is missing, no header of the trusted server exists, or none of its results
    passes aligned with the From domain. A trusted header that cannot be parsed
    counts for nothing (and so, alone, gives False).
    """
    if not trusted_authserv_id:
        return True
    from_domain = _address_domain(mail.from_address)
    if not from_domain:
        return False
    trusted = trusted_authserv_id.strip().lower()
    for value in mail.header_all("authentication-results"):
        try:
            authserv_id, results = parse_authentication_results(value)
        except Unparseable:
            continue
        if authserv_id != trusted:
            continue
        if any(_passes_aligned(result, from_domain) for result in results):
            return True
    return False


def parse_authentication_results(value: str) -> tuple[str, list[Result]]:
    """(lower-case authserv-id, results) of one header value; raises Unparseable.

    Handles RFC 8601's comments (nested, anywhere), quoted values, the optional
    version after the authserv-id, `none`, and method versions (`dkim/1`).
    """
    parts = _split_semicolons(_strip_comments(value))
    head = parts[0].split()
    if not head:
        raise Unparseable("no authserv-id")
    authserv_id = _unquote(head[0]).lower()
    if len(head) > 2 or (len(head) == 2 and not head[1].isdigit()):
        raise Unparseable(f"unexpected text after authserv-id: {parts[0]!r}")
    resinfos = [part for part in parts[1:] if part.strip()]
    if len(resinfos) == 1 and resinfos[0].strip().lower() == "none":
        return authserv_id, []
    return authserv_id, [_parse_resinfo(resinfo) for resinfo in resinfos]


def _parse_resinfo(text: str) -> Result:
    pairs: list[tuple[str, str]] = []
    position = 0
    while position < len(text.rstrip()):
        match = _PAIR.match(text, position)
        if not match:
            raise Unparseable(f"cannot read {text[position:]!r}")
        pairs.append((match.group(1).lower(), _unquote(match.group(2))))
        position = match.end()
    if not pairs:
        raise Unparseable("empty resinfo")
    method, result = pairs[0]
    method = method.split("/", 1)[0]
    if "." in method or not _KEYWORD.fullmatch(method):
        raise Unparseable(f"bad method {method!r}")
    # Keys without a ptype (`action=none`, `compauth=pass` from Exchange Online)
    # are not RFC 8601 properties; they are kept but never consulted.
    properties: dict[str, str] = {}
    for key, pvalue in pairs[1:]:
        properties.setdefault(key, pvalue)
    return Result(method=method, result=result.lower(), properties=properties)


def _passes_aligned(result: Result, from_domain: str) -> bool:
    if result.result != "pass":
        return False
    if result.method == "dmarc":
        header_from = result.properties.get("header.from")
        return header_from is None or _normalize_domain(header_from) == from_domain
    if result.method == "spf":
        # smtp.helo is not enough: it authenticates the client host, not the sender.
        mailfrom = result.properties.get("smtp.mailfrom")
        return mailfrom is not None and _aligned(_address_domain(mailfrom), from_domain)
    if result.method == "dkim":
        signer = result.properties.get("header.d") or result.properties.get("header.i")
        return signer is not None and _aligned(_address_domain(signer), from_domain)
    return False


def _aligned(domain: str, from_domain: str) -> bool:
    if not domain or not from_domain:
        return False
    if domain == from_domain:
        return True
    shorter, longer = sorted((domain, from_domain), key=len)
    return "." in shorter and longer.endswith("." + shorter)


def _address_domain(value: str) -> str:
    """Domain of `user@example.com`, `@example.com` or `example.com`, normalized."""
    return _normalize_domain(value.strip().strip("<>").rpartition("@")[2])


def _normalize_domain(value: str) -> str:
    return value.strip().strip("<>").lower().rstrip(".")


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def _strip_comments(value: str) -> str:
    """Replace RFC 5322 comments (nested, with quoted-pairs) by a space, outside quotes."""
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
                raise Unparseable("unbalanced ')'")
            depth -= 1
            if depth == 0:
                out.append(" ")
        elif depth:
            continue
        else:
            out.append(char)
            in_quotes = char == '"'
    if depth or in_quotes:
        raise Unparseable("unterminated comment or quoted string")
    return "".join(out)


def _split_semicolons(value: str) -> list[str]:
    """Split on ';' outside quoted strings (comments are already gone)."""
    parts: list[str] = []
    current: list[str] = []
    in_quotes = False
    escaped = False
    for char in value:
        if escaped:
            escaped = False
        elif char == "\\" and in_quotes:
            escaped = True
        elif char == '"':
            in_quotes = not in_quotes
        elif char == ";" and not in_quotes:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    parts.append("".join(current).strip())
    return parts
