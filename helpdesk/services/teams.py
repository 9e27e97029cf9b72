"""Teams, their members, and the routing table from ticket type to team
(docs/isp-operations.md, "Teams").

Admins manage them (portal page, `flask teams …`). Every channel's new ticket
asks `route` for its team when none is named, so a mailed installation request
lands with field operations just like one opened in the portal.
"""

from __future__ import annotations

import re

from sqlalchemy import bindparam, delete, select
from sqlalchemy.orm import Session

from helpdesk import vocabulary as v
from helpdesk.database import insert_ignoring
from helpdesk.errors import Conflict, NotFound, ValidationError
from helpdesk.inputs import unstorable
from helpdesk.models import StaffUser, Team, TeamMember, TeamRoute, Ticket

_NAME = re.compile(r"[a-z][a-z0-9_]{0,49}")
NAME_RULE = "must be 1-50 lowercase letters, digits and underscores, starting with a letter"


def route(session: Session, ticket_type: str) -> int | None:
    """The team new tickets of this type go to, if any; its row key-share locked
    until the transaction ends, as `team_id(lock=True)` does, for the ticket about
    to name it (a team removed meanwhile is none)."""
    session.flush()  # as the ORM flushed before its own statements: `_ROUTE` is Core
    return session.execute(_ROUTE, {"ticket_type": ticket_type}).scalar_one_or_none()


# Built once: every new ticket asks, and composing it anew cost 0.07 ms of the
# 0.17 ms the question takes (docs/benchmarks.md, the levers of issue 19). On the
# tables, not the models: naming a model sends it through the ORM's layers, a
# third of what is left (docs/benchmarks.md, "Issue 19: CPU per mail, sixteenth session").
_ROUTES = TeamRoute.__table__.c
_TEAMS = Team.__table__
_ROUTE = (
    select(_ROUTES.team_id)
    .join(_TEAMS, _TEAMS.c.id == _ROUTES.team_id)
    .where(_ROUTES.ticket_type == bindparam("ticket_type"))
    .with_for_update(of=_TEAMS, key_share=True)
)


def _spelled(name: object) -> str | None:
    """A team's name as stored, from `name` as people type it; None for what no team
    is called (not text, too long, or text no database stores: a NUL was a 500)."""
    if not isinstance(name, str) or len(name) > 50 or unstorable(name):
        return None
    return name.strip().lower()


def team_id(session: Session, name: object, *, lock: bool = False) -> int | None:
    """The id of the team called `name` (as people type it), or None. With `lock`,
    for a row about to name the team, its row is key-share locked until the
    transaction ends (PostgreSQL): a removal waits for that row and then refuses,
    and a team a removal holds is waited for and then is no team, where the row's
    foreign key failed after the removal (a 500; docs/isp-operations.md, "Teams")."""
    spelled = _spelled(name)
    if spelled is None:
        return None
    query = select(Team.id).where(Team.name == spelled)
    return session.execute(query.with_for_update(key_share=True) if lock else query).scalar()


class TeamsService:
    def __init__(self, session: Session) -> None:
        self.session = session

    def teams(self) -> list[Team]:
        return list(self.session.execute(select(Team).order_by(Team.name)).scalars())

    def get(self, name: object, *, for_removal: bool = False) -> Team:
        """The team called `name`, its row locked until the transaction ends
        (PostgreSQL): against removal (KEY SHARE, what a row naming the team takes
        anyway), or `for_removal` against anything naming it (docs/isp-operations.md,
        "Teams"). A team removed meanwhile is no team: NotFound, never a foreign-key
        error on the row that would have named it."""
        team = None
        spelled = _spelled(name)
        if spelled is not None:
            query = select(Team).where(Team.name == spelled)
            locked = query.with_for_update() if for_removal else query.with_for_update(key_share=True)
            team = self.session.execute(locked).scalar()
        if team is None:
            raise NotFound(f"No team {str(name)[:60]!r}.")
        return team

    def add(self, name: str) -> Team:
        name = (name or "").strip().lower()
        if not _NAME.fullmatch(name):
            raise ValidationError({"name": NAME_RULE})
        duplicate = Conflict(f"There is already a team {name}.")
        if self.session.execute(select(Team.id).where(Team.name == name)).first():
            raise duplicate
        # The insert refuses what another request is adding at the same moment.
        team = self.session.scalars(
            insert_ignoring(self.session, Team, ["name"]).values(name=name).returning(Team)
        ).one_or_none()
        if team is None:
            raise duplicate
        return team

    def remove(self, name: str) -> None:
        """Delete a team nothing points at any more (no tickets, no routes). The
        team's row is locked first: a ticket, route or member being added for it
        holds a key-share lock on it until its commit, so the checks below see it
        (a Conflict), and whatever names the team after this waits, then finds no
        team (docs/isp-operations.md, "Teams")."""
        team = self.get(name, for_removal=True)
        if self.session.execute(select(Ticket.id).where(Ticket.team_id == team.id).limit(1)).first():
            raise Conflict(f"Team {team.name} still has tickets; move them to another team first.")
        if self.session.execute(select(TeamRoute.ticket_type).where(TeamRoute.team_id == team.id)).first():
            raise Conflict(f"Ticket types are routed to {team.name}; route them elsewhere first.")
        self.session.execute(delete(TeamMember).where(TeamMember.team_id == team.id))
        self.session.delete(team)
        self.session.flush()

    def add_member(self, name: str, staff_id: int) -> None:
        team = self.get(name)
        user = self.session.get(StaffUser, staff_id)
        if user is None:
            raise NotFound(f"No staff member {staff_id}.")
        # Already a member (this very moment too, by another request) is no error.
        self.session.execute(
            insert_ignoring(self.session, TeamMember, ["team_id", "staff_id"]).values(
                team_id=team.id, staff_id=staff_id
            )
        )
        self.session.expire(team, ["members"])

    def remove_member(self, name: str, staff_id: int) -> None:
        team = self.get(name)
        self.session.execute(
            delete(TeamMember).where(TeamMember.team_id == team.id, TeamMember.staff_id == staff_id)
        )
        self.session.flush()
        self.session.expire(team, ["members"])

    def routes(self) -> dict[str, Team | None]:
        """Every ticket type with the team it goes to (None: no team)."""
        rows = self.session.execute(select(TeamRoute.ticket_type, Team).join(Team)).all()
        routed = {ticket_type: team for ticket_type, team in rows}
        return {ticket_type: routed.get(ticket_type) for ticket_type in v.TICKET_TYPES}

    def set_route(self, ticket_type: str, name: str | None) -> None:
        """Route new tickets of `ticket_type` to the team `name`, or to none."""
        if ticket_type not in v.TICKET_TYPES:
            raise ValidationError({"ticket_type": f"must be one of {', '.join(v.TICKET_TYPES)}"})
        existing = self.session.get(TeamRoute, ticket_type)
        if name is None:
            if existing is not None:
                self.session.delete(existing)
        elif existing is None:
            self.session.add(TeamRoute(ticket_type=ticket_type, team_id=self.get(name).id))
        else:
            existing.team_id = self.get(name).id
        self.session.flush()
