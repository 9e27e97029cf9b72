"""The ticket history as the ticket page lists it: the newest rows and how many
there are, the rest a page of their own (docs/web.md, "Long threads"). A ticket
linked to 2,000 others has a row for each link, and its page listed every row
(276 ms), fetched again by every agent watching it (live updates)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from helpdesk.models import TicketHistory
from helpdesk.services.queue import Page

# Rows the ticket page shows, the newest.
SHOWN = 20


def newest(session: Session, ticket_id: int, *, page: int = 1, per_page: int = SHOWN) -> Page[TicketHistory]:
    """The ticket's rows newest first, one page of them and how many in all."""
    mine = TicketHistory.ticket_id == ticket_id
    total = session.execute(select(func.count()).select_from(TicketHistory).where(mine)).scalar_one()
    rows = session.execute(
        select(TicketHistory)
        .where(mine)
        .order_by(TicketHistory.id.desc())
        .limit(per_page)
        .offset((page - 1) * per_page)
    ).scalars()
    return Page(list(rows), page, per_page, total)
