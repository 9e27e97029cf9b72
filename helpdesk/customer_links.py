"""Links in customer mail that open the tracker view or the rating page without
typing an email address (docs/security.md, "Customer links").

A link's token is the ticket id and a keyed digest of the recipient's address,
signed (itsdangerous) under a key derived from SECRET_KEY with one salt per
purpose: a status link cannot rate, a rating link opens nothing else, and a token
for one ticket names no other. Holding the mail is the proof, as with the reply
address. The tracker form's answer gets a token too, of its own purpose `lookup`:
typing a number and an address proves less than holding the mail, so it reopens
the view only (`MAILED` names the purposes that prove the mail). A token is
honoured only while it is younger than `CUSTOMER_LINK_MAX_AGE` (a `lookup`
token: `LOOKUP_MAX_AGE`) and while its address may still read the ticket (its
requester or a CC participant, in either spelling of an internationalised
domain). Every way a token can fail gets the same NotFound.

The digest, not the address, goes into the URL: links end up in proxy logs and
browser histories, and the signed payload is only encoded, not encrypted.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from itsdangerous import BadData, URLSafeTimedSerializer
from sqlalchemy import select
from sqlalchemy.orm import Session

from helpdesk import addresses
from helpdesk.errors import NotFound
from helpdesk.languages import N_
from helpdesk.models import Participant, Ticket

PURPOSES = {"status": "/track/", "rating": "/rate/", "lookup": "/track/lookup/"}
# The links customer mail carries: holding one proves holding the mail, which lets
# its pages offer the rating and set the contact's language. A `lookup` token only
# proves that someone typed a matching number and address (SPEC §11: rating is the
# resolution mail's link and the assistant's `rate_ticket`).
MAILED = frozenset({"status", "rating"})
MAX_TOKEN = 200  # longer text is no token of ours; refused before any work
# A lookup's token only carries its answer through the language switch, a moment
# later. It lived as long as a mailed link, so its page, kept in a shared
# computer's browser history, showed the thread to the next user for 180 days.
LOOKUP_MAX_AGE = timedelta(hours=1)
INVALID = N_("This link is not valid (any more). Look the ticket up with its number and your email address.")
_DIGEST_PURPOSE = b"helpdesk customer link address v1"


@dataclass(frozen=True)
class Opened:
    """A verified link: its ticket, and whose link it is (the address digest, and
    the address it matched), so the page it opens can link on to the same person's
    other page and remember their language."""

    ticket: Ticket
    digest: str
    address: str

    def token(self, config: Mapping[str, Any], purpose: str) -> str:
        return _token(config, purpose, self.ticket.id, self.digest)


def url(config: Mapping[str, Any], purpose: str, ticket_id: int, address: str) -> str:
    """The full link for `address` to `ticket_id`'s page for `purpose`."""
    return f"{config['PORTAL_URL']}{PURPOSES[purpose]}{token(config, purpose, ticket_id, address)}"


def token(config: Mapping[str, Any], purpose: str, ticket_id: int, address: str) -> str:
    """The token of that link (the tracker form gives a `lookup` one to whoever just
    typed a matching number and address, so its language switch can show the ticket
    again)."""
    return _token(config, purpose, ticket_id, _digest(config, address))


def open_link(session: Session, config: Mapping[str, Any], purpose: str, token: str) -> Opened:
    """What a token opens, or NotFound."""
    if len(token) > MAX_TOKEN:
        raise NotFound(INVALID)
    try:
        payload = _serializer(config, purpose).loads(token, max_age=_max_age(config, purpose))
    except BadData:
        raise NotFound(INVALID) from None
    if not (
        isinstance(payload, list)
        and len(payload) == 2
        and isinstance(payload[0], int)
        and isinstance(payload[1], str)
    ):
        raise NotFound(INVALID)
    ticket_id, digest = payload
    ticket = session.get(Ticket, ticket_id)
    if ticket is None:
        raise NotFound(INVALID)
    readers = [ticket.requester.email] + list(
        session.execute(select(Participant.email).where(Participant.ticket_id == ticket.id)).scalars()
    )
    # In either spelling of an internationalised domain (`addresses.either_form`): an
    # acknowledgment went to the spelling its mail wrote until a review found it, and
    # its link, made for that spelling, opened nothing of the customer's own ticket.
    matched = [
        reader
        for reader in readers
        if any(
            hmac.compare_digest(_digest(config, form), digest)
            for form in addresses.either_form(addresses.normalize(reader))
        )
    ]
    if not matched:
        raise NotFound(INVALID)
    return Opened(ticket, digest, matched[0])


def _max_age(config: Mapping[str, Any], purpose: str) -> int:
    """How long a token of `purpose` is honoured, in seconds."""
    age: timedelta = config["CUSTOMER_LINK_MAX_AGE"]
    return int((min(age, LOOKUP_MAX_AGE) if purpose == "lookup" else age).total_seconds())


def _token(config: Mapping[str, Any], purpose: str, ticket_id: int, digest: str) -> str:
    return str(_serializer(config, purpose).dumps([ticket_id, digest]))


def _serializer(config: Mapping[str, Any], purpose: str) -> URLSafeTimedSerializer:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown link purpose {purpose!r}")
    return URLSafeTimedSerializer(str(config["SECRET_KEY"]), salt=f"customer-link:{purpose}")


def _digest(config: Mapping[str, Any], address: str) -> str:
    key = hmac.new(str(config["SECRET_KEY"]).encode(), _DIGEST_PURPOSE, hashlib.sha256).digest()
    return hmac.new(key, addresses.normalize(address).encode(), hashlib.sha256).hexdigest()[:24]
