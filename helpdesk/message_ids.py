"""Signed Message-IDs of the mail the helpdesk sends (RFC 5322 §3.6.4; docs/mail-gateway.md).

Every outgoing mail gets `<tkt.{ticket}.{outbox row}.{mac}@{MESSAGE_ID_DOMAIN}>`,
where `mac` is HMAC-SHA256 over the ticket id, the outbox row id and the
recipient, truncated to 96 bits, under a key derived from `SECRET_KEY`. The id is
unique (one outbox row, one recipient) and deterministic, so a retry of the same
row sends the same Message-ID and the recipient's mail client can fold a duplicate.

A reply that names such an id in In-Reply-To/References proves which ticket and
which recipient it answers. An id in our domain is trusted only when it is well
formed, its MAC verifies for the recipient of the row it names, and that row
stored exactly this id: a forged id (say, another ticket's number with a made-up
MAC) threads nowhere. An SLA digest is about no single ticket: its id names the
ticket `NO_TICKET` (0, which no ticket has), so a reply to it proves its
recipient but threads onto no ticket. The domain must be used by nothing but the helpdesk,
because `automail` treats mail whose own Message-ID is in it as ours coming back.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from helpdesk import addresses
from helpdesk.models import OutboxMessage

MAC_HEX_DIGITS = 24  # 96 bits
NO_TICKET = 0  # the ticket a row about none names (an SLA digest, `outbox.ticket_id` empty)
_KEY_PURPOSE = b"helpdesk outbound message-id v1"
_LOCAL_PART = re.compile(r"^tkt\.(\d{1,18})\.(\d{1,18})\.([0-9a-f]{%d})$" % MAC_HEX_DIGITS)


@dataclass(frozen=True)
class SignedId:
    ticket_id: int
    outbox_id: int
    mac: str


@dataclass(frozen=True)
class Signer:
    key: bytes
    domain: str

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Signer:
        """A key of its own, derived from SECRET_KEY, so a MAC made here can never be
        mistaken for a session signature and vice versa. The domain is kept in its
        ASCII form (`ascii_domain`): it is written into every Message-ID and greets the
        relay (EHLO), where nothing else goes."""
        secret = str(config["SECRET_KEY"]).encode()
        key = hmac.new(secret, _KEY_PURPOSE, hashlib.sha256).digest()
        return cls(key, ascii_domain(str(config["MESSAGE_ID_DOMAIN"])))

    def make(self, ticket_id: int, outbox_id: int, recipient: str) -> str:
        """The Message-ID, without angle brackets."""
        mac = self._mac(ticket_id, outbox_id, recipient)
        return f"tkt.{ticket_id}.{outbox_id}.{mac}@{self.domain}"

    def is_ours(self, message_id: str) -> bool:
        return message_id.strip("<> ").rpartition("@")[2].lower().rstrip(".") == self.domain

    def parse(self, message_id: str) -> SignedId | None:
        """The parts of an id in our domain and format, else None (not yet verified)."""
        if not self.is_ours(message_id):
            return None
        match = _LOCAL_PART.match(message_id.strip("<> ").rpartition("@")[0].lower())
        if match is None:
            return None
        return SignedId(int(match.group(1)), int(match.group(2)), match.group(3))

    def verifies(self, signed: SignedId, recipient: str) -> bool:
        expected = self._mac(signed.ticket_id, signed.outbox_id, recipient)
        return hmac.compare_digest(signed.mac, expected)

    def _mac(self, ticket_id: int, outbox_id: int, recipient: str) -> str:
        message = f"{ticket_id}.{outbox_id}.{recipient.strip().lower()}".encode()
        return hmac.new(self.key, message, hashlib.sha256).hexdigest()[:MAC_HEX_DIGITS]


def ascii_domain(domain: str) -> str:
    """`MESSAGE_ID_DOMAIN` as mail carries it: lower-case, no final dot, and beyond
    ASCII in its IDNA form (`helpdesk.bücher.example` → `helpdesk.xn--bcher-kva.example`,
    `addresses.on_the_wire`), as the default made of an internationalised support
    domain is. A Message-ID and an EHLO are ASCII only: with the domain as written,
    every mail failed to render (docs/outbound-mail.md). A domain with no ASCII form
    stays as written, and the gateway refuses to start with it (`mailgateway.outbound`)."""
    domain = domain.strip().lower().rstrip(".")
    return addresses.wire_or_stored(f"x@{domain}").rpartition("@")[2]


def sent_rows(session: Session, signer: Signer, message_ids: Iterable[str]) -> dict[str, OutboxMessage]:
    """The outbox rows that sent `message_ids`, by the id as given, for the ids that
    are genuinely ours; none for ids of other domains, malformed or forged ids, and
    ids no row stored. Read in one query: the MAC covers the recipient its row
    stored, so it can only be checked against the row, and one lookup per id made a
    mail naming 100 forged ids (`parser.MAX_THREAD_IDS` of In-Reply-To and of
    References) cost 100 queries for each question asked of them."""
    signed = {message_id: parsed for message_id in message_ids if (parsed := signer.parse(message_id))}
    if not signed:
        return {}
    wanted = {parsed.outbox_id for parsed in signed.values()}
    rows = {
        row.id: row
        for row in session.execute(select(OutboxMessage).where(OutboxMessage.id.in_(wanted))).scalars()
    }
    return {
        message_id: row
        for message_id, parsed in signed.items()
        if (row := rows.get(parsed.outbox_id)) is not None and _sent(row, signer, parsed, message_id)
    }


def _sent(row: OutboxMessage, signer: Signer, signed: SignedId, message_id: str) -> bool:
    """Did `row` send `message_id`, whose parts are `signed`, with a MAC that verifies?"""
    return (
        (row.ticket_id if row.ticket_id is not None else NO_TICKET) == signed.ticket_id
        and row.message_id is not None
        and row.message_id.lower() == message_id.strip("<> ").lower()
        and signer.verifies(signed, row.to_address)
    )
