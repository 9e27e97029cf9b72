"""AGENT_VISIBILITY decided at the moment of the write: a ticket an admin moves out of
an agent's sight between the agent's request reading it and changing it is not
changed, and answers as a ticket they may not see does (docs/isp-operations.md,
"Visibility"). The race is made deterministic on PostgreSQL: the move is committed
from another connection right after the request's read (SQLite's BEGIN IMMEDIATE
holds every other writer off until the request ends, so there the move is made in
the request's own transaction, at the service)."""

from __future__ import annotations

import io
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event, func, select, text, update
from sqlalchemy.exc import OperationalError

from helpdesk.errors import NotFound
from helpdesk.extensions import db
from helpdesk.models import Message, StaffUser, Team, Ticket, TicketHistory, TicketLink, TicketTag
from helpdesk.services import Actor, TicketsService, links, tags
from helpdesk.services.staff import StaffService
from helpdesk.services.teams import TeamsService
from helpdesk.services.tickets import NewAttachment
from tests.support.app import ApiClient, Portal
from tests.support.database import committed_after, open_ticket, statements

on_postgresql = pytest.mark.parametrize("backend", ["postgresql"], indirect=True)


@pytest.fixture
def colleague(app: Flask) -> StaffUser:
    user, _ = StaffService(db.session).create(
        email="felipe@helpdesk.test", name="Felipe Field", role="agent", password="field-password-1"
    )
    db.session.commit()
    return user


@pytest.fixture
def seen(app: Flask, teams: TeamsService, agent: StaffUser, colleague: StaffUser) -> dict[str, str]:
    """Under AGENT_VISIBILITY=team the agent (support_team) sees `ticket` (support_team),
    `other` and `linked` (no team; `linked` is linked to `ticket`) and `own` (field_ops,
    assigned to them), not `field` (field_ops)."""
    teams.add_member("support_team", agent.id)
    teams.add_member("field_ops", colleague.id)
    service = TicketsService.from_config(db.session, app.config)
    numbers = {
        "ticket": open_ticket(service, subject="Factura duplicada"),
        "other": open_ticket(service, ticket_type="speed_issue"),
        "own": open_ticket(service, ticket_type="installation_request", assignee_id=agent.id),
        "field": open_ticket(service, ticket_type="installation_request"),
        "linked": open_ticket(service, ticket_type="speed_issue"),
    }
    links.link(db.session, numbers["ticket"], numbers["linked"], Actor.system(), app.config)
    db.session.commit()
    app.config["AGENT_VISIBILITY"] = "team"
    return {name: service.display_number(ticket) for name, ticket in numbers.items()}


def _field_ops() -> int:
    return db.session.execute(select(Team.id).where(Team.name == "field_ops")).scalar_one()


def _left_alone() -> tuple[object, ...]:
    """What a change of a ticket would write: every history row (an assignment's too),
    message, tag and link, and the tickets' own fields (their team and assignee
    aside: the admin changes those)."""
    db.session.rollback()
    counts = tuple(
        db.session.execute(select(func.count()).select_from(model)).scalar_one()
        for model in (TicketHistory, Message, TicketTag, TicketLink)
    )
    fields = db.session.execute(
        select(
            Ticket.number,
            Ticket.status,
            Ticket.priority,
            Ticket.escalation_level,
            Ticket.language,
            Ticket.service_address,
            Ticket.merged_into_id,
        ).order_by(Ticket.number)
    ).all()
    return counts, tuple(fields)


def _moved_after_it_was_read(number: str, reads: int = 1, **values: object) -> AbstractContextManager[None]:
    """Change ticket `number` (`values`: another team, another assignee) from another
    connection, committed, right after the `reads`-th statement that found a ticket by
    its number for the agent (`TicketsService.get`, which checks what they may see): an
    admin's change landing between that check and the change's lock."""
    return committed_after(
        lambda statement: "tickets.number = " in statement and "FOR NO KEY UPDATE" not in statement,
        update(Ticket).where(Ticket.number == int(number[-6:])).values(**values),
        nth=reads,
    )


