"""Canned replies (docs/isp-operations.md, "Canned replies"): texts staff insert
into the reply box and adapt before sending.

A reply is personal (its owner alone sees, uses and changes it) or shared (no
owner: everyone uses it, admins alone change it). Someone else's personal reply
does not exist for a staff member (NotFound, as a ticket they may not see); a
shared one is visible, so an agent trying to change it is refused (Forbidden).

Placeholders are the three names in braces, `{customer_name}`, `{ticket_number}`
and `{agent_name}`, replaced in one pass. Nothing else in the text means anything:
no format-string evaluation (a body written `{ticket_number.__class__}` must not
reach into objects), other braces stay as written, and a filled-in value is not
scanned again (a customer who calls themselves `{agent_name}` stays so).
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import ColumnElement, Row, or_, select
from sqlalchemy.orm import Session

from helpdesk import addresses, numbering
from helpdesk.errors import Forbidden, NotFound, ValidationError
from helpdesk.inputs import nothing_to_read, one_line, positive_int, typed_text, unstorable
from helpdesk.models import CannedReply, Ticket
from helpdesk.services.actors import Actor, StaffMember

MAX_TITLE = 100
MAX_BODY = 10_000
PLACEHOLDERS = ("customer_name", "ticket_number", "agent_name")
_PLACEHOLDER = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")
# Who a reply greets when the requester gave no name and their address has no
# person's part either (a customer known by phone only).
ANONYMOUS_CUSTOMER = "customer"


def customer_name(ticket: Ticket) -> str:
    """The requester's name; without one, the local part of their address (most
    people's addresses are their name), or "customer" when the address is the
    placeholder of someone known by phone only."""
    requester = ticket.requester
    if requester.name.strip():
        return requester.name.strip()
    if addresses.is_reserved_invalid(requester.email):
        return ANONYMOUS_CUSTOMER
    return requester.email.partition("@")[0] or ANONYMOUS_CUSTOMER


class CannedRepliesService:
    def __init__(self, session: Session, *, prefix: str = "TKT-", width: int = 6) -> None:
        self.session = session
        self.prefix = prefix
        self.width = width

    @classmethod
    def from_config(cls, session: Session, config: Any) -> CannedRepliesService:
        return cls(session, prefix=config["TICKET_PREFIX"], width=config["TICKET_NUMBER_WIDTH"])

    # -- reading -------------------------------------------------------------

    def usable(self, actor: Actor) -> list[CannedReply]:
        """The shared replies and the actor's own, by title."""
        return self._list(_usable_by(actor))

    def choices(self, actor: Actor) -> list[Row[int, str, int | None]]:
        """What `usable` lists, as the ticket page's choice shows it: each reply's id,
        title and owner, by title, as plain rows. Read as replies, every ticket page
        (and every live refresh of it) read the text of every reply on offer, up to
        10,000 characters each, to show none of it; and a page whose first view moves
        the ticket from new to open, a commit that expires what the session holds,
        read each reply once more, one query each (docs/isp-operations.md)."""
        query = (
            select(CannedReply.id, CannedReply.title, CannedReply.owner_id)
            .where(_usable_by(actor))
            .order_by(CannedReply.title, CannedReply.id)
        )
        return list(self.session.execute(query).all())

    def personal(self, actor: Actor) -> list[CannedReply]:
        return self._list(CannedReply.owner_id == actor.staff_id)

    def shared(self) -> list[CannedReply]:
        return self._list(CannedReply.owner_id.is_(None))

    def get_usable(self, reply_id: object, actor: Actor) -> CannedReply:
        """A reply the actor may insert: a shared one or their own."""
        number = positive_int(reply_id)
        reply = self.session.get(CannedReply, number) if number is not None else None
        return _usable(reply, reply_id, actor)

    def get_editable(self, reply_id: object, actor: Actor) -> CannedReply:
        """A reply the actor may change: their own, or a shared one if they are an admin.

        Read for change (`FOR UPDATE`, reloaded) until the transaction ends: a shared
        reply another admin is deleting is waited for and then not found. Read
        without the lock, it was found, and the UPDATE (or DELETE) after the other
        admin's commit matched no row: StaleDataError, a 500 (docs/isp-operations.md).
        """
        number = positive_int(reply_id)
        reply = None
        if number is not None:
            reply = self.session.execute(
                select(CannedReply)
                .where(CannedReply.id == number)
                .with_for_update()
                .execution_options(populate_existing=True)
            ).scalar_one_or_none()
        reply = _usable(reply, reply_id, actor)
        if reply.owner_id is None and actor.role != "admin":
            raise Forbidden("Only admins change shared canned replies.")
        return reply

    # -- changes -------------------------------------------------------------

    def add(self, actor: Actor, title: object, body: object, *, shared: bool = False) -> CannedReply:
        """A personal reply of the actor's, or a shared one (admins only)."""
        if actor.staff_id is None:  # its reply would have no owner, and so be shared
            raise Forbidden("Only staff have canned replies.")
        if shared and actor.role != "admin":
            raise Forbidden("Only admins add shared canned replies.")
        checked_title, checked_body = _checked(title, body)
        reply = CannedReply(
            title=checked_title, body=checked_body, owner_id=None if shared else actor.staff_id
        )
        self.session.add(reply)
        self.session.flush()
        return reply

    def edit(self, reply_id: object, actor: Actor, title: object, body: object) -> CannedReply:
        reply = self.get_editable(reply_id, actor)
        reply.title, reply.body = _checked(title, body)
        self.session.flush()
        return reply

    def delete(self, reply_id: object, actor: Actor) -> None:
        self.session.delete(self.get_editable(reply_id, actor))
        self.session.flush()

    # -- inserting -----------------------------------------------------------

    def render(self, reply: CannedReply, ticket: Ticket, agent: StaffMember) -> str:
        """The reply's text for this ticket, written by `agent`, placeholders filled."""
        values = {
            "customer_name": customer_name(ticket),
            "ticket_number": numbering.format_number(ticket.number, self.prefix, self.width),
            "agent_name": agent.name,
        }
        return _PLACEHOLDER.sub(lambda found: values[found.group(1)], reply.body)

    # -- internals -----------------------------------------------------------

    def _list(self, condition: ColumnElement[bool]) -> list[CannedReply]:
        query = select(CannedReply).where(condition).order_by(CannedReply.title, CannedReply.id)
        return list(self.session.execute(query).scalars())


