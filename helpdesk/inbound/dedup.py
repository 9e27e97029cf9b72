"""Has this mail been received before? (docs/mail-gateway.md.)

The key is the normalized Message-ID, or a hash of the raw bytes when there is none,
and the inbound-mail table holds it under a unique constraint: a second delivery of
the same mail — a sender's retry, the same mail to two support addresses, SMTP and
IMAP both, a poller that crashed before moving it — is refused by that constraint
when its record is inserted (`ingest` writes the record first), and then answered
with what became of the first one, changing nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from helpdesk.inbound.parser import InboundMail
from helpdesk.models import InboundMail as InboundRecord

# In UTF-8 bytes: PostgreSQL's unique index refuses a key over about 2,700 bytes,
# and 900 characters of four-byte ones would be 3,600.
MAX_KEY_BYTES = 900


def dedup_key(mail: InboundMail) -> str:
    """The normalized Message-ID, or a hash of the raw bytes when there is none.

    The domain part of a Message-ID is case-insensitive, the local part is not. A
    longer id is keyed by its hash, so every key fits the unique index.
    """
    if mail.message_id:
        local, at, domain = mail.message_id.strip().strip("<>").rpartition("@")
        key = f"{local}@{domain.lower()}" if at else mail.message_id.strip()
        encoded = key.encode("utf-8", "replace")
        if len(encoded) <= MAX_KEY_BYTES:
            return key
        return "mid-sha256:" + hashlib.sha256(encoded).hexdigest()
    return "sha256:" + hashlib.sha256(mail.raw).hexdigest()


@dataclass(frozen=True)
class Earlier:
    """The first delivery of a mail: its inbound row and what became of it."""

    inbound_id: int
    outcome: str
    message_id: str | None


def earlier_delivery(session: Session, key: str) -> Earlier | None:
    """The earlier delivery of this mail, if any."""
    row = session.execute(
        select(InboundRecord.id, InboundRecord.outcome, InboundRecord.message_id).where(
            InboundRecord.dedup_key == key
        )
    ).first()
    return None if row is None else Earlier(*row)
