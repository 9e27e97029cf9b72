"""The ticket history's rows (docs/lifecycle.md): one change of one field, by whom,
when and why. Every service that changes a ticket writes them through here, so the
ticket page's timeline reads the same whatever made the change."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from helpdesk.clock import now
from helpdesk.models import TicketHistory
from helpdesk.services.actors import Actor

MAX_VALUE = 320  # the old/new value columns


def record(
    session: Session,
    ticket_id: int,
    field_name: str,
    old: str | None,
    new: str | None,
    actor: Actor,
    reason: str = "",
    automated: bool = False,
    moment: datetime | None = None,
) -> None:
    session.add(
        TicketHistory(
            ticket_id=ticket_id,
            field=field_name,
            old_value=old[:MAX_VALUE] if old is not None else None,
            new_value=new[:MAX_VALUE] if new is not None else None,
            actor_staff_id=actor.staff_id,
            actor_label=actor.label,
            reason=reason or "",
            automated=automated,
            created_at=moment or now(),
        )
    )