def _usable_by(actor: Actor) -> ColumnElement[bool]:
    """The replies the actor may insert: the shared ones and their own."""
    return or_(CannedReply.owner_id.is_(None), CannedReply.owner_id == actor.staff_id)


def _usable(reply: CannedReply | None, reply_id: object, actor: Actor) -> CannedReply:
    """`reply` if it exists for the actor: shared, or their own (NotFound otherwise)."""
    if reply is None or (reply.owner_id is not None and reply.owner_id != actor.staff_id):
        raise NotFound(f"No canned reply {str(reply_id)[:20]}.")
    return reply


def _checked(title: object, body: object) -> tuple[str, str]:
    """Title and body as stored: the title on one line (`inputs.one_line`), the body
    with its line breaks as `\\n` and counted as its textarea counts them
    (`inputs.typed_text`); ValidationError naming each bad field."""
    errors: dict[str, str] = {}
    clean_title = one_line(title) if isinstance(title, str) else ""
    clean_body = typed_text(body) if isinstance(body, str) else ""
    for name, value, limit in (("title", clean_title, MAX_TITLE), ("body", clean_body, MAX_BODY)):
        if nothing_to_read(value):  # only spaces and invisible characters: as if not given
            errors[name] = "is required"
        elif len(value) > limit:
            errors[name] = f"must be at most {limit:,} characters"
        elif unstorable(value):
            errors[name] = "must not contain NUL characters or lone surrogates"
    if errors:
        raise ValidationError(errors)
    return clean_title, clean_body
