"""Idempotency keys of the API's creating calls (docs/web.md, "Idempotency keys";
the IETF draft "The Idempotency-Key HTTP Header Field", as Stripe's API has it).

A call made under a key is done at most once per caller and key: its claim of the
key (`claim`) is written in the transaction of the ticket or reply it makes and
pointed at it there, so the key is taken exactly when that write was committed. A
call that finds the key taken is a retry, answered what the first one made, or,
with another digest (another method, path or body), refused. On PostgreSQL a
claim another request holds uncommitted is waited for by the unique index: it
commits, and this call is its retry; it rolls back, and this call takes the key.

The caller owns the transaction, as with every service.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from helpdesk.clock import database_clock
from helpdesk.database import insert_ignoring
from helpdesk.errors import Conflict, ValidationError
from helpdesk.models import IdempotencyKey
from helpdesk.services.sweeps import SweepResult


class KeyReused(ValidationError):
    """The key was used by this caller for another request: 422, nothing done."""

    code = "idempotency_key_reused"

    def __init__(self) -> None:
        super().__init__(
            {"Idempotency-Key": "was used for another request"},
            "This Idempotency-Key was used for a different request; use a new key for a new request.",
        )


@dataclass(frozen=True)
class Earlier:
    """What the call that took the key made: its ticket, and its message for a reply."""

    ticket_id: int | None
    message_id: int | None


def claim(session: Session, caller: str, key: str, digest: str, lifetime: timedelta) -> int | Earlier:
    """Take `key` of `caller` for the call about to run: the claim's id, to be
    pointed at what the call makes in this transaction (`made`, or
    `TicketsService.open_ticket(idempotency_key=…)`), or what the earlier call under
    the key made (`Earlier`); `KeyReused` when that call's `digest` was another. A
    key older than `lifetime` is spent: it is taken afresh, as if never used."""
    for _attempt in range(2):
        claimed = session.execute(
            insert_ignoring(session, IdempotencyKey, ["caller", "key"])
            .values(caller=caller, key=key, digest=digest, created_at=database_clock(session))
            .returning(IdempotencyKey.id)
        ).scalar_one_or_none()
        if claimed is not None:
            return claimed
        mine = (IdempotencyKey.caller == caller, IdempotencyKey.key == key)
        spent = IdempotencyKey.created_at < database_clock(session) - lifetime
        earlier = session.execute(select(IdempotencyKey).where(*mine, ~spent)).scalar_one_or_none()
        if earlier is None:  # spent (or swept meanwhile): free it and claim again
            session.execute(delete(IdempotencyKey).where(*mine, spent))
            continue
        if earlier.digest != digest:
            raise KeyReused()
        if earlier.ticket_id is None and earlier.message_id is None:
            raise Conflict("The call under this Idempotency-Key made nothing that can be answered.")
        return Earlier(earlier.ticket_id, earlier.message_id)
    raise Conflict("This Idempotency-Key is being used by another request; retry.")


def made(session: Session, claimed: int, *, ticket_id: int, message_id: int | None = None) -> None:
    """Point the claim at what its call made (a reply: the ticket and the message)."""
    session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.id == claimed)
        .values(ticket_id=ticket_id, message_id=message_id)
    )


def sweep(session: Session, lifetime: timedelta) -> SweepResult:
    """Delete the keys older than `lifetime` (the gateway's lifecycle jobs, or
    `flask idempotency-keys-sweep`); safe from several processes at once. A spent
    key not yet deleted is never answered from (`claim`)."""
    result = session.execute(
        delete(IdempotencyKey).where(IdempotencyKey.created_at < database_clock(session) - lifetime)
    )
    return SweepResult("idempotency-keys", "spent keys", max(result.rowcount or 0, 0))  # type: ignore[attr-defined]
