"""What counts as an email address, one rule for every way in (docs/mail-gateway.md).

The mail gateway, the TicketsService, the API, the portal and the CLI all ask
`is_valid` and all say `INVALID` when the answer is no, so an address the
gateway reads out of a mail is never refused later by the service.

The rule is "what mail can be delivered to", not RFC 5322's grammar: real mail
comes from `root@localhost`, from intranet hosts without a dot, from Japanese
carriers' `a..b@` local parts and from internationalized addresses (RFC 6531).
What is refused is what no mail server delivers to: no `@`, an empty side,
whitespace, control characters or the characters that delimit addresses in a
header, a domain label that is no host name, or more than 254 characters (RFC
5321 §4.5.3.1.3: the path limit). Quoted local parts (`"a b"@example.com`) are
refused too: nobody uses them, and every place that splits address lists would
have to learn them. So is a local part holding `=?`, the start of an RFC 2047
encoded word (`=?utf-8?q?a=0d=0ab?=@example.com`): `=` and `?` are legal, but the
email package decodes such a word when it writes the address into a header, and
every mail naming it failed (or named another address). The decision is written
up in docs/mail-gateway.md.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable

import idna

from helpdesk import inputs

INVALID = "is not a valid email address"
MAX_LENGTH = 254
MAX_DOMAIN_LENGTH = 253
MAX_LABEL_LENGTH = 63
# Characters that end or delimit an address in a header, or cannot be in one.
_NOT_IN_LOCAL_PART = frozenset('<>()[]\\,;:@"')
_ENCODED_WORD_START = "=?"  # RFC 2047 §2
# The dots IDNA splits a domain's labels at besides ".": ideographic, fullwidth and
# halfwidth ideographic full stops (RFC 3490 §3.1; UTS #46 maps them to ".").
_IDNA_DOTS = str.maketrans(dict.fromkeys("\u3002\uff0e\uff61", "."))
_ACE_PREFIX = "xn--"  # an A-label's (RFC 5890 §2.3.2.1)


def _fits(domain: str) -> bool:
    """Whether `domain` is short enough for IDNA to run on it: at most 253 characters,
    no label (split at every IDNA dot) longer than 63. Nothing longer has an ASCII
    form (each character needs at least one letter of it), and punycode costs the
    square of a label's length: one label of 16,000 CJK characters took 30 s."""
    return len(domain) <= MAX_DOMAIN_LENGTH and all(
        len(label) <= MAX_LABEL_LENGTH for label in domain.translate(_IDNA_DOTS).split(".")
    )


def _labels(domain: str) -> tuple[list[str], str] | None:
    """`domain`'s labels and its trailing dot ("" or "."); None for an empty label."""
    dot = "." if domain.endswith(".") else ""
    labels = domain.removesuffix(".").split(".")
    return None if "" in labels else (labels, dot)


def domain_to_ascii(domain: str) -> str | None:
    """`domain` as DNS, SMTP and relays name it: IDNA 2008 (RFC 5891) after UTS #46
    non-transitional mapping, as browsers, registries and mail servers do
    (`bücher.example` → `xn--bcher-kva.example`, `ｅｘａｍｐｌｅ.com` → `example.com`,
    `straße.de` → `xn--strae-oqa.de`, a domain of its own, not `strasse.de`). None
    when IDNA 2008 refuses it, or when it or a label is too long (`_fits`, checked
    before IDNA runs). An ASCII domain is as written, and so is an ASCII label of an
    internationalised one once mapped (`mail_srv.bücher.example`), as DNS takes it.
    The one way from a Unicode domain to its ASCII form: Python's `idna` codec is
    IDNA 2003, which maps `ß` to `ss` (docs/outbound-mail.md, "Internationalised
    domains")."""
    if not _fits(domain):
        return None
    if not domain.isascii():
        try:  # a character may map to several (U+FDFA to 18): bounded again
            domain = idna.uts46_remap(domain, std3_rules=False, transitional=False)
        except (idna.IDNAError, UnicodeError):
            return None
    parts = _labels(domain) if _fits(domain) else None
    if parts is None:
        return None
    labels, dot = parts
    try:
        wire = ".".join(label if label.isascii() else idna.alabel(label).decode("ascii") for label in labels)
    except (idna.IDNAError, UnicodeError):
        return None
    return wire + dot if _fits(wire) else None


