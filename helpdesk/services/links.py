"""Related tickets (docs/isp-operations.md, "Merge and links"): two tickets that
are about connected things (an outage and the complaints it caused) point at each
other. A link is stored once, smaller id first, and read from both sides; linking
and unlinking are history rows on both tickets, which are locked first as for any
change of them, and only while the actor may see both (`TicketsService.lock_seen`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Select, delete, func, select
from sqlalchemy.orm import Session

from helpdesk.clock import now
from helpdesk.database import insert_ignoring
from helpdesk.errors import ValidationError
from helpdesk.models import Ticket, TicketLink
from helpdesk.numbering import display_number
from helpdesk.services import history, visibility
from helpdesk.services.actors import Actor
from helpdesk.services.queue import Page
from helpdesk.services.tickets import TicketsService

# Related tickets the ticket page shows, the newest: an outage linked to every
# complaint had 2,000, a page of 1.4 MB and 0.6 s fetched again by every agent
# watching it. The rest are a page of their own (docs/web.md, "Long threads").
SHOWN = 20


def related(session: Session, ticket: Ticket, viewer: Actor | None, mode: str) -> list[Ticket]:
    """The tickets linked to `ticket` that `viewer` may see, by number: the list shows
    each one's subject and status, and a hidden ticket is as if it did not exist
    (`visibility`, mode `AGENT_VISIBILITY`)."""
    return list(session.execute(_related(session, ticket, viewer, mode).order_by(Ticket.number)).scalars())


def related_page(
    session: Session, ticket: Ticket, viewer: Actor | None, mode: str, *, page: int = 1, per_page: int = SHOWN
) -> Page[Ticket]:
    """`related`, newest (highest number) first, one page of them and how many in all."""
    query = _related(session, ticket, viewer, mode)
    total = session.execute(
        query.with_only_columns(func.count(Ticket.id), maintain_column_froms=True)
    ).scalar_one()
    items = session.execute(
        query.order_by(Ticket.number.desc()).limit(per_page).offset((page - 1) * per_page)
    ).scalars()
    return Page(list(items), page, per_page, total)


def _related(session: Session, ticket: Ticket, viewer: Actor | None, mode: str) -> Select[Any]:
    other = (
        select(TicketLink.high_id)
        .where(TicketLink.low_id == ticket.id)
        .union(select(TicketLink.low_id).where(TicketLink.high_id == ticket.id))
    )
    return visibility.restrict(session, select(Ticket).where(Ticket.id.in_(other)), viewer, mode)


def link(session: Session, ticket: Ticket, other: Ticket, actor: Actor, config: Mapping[str, Any]) -> None:
    if ticket.id == other.id:
        raise ValidationError({"ticket": "is this ticket itself"})
    TicketsService.from_config(session, config).lock_seen(actor, ticket, other)
    low, high = sorted((ticket.id, other.id))
    added = session.execute(
        insert_ignoring(session, TicketLink, ["low_id", "high_id"])
        .values(low_id=low, high_id=high, created_at=now())
        .returning(TicketLink.low_id)
    ).first()
    if added is not None:
        _record_both(session, ticket, other, actor, config, linked=True)
    session.flush()


def unlink(session: Session, ticket: Ticket, other: Ticket, actor: Actor, config: Mapping[str, Any]) -> bool:
    """Whether there was a link to remove. Unlinking tickets that are not linked
    changes nothing and is no error (idempotent, as linking twice is), but a
    caller that tells a person what happened says which it was."""
    TicketsService.from_config(session, config).lock_seen(actor, ticket, other)
    low, high = sorted((ticket.id, other.id))
    removed = session.execute(
        delete(TicketLink)
        .where(TicketLink.low_id == low, TicketLink.high_id == high)
        .returning(TicketLink.low_id)
    ).first()
    if removed is not None:
        _record_both(session, ticket, other, actor, config, linked=False)
    session.flush()
    return removed is not None


def _record_both(
    session: Session, ticket: Ticket, other: Ticket, actor: Actor, config: Mapping[str, Any], *, linked: bool
) -> None:
    for one, two in ((ticket, other), (other, ticket)):
        number = display_number(two.number, config)
        history.record(session, one.id, "link", None if linked else number, number if linked else None, actor)