# (method, path, body); "{other}" or "{linked}" is the second ticket a link or a merge names
API_CALLS = {
    "status": ("POST", "/tickets/{ticket}/status", {"status": "open"}),
    "reply": ("POST", "/tickets/{ticket}/replies", {"body": "Hola"}),
    "note": ("POST", "/tickets/{ticket}/replies", {"body": "Nota", "internal": True}),
    "attachment": ("POST", "/tickets/{ticket}/replies", "multipart"),
    "priority": ("PATCH", "/tickets/{ticket}", {"priority": "high"}),
    "assign": ("PATCH", "/tickets/{ticket}", {"assignee": "felipe@helpdesk.test"}),
    "service fields": ("PATCH", "/tickets/{ticket}", {"service_address": "Calle Durango 12"}),
    "language": ("PATCH", "/tickets/{ticket}", {"language": "es"}),
    "escalate": ("POST", "/tickets/{ticket}/escalate", {"level": "L2", "reason": "Fibra cortada"}),
    "tags": ("PUT", "/tickets/{ticket}/tags", {"tags": ["fibra"]}),
    "link": ("POST", "/tickets/{ticket}/links", {"ticket": "{other}"}),
    "unlink": ("DELETE", "/tickets/{ticket}/links/{linked}", None),
    "merge": ("POST", "/tickets/{ticket}/merge", {"into": "{other}"}),
}


def _api_call(api: ApiClient, seen: dict[str, str], name: str):  # type: ignore[no-untyped-def]
    method, path, body = API_CALLS[name]
    path = path.format(**seen)
    if body == "multipart":
        files = {"body": "Plano", "attachments": (io.BytesIO(b"%PDF-1.4 plano"), "plano.pdf")}
        return api.call(method, path, None, data=files, content_type="multipart/form-data")
    if isinstance(body, dict):
        body = {key: value.format(**seen) if isinstance(value, str) else value for key, value in body.items()}
    return api.call(method, path, body)


def _either_ticket(calls: dict[str, tuple[Any, ...]]) -> list[tuple[str, str]]:
    """Each call with the ticket it names moved; a link's or a merge's with the other too."""
    return [(name, "ticket") for name in calls] + [
        (name, second)
        for name, call in calls.items()
        for second in ("other", "linked")
        if f"{{{second}}}" in str(call)
    ]


@on_postgresql
@pytest.mark.parametrize(("name", "moved"), _either_ticket(API_CALLS))
def test_an_api_change_of_a_ticket_moved_out_of_sight_after_it_was_read_is_not_made(api, seen, name, moved):
    """An admin moves the ticket to field_ops, which the agent does not see, right
    after the agent's call read it (for a link or a merge: either ticket named). It
    used to be changed all the same, 200 or 201: replied to, assigned, tagged, linked,
    merged by an agent who could no longer open it. Now 404, as for a number that
    does not exist, and nothing of it is kept."""
    before = _left_alone()
    reads = 1 if moved == "ticket" else 2
    with _moved_after_it_was_read(seen[moved], reads, team_id=_field_ops()):
        answer = _api_call(api, seen, name)
    assert answer.status_code == 404, answer.get_json()
    assert answer.get_json()["error"] == {
        "code": "not_found",
        "message": f"No ticket {seen[moved]}.",
        "fields": {},
    }
    assert _left_alone() == before


@on_postgresql
def test_under_own_a_ticket_handed_to_a_colleague_after_it_was_read_is_not_changed(app, api, seen, colleague):
    """Under `own` an admin hands the agent's ticket to a colleague between the read
    and the lock: the agent's status change is 404, and not made."""
    app.config["AGENT_VISIBILITY"] = "own"
    before = _left_alone()
    with _moved_after_it_was_read(seen["own"], assignee_id=colleague.id):
        answer = api.post(f"/tickets/{seen['own']}/status", {"status": "open"})
    assert answer.status_code == 404, answer.get_json()
    assert _left_alone() == before


