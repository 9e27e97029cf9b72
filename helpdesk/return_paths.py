"""Signed envelope senders of the mail the helpdesk sends: VERP (docs/outbound-mail.md,
"Bounces"; docs/security.md).

Every outbox row is sent with its own envelope sender (SMTP `MAIL FROM`, RFC 5321
§4.1.1.2), a plus-address of a support address:

    support+bounce-{outbox row}-{mac}@helpdesk.test

where `mac` is HMAC-SHA256 over the row id and its recipient, truncated to 96 bits
(24 lower-case hex digits: local parts travel case-folded through some servers),
under a key of its own derived from `SECRET_KEY`. A delivery report goes to the
envelope sender (RFC 3464 §2, RFC 5321 §4.5.5), so a bounce that arrives addressed
to such an address, and whose MAC verifies for the recipient the row was sent to,
proves which row failed. Nothing else does: the signed Message-ID of a mail reaches
everyone its recipient answers or forwards it to (In-Reply-To, References, the
quoted text), so a bounce naming one proves only that its writer read such a mail.
The address stays with the recipient's mail server: it is written into the
recipient's copy as `Return-Path`, which replies and forwards leave out.

Parsed by splitting, never by a regular expression; an address longer than 254
characters or a detail in another shape is simply not one of these.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any

from sqlalchemy.orm import Session

from helpdesk import addresses
from helpdesk.models import OutboxMessage

TAG = "bounce"
MAC_HEX_DIGITS = 24  # 96 bits
MAX_ROW_DIGITS = 18  # as the Message-IDs': any row id a BIGINT holds
_HEX = frozenset("0123456789abcdef")
_KEY_PURPOSE = b"helpdesk outbound return-path v1"
# Addresses in our shape a bounce may be addressed to that are looked at
# (`bounced_rows`): a real report comes to one, and each costs a lookup.
MAX_CANDIDATES = 20


@dataclass(frozen=True)
class ReturnPaths:
    key: bytes
    base: str  # the support address the plus-addresses are made of, lower-case

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ReturnPaths:
        """The base is `OUTBOUND_FROM`'s address when it is a support address, else the
        first support address: bounces must reach the gateway, and its listener takes
        only support addresses and their plus-addresses (docs/mail-gateway.md)."""
        secret = str(config["SECRET_KEY"]).encode()
        key = hmac.new(secret, _KEY_PURPOSE, hashlib.sha256).digest()
        support = [addresses.normalize(address) for address in config["SUPPORT_ADDRESSES"]]
        outbound_from = addresses.normalize(parseaddr(str(config["OUTBOUND_FROM"]))[1])
        return cls(key, outbound_from if outbound_from in support else support[0])

    def make(self, outbox_id: int, recipient: str) -> str:
        """The envelope sender of outbox row `outbox_id` mailed to `recipient` (as stored)."""
        local, _, domain = self.base.rpartition("@")
        return f"{local}+{TAG}-{outbox_id}-{self._mac(outbox_id, recipient)}@{domain}"

    def parse(self, address: str, support: Collection[str]) -> tuple[int, str] | None:
        """The row id and MAC an address of ours in this shape names (not yet
        verified), else None. Any support address's plus-address is read, not only the
        base's: the MAC is what counts, and the base may have changed since."""
        address = addresses.normalize(address).strip("<>")
        if len(address) > addresses.MAX_LENGTH or not addresses.is_support_address(address, support):
            return None
        detail = addresses.detail(address)
        tag, _, rest = (detail or "").partition("-")
        row, _, mac = rest.partition("-")
        if (
            tag != TAG
            or not (0 < len(row) <= MAX_ROW_DIGITS and row.isascii() and row.isdigit())
            or len(mac) != MAC_HEX_DIGITS
            or not _HEX.issuperset(mac)
        ):
            return None
        return int(row), mac

    def verifies(self, outbox_id: int, mac: str, recipient: str) -> bool:
        return hmac.compare_digest(mac, self._mac(outbox_id, recipient))

    def _mac(self, outbox_id: int, recipient: str) -> str:
        message = f"{outbox_id}.{addresses.normalize(recipient)}".encode()
        return hmac.new(self.key, message, hashlib.sha256).hexdigest()[:MAC_HEX_DIGITS]


def bounced_rows(
    session: Session, return_paths: ReturnPaths, recipients: Iterable[str], support: Collection[str]
) -> list[OutboxMessage]:
    """The outbox rows whose signed envelope sender is among `recipients`, each only
    when its MAC verifies for the address that row was sent to: a made-up MAC, or the
    MAC of one row given with another's id, names nothing. At most `MAX_CANDIDATES`
    addresses in our shape are looked at."""
    rows: dict[int, OutboxMessage] = {}
    looked_at = 0
    for address in recipients:
        parsed = return_paths.parse(address, support)
        if parsed is None:
            continue
        looked_at += 1
        if looked_at > MAX_CANDIDATES:
            break
        outbox_id, mac = parsed
        if outbox_id in rows:
            continue
        row = session.get(OutboxMessage, outbox_id)
        if row is not None and return_paths.verifies(outbox_id, mac, row.to_address):
            rows[outbox_id] = row
    return list(rows.values())
