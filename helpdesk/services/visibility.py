"""Which tickets a staff member may see and touch (`AGENT_VISIBILITY`;
docs/isp-operations.md, "Visibility").

- `all`: every ticket (the default).
- `team`: the tickets of the agent's teams, the tickets of no team (routed
  nowhere, someone must pick them up), and the tickets assigned to them.
- `own`: the tickets assigned to them.

Admins see everything whatever the mode; so do the system's own actors (the
gateway, the jobs). A hidden ticket is answered exactly like one that does not
exist — the portal, the API, search, statistics and attachment downloads all ask
this module — so nobody learns that a number is taken by probing. A change of a
ticket decides it again in the statement that locks the ticket (`in_statement`,
`TicketsService.lock_seen`), so it holds at the moment of the write.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, and_, or_, select
from sqlalchemy.orm import Session

from helpdesk.models import TeamMember, Ticket
from helpdesk.services.actors import Actor


def parts(session: Session, actor: Actor | None, mode: str) -> list[ColumnElement[bool]] | None:
    """What `actor` may see as conditions on `tickets` no ticket meets twice (their
    OR is `clause`); None when nothing is hidden.

    With `team`: no team, one of their teams, and assigned to them in some other
    team. The queue counts them one at a time and adds up: each of the first two is
    a range of the (team_id, id) index, read without the table, where the OR made
    PostgreSQL read every visible ticket's row (docs/benchmarks.md). The agent's
    teams are read first and written in as values: a subquery there kept PostgreSQL
    from using the team index.
    """
    agent = _restricted(actor, mode)
    if agent is None:
        return None
    if mode == "own":
        return [_assigned(agent)]
    teams = list(
        session.execute(select(TeamMember.team_id).where(TeamMember.staff_id == agent.staff_id)).scalars()
    )
    if not teams:
        return [Ticket.team_id.is_(None), and_(_assigned(agent), Ticket.team_id.is_not(None))]
    return _split(agent, teams)


def in_statement(actor: Actor | None, mode: str) -> ColumnElement[bool] | None:
    """`clause` with the agent's teams read by the statement it is part of (a
    subquery), not before it: for a statement over tickets named by id that must
    decide by itself, a lock (`tickets.lock_for_change`), so what it finds is what
    the agent may see once it holds the rows: the rows as held, the agent's teams as
    the statement started (a change of their teams locks no ticket, so a wait for a
    row does not wait for it either; docs/isp-operations.md, "Visibility"). None when
    nothing is hidden."""
    agent = _restricted(actor, mode)
    if agent is None:
        return None
    if mode == "own":
        return _assigned(agent)
    return or_(*_split(agent, select(TeamMember.team_id).where(TeamMember.staff_id == agent.staff_id)))


def _restricted(actor: Actor | None, mode: str) -> Actor | None:
    """The actor when `mode` hides tickets from them (an agent under `team` or `own`)."""
    if actor is None or not actor.is_staff or actor.role == "admin" or mode == "all":
        return None
    return actor


def _assigned(agent: Actor) -> ColumnElement[bool]:
    return Ticket.assignee_id == agent.staff_id


def _split(agent: Actor, teams: list[int] | Select[Any]) -> list[ColumnElement[bool]]:
    """Under `team`: no team, one of `teams` (values or a subquery), and assigned to
    the agent in some other team."""
    return [
        Ticket.team_id.is_(None),
        Ticket.team_id.in_(teams),
        and_(_assigned(agent), Ticket.team_id.is_not(None), Ticket.team_id.not_in(teams)),
    ]


def clause(session: Session, actor: Actor | None, mode: str) -> ColumnElement[bool] | None:
    """The condition on `tickets` that keeps what `actor` may see; None when nothing is hidden."""
    split = parts(session, actor, mode)
    return None if split is None else or_(*split)


def restrict(session: Session, query: Any, actor: Actor | None, mode: str) -> Any:
    """`query` (a SELECT over tickets) narrowed to what `actor` may see."""
    condition = clause(session, actor, mode)
    return query if condition is None else query.where(condition)


def may_see(session: Session, actor: Actor | None, mode: str, ticket_id: int) -> bool:
    condition = clause(session, actor, mode)
    if condition is None:
        return True
    return session.execute(select(Ticket.id).where(Ticket.id == ticket_id, condition)).first() is not None