def domain_to_unicode(domain: str) -> str | None:
    """An ASCII domain (`domain_to_ascii`'s form) with its A-labels in Unicode, lower-case
    (`XN--STRAE-OQA.de` → `straße.de`), its other labels as written. None for a domain
    beyond ASCII, too long, with an empty label, or with an A-label IDNA 2008 refuses
    (no punycode, or punycode of what is no U-label)."""
    if not domain.isascii() or not _fits(domain):
        return None
    parts = _labels(domain)
    if parts is None:
        return None
    labels, dot = parts
    try:
        named = [idna.ulabel(label) if label.lower().startswith(_ACE_PREFIX) else label for label in labels]
    except (idna.IDNAError, UnicodeError):
        return None
    return ".".join(named) + dot


def display_name(name: str | None) -> str:
    """A person's name as stored and as put into a `To:` header: every control
    character a space, runs of spaces one. A name comes from a form, an API call or
    a mail's decoded header; one with a line break in it made every mail to that
    person fail to compose (and could have added header lines)."""
    return inputs.one_line(name or "")


# The stand-in address of a customer known by phone only (helpdesk.services.contacts):
# `.invalid` is reserved never to exist (RFC 2606), so nothing is ever mailed there.
PHONE_ONLY_DOMAIN = "phone.invalid"


def for_phone(phone: str) -> str:
    """The stand-in address of an E.164 number: `5215512345678@phone.invalid`."""
    return f"{phone.removeprefix('+')}@{PHONE_ONLY_DOMAIN}"


def phone_of_stand_in(address: str) -> str | None:
    """The E.164 number a stand-in address was made from (`for_phone`), else None."""
    digits, at, domain = address.rpartition("@")
    if at and domain == PHONE_ONLY_DOMAIN and digits.isascii() and digits.isdigit():
        return f"+{digits}"
    return None


def is_reserved_invalid(address: str) -> bool:
    """In the `.invalid` domain, reserved never to exist (RFC 2606): mail neither
    reaches it nor comes from it, and the stand-in addresses (`for_phone`) live there.

    Judged in the form a relay sees and the per-customer limits count by (`mailbox`),
    not as written: `…@phone.ｉｎｖａｌｉｄ` (fullwidth letters, which IDNA folds),
    `…@PHONE.INVALID.` and `…+x@phone.invalid` all are the stand-in's mailbox, and
    one that passed as a customer's address shared, and could use up, the limits
    of the WhatsApp customer that stand-in is (docs/integrations.md)."""
    domain = mailbox(address).rpartition("@")[2].rstrip(".")
    return domain == "invalid" or domain.endswith(".invalid")


def on_the_wire(address: str) -> str | None:
    """`address` as SMTP and mail headers carry it: an internationalised domain in
    its ASCII form (`domain_to_ascii`: `bücher.example` → `xn--bcher-kva.example`),
    the local part as it is; None when the domain has no ASCII form
    (docs/outbound-mail.md), or when that form is longer than an address may be.
    The lengths are checked before IDNA runs (`domain_to_ascii`)."""
    local, at, domain = address.rpartition("@")
    if domain.isascii():
        return address
    ascii_domain = domain_to_ascii(domain)
    if ascii_domain is None:
        return None
    wire = f"{local}{at}{ascii_domain}"
    return wire if len(wire) <= MAX_LENGTH else None


