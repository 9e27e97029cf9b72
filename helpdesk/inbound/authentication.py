"""May the From address be believed? (docs/mail-gateway.md, RFC 8601, RFC 7489.)

Anyone can write any From address. We believe it only when the receiving mail
server we trust (`TRUSTED_AUTHSERV_ID`) recorded in an `Authentication-Results`
header (RFC 8601) that DMARC passed (RFC 7489), or that SPF (RFC 7208) or DKIM
(RFC 6376) passed for a domain aligned with the From domain.

Which headers count, and how they are read, is where such checks are fooled:
- The header is read as the server wrote it: its raw value, unfolded and nothing
  else. No RFC 2047 decoding and no Unicode normalisation (an encoded word or a
  leading no-break space that decodes into `<trusted-id>; dmarc=pass` would be
  believed here while the receiving server, which compares bytes, does not see
  its own id and does not strip it). A value with anything but printable ASCII
  in it was not written by a mail server and counts for nothing.
- The authserv-id must equal the trusted one (ASCII, case-insensitive as
  domain names are); a header of anyone else was written by someone else,
  possibly the sender.
- Only the trusted server's own headers count: from the top of the header, the
  first run of headers carrying its authserv-id, ended by the first `Received`
  below them, the trace header the mail arrived with (RFC 8601 §5). A header with
  the trusted id further down came with the mail: the sender wrote it. A header
  whose authserv-id is the trusted one belongs to the run even when its results
  cannot be read (a server writes what it was told: `smtp.helo=x=y`); it passes
  nothing, but it starts the run and so ends the search at the next `Received`,
  where a header the sender placed below would otherwise be taken for the
  server's.
- The header fields are the ones the server read: lines end at LF only, as in
  Postfix, Exim and their milters (`parser.header_as_servers_read`). The email
  package also breaks lines at a bare CR, and reads on past a line such as
  `From x` that a server takes for the start of the body; a field the sender
  hid that way (`X-Mailer: x<CR>Authentication-Results: <trusted-id>; dmarc=pass`
  is one X-Mailer field to the server) was never stripped by the server, and the
  From the email package reads may not be the From the server checked. Such a
  header (`InboundMail.header_ambiguity`: any bare CR in the header block, or
  fields the two readings do not agree on) gives FAIL whatever it says: no mail
  server writes a bare CR, RFC 5322 forbids it, and a sender who writes one gets
  the unknown-sender policy, not our belief.
- One From, naming one address (RFC 5322), or no belief either (`header_ambiguity`
  again): a DKIM signature covers the bottom-most From field (RFC 6376 §5.4.2) and
  we read the first, so a sender whose own provider signs its mail could put a
  fellow customer's From above its own and borrow the provider's pass; with several
  addresses in one From a DMARC module may have judged another (RFC 7489 §6.6.1).
  A header over `MAX_HEADER_FIELDS` or `MAX_HEADER_BYTES` is read only up to the
  cap (`InboundMail.header_read_in_part`), so a second From past it is never seen:
  its From is not believed either (FAIL), which matters once a reviewer approves
  the mail held for being over a limit (docs/security.md).
- Comments count where servers write them: after the authserv-id, after a result
  or its `reason`. After a property, that result keeps none of its properties and
  passes nothing (a `fail` still fails): a property's value may be the sender's
  words copied by the server, and `header.d=customer.example(x)s=1.attack.example`
  read without its comment was an aligned pass for a domain the sender does not
  hold (docs/security.md). The header's other results still count: OVH's and
  Fastmail's servers write a comment after dmarc's policy properties.
- A DMARC fail in the trusted server's headers stands: no aligned SPF or DKIM pass
  beside it overrules the From domain's own policy.

That is only safe together with the stripping RFC 8601 §5 requires of the
receiving server: it removes headers carrying its own authserv-id from incoming
mail before adding its own (Postfix with OpenDKIM/OpenDMARC, rspamd and Exchange
Online do). Milters insert their header just below the server's own `Received`,
so a forged header the sender put at the very top of its mail sits next to the
genuine ones, and only stripping tells them apart. When the server wrote none of
its own, a forged one anywhere in the sender's header counts, even below a
`Received` the sender wrote: the search passes trace headers, since hops after
the server add theirs on top, and no placement rule could do better than the
sender putting it at the top. The server must strip on every path, and the
gateway take mail only through it (docs/security.md). If the receiving server does
not strip, leave `TRUSTED_AUTHSERV_ID` unset rather than believe what the sender
wrote.

Only a From address can be authenticated: DMARC is defined on From, and the
trusted server checked that header. A sender read from Sender, Reply-To,
Return-Path or the envelope because From named nobody (docs/mail-gateway.md) is never
believed here, so with a trusted server configured such mail follows the
unknown-sender policy, and a staff address needs its signed-reply proof.

Alignment is RFC 7489's relaxed alignment: the organizational domains (the Public
Suffix List's registrable domain, `publicsuffixlist`) are equal, so
`mail.customer.example` aligns with `customer.example` and `evil.github.io` does
not align with `github.io`. Domains are compared, and looked up in the list, as DNS
names them: an internationalised From domain in its ASCII form (`_dns_domain`),
as the server's results write it.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

from publicsuffixlist import PublicSuffixList

from helpdesk import addresses
from helpdesk.inbound.headerfields import Malformed, strip_comments
from helpdesk.inbound.parser import InboundMail
from helpdesk.vocabulary import SENDER_SOURCES

_KEYWORD = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_.-]*[A-Za-z0-9])?")
_PAIR = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9_.\-/]*)\s*=\s*(\"(?:[^\"\\]|\\.)*+\"|[^\s\"=\x00]+)")
_QUOTED_PAIR = re.compile(r"\\(.)")
# What a mail server writes: printable ASCII, folded with CR, LF and tab.
_SERVER_TEXT = re.compile(r"[\t\r\n\x20-\x7e]*")
_PSL = PublicSuffixList()
# Where a comment was (`strip_comments`): a server's text never holds a NUL
# (`_SERVER_TEXT`), so it marks the place without being mistaken for anything.
_COMMENT = "\x00"


class Unparseable(ValueError):
    """An Authentication-Results header that does not follow RFC 8601."""


class Verdict(enum.Enum):
    UNCHECKED = "unchecked"  # no trusted server configured: From is taken as written
    PASS = "pass"  # the trusted server says the From domain authenticated
    FAIL = "fail"  # it does not say so

    @property
    def believed(self) -> bool:
        return self is not Verdict.FAIL


@dataclass
class Result:
    """One resinfo: `dkim=pass header.d=example.com` → method, result, properties."""

    method: str
    result: str
    properties: dict[str, str] = field(default_factory=dict)
    # False when a comment came after one of its properties: none of them is kept,
    # and such a result passes nothing (`_parse_resinfo`).
    properties_read: bool = True


@dataclass(frozen=True)
class Assessment:
    verdict: Verdict
    reason: str  # why the From is not believed, for staff; "" when it is


def check(mail: InboundMail, trusted_authserv_id: str) -> Verdict:
    """What the trusted server says of the From address, see the module docstring.

    UNCHECKED when no trusted server is configured. FAIL when the header was read
    only in part (`InboundMail.header_read_in_part`), the sender is not a
    From address (`InboundMail.from_source`), the header may not be the one the
    server read or holds more than one From (`InboundMail.header_ambiguity`), none
    of the trusted server's own headers exists, or none of their results passes
    aligned with the From domain.
    A trusted header that cannot be parsed passes nothing (and so, alone, gives
    FAIL), but it is one of the server's own headers all the same. A DMARC fail
    among them is FAIL whatever else passed: DMARC applies the From domain's own
    policy (strict alignment, say), which a relaxed-aligned SPF or DKIM pass must
    not overrule; `none` (no policy) and the errors leave the decision to those.
    """
    return assess(mail, trusted_authserv_id).verdict


def assess(mail: InboundMail, trusted_authserv_id: str) -> Assessment:
    """`check`'s verdict, with the reason a FAIL has."""
    if not trusted_authserv_id:
        return Assessment(Verdict.UNCHECKED, "")
    trusted = trusted_authserv_id.strip().lower()
    if mail.header_read_in_part:
        return Assessment(
            Verdict.FAIL,
            "its header was read only in part (over MAX_HEADER_FIELDS or MAX_HEADER_BYTES): "
            "a From past the cap, the one a DKIM signature covers, was never seen",
        )
    from_domain = _address_domain(mail.from_address)
    if not from_domain:
        return Assessment(Verdict.FAIL, "the sender address has no domain")
    if mail.from_source != "from":
        where = SENDER_SOURCES.get(mail.from_source, mail.from_source)
        return Assessment(Verdict.FAIL, f"the sender was read from {where}, not From")
    if mail.header_ambiguity:
        return Assessment(
            Verdict.FAIL, f"{trusted}'s Authentication-Results are not taken: {mail.header_ambiguity}"
        )
    own = _trusted_results(mail, trusted)
    if not own:
        return Assessment(Verdict.FAIL, f"no Authentication-Results of {trusted}")
    results = [result for header in own for result in header]
    if any(result.method == "dmarc" and result.result == "fail" for result in results):
        return Assessment(Verdict.FAIL, f"{trusted} records dmarc=fail, which no SPF or DKIM pass overrules")
    named = _dns_domain(mail.from_address)
    if named is None:
        return Assessment(
            Verdict.FAIL, f"{from_domain} has no ASCII form of its own for {trusted} to have checked"
        )
    if any(_passes_aligned(result, named) for result in results):
        return Assessment(Verdict.PASS, "")
    return Assessment(Verdict.FAIL, f"{trusted} records no aligned pass for {from_domain}")


