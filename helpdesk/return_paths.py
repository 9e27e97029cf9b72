"""Signed envelope senders of the mail the helpdesk sends: VERP (docs/outbound-mail.md,
"Bounces"; docs/security.md).

Every outbox row is sent with its own envelope sender (SMTP `MAIL FROM`, RFC 5321
§4.1.1.2), a plus-address of a support address:

    support+b-{outbox row}-{mac}@helpdesk.test

with the row id and `mac` in base32hex (RFC 4648 §7), lower-case: local parts travel
case-folded through some servers. `mac` is HMAC-SHA256 over the row id and its
recipient, truncated to 80 bits (16 digits), under a key of its own derived from
`SECRET_KEY`. A delivery report goes to the envelope sender (RFC 3464 §2, RFC 5321
§4.5.5), so a bounce that arrives addressed to such an address, and whose MAC
verifies for the recipient the row was sent to, proves which row failed. Nothing
else does: the signed Message-ID of a mail reaches everyone its recipient answers or
forwards it to (In-Reply-To, References, the quoted text), so a bounce naming one
proves only that its writer read such a mail. The address stays with the recipient's
mail server: it is written into the recipient's copy as `Return-Path`, which replies
and forwards leave out.

RFC 5321 §4.5.3.1.1 allows 64 octets of local part, and a strict relay refuses a
longer `MAIL FROM`: the shape is compact so that a support local part of up to 31
octets fits with any row id a BIGINT holds (37 with any id PostgreSQL's INTEGER
`outbox.id` holds). A row whose return path would still pass 64 is sent from the
plain support address, and a report of it proves nothing: it is treated as any
bounce to the support address (ignored, naming the notification to staff).

80 bits are enough: a MAC can only be checked by the gateway (the key never leaves
it, and knowing other rows' MACs tells nothing of one more), so a forger guesses
online, 20 guesses a mail (`MAX_CANDIDATES`). A million mails a second for a year is
2^49 guesses, about one chance in 2^31 of a single hit, which marks one address
undeliverable until its owner writes again.

Before, the shape was `support+bounce-{row in decimal}-{mac in 24 hex digits}@` (96
bits, the same key over another message), 33 octets and the row's digits longer
than the support local part (67 for a 24-character one at row 2,147,483,647, which a
strict relay refused). Reports of mail sent so come days later, so that shape is
still read and verified (`Signed.previous`), never made.

Parsed by splitting, never by a regular expression; an address longer than 254
characters or a detail in another shape is simply not one of these.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any, NamedTuple

from sqlalchemy.orm import Session

from helpdesk import addresses
from helpdesk.models import OutboxMessage

TAG = "b"
MAC_BYTES = 10  # 80 bits: 16 base32 digits, no padding
MAC_DIGITS = 16
MAX_ROW_ID = 2**63 - 1  # a BIGINT's largest
MAX_ROW_DIGITS = 13  # base32 digits of MAX_ROW_ID
MAX_LOCAL_PART = 64  # octets, RFC 5321 §4.5.3.1.1
_BASE32_DIGITS = "0123456789abcdefghijklmnopqrstuv"  # base32hex, as int(text, 32) reads it
_BASE32 = frozenset(_BASE32_DIGITS)
# The shape made before, still verified (see the module docstring).
PREVIOUS_TAG = "bounce"
PREVIOUS_MAC_HEX_DIGITS = 24  # 96 bits
PREVIOUS_MAX_ROW_DIGITS = 18
_HEX = frozenset("0123456789abcdef")
_KEY_PURPOSE = b"helpdesk outbound return-path v1"
# Addresses in our shapes a bounce may be addressed to that are looked at
# (`bounced_rows`): a real report comes to one, and each costs a lookup.
MAX_CANDIDATES = 20


class Signed(NamedTuple):
    """What an address in a return path's shape claims: a row and its MAC, in the
    compact shape or the `previous` one (not yet verified)."""

    outbox_id: int
    mac: str
    previous: bool = False


@dataclass(frozen=True)
class ReturnPaths:
    key: bytes
    base: str  # the support address the plus-addresses are made of, lower-case, as on the wire

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ReturnPaths:
        """The base is `OUTBOUND_FROM`'s address when it is a support address, else the
        first support address: bounces must reach the gateway, and its listener takes
        only support addresses and their plus-addresses (docs/mail-gateway.md). It is
        kept as SMTP carries it (`addresses.on_the_wire`): `MAIL FROM` is ASCII, and a
        domain beyond ASCII made every mail fail for good (docs/outbound-mail.md);
        the reports come back to that form, which `parse` knows as ours."""
        secret = str(config["SECRET_KEY"]).encode()
        key = hmac.new(secret, _KEY_PURPOSE, hashlib.sha256).digest()
        support = [addresses.normalize(address) for address in config["SUPPORT_ADDRESSES"]]
        outbound_from = addresses.normalize(parseaddr(str(config["OUTBOUND_FROM"]))[1])
        base = outbound_from if outbound_from in support else support[0]
        return cls(key, addresses.wire_or_stored(base))

    def make(self, outbox_id: int, recipient: str) -> str:
        """The envelope sender of outbox row `outbox_id` mailed to `recipient` (as stored):
        its signed return path, or the plain base when that would pass 64 octets of
        local part, which a strict relay refuses (all the mail, not only the bounces)."""
        local, _, domain = self.base.rpartition("@")
        signed = f"{local}+{TAG}-{_base32(outbox_id)}-{self._mac(outbox_id, recipient)}"
        return f"{signed}@{domain}" if len(signed.encode()) <= MAX_LOCAL_PART else self.base

    def first_unsigned_row(self) -> int | None:
        """The first row id `make` gives the plain base for, its base's local part
        leaving too little room (None: none up to a BIGINT's largest), for the
        sender to warn of at start: bounces of those rows will mark nothing."""
        local = self.base.rpartition("@")[0]
        room = MAX_LOCAL_PART - len(f"{local}+{TAG}--".encode()) - MAC_DIGITS
        return None if room >= MAX_ROW_DIGITS else 32 ** max(room, 0)

    def parse(self, address: str, support: Collection[str]) -> Signed | None:
        """The row id and MAC an address of ours in either shape names (not yet
        verified), else None. Any support address's plus-address is read, not only the
        base's: the MAC is what counts, and the base may have changed since."""
        address = addresses.normalize(address).strip("<>")
        if len(address) > addresses.MAX_LENGTH or not addresses.is_support_address(address, support):
            return None
        tag, _, rest = (addresses.detail(address) or "").partition("-")
        row, _, mac = rest.partition("-")
        if tag == TAG:
            return _compact(row, mac)
        if tag == PREVIOUS_TAG:
            return _previous(row, mac)
        return None

    def verifies(self, signed: Signed, recipient: str) -> bool:
        expected = (self._previous_mac if signed.previous else self._mac)(signed.outbox_id, recipient)
        return hmac.compare_digest(signed.mac, expected)

    def _mac(self, outbox_id: int, recipient: str) -> str:
        # The message begins with the tag, the previous shape's with a digit: neither
        # MAC tells anything of the other.
        message = f"{TAG}.{outbox_id}.{addresses.normalize(recipient)}".encode()
        digest = hmac.new(self.key, message, hashlib.sha256).digest()
        return base64.b32hexencode(digest[:MAC_BYTES]).decode("ascii").lower()

    def _previous_mac(self, outbox_id: int, recipient: str) -> str:
        message = f"{outbox_id}.{addresses.normalize(recipient)}".encode()
        return hmac.new(self.key, message, hashlib.sha256).hexdigest()[:PREVIOUS_MAC_HEX_DIGITS]


def _base32(number: int) -> str:
    """`number` in base32hex digits, lower-case, no leading zero (`int(text, 32)` reads it back)."""
    digits = ""
    while True:
        number, digit = divmod(number, 32)
        digits = _BASE32_DIGITS[digit] + digits
        if not number:
            return digits


def _compact(row: str, mac: str) -> Signed | None:
    """`row` and `mac` of `support+b-{row}-{mac}@`, when they are in that shape. The
    digits are checked before `int` reads them: it takes signs, spaces and `_` too."""
    if not (
        0 < len(row) <= MAX_ROW_DIGITS
        and row[0] != "0"
        and _BASE32.issuperset(row)
        and len(mac) == MAC_DIGITS
        and _BASE32.issuperset(mac)
    ):
        return None
    outbox_id = int(row, 32)
    return Signed(outbox_id, mac) if outbox_id <= MAX_ROW_ID else None


def _previous(row: str, mac: str) -> Signed | None:
    """`row` and `mac` of `support+bounce-{row}-{mac}@`, the shape made before, still verified."""
    if not (
        0 < len(row) <= PREVIOUS_MAX_ROW_DIGITS
        and row.isascii()
        and row.isdigit()
        and len(mac) == PREVIOUS_MAC_HEX_DIGITS
        and _HEX.issuperset(mac)
    ):
        return None
    outbox_id = int(row)
    return Signed(outbox_id, mac, previous=True) if outbox_id > 0 else None


def bounced_rows(
    session: Session, return_paths: ReturnPaths, recipients: Iterable[str], support: Collection[str]
) -> list[OutboxMessage]:
    """The outbox rows whose signed envelope sender (either shape) is among
    `recipients`, each only when its MAC verifies for the address that row was sent
    to: a made-up MAC, or the MAC of one row given with another's id, names nothing.
    At most `MAX_CANDIDATES` addresses in our shapes are looked at."""
    rows: dict[int, OutboxMessage] = {}
    looked_at = 0
    for address in recipients:
        signed = return_paths.parse(address, support)
        if signed is None:
            continue
        looked_at += 1
        if looked_at > MAX_CANDIDATES:
            break
        if signed.outbox_id in rows:
            continue
        row = session.get(OutboxMessage, signed.outbox_id)
        if row is not None and return_paths.verifies(signed, row.to_address):
            rows[signed.outbox_id] = row
    return list(rows.values())