def folded(address: str) -> str:
    """`address` with its domain as IDNA maps it, in Unicode: `ann@ｅｘａｍｐｌｅ.com`
    and `ann@example．com` are `ann@example.com`, the mailbox a relay delivers them
    to. For an address a customer names over the API (a chat, the assistant's
    `verify_email`): as written, each spelling was a contact of its own for one
    mailbox (docs/integrations.md, "Who the customer is"). Unchanged when the domain
    is ASCII, has no ASCII form, or its mapped form is no host name."""
    local, at, domain = address.rpartition("@")
    if not at or domain.isascii():
        return address
    wire = on_the_wire(address)
    if wire is None:
        return address
    mapped = domain_to_unicode(wire.rpartition("@")[2])
    return f"{local}@{mapped}" if mapped is not None and is_valid_domain(mapped) else address


def is_address_literal(address: str) -> bool:
    """Whether `address` names a host by its IP address: a literal (`ann@[192.0.2.1]`)
    or a domain that is a number (`_is_numeric_host`: `root@127.0.0.1`, `x@123`).
    Valid mail syntax, but a relay mailing it connects to that host, whatever it is
    (its own loopback, a server inside the network). No customer's address
    (docs/integrations.md, "Who the customer is")."""
    domain = address.rpartition("@")[2]
    if domain.startswith("["):
        return True
    wire = on_the_wire(address)
    return _is_numeric_host((wire or address).rpartition("@")[2])


def _is_numeric_host(domain: str) -> bool:
    """Whether a resolver takes `domain` (its ASCII form) for an IPv4 address rather
    than a name. No top-level domain is all-numeric (RFC 3696 §2), so a last label
    of digits is an address (`127.0.0.1`, `10.1`, `2130706433`); and the C library's
    `inet_aton`, which many resolvers and relays ask first, also reads up to four
    parts in hex or octal (`0x7f000001`, `0x7f.1`)."""
    labels = domain.rstrip(".").split(".")
    if labels[-1].isascii() and labels[-1].isdigit():
        return True
    return len(labels) <= 4 and all(_is_number_part(label) for label in labels)


def _is_number_part(label: str) -> bool:
    """A part of an IPv4 address as `inet_aton` reads it: decimal, octal or `0x` hex."""
    text = label.lower()
    if text.startswith("0x"):
        text = text[2:]
        return text == "" or all(char in "0123456789abcdef" for char in text)
    return text.isascii() and text.isdigit()


def named(address: str | None) -> str | None:
    """An address a person or a program names for a customer or a CC participant
    (the staff API, the workflow API, the portal's forms, the chat and assistant
    endpoints; not one read out of a mail, which is kept as written): normalized,
    with its domain as IDNA maps it (`folded`), or None when it is no address
    (`is_valid`) or an address literal (`is_address_literal`). The one rule every
    such way in asks (docs/integrations.md, "Who the customer is")."""
    email = normalize(folded(normalize(address)))
    if not is_valid(email) or is_address_literal(email):
        return None
    return email


# Providers whose mailboxes ignore dots in the local part, each with the domain its
# mailboxes are known by. Gmail delivers `v.ictim@`, `vi.ctim@` and `victim@` to one
# inbox (Google's help page "Dots don't matter in Gmail addresses"), and
# googlemail.com is the same service under the name it had in Germany and the UK,
# still delivering to the same inboxes. Nothing else: Google Workspace domains keep
# dots significant, other providers do or say nothing, and a wrong guess would count
# two people as one customer (docs/integrations.md, "Per-customer limits").
_DOTS_IGNORED = {"gmail.com": "gmail.com", "googlemail.com": "gmail.com"}