def sender_is_authenticated(mail: InboundMail, trusted_authserv_id: str) -> bool:
    """May the From address be believed: always when no trusted server is configured."""
    return check(mail, trusted_authserv_id).believed


def _trusted_results(mail: InboundMail, trusted: str) -> list[list[Result]]:
    """The results of the trusted server's own headers (the first run from the top),
    [] for each of them that cannot be read."""
    found: list[list[Result]] = []
    for name, value in mail.raw_headers:
        if name == "received":
            if found:
                break
            continue
        if name != "authentication-results":
            continue
        try:
            authserv_id, results = parse_authentication_results(value)
        except Unparseable:
            authserv_id, results = _loose_authserv_id(value), []
        if authserv_id == trusted:
            found.append(results)
    return found


def _loose_authserv_id(value: str) -> str:
    """The authserv-id a header that does not follow RFC 8601 starts with, read as
    leniently as can be (lower-case; "" when none): it says whose header it is,
    whatever is wrong further on."""
    parts = _split_semicolons(strip_comments(value, strict=False))
    head = parts[0].split()
    return _unquote(head[0]).lower() if head else ""


def parse_authentication_results(value: str) -> tuple[str, list[Result]]:
    """(lower-case authserv-id, results) of one header value; raises Unparseable.

    Handles RFC 8601's comments (nested, anywhere), quoted values, the optional
    version after the authserv-id, `none`, and method versions (`dkim/1`). Only
    printable ASCII is read: see the module docstring.
    """
    if not _SERVER_TEXT.fullmatch(value):
        raise Unparseable("not printable ASCII")
    try:
        parts = _split_semicolons(strip_comments(value, replacement=_COMMENT))
    except Malformed as exc:
        raise Unparseable(str(exc)) from None
    head = _blank(parts[0]).split()
    if not head:
        raise Unparseable("no authserv-id")
    authserv_id = _unquote(head[0]).lower()
    if len(head) > 2 or (len(head) == 2 and not head[1].isdigit()):
        raise Unparseable(f"unexpected text after authserv-id: {_blank(parts[0])!r}")
    resinfos = [part for part in parts[1:] if _blank(part).strip()]
    if len(resinfos) == 1 and _blank(resinfos[0]).strip().lower() == "none":
        return authserv_id, []
    return authserv_id, [_parse_resinfo(resinfo) for resinfo in resinfos]