# (path, form), as API_CALLS
PORTAL_FORMS = {
    "reply": ("/tickets/{ticket}/reply", {"body": "Hola"}),
    "note": ("/tickets/{ticket}/reply", {"body": "Nota", "kind": "note"}),
    "status": ("/tickets/{ticket}/status", {"status": "open"}),
    "properties": ("/tickets/{ticket}/update", {"priority": "high"}),
    "escalate": ("/tickets/{ticket}/escalate", {"level": "L2", "reason": "Fibra cortada"}),
    "language": ("/tickets/{ticket}/language", {"language": "es"}),
    "tags": ("/tickets/{ticket}/tags", {"tags": "fibra"}),
    "link": ("/tickets/{ticket}/links", {"ticket": "{other}"}),
    "unlink": ("/tickets/{ticket}/links", {"ticket": "{linked}", "action": "remove"}),
    "merge": ("/tickets/{ticket}/merge", {"into": "{other}"}),
}


@on_postgresql
@pytest.mark.parametrize(("name", "moved"), _either_ticket(PORTAL_FORMS))
def test_a_portal_change_of_a_ticket_moved_out_of_sight_after_it_was_read_is_not_made(
    portal: Portal, seen, name, moved
):
    """As over the API: the form's change is not made, and it goes back to the
    ticket's page, which answers 404 when that ticket is the one moved (the other
    ticket of a link or a merge is said not to exist there, as a hidden one is)."""
    path, form = PORTAL_FORMS[name]
    token = portal.token("/tickets")
    data = {key: value.format(**seen) for key, value in form.items()} | {"csrf_token": token}
    before = _left_alone()
    with _moved_after_it_was_read(seen[moved], 1 if moved == "ticket" else 2, team_id=_field_ops()):
        answer = portal.client.post(path.format(**seen), data=data)
    assert (answer.status_code, answer.headers["Location"]) == (302, f"/tickets/{seen['ticket']}")
    assert _left_alone() == before
    page = portal.get(answer.headers["Location"])
    if moved == "ticket":
        assert page.status_code == 404
    else:
        assert f"No ticket {seen[moved]}." in page.get_data(as_text=True)


@on_postgresql
def test_opening_a_new_ticket_moved_out_of_sight_after_it_was_read_does_not_open_it(portal, seen):
    """The ticket page moves a new ticket to open as an agent first opens it: moved
    away between the read and that move, it was moved and shown; now 404."""
    before = _left_alone()
    with _moved_after_it_was_read(seen["ticket"], team_id=_field_ops()):
        answer = portal.get(f"/tickets/{seen['ticket']}")
    assert answer.status_code == 404
    assert _left_alone() == before


def _agent_reads(app: Flask, agent: StaffUser, seen: dict[str, str]) -> tuple[TicketsService, Ticket, Ticket]:
    service = TicketsService.from_config(db.session, app.config)
    viewer = Actor.staff(agent)
    return service, service.get(seen["ticket"], viewer=viewer), service.get(seen["linked"], viewer=viewer)