def mailbox(address: str) -> str:
    """The mailbox `address` reaches, as one key for counting mail to it: the
    detail dropped, lower-case, the domain in the form the relay sees
    (`Robot+t7@ｃｏｒｐ.example` → `robot@corp.example`), and for Gmail
    (`_DOTS_IGNORED`) no dots and one domain (`V.ictim@googlemail.com` →
    `victim@gmail.com`). A bot answering from a new plus-address or spelling every
    time, or a stranger writing as every spelling of one Gmail inbox, is still one
    recipient for the rate limit and one customer for the per-customer limits
    (docs/outbound-mail.md, docs/integrations.md). A key for counting and for
    knowing our own mailbox (`is_support_address`) only: contacts, authorization
    and display keep each address as written."""
    bare = without_detail(address)
    key = on_the_wire(bare) or bare
    local, at, domain = key.rpartition("@")
    if at and domain in _DOTS_IGNORED:
        return f"{local.replace('.', '')}@{_DOTS_IGNORED[domain]}"
    return key


def needs_smtputf8(address: str) -> bool:
    """A mailbox name beyond ASCII (`josé@…`) travels only as RFC 6531 mail."""
    return not address.rpartition("@")[0].isascii()


def normalize(address: str | None) -> str:
    """The form addresses are stored and compared in: trimmed, lower-case, and
    without the trailing dot of a fully qualified domain (`ann@example.com.` is
    `ann@example.com`, the same mailbox)."""
    text = (address or "").strip().lower()
    if text.endswith(".") and "@" in text:
        text = text.rstrip(".")
    return text


def without_detail(address: str) -> str:
    """The mailbox a plus-address delivers to, normalized:
    `Support+TKT-000078@Example.com` → `support@example.com` (RFC 5233)."""
    local, at, domain = normalize(address).strip("<>").rpartition("@")
    return f"{local.split('+', 1)[0]}@{domain}" if at else normalize(address).strip("<>")


def detail(address: str) -> str | None:
    """What follows the `+` of a plus-address (`TKT-000078`), or None."""
    local = address.rpartition("@")[0]
    return local.split("+", 1)[1] if "+" in local else None


def wire_or_stored(address: str) -> str:
    """`address` as `on_the_wire` gives it, or as stored when its domain has no ASCII
    form: for comparing and for our own headers (such an address is never mailed)."""
    return on_the_wire(address) or address


def either_form(address: str) -> set[str]:
    """The (normalized) `address` in both spellings of an internationalised domain:
    in Unicode and as the relay sees it (`on_the_wire`), `ana@bücher.example` and
    `ana@xn--bcher-kva.example`, whichever was written. Whatever is stored by address
    (a contact, a participant, an authorized sender's rule, a bounce's mark) is
    looked up in both, so a domain typed in Unicode matches mail that writes it in
    punycode (docs/mail-gateway.md, "One domain, two spellings"; docs/integrations.md, "Who
    the customer is").

    Only a pair that reads back into each other (`domain_to_ascii` and
    `domain_to_unicode`, IDNA 2008): `fußball.example` and `xn--fuball-cta.example`
    are one, but a Unicode domain the mapping changes on the way (fullwidth letters)
    and an `xn--` label that is no punycode of a Unicode label are only themselves,
    as a homograph (a Cyrillic `а` for the Latin `a`) is another domain
    (docs/security.md). An ASCII domain without
    an `xn--` label, nearly every address, is only itself for one scan of the domain."""
    local, at, domain = address.rpartition("@")
    if not at or (domain.isascii() and _ACE_PREFIX not in domain.lower()):
        return {address}
    wire = on_the_wire(address)
    if wire is None:
        return {address}
    # An A-label IDNA 2008 refuses (`domain_to_unicode` is None): the ASCII form is the only one.
    unicode = domain_to_unicode(wire.rpartition("@")[2])
    if unicode is None:
        return {address}
    if domain.isascii() or unicode == domain:
        return {wire, f"{local}@{unicode}"}
    return {address}


