"""Integrations: other systems (a chat widget, a WhatsApp assistant, an ISP
workflow) that call the API for customers (docs/integrations.md).

A token is shown once, when the integration is added, and stored only as its
SHA-256. It never carries staff powers: the integration endpoints accept only
integration tokens, the staff endpoints only staff tokens, and every integration
call names the customer it acts for. Revoking takes effect at the next call.
"""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from helpdesk import vocabulary as v
from helpdesk.clock import now
from helpdesk.database import insert_ignoring
from helpdesk.errors import Conflict, NotFound, ValidationError
from helpdesk.models import Integration

TOKEN_PREFIX = "hdi_"  # tells an integration token from a staff JWT at a glance
MAX_NAME = 100
MAX_TOKEN = 200


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


class IntegrationsService:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, name: str, kind: str) -> tuple[Integration, str]:
        """A new integration and its token, which is not stored and cannot be shown again."""
        name = (name or "").strip()
        errors: dict[str, str] = {}
        if not name or len(name) > MAX_NAME or not name.isprintable():
            errors["name"] = f"must be 1 to {MAX_NAME} printable characters"
        if kind not in v.INTEGRATION_KINDS:
            errors["kind"] = f"must be one of {', '.join(v.INTEGRATION_KINDS)}"
        if errors:
            raise ValidationError(errors)
        duplicate = Conflict(f"An integration named {name} already exists.")
        if self._named(name) is not None:
            raise duplicate
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        # The insert refuses what another request is adding at the same moment.
        integration = self.session.scalars(
            insert_ignoring(self.session, Integration, ["name"])
            .values(name=name, kind=kind, token_hash=token_hash(token))
            .returning(Integration)
        ).one_or_none()
        if integration is None:
            raise duplicate
        return integration, token

    def revoke(self, name: str) -> Integration:
        integration = self._named(name)
        if integration is None:
            raise NotFound(f"No integration named {name}.")
        if integration.revoked_at is None:
            integration.revoked_at = now()
        self.session.flush()
        return integration

    def list(self) -> list[Integration]:
        return list(self.session.execute(select(Integration).order_by(Integration.name)).scalars())

    def authenticate(self, token: str) -> Integration | None:
        """The active integration this token belongs to, or None."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > MAX_TOKEN:
            return None
        return self.session.execute(
            select(Integration).where(
                Integration.token_hash == token_hash(token), Integration.revoked_at.is_(None)
            )
        ).scalar_one_or_none()

    def _named(self, name: str) -> Integration | None:
        return self.session.execute(select(Integration).where(Integration.name == name)).scalar_one_or_none()