SERVICE_WRITES: dict[str, Callable[[TicketsService, Ticket, Ticket, Actor, Any], object]] = {
    "status": lambda service, ticket, other, actor, config: service.change_status(
        ticket, "open", actor=actor
    ),
    "reply": lambda service, ticket, other, actor, config: service.add_message(
        ticket, body="Hola", actor=actor, channel="web"
    ),
    "note": lambda service, ticket, other, actor, config: service.add_message(
        ticket, body="Nota", actor=actor, channel="web", internal=True
    ),
    "attachment": lambda service, ticket, other, actor, config: service.add_message(
        ticket,
        body="Plano",
        actor=actor,
        channel="web",
        attachments=[NewAttachment("plano.pdf", "application/pdf", b"%PDF-1.4")],
    ),
    "viewed": lambda service, ticket, other, actor, config: service.mark_viewed(ticket, actor=actor),
    "update": lambda service, ticket, other, actor, config: service.update(
        ticket, actor=actor, priority="high", service_address="Calle Durango 12"
    ),
    "assign": lambda service, ticket, other, actor, config: service.assign(ticket, None, actor=actor),
    "escalate": lambda service, ticket, other, actor, config: service.escalate(
        ticket, "L2", actor=actor, reason="Fibra cortada"
    ),
    "language": lambda service, ticket, other, actor, config: service.set_language(ticket, "es", actor=actor),
    "tags": lambda service, ticket, other, actor, config: tags.set_tags(service, ticket, ["fibra"], actor),
    "bulk tags": lambda service, ticket, other, actor, config: tags.add_to(
        service, [ticket], ["fibra"], actor
    ),
    "link": lambda service, ticket, other, actor, config: links.link(
        service.session, other, ticket, actor, config
    ),
    "unlink": lambda service, ticket, other, actor, config: links.unlink(
        service.session, other, ticket, actor, config
    ),
    "merge": lambda service, ticket, other, actor, config: service.merge(ticket, other, actor=actor),
    "merge into": lambda service, ticket, other, actor, config: service.merge(other, ticket, actor=actor),
}


@pytest.mark.parametrize("name", SERVICE_WRITES)
def test_every_change_decides_what_the_agent_may_see_under_its_lock(app, agent, seen, name):
    """The services hold each change to what the agent may see as the lock finds the
    ticket, on either database: moved to another team after the agent read it, the
    ticket is NotFound, as `get` answers for it."""
    service, ticket, other = _agent_reads(app, agent, seen)
    db.session.execute(update(Ticket).where(Ticket.id == ticket.id).values(team_id=_field_ops()))
    with pytest.raises(NotFound, match=f"^No ticket {seen['ticket']}"):
        SERVICE_WRITES[name](service, ticket, other, Actor.staff(agent), app.config)


def test_the_lock_decides_what_the_agent_may_see_at_no_statement_more(app, api, seen):
    """The visibility condition is part of the lock's own statement: a status change
    under `team` reads the agent's teams once (to find the ticket, as before) and then
    locks the ticket in one statement that reads them again itself."""
    with statements() as sent:
        answer = api.post(f"/tickets/{seen['ticket']}/status", {"status": "open"})
    assert answer.status_code == 200, answer.get_json()
    found = next(index for index, statement in enumerate(sent) if "tickets.number = " in statement)
    changed = next(index for index, statement in enumerate(sent) if statement.startswith("UPDATE tickets"))
    (lock,) = sent[found + 1 : changed]
    assert "tickets.id IN" in lock and "team_members" in lock


@on_postgresql
def test_a_bulk_action_never_locks_a_ticket_the_agent_may_not_see(api, seen):
    """The bulk action locked every ticket named before it checked what the agent may
    see: naming tickets they may not see, an agent held them from everyone else for
    the length of the request. The lock's own statement now leaves them out; the
    ones they see are held, as before, and the hidden one is refused as not found."""
    held: dict[str, bool] = {}

    def probe(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if held or "FOR NO KEY UPDATE" not in statement or "tickets.number IN" not in statement:
            return
        with db.engine.connect() as other:
            for name in ("ticket", "field"):
                try:
                    other.execute(
                        text("SELECT id FROM tickets WHERE number = :n FOR NO KEY UPDATE NOWAIT"),
                        {"n": int(seen[name][-6:])},
                    )
                    held[name] = False
                except OperationalError:
                    held[name] = True
                other.rollback()

    event.listen(db.engine, "after_cursor_execute", probe)
    try:
        answer = api.post(
            "/tickets/bulk",
            {"tickets": [seen["ticket"], seen["field"]], "action": "status", "status": "open"},
        )
    finally:
        event.remove(db.engine, "after_cursor_execute", probe)
    assert held == {"ticket": True, "field": False}
    assert answer.get_json() == {
        "done": [seen["ticket"]],
        "refused": [{"ticket": seen["field"], "error": f"No ticket {seen['field']}."}],
    }