def _blank(text: str) -> str:
    """`text` with the places of its comments as spaces."""
    return text.replace(_COMMENT, " ")


def _parse_resinfo(text: str) -> Result:
    """One resinfo, its comments marked `_COMMENT`. A comment may follow the result
    (`dkim=pass (2048-bit key)`) or a `reason`, where servers write them. After a
    property, the result keeps its method and result but none of its properties
    (`properties_read`): a value may be the sender's (a DKIM `d=`, the envelope
    sender), and a server that copies `customer.example(x)s=1.attack.example` as
    it came gives a comment that hides the sender's own domain; yet some servers
    write a comment there (OVH's and Fastmail's after dmarc's policy), and their
    other results still count (docs/mail-gateway.md)."""
    pairs: list[tuple[str, str]] = []
    position = 0
    end = len(text)
    properties_read = True
    while True:
        start = position
        while position < end and (text[position].isspace() or text[position] == _COMMENT):
            position += 1
        if _COMMENT in text[start:position] and not _comment_may_follow(pairs):
            properties_read = False
            break
        if position == end:
            break
        match = _PAIR.match(text, position)
        if not match:
            raise Unparseable(f"cannot read {_blank(text[position:])!r}")
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
    for key, pvalue in pairs[1:] if properties_read else ():
        properties.setdefault(key, pvalue)
    return Result(
        method=method, result=result.lower(), properties=properties, properties_read=properties_read
    )


