"""Tags on tickets (docs/isp-operations.md, "Tags"): short labels staff put on
tickets to find them together (`fibra`, `olt-norte`, `cliente-vip`).

A tag is letters (any script), digits, `-` and `_`, at most 40 characters, kept
in lower case, so `Fibra` and `fibra` are one tag. A tag's row is made the first
time a ticket carries it and kept after the last lets it go (nothing lists tags,
so a kept one shows nowhere); the set of a ticket changes as a whole, with one
history row.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence

from sqlalchemy import ColumnElement, delete, false, insert, select
from sqlalchemy.orm import Session

from helpdesk.clock import now
from helpdesk.database import insert_ignoring
from helpdesk.errors import ValidationError
from helpdesk.models import Tag, Ticket, TicketTag
from helpdesk.services import history
from helpdesk.services.actors import Actor
from helpdesk.services.tickets import TicketsService

MAX_TAG = 40
MAX_TAGS = 20  # on one ticket
_MARKS = ("Mn", "Mc")  # combining marks, spacing or not
RULE = f"each must be letters, digits, - and _ (at most {MAX_TAG} characters), at most {MAX_TAGS} tags"


def read(names: object) -> list[str]:
    """A list of tags (or text separated by commas or spaces), normalized and
    deduplicated; ValidationError when one is not a tag."""
    if isinstance(names, str):
        if len(names) > MAX_TAGS * (MAX_TAG + 2):
            raise ValidationError({"tags": RULE})
        names = names.replace(",", " ").split()
    if not isinstance(names, (list, tuple)) or len(names) > MAX_TAGS * 2:
        raise ValidationError({"tags": RULE})
    cleaned = []
    for name in names:
        if not isinstance(name, str):
            raise ValidationError({"tags": RULE})
        name = _spelled(name)
        if len(name) > MAX_TAG or not _is_tag(name):
            raise ValidationError({"tags": RULE})
        cleaned.append(name)
    distinct = list(dict.fromkeys(cleaned))
    if len(distinct) > MAX_TAGS:
        raise ValidationError({"tags": RULE})
    return distinct


def _spelled(name: str) -> str:
    """A tag as stored: lower case, composed (`cafe` + accent is `café`)."""
    return unicodedata.normalize("NFC", name.strip().lower())


def _is_tag(name: str) -> bool:
    """A letter or digit first, then letters, digits, `-`, `_` and the combining
    marks many scripts write words with (Devanagari and Thai vowel signs, the dot
    `İ` leaves when lower-cased), which a regular expression's `\\w` leaves out."""
    return (
        bool(name)
        and name[0].isalnum()
        and all(char.isalnum() or char in "-_" or unicodedata.category(char) in _MARKS for char in name)
    )


def set_tags(service: TicketsService, ticket: Ticket, names: object, actor: Actor) -> None:
    """Make `names` the ticket's tags.

    The set is replaced whole, so it is judged against the tags the ticket carries
    now: the ticket is locked and reloaded first, as for every change of it, while
    `actor` may see it (`TicketsService.lock_seen`; else NotFound). Judged against
    tags read before another agent's save, it kept that agent's tags beside its own
    while its history row said they were gone, or wrote one of them a second time (a
    unique violation on PostgreSQL).
    """
    wanted = read(names)
    service.lock_seen(actor, ticket)
    _replace(service.session, ticket, wanted, actor)


def add_to(service: TicketsService, tickets: Sequence[Ticket], names: object, actor: Actor) -> int:
    """Add tags to many tickets at once (bulk tagging); returns how many tickets changed.
    The tickets are locked first, in id order, as `set_tags` locks its one."""
    wanted = read(names)
    session = service.session
    service.lock_seen(actor, *tickets)
    changed = 0
    for ticket in tickets:
        current = [tag.name for tag in ticket.tags]
        new = [name for name in wanted if name not in current]
        if not new:
            continue
        if len(current) + len(new) > MAX_TAGS:
            raise ValidationError({"tags": RULE})
        _replace(session, ticket, current + new, actor)
        changed += 1
    return changed


def _replace(session: Session, ticket: Ticket, wanted: list[str], actor: Actor) -> None:
    """Store `wanted` (tags as `read` gives them) as the tags of a ticket the caller
    has locked, with one history row; nothing when they are the tags it has."""
    current = [tag.name for tag in ticket.tags]
    if set(wanted) == set(current):
        return
    session.execute(delete(TicketTag).where(TicketTag.ticket_id == ticket.id))
    ids = _ids(session, wanted)
    if ids:
        session.execute(insert(TicketTag), [{"ticket_id": ticket.id, "tag_id": tag_id} for tag_id in ids])
    old, new = ", ".join(current) or None, ", ".join(sorted(wanted)) or None
    history.record(session, ticket.id, "tags", old, new, actor)
    # A change of the ticket like any other: the queue's order and the live polls
    # of colleagues' pages read `updated_at` (helpdesk.portal.live).
    ticket.updated_at = now()
    session.flush()
    session.expire(ticket, ["tags"])


def tagged(session: Session, name: str) -> ColumnElement[bool]:
    """The condition on tickets: carries the tag `name`. The tag's id is read first
    and written in as a value, so the planner sees which tag it filters on (a join
    to `tags` in the condition cost the queue a third more at 100,000 tickets)."""
    tag_id = session.execute(select(Tag.id).where(Tag.name == _spelled(name))).scalar()
    if tag_id is None:
        return false()
    return Ticket.id.in_(select(TicketTag.ticket_id).where(TicketTag.tag_id == tag_id))


def _ids(session: Session, names: Iterable[str]) -> list[int]:
    """The tags' ids, creating the ones that do not exist yet."""
    names = list(names)
    if not names:
        return []
    known = dict(session.execute(select(Tag.name, Tag.id).where(Tag.name.in_(names))).all())
    missing = [name for name in names if name not in known]
    if missing:
        session.execute(insert_ignoring(session, Tag, ["name"]), [{"name": name} for name in missing])
        known = dict(session.execute(select(Tag.name, Tag.id).where(Tag.name.in_(names))).all())
    return [known[name] for name in names]
