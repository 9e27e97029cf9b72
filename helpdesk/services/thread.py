"""Which of a ticket's messages one page or answer shows.

A customer, a mail loop or a merge can give a ticket thousands of messages, each up
to a mail's size: shown whole, one ticket page was megabytes and seconds of work.
A page shows the ticket's first message (the request) and the newest `size` before
a point, oldest first, and says how many it left out (docs/web.md, "Long threads").
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from helpdesk.models import Message, Ticket

# Messages on one ticket page, and in the API's ticket answers (besides the first).
PAGE_SIZE = 50


@dataclass(frozen=True)
class ThreadPage:
    first: Message | None  # the request, when it is not among `messages`
    messages: list[Message]  # oldest first
    older: int  # messages between `first` and `messages` left out
    newer: bool  # whether newer messages than `messages` exist (a page of older ones)
    total: int  # every message of the ticket

    @property
    def shown(self) -> list[Message]:
        return ([self.first] if self.first is not None else []) + self.messages

    @property
    def oldest_shown(self) -> int | None:
        """Where the link to the older messages starts: the id of the oldest of `messages`."""
        return self.messages[0].id if self.messages else None


def page(session: Session, ticket: Ticket, *, before: int | None = None, size: int = PAGE_SIZE) -> ThreadPage:
    """The first message and the newest `size` with an id below `before` (all, when
    None). A `before` that is no message of the ticket reads as a place in the id
    order, so an old link still lands near where it pointed."""
    mine = Message.ticket_id == ticket.id
    first = session.execute(select(Message).where(mine).order_by(Message.id).limit(1)).scalar_one_or_none()
    if first is None:
        return ThreadPage(None, [], 0, False, 0)
    query = select(Message).where(mine, Message.id > first.id)
    if before is not None:
        query = query.where(Message.id < before)
    rows = session.execute(
        query.order_by(Message.id.desc())
        .limit(size)
        .options(selectinload(Message.attachments), selectinload(Message.inbound_mail))
    )
    newest = list(reversed(rows.scalars().all()))
    total = session.execute(select(func.count()).select_from(Message).where(mine)).scalar_one()
    older = 0
    if newest:
        older = session.execute(
            select(func.count())
            .select_from(Message)
            .where(mine, Message.id > first.id, Message.id < newest[0].id)
        ).scalar_one()
    newer = before is not None and (newest[-1].id if newest else first.id) < _last_id(session, ticket)
    return ThreadPage(first, newest, older, newer, total)


def _last_id(session: Session, ticket: Ticket) -> int:
    return session.execute(select(func.max(Message.id)).where(Message.ticket_id == ticket.id)).scalar_one()
