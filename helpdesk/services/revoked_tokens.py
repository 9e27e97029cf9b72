"""Deleting the API's revocations that no longer refuse anything (docs/security.md,
"Refresh tokens rotate").

`helpdesk.auth` writes a `revoked_tokens` row for every refresh token it rotates
(until the token's own expiry) and for every family a reused refresh token ends
(until the longest any member can live). A token past its expiry is refused as
expired before its revocation is looked at, so a row past `expires_at` refuses
nothing: the gateway's lifecycle jobs (or `flask revoked-tokens-sweep`) delete it.

The caller owns the transaction, as with every service.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from helpdesk.clock import now
from helpdesk.models import RevokedToken
from helpdesk.services.sweeps import SweepResult

# How far a sweeping host's clock may run ahead of a web host's (both NTP-synced)
# before a revocation that web host still needs could go (docs/security.md).
SKEW_MARGIN = timedelta(hours=1)
SWEEP_BATCH = 500  # rows deleted per transaction


def sweep(session: Session, config: Mapping[str, Any], batch: int = SWEEP_BATCH) -> SweepResult:
    """Delete the revocations whose token expired more than `SKEW_MARGIN` (plus any
    `JWT_DECODE_LEEWAY`) ago. Judged by this host's clock, as `expires_at` was
    stamped and as the token check judges it (PyJWT's `exp` against its own host's
    clock): the database's clock would mix two clocks on one comparison
    (helpdesk.clock). A revocation is therefore kept for as long as any web host whose
    clock is within the margin of this one can still accept its token.

    Soonest expiry first through the index on `expires_at`, `batch` rows a
    transaction: each full batch is committed here, so a first sweep of a table that
    grew for years is many short transactions; the last is the caller's to commit.
    Safe from several processes at once (a row deleted by another is not counted)."""
    cutoff = now() - SKEW_MARGIN - _leeway(config)
    expired = RevokedToken.expires_at < cutoff
    deleted = 0
    while True:
        ids = (
            session.execute(
                select(RevokedToken.id).where(expired).order_by(RevokedToken.expires_at).limit(batch)
            )
            .scalars()
            .all()
        )
        if ids:
            result = session.execute(delete(RevokedToken).where(RevokedToken.id.in_(ids), expired))
            deleted += max(result.rowcount or 0, 0)  # type: ignore[attr-defined]
        if len(ids) < batch:
            return SweepResult("revoked-tokens", "expired revocations", deleted)
        session.commit()


def _leeway(config: Mapping[str, Any]) -> timedelta:
    """flask-jwt-extended's `JWT_DECODE_LEEWAY` (seconds or a timedelta): how long
    past `exp` a token is still accepted. The helpdesk leaves it at 0."""
    leeway = config.get("JWT_DECODE_LEEWAY") or 0
    return leeway if isinstance(leeway, timedelta) else timedelta(seconds=leeway)