def _comment_may_follow(pairs: list[tuple[str, str]]) -> bool:
    """Whether a comment may come after `pairs`, the start of a resinfo: before its
    method, after its result, or after a `reason` right behind the result (RFC 8601
    §2.2: methodspec, then reasonspec, then the properties)."""
    return len(pairs) <= 1 or (len(pairs) == 2 and pairs[1][0] == "reason")


def _passes_aligned(result: Result, from_domain: str) -> bool:
    if result.result != "pass" or not result.properties_read:
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
    """RFC 7489 §3.1 relaxed alignment: the same organizational domain."""
    if not domain or not from_domain:
        return False
    return domain == from_domain or _organizational(domain) == _organizational(from_domain)


def _organizational(domain: str) -> str:
    """The registrable domain (RFC 7489 §3.2); a public suffix is its own."""
    return _PSL.privatesuffix(domain) or domain


def _dns_domain(address: str) -> str | None:
    """The domain of the (normalized) From address as DNS names it, and so the
    trusted server's results: an internationalised one in its IDNA 2008 ASCII form
    (`bücher.example` → `xn--bcher-kva.example`, `fußball.example` →
    `xn--fuball-cta.example`; `addresses.on_the_wire`, whose cost is bounded before
    IDNA runs). None when it has none, or when that form reads back as another
    name (`addresses.domain_to_unicode`): UTS #46 maps fullwidth letters to ASCII,
    and a From written `ｂücher.example` is not taken as `bücher.example`'s
    (docs/security.md)."""
    domain = _address_domain(address)
    if domain.isascii():
        return domain
    wire = addresses.on_the_wire(address)
    if wire is None:
        return None
    named = _address_domain(wire)
    return named if addresses.domain_to_unicode(named) == domain else None


def _address_domain(value: str) -> str:
    """Domain of `user@example.com`, `@example.com` or `example.com`, normalized."""
    return _normalize_domain(value.strip().strip("<>").rpartition("@")[2])


def _normalize_domain(value: str) -> str:
    return value.strip().strip("<>").lower().rstrip(".")


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return _QUOTED_PAIR.sub(r"\1", value[1:-1])
    return value


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