def mailbox_spellings(address: str) -> set[str]:
    """The stored spellings of the mailbox mail to `address` goes to: itself, the form
    the relay is given (`wire_or_stored`: a fullwidth `ana@ｂücher.example` is sent
    to `ana@xn--bcher-kva.example`) and that form's other spelling (`either_form`).
    `either_form` alone leaves a fullwidth domain only itself, as it must for who a
    sender is; but the sender skips mail to it for a mark on its punycode, and
    `flask addresses deliverable` given it cleared nothing of that mark."""
    return {address} | either_form(wire_or_stored(address))


def one_spelling_each(found: Iterable[str], taken: Iterable[str] = ()) -> list[str]:
    """The (normalized) addresses of `found` in order, each mailbox once: the first
    spelling of each, and none that is a spelling of one of `taken` (a ticket's
    requester and participants, a reply's author). Compared as the relay is given
    them (`wire_or_stored`), the one mailbox mail to either goes to. Compared as
    written, `bob@bücher.example` and `bob@xn--bcher-kva.example` in one Cc were two
    participants, each mailed every reply; compared by `either_form`, which pairs no
    spelling the mapping changes, so was a Cc in fullwidth letters
    (`bob@ｂücher.example`), and a staff member made a CC so got her own reply
    (docs/mail-gateway.md, "One domain, two spellings"). A look-alike domain is
    another mailbox, kept. One scan of each ASCII domain."""
    seen = {wire_or_stored(address) for address in taken}
    kept: list[str] = []
    for address in found:
        mailbox = wire_or_stored(address)
        if mailbox not in seen:
            kept.append(address)
            seen.add(mailbox)
    return kept


def is_support_address(address: str, support: Collection[str]) -> bool:
    """Whether `address` reaches one of the support addresses' mailboxes (`mailbox`):
    a plus-address of one (`support+TKT-78@…`), in any case, its domain in any form
    IDNA maps to it, and, for a Gmail-hosted one, every spelling of that inbox
    (`help.desk@gmail.com` is `helpdesk@googlemail.com`). The one rule for "ours":
    the sender never mails it, a mail's To and Cc never make it a participant, the
    listener takes it at RCPT, and mail from it is our own coming back (SPEC §8;
    docs/mail-gateway.md). Only mail to the support inbox can use such a spelling,
    so knowing it as ours grants nobody anything."""
    if "@" not in address:
        return False
    box = mailbox(address)
    return any(mailbox(own) == box for own in support)


def is_valid(address: str) -> bool:
    """Can mail be delivered to this (normalized) address? See the module docstring."""
    if not address or len(address) > MAX_LENGTH:
        return False
    local, at, domain = address.rpartition("@")
    return bool(at) and _is_local_part(local) and is_valid_domain(domain)


def is_valid_domain(domain: str) -> bool:
    """A host name (dotless and internationalized ones included) or an address
    literal such as `[192.0.2.1]` or `[IPv6:2001:db8::1]`."""
    if domain.startswith("[") and domain.endswith("]"):
        return _is_address_literal(domain[1:-1])
    if not domain or len(domain) > MAX_DOMAIN_LENGTH:
        return False
    return all(_is_label(label) for label in domain.split("."))


def _is_local_part(local: str) -> bool:
    """No delimiter, no space, and no `=?`, which the email package would decode as
    an encoded word when writing a header (see the module docstring)."""
    return (
        bool(local)
        and _ENCODED_WORD_START not in local
        and all(
            char.isprintable() and not char.isspace() and char not in _NOT_IN_LOCAL_PART for char in local
        )
    )


def _is_label(label: str) -> bool:
    """A DNS label: letters (any script, for IDN), digits, inner hyphens, and the
    underscores Windows networks put in host names."""
    return (
        0 < len(label) <= MAX_LABEL_LENGTH
        and label[0] != "-"
        and label[-1] != "-"
        and all(char.isalnum() or char in "-_" for char in label)
    )


def _is_address_literal(text: str) -> bool:
    try:
        if text[:5].lower() == "ipv6:":
            ipaddress.IPv6Address(text[5:])
        else:
            ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True
