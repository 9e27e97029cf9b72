"""Bulk actions on many tickets at once (docs/isp-operations.md, "Bulk actions"):
assign, move to a status, add tags.

Each ticket is changed on its own, inside a savepoint, with the same service call
a single change makes, so every rule holds (a status move is checked against the
lifecycle) and one refused ticket does not undo the others: the result lists what
was done and what was refused, with the reason. A ticket the caller may not see
is refused as not found, like everywhere else, and is never locked by them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from helpdesk import numbering
from helpdesk.errors import DomainError, ValidationError
from helpdesk.inputs import echoed
from helpdesk.models import StaffUser, Ticket
from helpdesk.services import tags
from helpdesk.services.actors import Actor
from helpdesk.services.tickets import TicketsService

ACTIONS = ("assign", "status", "tag")
MAX_TICKETS = 100


@dataclass
class BulkResult:
    done: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (ticket, why)

    def summary(self) -> str:
        text = f"{len(self.done)} ticket{'s' if len(self.done) != 1 else ''} changed."
        if self.refused:
            text += " Refused: " + "; ".join(f"{number}: {why}" for number, why in self.refused)
        return text


def apply(
    session: Session,
    service: TicketsService,
    numbers: Sequence[object],
    action: object,
    actor: Actor,
    *,
    assignee_id: int | None = None,
    status: object = None,
    reason: object = "",
    tag_names: object = None,
) -> BulkResult:
    """Do `action` to every ticket named; the caller commits."""
    if action not in ACTIONS:
        raise ValidationError({"action": f"must be one of {', '.join(ACTIONS)}"})
    if (
        not isinstance(numbers, (list, tuple))
        or not 1 <= len(numbers) <= MAX_TICKETS
        or not all(isinstance(n, (str, int)) and not isinstance(n, bool) for n in numbers)
    ):
        raise ValidationError({"tickets": f"must name 1 to {MAX_TICKETS} tickets"})
    # What is wrong with the request itself refuses it whole, not ticket by ticket.
    if action == "tag":
        tags.read(tag_names)
    if action == "status" and not isinstance(status, str):
        raise ValidationError({"status": "is required"})
    if action == "assign" and assignee_id is not None:
        user = session.get(StaffUser, assignee_id)
        if user is None or not user.is_active:
            raise ValidationError({"assignee": "is not an active staff member"})
    change: Callable[[Ticket], object]
    if action == "assign":

        def change(ticket: Ticket) -> object:
            return service.assign(ticket, assignee_id, actor=actor)

    elif action == "status":

        def change(ticket: Ticket) -> object:
            return service.change_status(ticket, str(status), actor=actor, reason=str(reason or "")[:2000])

    else:

        def change(ticket: Ticket) -> object:
            return tags.add_to(service, [ticket], tag_names, actor)

    result = BulkResult()
    named = _distinct(numbers, service.prefix)
    # All of them locked first, in id order (each change would lock its ticket in the
    # order named: two bulk actions naming the same tickets in another order would
    # each hold one the other waits for), the ones the actor may see only: a hidden
    # ticket is decided in the lock's statement and never held by them. The locks
    # outlast the savepoints below; each change confirms under its lock.
    service.lock_numbers(named, viewer=actor)
    for number in named:
        try:
            with session.begin_nested():
                ticket = service.get(number, viewer=actor)
                change(ticket)
        except DomainError as exc:
            result.refused.append((echoed(number), str(exc)))  # caller text: cleaned
        else:
            result.done.append(service.display_number(ticket))
    return result


def _distinct(numbers: Sequence[object], prefix: str) -> list[str]:
    """The tickets named, each once, by the first spelling that names it: TKT-000001,
    1 and tkt-1 are one ticket (it was changed, counted and listed once per spelling,
    and a status move done for one spelling was refused for the next). Text naming no
    ticket is kept once as written, to be refused as not found (docs/isp-operations.md)."""
    first: dict[object, str] = {}
    for item in numbers:
        text = str(item)[:64]
        number = numbering.parse_number(text, prefix)
        first.setdefault(number if number is not None else text, text)
    return list(first.values())
