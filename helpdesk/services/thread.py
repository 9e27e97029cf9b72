"""Which of a ticket's messages one page or answer shows.

A customer, a mail loop or a merge can give a ticket thousands of messages, each up
to a mail's size: shown whole, one ticket page was megabytes and seconds of work.
A page shows the ticket's first message (the request) and the newest `size` before
a point, oldest first, and says how many it left out (docs/web.md, "Long threads").
Of each it shows the first CHARS_SHOWN characters of the text and of the HTML, read
so in SQL: a customer may send their own ticket any number of mails of most of
MAX_MESSAGE_BYTES, and 10 replies of 2 MB made a staff page of 20 MB, fetched again
by every agent watching it. The whole message is one download away.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session, defer, selectinload

from helpdesk.models import Message, Ticket

# Messages on one ticket page, and in the API's ticket answers (besides the first).
PAGE_SIZE = 50
# Characters of a message's text, and of its HTML, that a page or an answer showing
# many shows: the staff ticket page, the API's ticket, the public tracker. A mail may
# be most of MAX_MESSAGE_BYTES; 50 of them whole were a page of up to a gigabyte.
CHARS_SHOWN = 20_000


def start_of(column: InstrumentedAttribute[Any]) -> ColumnElement[Any]:
    """The column's first CHARS_SHOWN characters and one more, cut in SQL, so that
    `cut` can tell a text of exactly CHARS_SHOWN from a longer one."""
    return func.substr(column, 1, CHARS_SHOWN + 1)


def cut(start: str | None) -> tuple[str | None, bool]:
    """What `start_of` read, as shown, and whether the whole was longer."""
    if start is None:
        return None, False
    return start[:CHARS_SHOWN], len(start) > CHARS_SHOWN


@dataclass(frozen=True)
class Shown:
    """A message as a page shows it: its text and HTML cut to CHARS_SHOWN. The
    message's own `body` and `body_html` are not loaded; reading them reads the whole."""

    message: Message
    body: str
    body_truncated: bool
    body_html: str | None
    body_html_truncated: bool

    @classmethod
    def whole(cls, message: Message) -> Shown:
        """A message shown whole: one asked for by itself, or one the caller just wrote."""
        return cls(message, message.body, False, message.body_html, False)


def description(session: Session, ticket: Ticket) -> tuple[str, bool]:
    """The ticket's description cut to CHARS_SHOWN in SQL, and whether it was: it is
    its first message's text, whole at that message's own address."""
    start = session.execute(select(start_of(Ticket.description)).where(Ticket.id == ticket.id)).scalar_one()
    text, truncated = cut(start)
    return text or "", truncated


def message(session: Session, ticket: Ticket, message_id: int) -> Message | None:
    """One message of the ticket, whole (its text and HTML as stored), or None."""
    return session.execute(
        select(Message).where(Message.id == message_id, Message.ticket_id == ticket.id)
    ).scalar_one_or_none()


@dataclass(frozen=True)
class ThreadPage:
    first: Shown | None  # the request, when it is not among `messages`
    messages: list[Shown]  # oldest first
    older: int  # messages between `first` and `messages` left out
    newer: bool  # whether newer messages than `messages` exist (a page of older ones)
    total: int  # every message of the ticket

    @property
    def shown(self) -> list[Shown]:
        return ([self.first] if self.first is not None else []) + self.messages

    @property
    def oldest_shown(self) -> int | None:
        """Where the link to the older messages starts: the id of the oldest of `messages`."""
        return self.messages[0].message.id if self.messages else None


def page(session: Session, ticket: Ticket, *, before: int | None = None, size: int = PAGE_SIZE) -> ThreadPage:
    """The first message and the newest `size` with an id below `before` (all, when
    None). A `before` that is no message of the ticket reads as a place in the id
    order, so an old link still lands near where it pointed."""
    mine = Message.ticket_id == ticket.id
    firsts = _shown(session, _cut_query().where(mine).order_by(Message.id).limit(1))
    if not firsts:
        return ThreadPage(None, [], 0, False, 0)
    first = firsts[0].message
    query = _cut_query().where(mine, Message.id > first.id)
    if before is not None:
        query = query.where(Message.id < before)
    newest = _shown(
        session,
        query.order_by(Message.id.desc())
        .limit(size)
        .options(selectinload(Message.attachments), selectinload(Message.inbound_mail)),
    )
    newest.reverse()
    total = session.execute(select(func.count()).select_from(Message).where(mine)).scalar_one()
    older = 0
    if newest:
        older = session.execute(
            select(func.count())
            .select_from(Message)
            .where(mine, Message.id > first.id, Message.id < newest[0].message.id)
        ).scalar_one()
    last = newest[-1].message.id if newest else first.id
    newer = before is not None and last < _last_id(session, ticket)
    return ThreadPage(firsts[0], newest, older, newer, total)


def _cut_query() -> Select[Any]:
    """Messages with their text and HTML cut in SQL, the whole of neither loaded."""
    return select(Message, start_of(Message.body), start_of(Message.body_html)).options(
        defer(Message.body), defer(Message.body_html)
    )


def _shown(session: Session, query: Select[Any]) -> list[Shown]:
    shown = []
    for row, body, html in session.execute(query):
        text, text_cut = cut(body)
        markup, markup_cut = cut(html)
        shown.append(Shown(row, text or "", text_cut, markup, markup_cut))
    return shown


def _last_id(session: Session, ticket: Ticket) -> int:
    return session.execute(select(func.max(Message.id)).where(Message.ticket_id == ticket.id)).scalar_one()
