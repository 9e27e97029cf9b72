"""Teams, routing by ticket type on every channel, the team filter, and
AGENT_VISIBILITY on every route that reads or changes a ticket
(docs/isp-operations.md)."""

from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy import event, select, true
from sqlalchemy.exc import DataError

from helpdesk.errors import Conflict, ValidationError
from helpdesk.extensions import db
from helpdesk.inbound.ingest import Envelope, ingest
from helpdesk.models import (
    InboundMail,
    Message,
    OutboxMessage,
    Participant,
    QuarantineItem,
    StaffUser,
    TeamMember,
    Ticket,
    TicketHistory,
)
from helpdesk.services import Actor, QueueService, TicketFilters, TicketsService, tags, visibility
from helpdesk.services.integrations import IntegrationsService
from helpdesk.services.staff import StaffService
from helpdesk.services.teams import TeamsService
from helpdesk.services.tickets import NewAttachment
from tests.support.app import ApiClient, Portal, login_tokens, page_text
from tests.support.database import open_ticket
from tests.support.mail import SUPPORT, message, start_gateway
from tests.support.outbox import deliver


@pytest.fixture
def field_agent(app: Flask, teams: TeamsService) -> StaffUser:
    user, _ = StaffService(db.session).create(
        email="felipe@helpdesk.test", name="Felipe Field", role="agent", password="field-password-1"
    )
    teams.add_member("field_ops", user.id)
    db.session.commit()
    return user


def _team_of(number: str) -> str | None:
    db.session.expire_all()
    ticket = db.session.execute(select(Ticket).where(Ticket.number == int(number[-6:]))).scalar_one()
    return ticket.team.name if ticket.team else None


def test_every_channel_routes_a_new_ticket_by_its_type(teams, api, portal, gateway, senders, client):
    installation = api.post(
        "/tickets",
        {
            "subject": "Alta",
            "description": "Nueva instalación",
            "requester_email": "lucia@example.com",
            "ticket_type": "installation_request",
        },
    ).get_json()
    assert installation["team"] == "field_ops"
    named = api.post(
        "/tickets",
        {
            "subject": "Alta",
            "description": "?",
            "requester_email": "lucia@example.com",
            "ticket_type": "installation_request",
            "team": "onboarding_team",
        },
    ).get_json()
    assert named["team"] == "onboarding_team"
    untyped = api.post("/tickets", {"subject": "?", "description": "?", "requester_email": "a@example.com"})
    assert untyped.get_json()["team"] == "support_team"
    unrouted = api.post(
        "/tickets",
        {
            "subject": "?",
            "description": "?",
            "requester_email": "a@example.com",
            "ticket_type": "speed_issue",
        },
    )
    assert unrouted.get_json()["team"] is None
    code, _ = gateway.send(message(subject="Sin internet", body="Desde ayer."))
    assert code == 250
    assert _team_of("TKT-000005") == "support_team"
    form = {
        "requester_email": "mario@example.com",
        "subject": "Instalación",
        "description": "x",
        "ticket_type": "installation_request",
    }
    assert portal.post("/tickets/new", form, page="/tickets/new").status_code == 302
    assert _team_of("TKT-000006") == "field_ops"
    _integration, token = IntegrationsService(db.session).add("widget", "chat")
    db.session.commit()
    chat = client.post(
        "/api/v1/chat/tickets",
        json={"conversation_id": "c-1", "customer": {"email": "rosa@example.com"}, "transcript": "Hola"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert chat.status_code == 201, chat.get_json()
    assert _team_of(chat.get_json()["number"]) == "support_team"
    unknown = api.post(
        "/tickets", {"subject": "?", "description": "?", "requester_email": "a@example.com", "team": "nobody"}
    )
    assert unknown.status_code == 422
    assert "team" in unknown.get_json()["error"]["fields"]


def test_moving_a_ticket_to_another_team_is_recorded(teams, api, portal):
    number = api.post("/tickets", {"subject": "?", "description": "?", "requester_email": "a@example.com"})
    number = number.get_json()["number"]
    moved = api.patch(f"/tickets/{number}", {"team": "field_ops"}).get_json()
    assert moved["team"] == "field_ops"
    assert api.patch(f"/tickets/{number}", {"team": None}).get_json()["team"] is None
    assert api.patch(f"/tickets/{number}", {"team": "nobody"}).status_code == 422
    answer = portal.post(f"/tickets/{number}/update", {"team": "onboarding_team"}, page=f"/tickets/{number}")
    assert answer.status_code == 302
    rows = db.session.execute(
        select(TicketHistory.old_value, TicketHistory.new_value)
        .where(TicketHistory.field == "team")
        .order_by(TicketHistory.id)
    ).all()
    assert [tuple(row) for row in rows] == [
        ("support_team", "field_ops"),
        ("field_ops", None),
        (None, "onboarding_team"),
    ]


def test_the_queue_and_the_api_filter_by_team(teams, api, portal):
    for ticket_type in ("installation_request", "general_inquiry", "speed_issue"):
        api.post(
            "/tickets",
            {
                "subject": ticket_type,
                "description": "?",
                "requester_email": "a@example.com",
                "ticket_type": ticket_type,
            },
        )

    def numbers(query: str) -> list[str]:
        return [item["number"] for item in api.get(f"/tickets?{query}").get_json()["items"]]

    assert numbers("team=field_ops") == ["TKT-000001"]
    assert numbers("team=SUPPORT_TEAM") == ["TKT-000002"]
    assert numbers("team=none") == ["TKT-000003"]
    assert api.get("/tickets?team=nobody").status_code == 422
    page = portal.get("/tickets?team=field_ops").get_data(as_text=True)
    assert "TKT-000001" in page and "TKT-000002" not in page
    assert "TKT-000002" in portal.get("/tickets?team=nobody").get_data(as_text=True)  # ignored


def test_teams_service_rules(teams, agent):
    with pytest.raises(ValidationError):
        teams.add("Field Ops!")
    with pytest.raises(Conflict):
        teams.add("field_ops")
    teams.add_member("support_team", agent.id)
    teams.add_member("support_team", agent.id)  # twice is once
    assert [user.email for user in teams.get("support_team").members] == [agent.email]
    with pytest.raises(Conflict):
        teams.remove("field_ops")  # installation requests are routed there
    teams.set_route("installation_request", None)
    open_ticket(TicketsService(db.session), team="field_ops")
    with pytest.raises(Conflict):
        teams.remove("field_ops")  # it has a ticket
    teams.remove("onboarding_team")
    assert [team.name for team in teams.teams()] == ["field_ops", "support_team"]
    assert teams.routes()["installation_request"] is None


# -- visibility ---------------------------------------------------------------------------------


@pytest.fixture
def hidden(app, teams, agent, field_agent) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Under AGENT_VISIBILITY=team the agent (support_team) sees support tickets,
    team-less ones and their own; the field_ops ticket is hidden from them."""
    teams.add_member("support_team", agent.id)
    service = TicketsService.from_config(db.session, app.config)
    field = open_ticket(
        service,
        ticket_type="installation_request",
        device_serials=["ZTEGC8A1B2C3"],
        attachments=[NewAttachment("plano.pdf", "application/pdf", b"%PDF-1.4 plano")],
    )
    support = open_ticket(service, subject="Factura duplicada")
    teamless = open_ticket(service, ticket_type="speed_issue")
    own = open_ticket(service, ticket_type="installation_request", assignee_id=agent.id)
    app.config["AGENT_VISIBILITY"] = "team"
    attachment = field.messages[0].attachments[0].id
    db.session.commit()
    return {
        "field": service.display_number(field),
        "support": service.display_number(support),
        "teamless": service.display_number(teamless),
        "own": service.display_number(own),
        "attachment": str(attachment),
    }


def test_a_hidden_ticket_answers_404_on_every_api_route(api, hidden):
    number = hidden["field"]
    calls = [
        api.get(f"/tickets/{number}"),
        api.patch(f"/tickets/{number}", {"priority": "high"}),
        api.post(f"/tickets/{number}/status", {"status": "open"}),
        api.post(f"/tickets/{number}/replies", {"body": "Hola"}),
        api.get(f"/tickets/{number}/share"),
        api.post(f"/tickets/{number}/escalate", {"level": "L2", "reason": "x"}),
    ]
    unknown = api.get("/tickets/TKT-999999").get_json()
    for answer in calls:
        assert answer.status_code == 404, answer.request.path
        assert answer.get_json()["error"]["code"] == unknown["error"]["code"]
    for visible in ("support", "teamless", "own"):
        assert api.get(f"/tickets/{hidden[visible]}").status_code == 200
    listed = [item["number"] for item in api.get("/tickets?per_page=100").get_json()["items"]]
    assert sorted(listed) == sorted([hidden["support"], hidden["teamless"], hidden["own"]])
    assert api.get("/tickets?q=ZTEGC8A1").get_json()["items"] == []
    assert api.get("/tickets?team=field_ops").get_json()["items"][0]["number"] == hidden["own"]
    ticket = db.session.execute(select(Ticket).where(Ticket.number == int(number[-6:]))).scalar_one()
    assert (ticket.priority, ticket.status, len(ticket.messages), ticket.escalation_level) == (
        "medium",
        "new",
        1,
        "L1",
    )


def test_a_hidden_ticket_answers_404_on_every_portal_route(portal, hidden, client):
    number = hidden["field"]
    page = f"/tickets/{hidden['support']}"
    answers = [
        portal.get(f"/tickets/{number}"),
        portal.post(f"/tickets/{number}/reply", {"body": "Hola"}, page=page),
        portal.post(f"/tickets/{number}/status", {"status": "open"}, page=page),
        portal.post(f"/tickets/{number}/update", {"priority": "high"}, page=page),
        portal.post(f"/tickets/{number}/escalate", {"level": "L2", "reason": "x"}, page=page),
        portal.get(f"/attachments/{hidden['attachment']}"),
    ]
    for answer in answers:
        assert answer.status_code == 404, answer.request.path
    queue = portal.get("/tickets").get_data(as_text=True)
    assert number not in queue and hidden["support"] in queue and hidden["own"] in queue
    assert number not in portal.get("/tickets?q=ZTEGC8A1").get_data(as_text=True)


def test_a_portal_change_that_takes_a_ticket_out_of_sight_goes_back_to_the_queue(
    app, hidden, portal, field_agent
):
    """Moving a ticket to a team the agent does not see, opening one the routing sends
    to such a team, or handing one to a colleague under `own` took the agent to the
    ticket's page, which answered 404 as for a number that does not exist: the change
    was made, and the page said the ticket was not there. The queue now, saying why."""
    teamless = hidden["teamless"]
    kept = portal.post(f"/tickets/{teamless}/update", {"priority": "high"}, page=f"/tickets/{teamless}")
    assert kept.headers["Location"] == f"/tickets/{teamless}"  # still in sight: its page, as before
    support = hidden["support"]
    moved = portal.post(f"/tickets/{support}/update", {"team": "field_ops"}, page=f"/tickets/{support}")
    assert moved.headers["Location"] == "/tickets"
    queue = portal.get("/tickets").get_data(as_text=True)
    assert "Saved." in queue
    assert f"{support} is not among the tickets you may see, so here is the queue." in queue
    form = {
        "requester_email": "lucia@example.com",
        "subject": "Alta",
        "description": "Instalación de fibra",
        "ticket_type": "installation_request",
    }
    opened = portal.post("/tickets/new", form, page="/tickets/new")
    assert opened.headers["Location"] == "/tickets"
    queue = portal.get("/tickets").get_data(as_text=True)
    assert "Opened TKT-000005." in queue and "TKT-000005 is not among the tickets you may see" in queue
    assert _team_of("TKT-000005") == "field_ops"
    app.config["AGENT_VISIBILITY"] = "own"
    own = hidden["own"]
    handed = portal.post(
        f"/tickets/{own}/escalate",
        {"level": "L2", "reason": "Fibra cortada", "assignee": str(field_agent.id)},
        page=f"/tickets/{own}",
    )
    assert handed.headers["Location"] == "/tickets"
    assert f"{own} is not among the tickets you may see" in portal.get("/tickets").get_data(as_text=True)
    assert portal.get(f"/tickets/{own}").status_code == 404  # the rule itself is unchanged


def test_admins_see_everything_and_own_mode_shows_only_assigned_tickets(app, hidden, client, admin, agent):
    admin_api = ApiClient(client, login_tokens(client, admin.email, "admin-password-1")["access_token"])
    assert admin_api.get(f"/tickets/{hidden['field']}").status_code == 200
    assert admin_api.get("/tickets").get_json()["total"] == 4
    app.config["AGENT_VISIBILITY"] = "own"
    agent_api = ApiClient(client, login_tokens(client, agent.email, "agent-password-1")["access_token"])
    assert [item["number"] for item in agent_api.get("/tickets").get_json()["items"]] == [hidden["own"]]
    assert agent_api.get(f"/tickets/{hidden['support']}").status_code == 404
    app.config["AGENT_VISIBILITY"] = "all"
    assert agent_api.get("/tickets").get_json()["total"] == 4


def test_the_field_agent_sees_the_installation_but_not_the_billing_ticket(app, hidden, client, field_agent):
    field_api = ApiClient(client, login_tokens(client, field_agent.email, "field-password-1")["access_token"])
    assert field_api.get(f"/tickets/{hidden['field']}").status_code == 200
    assert field_api.get(f"/tickets/{hidden['own']}").status_code == 200  # field_ops, assigned to another
    assert field_api.get(f"/tickets/{hidden['support']}").status_code == 404
    assert field_api.get(f"/tickets/{hidden['teamless']}").status_code == 200


def test_the_queue_counts_every_visible_ticket_once(app, hidden, agent, field_agent, admin):
    """The queue counts an agent's tickets part by part (no team, their teams, theirs
    in another team) when it filters by tag or team only, and with one condition
    otherwise; a ticket within reach of two parts (team-less or their team's, and
    assigned to them) counts once, and every count is the tickets the page lists."""
    service = TicketsService.from_config(db.session, app.config)
    loner, _ = StaffService(db.session).create(
        email="nadia@helpdesk.test", name="Nadia Noteam", role="agent", password="noteam-password-1"
    )
    extra = [
        open_ticket(service, ticket_type="speed_issue", assignee_id=agent.id),  # no team, theirs
        open_ticket(service, subject="Corte de fibra", assignee_id=agent.id),  # their team, theirs
        open_ticket(service, ticket_type="installation_request", assignee_id=field_agent.id),
        open_ticket(service, ticket_type="installation_request", assignee_id=loner.id),
    ]
    numbers = {hidden[name] for name in ("field", "own")} | {service.display_number(t) for t in extra}
    for ticket in db.session.execute(select(Ticket)).scalars():
        if service.display_number(ticket) in numbers:
            tags.set_tags(service, ticket, ["fibra"], Actor.system())
    db.session.commit()
    everything = db.session.execute(select(Ticket)).scalars().all()
    filters = [
        TicketFilters(),
        TicketFilters(tag="fibra"),
        TicketFilters(team="field_ops"),
        TicketFilters(team="none", tag="fibra"),
        TicketFilters(tag="no-such-tag"),
        TicketFilters(status=["new"], tag="fibra"),  # these keep the one condition
        TicketFilters(q="fibra"),
        TicketFilters(assignee="none"),
    ]
    for mode in ("team", "own", "all"):
        app.config["AGENT_VISIBILITY"] = mode
        queue = QueueService.from_config(db.session, app.config)
        for user in (agent, field_agent, loner, admin):
            viewer = Actor.staff(user)
            member_of = {
                m.team_id for m in db.session.execute(select(TeamMember)).scalars() if m.staff_id == user.id
            }
            seen = {
                t.id
                for t in everything
                if user.role == "admin"
                or mode == "all"
                or t.assignee_id == user.id
                or (mode == "team" and (t.team_id is None or t.team_id in member_of))
            }
            parts = visibility.parts(db.session, viewer, mode) or [true()]
            reached = [set(db.session.execute(select(Ticket.id).where(part)).scalars()) for part in parts]
            assert sum(len(ids) for ids in reached) == len(seen) and set().union(*reached) == seen
            for chosen in filters:
                page = queue.list_tickets(chosen, per_page=100, viewer=viewer)
                assert page.total == len(page.items), (mode, user.email, chosen)
                assert {t.id for t in page.items} <= seen
            tagged = queue.list_tickets(TicketFilters(tag="fibra"), per_page=100, viewer=viewer)
            assert {t.id for t in tagged.items} == {t.id for t in everything if t.id in seen and t.tags}


# -- administration -----------------------------------------------------------------------------


def test_admins_manage_teams_and_routing_in_the_portal(admin_portal, teams, agent, client):
    assert admin_portal.post("/admin/teams", {"name": "billing_team"}, page="/admin/teams").status_code == 302
    admin_portal.post(
        "/admin/teams/members",
        {"team": "billing_team", "staff_id": str(agent.id), "action": "add"},
        page="/admin/teams",
    )
    routes = {ticket_type: "" for ticket_type in ("general_inquiry",)} | {"billing_issue": "billing_team"}
    admin_portal.post("/admin/teams/routes", routes, page="/admin/teams")
    page = admin_portal.get("/admin/teams").get_data(as_text=True)
    assert "billing team" in page and agent.email in page
    service = TeamsService(db.session)
    db.session.expire_all()
    assert [user.id for user in service.get("billing_team").members] == [agent.id]
    routed = service.routes()
    assert routed["billing_issue"].name == "billing_team"  # type: ignore[union-attr]
    assert routed["general_inquiry"] is None and routed["installation_request"] is None
    shown = admin_portal.post("/admin/teams", {"name": "Bad Name"}, page="/admin/teams")
    assert "lowercase letters" in admin_portal.get(shown.headers["Location"]).get_data(as_text=True)


def test_agents_cannot_manage_teams(portal):
    assert portal.get("/admin/teams").status_code == 403
    assert portal.post("/admin/teams", {"name": "mine"}, page="/tickets").status_code == 403


def test_teams_on_the_command_line(runner, teams, agent):
    assert runner.invoke(args=["teams", "add", "noc"]).exit_code == 0
    assert runner.invoke(args=["teams", "member", "add", "noc", agent.email]).exit_code == 0
    assert runner.invoke(args=["teams", "route", "outage_report", "noc"]).exit_code == 0
    listed = runner.invoke(args=["teams", "list"]).output
    assert f"noc                      {agent.email}" in listed
    assert "outage_report            → noc" in listed
    refused = runner.invoke(args=["teams", "member", "add", "noc", "ghost@example.com"])
    assert refused.exit_code == 1 and "No staff member" in refused.output
    assert runner.invoke(args=["teams", "remove", "noc"]).exit_code == 1  # routed to


def test_statistics_count_only_what_the_agent_may_see(app, api, portal, hidden, client, admin):
    stats = api.get("/stats").get_json()
    assert stats["total"] == 3
    assert sum(stats["by_status"].values()) == 3
    assert '<div class="stat">3</div>' in portal.get("/dashboard").get_data(as_text=True)
    admin_api = ApiClient(client, login_tokens(client, admin.email, "admin-password-1")["access_token"])
    assert admin_api.get("/stats").get_json()["total"] == 4


def _held(gateway, subject: str, sender: str = "mallory@nowhere.example") -> QuarantineItem:  # type: ignore[no-untyped-def]
    gateway.send(message(sender=sender, subject=subject, body=f"Secret words about {subject}"))
    return db.session.execute(select(QuarantineItem).order_by(QuarantineItem.id.desc())).scalars().first()


def test_held_mail_naming_a_hidden_ticket_is_hidden_like_the_ticket(app, hidden, portal, gateway, runner):
    """Under AGENT_VISIBILITY=team the quarantine shows the agent the intake review
    (held mail that names no ticket) and mail held for tickets they may see; a reply
    held for the field team's ticket is answered on every route as a held mail that
    does not exist, as the ticket itself is, and stays held. The operator's terminal
    (`flask quarantine`) still sees everything."""
    field = _held(gateway, f"Re: [{hidden['field']}] where is my technician")
    support = _held(gateway, f"Re: [{hidden['support']}] the invoice again")
    intake = _held(gateway, "Please call me back")
    listed = portal.get("/quarantine").get_data(as_text=True)
    assert "the invoice again" in listed and "Please call me back" in listed
    assert "where is my technician" not in listed and hidden["field"] not in listed
    unknown = portal.get("/quarantine/999999")
    assert unknown.status_code == 404
    shown = portal.get(f"/quarantine/{field.id}")
    assert (shown.status_code, page_text(shown)) == (404, page_text(unknown))
    for decision in ("approve", "reject", "spam"):
        refused = portal.post(f"/quarantine/{field.id}/{decision}", page="/quarantine")
        assert refused.status_code == 404, decision
    db.session.expire_all()
    assert db.session.get(QuarantineItem, field.id).state == "pending"
    assert "the invoice again" in portal.get(f"/quarantine/{support.id}").get_data(as_text=True)
    portal.post(f"/quarantine/{intake.id}/reject", page="/quarantine")
    db.session.expire_all()
    assert db.session.get(QuarantineItem, intake.id).state == "rejected"
    listing = runner.invoke(args=["quarantine", "list"])
    assert "where is my technician" in listing.output and "the invoice again" in listing.output


def test_admins_and_own_mode_in_the_quarantine(app, hidden, client, admin, agent, gateway):
    """Admins review every held mail; under `own` an agent sees the intake review
    and mail held for tickets assigned to them only."""
    field = _held(gateway, f"Re: [{hidden['field']}] where is my technician")
    own = _held(gateway, f"Re: [{hidden['own']}] any news")
    support = _held(gateway, f"Re: [{hidden['support']}] the invoice again")
    portal = Portal(client)
    portal.login(admin.email, "admin-password-1")
    listed = portal.get("/quarantine").get_data(as_text=True)
    assert all(words in listed for words in ("where is my technician", "any news", "the invoice again"))
    assert portal.get(f"/quarantine/{field.id}").status_code == 200
    portal.post("/logout", page="/tickets")
    app.config["AGENT_VISIBILITY"] = "own"
    portal.login(agent.email, "agent-password-1")
    listed = portal.get("/quarantine").get_data(as_text=True)
    assert "any news" in listed and "the invoice again" not in listed
    assert portal.get(f"/quarantine/{support.id}").status_code == 404
    assert portal.get(f"/quarantine/{own.id}").status_code == 200


def test_an_agents_quarantine_count_and_pages_leave_out_what_is_hidden(hidden, portal, gateway, admin, agent):
    """The quarantine is paged (`quarantine.pending`) and its heading counts the held
    mail in SQL: the count and every page come from the one visibility filter, so
    an agent under `team` never learns how much is held for tickets hidden from
    them, the thread walk (`_hiding`) included, and paging reaches what they see."""
    from helpdesk.inbound import quarantine

    field = _held(gateway, f"Re: [{hidden['field']}] where is my technician")
    support = _held(gateway, f"Re: [{hidden['support']}] the invoice again")
    gateway.send(
        message(
            sender="mallory@nowhere.example",
            subject="still waiting",
            in_reply_to=field.inbound_mail.message_id,
        )
    )
    newest = select(QuarantineItem).order_by(QuarantineItem.id.desc()).limit(1)
    follow_up = db.session.execute(newest).scalar_one()
    assert (follow_up.follows_item_id, follow_up.follows_own) == (field.id, True)
    intake = _held(gateway, "Please call me back", sender="kim@stranger.example")
    viewer = Actor.staff(db.session.get(StaffUser, agent.id))
    first = quarantine.pending(db.session, viewer, "team", per_page=1)
    assert (first.total, first.pages, [item.id for item in first.items]) == (2, 2, [support.id])
    second = quarantine.pending(db.session, viewer, "team", page=2, per_page=1)
    assert (second.total, [item.id for item in second.items]) == (2, [intake.id])
    assert quarantine.pending(db.session, viewer, "team", page=3, per_page=1).items == []
    assert "(2 waiting)" in portal.get("/quarantine").get_data(as_text=True)
    everything = quarantine.pending(db.session, Actor.staff(db.session.get(StaffUser, admin.id)), "team")
    assert everything.total == 4
    assert [item.id for item in everything.items] == [field.id, support.id, follow_up.id, intake.id]


def _held_reply(gateway, app, subject: str, reason: str) -> QuarantineItem:  # type: ignore[no-untyped-def]
    """A reply naming the ticket in `subject`, held for `reason` (a cap it is over, no
    sender, or a processing failure): the Subject comes before whatever breaks the mail."""
    mail = message(sender="ann@example.com", subject=subject, body=f"Secret words about {subject}")
    if reason == "header fields":
        app.config["MAX_HEADER_FIELDS"] = 12
        for index in range(20):
            mail[f"X-Filler-{index}"] = "x"
    elif reason == "header bytes":
        app.config["MAX_HEADER_BYTES"] = 2000
        mail["X-Long"] = "word " * 800
    elif reason == "mime parts":
        app.config["MAX_MIME_PARTS"] = 3
        for index in range(6):
            mail.add_attachment(b"x", maintype="application", subtype="octet-stream", filename=f"{index}.bin")
    if reason == "no sender":
        # Fetched by the IMAP poller: no header names a sender, and nor does the envelope.
        del mail["From"]
        ingest(mail.as_bytes(), Envelope("", (SUPPORT,), "imap"), app.config)
    elif reason != "processing failure":
        gateway.send(mail)
    else:
        # The database refuses to store the reply (Ann is the ticket's requester), as it
        # refuses a value it cannot store: injected at the driver's boundary.
        refused: list[str] = []

        def refuse(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
            if statement.lstrip().upper().startswith("INSERT INTO MESSAGES") and not refused:
                refused.append(statement)
                raise DataError(statement, parameters, Exception("value refused by the database"))

        event.listen(db.engine, "before_cursor_execute", refuse)
        try:
            gateway.send(mail)
        finally:
            event.remove(db.engine, "before_cursor_execute", refuse)
        assert refused
    db.session.expire_all()
    item = db.session.execute(select(QuarantineItem).order_by(QuarantineItem.id.desc())).scalars().first()
    assert item is not None and item.state == "pending"
    expected = {"processing failure": "processing failed", "no sender": "no sender address"}.get(
        reason, "over a limit"
    )
    assert expected in item.reason, item.reason
    return item


@pytest.mark.parametrize(
    "reason", ["header fields", "header bytes", "mime parts", "no sender", "processing failure"]
)
def test_mail_held_for_any_reason_naming_a_hidden_ticket_is_hidden_like_the_ticket(
    app, hidden, portal, gateway, field_agent, admin, reason
):  # type: ignore[no-untyped-def]
    """A reply held for the field team's ticket because it is over a cap, names no
    sender or failed to be stored names that ticket in what could be read of it: under
    AGENT_VISIBILITY=team the support agent is answered on every route as if it did
    not exist, while the field team and admins review it."""
    subject = f"Re: [{hidden['field']}] where is my technician"
    item = _held_reply(gateway, app, subject, reason)
    listed = portal.get("/quarantine").get_data(as_text=True)
    assert "where is my technician" not in listed and hidden["field"] not in listed
    unknown = portal.get("/quarantine/999999")
    shown = portal.get(f"/quarantine/{item.id}")
    assert (shown.status_code, page_text(shown)) == (404, page_text(unknown))
    for decision in ("approve", "reject", "spam"):
        refused = portal.post(f"/quarantine/{item.id}/{decision}", page="/quarantine")
        assert refused.status_code == 404, decision
    db.session.expire_all()
    assert db.session.get(QuarantineItem, item.id).state == "pending"
    # Read whole, the mail is the field team's to review; read in part (over a cap),
    # the part nobody read may name another ticket, so it is admins' alone.
    read_whole = reason in ("no sender", "processing failure")
    for reviewer, password, sees in (
        (field_agent, "field-password-1", read_whole),
        (admin, "admin-password-1", True),
    ):
        other = Portal(app.test_client())
        assert other.login(reviewer.email, password).status_code == 302
        assert ("where is my technician" in other.get("/quarantine").get_data(as_text=True)) is sees
        page = other.get(f"/quarantine/{item.id}")
        assert page.status_code == (200 if sees else 404)
        assert ("Secret words about" in page.get_data(as_text=True)) is sees


def test_mail_read_in_part_is_not_shown_by_the_ticket_its_read_part_names(app, hidden, portal, gateway):
    """Over MAX_HEADER_FIELDS the capped parse read a Subject naming the support
    agent's ticket, not the In-Reply-To after the cap, which names a mail of the field
    team's ticket and which matching ranks first (reported: the support agent read the
    reply to the hidden ticket, and approving it would have added it to the visible
    one). Whatever its read part names, such an item is admins' to review."""
    earlier = message(
        subject=f"Re: [{hidden['field']}] technician", message_id="<r1@client.example>", body="earlier"
    )
    assert gateway.send(earlier)[1] == f"2.0.0 OK appended {hidden['field']}".encode()
    app.config["MAX_HEADER_FIELDS"] = 12
    late = message(subject=f"Re: [{hidden['support']}] also", body="Secret words for the field team")
    for index in range(20):
        late[f"X-Filler-{index}"] = "x"
    late["In-Reply-To"] = "<r1@client.example>"
    assert gateway.send(late)[1] == b"2.0.0 OK quarantined"
    db.session.expire_all()
    item = db.session.execute(select(QuarantineItem).order_by(QuarantineItem.id.desc())).scalars().first()
    assert item.ticket_unknown
    assert portal.get(f"/quarantine/{item.id}").status_code == 404
    assert "Secret words" not in portal.get("/quarantine").get_data(as_text=True)
    assert portal.post(f"/quarantine/{item.id}/approve", page="/quarantine").status_code == 404


def test_held_mail_whose_ticket_is_unknown_is_reviewed_by_admins_only(app, hidden, portal, gateway, admin):
    """A held mail that could not be read far enough to tell which ticket it names
    (unparseable, or the Subject past MAX_HEADER_FIELDS) may be a reply to a hidden
    ticket: under `team` or `own` only admins review it. Under `all` every agent does."""
    number = hidden["field"]
    unparseable = b"Re: " + number.encode() + b" where is my technician\r\n\r\nSecret words\r\n"
    assert gateway.send(unparseable, mail_from="ann@example.com")[1] == b"2.0.0 OK quarantined"
    app.config["MAX_HEADER_FIELDS"] = 12
    late = message(subject=f"Re: [{number}] where is my technician", body="Secret words")
    del late["Subject"]
    for index in range(20):
        late[f"X-Filler-{index}"] = "x"
    late["Subject"] = f"Re: [{number}] where is my technician"
    gateway.send(late)
    items = db.session.execute(select(QuarantineItem).order_by(QuarantineItem.id)).scalars().all()
    assert [(item.ticket_id, item.ticket_unknown) for item in items] == [(None, True), (None, True)]
    for item in items:
        assert portal.get(f"/quarantine/{item.id}").status_code == 404
        assert portal.post(f"/quarantine/{item.id}/reject", page="/quarantine").status_code == 404
    listed = portal.get("/quarantine").get_data(as_text=True)
    assert "unparseable mail" not in listed and "over a limit" not in listed
    admin_portal = Portal(app.test_client())
    assert admin_portal.login(admin.email, "admin-password-1").status_code == 302
    listed = admin_portal.get("/quarantine").get_data(as_text=True)
    assert "unparseable mail" in listed and "over a limit" in listed
    assert all(admin_portal.get(f"/quarantine/{item.id}").status_code == 200 for item in items)
    app.config["AGENT_VISIBILITY"] = "all"
    assert all(portal.get(f"/quarantine/{item.id}").status_code == 200 for item in items)


def _approved_where(item_id: int) -> tuple[str, list[int]]:
    """The item's state and the tickets its mail was written on."""
    db.session.expire_all()
    item = db.session.get(QuarantineItem, item_id)
    written = db.session.execute(
        select(Message.ticket_id).where(Message.inbound_mail_id == item.inbound_mail_id)
    ).scalars()
    return item.state, list(written)


def test_approving_held_mail_that_now_lands_in_a_hidden_ticket_is_refused(app, portal, admin, agent):
    """Under `own`, Kim's mail M1 and her follow-up M2 (In-Reply-To M1) are both held;
    M2 names no ticket yet, so any agent reviews it. An admin approves M1 into a
    ticket the agent may not see; approving M2 then matched it there: the agent added
    a customer's message to a hidden ticket and was told its number. The approval
    judges the ticket the mail would land in, as the item's own ticket is judged:
    404, nothing written, M2 still held; an admin approves it into M1's ticket."""
    from helpdesk.inbound import quarantine

    app.config["AGENT_VISIBILITY"] = "own"
    envelope = Envelope("kim@stranger.example", (SUPPORT,), "smtp")
    first = message(sender="kim@stranger.example", subject="router dead", message_id="<m1@stranger.example>")
    second = message(
        sender="kim@stranger.example",
        subject="Re: router dead",
        body="forgot: serial ABC",
        message_id="<m2@stranger.example>",
        in_reply_to="<m1@stranger.example>",
    )
    for mail in (first, second):
        ingest(mail.as_bytes(), envelope, app.config)
    one, two = db.session.execute(select(QuarantineItem).order_by(QuarantineItem.id)).scalars().all()
    assert two.ticket_id is None and not two.ticket_unknown
    reviewer = Actor.staff(db.session.get(StaffUser, admin.id))
    made = quarantine.approve(db.session, one.id, reviewer, app.config)
    db.session.commit()
    ticket_id = db.session.get(QuarantineItem, one.id).ticket_id
    assert ticket_id is not None and not visibility.may_see(db.session, Actor.staff(agent), "own", ticket_id)

    refused = portal.post(f"/quarantine/{two.id}/approve", page="/quarantine")
    assert refused.status_code == 404
    assert made.ticket_number not in refused.get_data(as_text=True)
    assert _approved_where(two.id) == ("pending", [])
    quarantine.approve(db.session, two.id, reviewer, app.config)
    db.session.commit()
    assert _approved_where(two.id) == ("approved", [ticket_id])


def _held_thread(app, *mails) -> list[QuarantineItem]:
    """Each (envelope sender, mail) held in order; all the items, oldest first."""
    for sender, mail in mails:
        ingest(mail.as_bytes(), Envelope(sender, (SUPPORT,), "smtp"), app.config)
    return list(db.session.execute(select(QuarantineItem).order_by(QuarantineItem.id)).scalars())


def test_a_held_follow_up_is_reviewed_like_the_held_mail_it_answers(app, portal, admin, agent):
    """Under `own`, Kim's M1 and her follow-up M2 are held; M2 names no ticket, so its
    approval was refused once an admin approved M1 into a ticket hidden from the agent
    (beb84ae), but the agent still listed M2, read it and could reject it or mark it
    spam. M2 records the held mail it follows when held, and is shown to who may see
    that mail's ticket: 404 everywhere for the agent, still held; an admin approves it
    into M1's ticket."""
    from helpdesk.inbound import quarantine

    app.config["AGENT_VISIBILITY"] = "own"
    kim = "kim@stranger.example"
    one, two = _held_thread(
        app,
        (kim, message(sender=kim, subject="router dead", message_id="<m1@stranger.example>")),
        (
            kim,
            message(
                sender=kim,
                subject="Re: router dead",
                body="SECRET-FOLLOWUP serial ABC",
                message_id="<m2@stranger.example>",
                in_reply_to="<m1@stranger.example>",
            ),
        ),
    )
    assert two.ticket_id is None and two.follows_item_id == one.id
    assert portal.get(f"/quarantine/{two.id}").status_code == 200
    reviewer = Actor.staff(db.session.get(StaffUser, admin.id))
    quarantine.approve(db.session, one.id, reviewer, app.config)
    db.session.commit()
    ticket_id = db.session.get(QuarantineItem, one.id).ticket_id
    assert ticket_id is not None and not visibility.may_see(db.session, Actor.staff(agent), "own", ticket_id)

    assert f"/quarantine/{two.id}" not in portal.get("/quarantine").get_data(as_text=True)
    assert portal.get(f"/quarantine/{two.id}").status_code == 404
    for decision in ("approve", "reject", "spam"):
        assert portal.post(f"/quarantine/{two.id}/{decision}", page="/quarantine").status_code == 404
    assert _approved_where(two.id) == ("pending", [])
    assert [item.id for item in quarantine.pending(db.session, reviewer, "own").items] == [two.id]
    quarantine.approve(db.session, two.id, reviewer, app.config)
    db.session.commit()
    assert _approved_where(two.id) == ("approved", [ticket_id])


def test_a_strangers_mail_following_someone_elses_held_mail_changes_nothing_of_it(app, portal, admin, agent):
    """A stranger answers Kim's held Message-ID: their own mail follows Kim's and is
    reviewed like it, Kim's is not touched (the agent still reviews it); once Kim's
    lands in a ticket hidden from the agent, the stranger's mail is hidden with it."""
    from helpdesk.inbound import quarantine

    app.config["AGENT_VISIBILITY"] = "own"
    kim, eve = "kim@stranger.example", "eve@elsewhere.example"
    victim, follower = _held_thread(
        app,
        (kim, message(sender=kim, subject="router dead", message_id="<m1@stranger.example>")),
        (
            eve,
            message(
                sender=eve,
                subject="Re: router dead",
                message_id="<e1@elsewhere.example>",
                in_reply_to="<m1@stranger.example>",
            ),
        ),
    )
    assert follower.follows_item_id == victim.id and victim.follows_item_id is None
    listed = portal.get("/quarantine").get_data(as_text=True)
    assert f"/quarantine/{victim.id}" in listed and f"/quarantine/{follower.id}" in listed
    assert portal.get(f"/quarantine/{victim.id}").status_code == 200

    quarantine.approve(db.session, victim.id, Actor.staff(db.session.get(StaffUser, admin.id)), app.config)
    db.session.commit()
    assert portal.get(f"/quarantine/{follower.id}").status_code == 404


def test_a_held_follow_up_of_a_held_follow_up_follows_the_mail_it_answers(app, portal, admin, agent):
    """M3 answers M2, which answers M1, all held: M3 records M2, the mail it answers,
    and M1's ticket hides M3 as it hides M2 (the thread is walked up)."""
    from helpdesk.inbound import quarantine

    app.config["AGENT_VISIBILITY"] = "own"
    kim = "kim@stranger.example"
    mails = [message(sender=kim, subject="router dead", message_id="<m1@stranger.example>")]
    for n in (2, 3):
        mails.append(
            message(
                sender=kim,
                subject="Re: router dead",
                message_id=f"<m{n}@stranger.example>",
                in_reply_to=f"<m{n - 1}@stranger.example>",
                references=" ".join(f"<m{k}@stranger.example>" for k in range(1, n)),
            )
        )
    one, two, three = _held_thread(app, *((kim, mail) for mail in mails))
    assert (two.follows_item_id, three.follows_item_id) == (one.id, two.id)

    quarantine.approve(db.session, one.id, Actor.staff(db.session.get(StaffUser, admin.id)), app.config)
    db.session.commit()
    for item in (two, three):
        assert portal.get(f"/quarantine/{item.id}").status_code == 404


def test_a_held_follow_up_of_mail_whose_ticket_is_unknown_is_for_admins(app, portal, admin, agent):
    """The followed item's ticket_unknown carries over: a follow-up of held mail that
    may name a ticket nobody could tell is reviewed by admins only under `own`, as
    that mail is (listed, read and decided alike)."""
    from helpdesk.inbound import quarantine

    app.config["AGENT_VISIBILITY"] = "own"
    kim = "kim@stranger.example"
    one, two = _held_thread(
        app,
        (kim, message(sender=kim, subject="router dead", message_id="<m1@stranger.example>")),
        (kim, message(sender=kim, subject="Re: router dead", in_reply_to="<m1@stranger.example>")),
    )
    assert two.follows_item_id == one.id and two.follows_own
    one.ticket_unknown = True
    db.session.commit()

    assert f"/quarantine/{two.id}" not in portal.get("/quarantine").get_data(as_text=True)
    assert portal.get(f"/quarantine/{two.id}").status_code == 404
    assert portal.post(f"/quarantine/{two.id}/reject", page="/quarantine").status_code == 404
    assert _approved_where(two.id) == ("pending", [])
    staff = Actor.staff(db.session.get(StaffUser, admin.id))
    assert two.id in [item.id for item in quarantine.pending(db.session, staff, "own").items]


def _agent_may_not_touch(portal: Portal, item_id: int) -> None:
    """The agent neither lists, reads nor decides the held item: 404 as an unknown one."""
    assert f"/quarantine/{item_id}" not in portal.get("/quarantine").get_data(as_text=True)
    assert portal.get(f"/quarantine/{item_id}").status_code == 404
    for decision in ("approve", "reject", "spam"):
        assert portal.post(f"/quarantine/{item_id}/{decision}", page="/quarantine").status_code == 404
    assert _approved_where(item_id) == ("pending", [])


def test_a_held_follow_up_is_hidden_by_the_middle_of_its_thread_landing_in_a_hidden_ticket(
    app, portal, admin, agent
):
    """M3 (Lee's reply-all) answers M2, which answers M1, all held. An admin approves
    M2 into a ticket hidden from the agent and rejects M1. M3 recorded the root M1 and
    was judged by it alone, so the agent still listed, read and could reject M3, whose
    approval is M2's ticket's (Lee's mail lands there, or in a ticket linked to it).
    Every held mail up its thread counts now."""
    from helpdesk.inbound import quarantine

    app.config["AGENT_VISIBILITY"] = "own"
    kim, lee = "kim@stranger.example", "lee@stranger.example"
    mails = [(kim, message(sender=kim, subject="router dead", message_id="<m1@stranger.example>"))]
    for n, sender in ((2, kim), (3, lee)):
        mails.append(
            (
                sender,
                message(
                    sender=sender,
                    subject="Re: router dead",
                    body=f"SECRET-FOLLOWUP {n}",
                    message_id=f"<m{n}@stranger.example>",
                    in_reply_to=f"<m{n - 1}@stranger.example>",
                    references=" ".join(f"<m{k}@stranger.example>" for k in range(1, n)),
                ),
            )
        )
    one, two, three = _held_thread(app, *mails)
    assert portal.get(f"/quarantine/{three.id}").status_code == 200
    reviewer = Actor.staff(db.session.get(StaffUser, admin.id))
    quarantine.approve(db.session, two.id, reviewer, app.config)
    quarantine.reject(db.session, one.id, reviewer, "own")
    db.session.commit()
    ticket_id = db.session.get(QuarantineItem, two.id).ticket_id
    assert ticket_id is not None and not visibility.may_see(db.session, Actor.staff(agent), "own", ticket_id)

    _agent_may_not_touch(portal, three.id)
    assert [item.id for item in quarantine.pending(db.session, reviewer, "own").items] == [three.id]
    quarantine.approve(db.session, three.id, reviewer, app.config)
    db.session.commit()
    assert _approved_where(three.id)[0] == "approved"


def test_a_held_follow_up_of_mail_approved_into_a_ticket_merged_since_is_judged_by_the_survivor(
    app, hidden, portal, admin, agent
):
    """Under `team`, Kim's M1 is approved into a new support ticket the agent sees,
    and that ticket is merged into the field team's, hidden from them. Lee's held
    reply-all M2 was judged by the merged ticket, so the agent listed, read and could
    reject it, though its approval is the survivor's (it lands there, or in a ticket
    linked to it): now it is judged there."""
    from helpdesk.inbound import quarantine

    kim, lee = "kim@stranger.example", "lee@stranger.example"
    one, two = _held_thread(
        app,
        (kim, message(sender=kim, subject="router dead", message_id="<m1@stranger.example>")),
        (
            lee,
            message(
                sender=lee,
                subject="Re: router dead",
                body="SECRET-FOLLOWUP",
                message_id="<m2@stranger.example>",
                in_reply_to="<m1@stranger.example>",
            ),
        ),
    )
    staff = Actor.staff(db.session.get(StaffUser, admin.id))
    quarantine.approve(db.session, one.id, staff, app.config)
    db.session.commit()
    merged = db.session.get(Ticket, db.session.get(QuarantineItem, one.id).ticket_id)
    assert visibility.may_see(db.session, Actor.staff(agent), "team", merged.id)
    assert portal.get(f"/quarantine/{two.id}").status_code == 200
    service = TicketsService.from_config(db.session, app.config)
    survivor = service.get(hidden["field"])
    service.merge(merged, survivor, actor=staff)
    db.session.commit()

    _agent_may_not_touch(portal, two.id)
    quarantine.approve(db.session, two.id, staff, app.config)
    db.session.commit()
    assert _approved_where(two.id)[0] == "approved"


def test_held_mail_a_merge_skipped_is_admins_as_is_its_follow_up(app, hidden, portal, admin, agent):
    """A merge moves held mail to the survivor but skips an item locked at that moment
    (a reviewer deciding a follow-up share-locks it; the gateway holding a follow-up
    key-shares it), which then keeps naming the merged ticket: the agent who saw that
    ticket read and rejected the follow-ups of mail whose home is now the hidden
    survivor (found by review). Left on a merged ticket, held mail is admins'."""
    from helpdesk.inbound import quarantine

    kim, lee = "kim@stranger.example", "lee@stranger.example"
    one, two = _held_thread(
        app,
        (kim, message(sender=kim, subject="router dead", message_id="<m1@stranger.example>")),
        (
            lee,
            message(
                sender=lee,
                subject="Re: router dead",
                body="SECRET-FOLLOWUP",
                message_id="<m2@stranger.example>",
                in_reply_to="<m1@stranger.example>",
            ),
        ),
    )
    staff = Actor.staff(db.session.get(StaffUser, admin.id))
    quarantine.approve(db.session, one.id, staff, app.config)
    db.session.commit()
    merged = db.session.get(Ticket, db.session.get(QuarantineItem, one.id).ticket_id)
    service = TicketsService.from_config(db.session, app.config)
    service.merge(merged, service.get(hidden["field"]), actor=staff)
    db.session.commit()
    # as a merge that found the approved item locked leaves it
    db.session.get(QuarantineItem, one.id).ticket_id = merged.id
    db.session.commit()

    _agent_may_not_touch(portal, two.id)
    assert portal.get(f"/quarantine/{one.id}").status_code == 404
    assert quarantine.get(db.session, one.id, staff, "team").id == one.id


def test_a_stranger_holding_unreadable_mail_under_a_message_id_does_not_take_others_replies_from_agents(
    app, portal, admin, agent
):
    """Eve knows a Message-ID Kim will answer and gets her own mail held under it
    first, unreadable (over MAX_HEADER_FIELDS: its ticket unknown, admins only). Kim's
    held reply followed it and was admins' only too: a stranger chose who reviews
    another sender's mail. Another sender's unknown ticket carries over no more (one's
    own does); the agent reviews Kim's mail as any intake mail, Eve's stays admins'."""
    from helpdesk.inbound import quarantine

    app.config["AGENT_VISIBILITY"] = "own"
    app.config["MAX_HEADER_FIELDS"] = 12
    eve, kim = "eve@elsewhere.example", "kim@stranger.example"
    squat = message(sender=eve, subject="hello", message_id="<news-7@shop.example>")
    for index in range(20):
        squat[f"X-Filler-{index}"] = "x"
    reply = message(
        sender=kim, subject="Re: hello", body="SECRET-FOLLOWUP", in_reply_to="<news-7@shop.example>"
    )
    squatted, victim = _held_thread(app, (eve, squat), (kim, reply))
    assert squatted.ticket_unknown and victim.follows_item_id == squatted.id and not victim.follows_own

    assert portal.get(f"/quarantine/{squatted.id}").status_code == 404
    assert f"/quarantine/{victim.id}" in portal.get("/quarantine").get_data(as_text=True)
    assert "SECRET-FOLLOWUP" in portal.get(f"/quarantine/{victim.id}").get_data(as_text=True)
    staff = Actor.staff(db.session.get(StaffUser, admin.id))
    assert victim.id in [item.id for item in quarantine.pending(db.session, Actor.staff(agent), "own").items]
    assert squatted.id in [item.id for item in quarantine.pending(db.session, staff, "own").items]

    # Nor does Eve's mail held for a ticket hidden from the agent: only an approval
    # (a reviewer's choice, and where Kim's reply then lands) carries over.
    service = TicketsService.from_config(db.session, app.config)
    hidden = service.display_number(open_ticket(service))
    db.session.commit()
    app.config["MAX_HEADER_FIELDS"] = 100
    named = message(sender=eve, subject=f"Re: [{hidden}] hello", message_id="<news-8@shop.example>")
    answer = message(sender=kim, subject="Re: hello", in_reply_to="<news-8@shop.example>")
    squatted, victim = _held_thread(app, (eve, named), (kim, answer))[-2:]
    assert squatted.ticket_id is not None and victim.follows_item_id == squatted.id
    assert portal.get(f"/quarantine/{squatted.id}").status_code == 404
    assert portal.get(f"/quarantine/{victim.id}").status_code == 200


def test_approving_held_mail_whose_ticket_was_merged_into_a_hidden_one_is_refused(
    app, hidden, portal, admin, gateway
):
    """A stranger's reply held for a support ticket the agent sees; the ticket is then
    merged into the field team's, hidden from them. Approving followed the merge into
    the hidden survivor (a new ticket linked to it, its number in the reason): now
    404, as for a reply held for the hidden ticket itself, and the mail stays held."""
    item = _held(gateway, f"Re: [{hidden['support']}] the invoice again")
    assert portal.get(f"/quarantine/{item.id}").status_code == 200
    service = TicketsService.from_config(db.session, app.config)
    staff = Actor.staff(db.session.get(StaffUser, admin.id))
    service.merge(service.get(hidden["support"]), service.get(hidden["field"]), actor=staff)
    db.session.commit()
    tickets_before = db.session.execute(select(Ticket.id)).scalars().all()

    refused = portal.post(f"/quarantine/{item.id}/approve", page="/quarantine")
    assert refused.status_code == 404
    assert hidden["field"] not in refused.get_data(as_text=True)
    assert _approved_where(item.id) == ("pending", [])
    assert db.session.execute(select(Ticket.id)).scalars().all() == tickets_before


def test_held_mail_whose_ticket_is_merged_into_a_hidden_one_follows_the_survivor(
    app, hidden, portal, admin, gateway
):
    """The merge moves a held reply to the survivor as it moves the ticket's future
    mail: the reply names the field team's ticket from then on, so the agent no longer
    lists, reads or rejects it (it used to be theirs while only its approval was
    refused); an admin still approves it into a ticket linked to the survivor."""
    from helpdesk.inbound import quarantine

    item = _held(gateway, f"Re: [{hidden['support']}] the invoice again")
    service = TicketsService.from_config(db.session, app.config)
    staff = Actor.staff(db.session.get(StaffUser, admin.id))
    survivor = service.get(hidden["field"])
    service.merge(service.get(hidden["support"]), survivor, actor=staff)
    db.session.commit()

    db.session.expire_all()
    assert db.session.get(QuarantineItem, item.id).ticket_id == survivor.id
    assert "the invoice again" not in portal.get("/quarantine").get_data(as_text=True)
    assert portal.get(f"/quarantine/{item.id}").status_code == 404
    for decision in ("reject", "spam"):
        assert portal.post(f"/quarantine/{item.id}/{decision}", page="/quarantine").status_code == 404
    assert _approved_where(item.id) == ("pending", [])
    quarantine.approve(db.session, item.id, staff, app.config)
    db.session.commit()
    assert _approved_where(item.id)[0] == "approved"


# -- mail from staff who may not see the ticket ------------------------------------------------

TRUSTED = "mx.helpdesk.test"


def _passed(gateway, sender: str, subject: str, **kwargs) -> tuple[int, bytes]:  # type: ignore[no-untyped-def]
    """A mail the trusted server says passed DMARC for the From's domain."""
    domain = sender.rsplit("@", 1)[1]
    results = {"Authentication-Results": f"{TRUSTED}; dmarc=pass header.from={domain}"}
    return gateway.send(message(sender=sender, subject=subject, headers=results, **kwargs))


def _messages(number: str) -> list[Message]:
    db.session.expire_all()
    return list(
        db.session.execute(
            select(Message).join(Ticket).where(Ticket.number == int(number[-6:])).order_by(Message.id)
        ).scalars()
    )


def _reply_rows() -> list[OutboxMessage]:
    return list(db.session.execute(select(OutboxMessage).where(OutboxMessage.kind == "reply")).scalars())


def _held_from(sender: str) -> QuarantineItem:
    return (
        db.session.execute(
            select(QuarantineItem)
            .join(InboundMail, InboundMail.id == QuarantineItem.inbound_mail_id)
            .where(InboundMail.from_address == sender)
            .order_by(QuarantineItem.id.desc())
        )
        .scalars()
        .first()
    )


@pytest.mark.parametrize("mode", ["team", "own"])
def test_a_staff_members_proven_note_on_a_ticket_hidden_from_them_is_held_like_a_strangers(
    app, hidden, portal, agent, admin, mode
):
    """The field team's ticket answers the agent 404 on every route, yet their mail
    `[TKT-…] note`, DMARC passed, was kept on it as their internal note, and the
    `appended TKT-…` told them the ticket exists. A staff member is trusted as staff
    only on a ticket they may see: elsewhere their mail is a stranger's, held for
    who may see the ticket, answered as a stranger's and as a ticket that does not
    exist would be (docs/isp-operations.md, "Visibility"); approved, it opens a new
    ticket linked to that one, as a stranger's does."""
    from helpdesk.inbound import quarantine

    app.config["AGENT_VISIBILITY"] = mode
    number = hidden["field"]
    for gateway in start_gateway(app, TRUSTED_AUTHSERV_ID=TRUSTED):
        stranger = _passed(gateway, "mallory@nowhere.example", f"[{number}] hello")
        nowhere = _passed(gateway, agent.email, "[TKT-999999] the technician is late")
        written = _passed(gateway, agent.email, f"[{number}] the technician is late")
    assert written == stranger == nowhere == (250, b"2.0.0 OK quarantined")
    assert len(_messages(number)) == 1
    item = _held_from(agent.email)
    assert item.ticket_id == _messages(number)[0].ticket_id
    assert f"may not see {number}" in item.reason
    assert portal.get(f"/quarantine/{item.id}").status_code == 404
    approved = quarantine.approve(db.session, item.id, Actor.staff(admin), app.config)
    db.session.commit()
    assert approved.ticket_number not in (None, number)
    assert len(_messages(number)) == 1


@pytest.mark.parametrize("policy", ["quarantine", "reject", "accept"])
def test_staff_of_an_authorized_domain_write_into_no_hidden_ticket_of_their_organization(app, policy):
    """An internal helpdesk: `@corp.example` is an authorized sender of Corp, and the
    agents write from it too. A staff member's proven mail on a Corp ticket hidden
    from them was appended as a customer's reply, `appended TKT-…`, where a number
    that does not exist opened a ticket (found by the review of the day's fixes).
    Hidden from them, only the requester or a CC participant belongs on it: an
    authorized sender's mail opens a new ticket linked to it, answered as a number
    that does not exist is."""
    from helpdesk.services.senders import SendersService

    SendersService(db.session).add("@corp.example", "Corp")
    StaffService(db.session).create(
        email="tech@corp.example", name="Tech", role="agent", password="tech-password-1"
    )
    db.session.commit()
    app.config.update(AGENT_VISIBILITY="own", UNKNOWN_SENDER_POLICY=policy)
    for gateway in start_gateway(app, TRUSTED_AUTHSERV_ID=TRUSTED):
        assert _passed(gateway, "dave@corp.example", "Payroll laptop") == (
            250,
            b"2.0.0 OK created TKT-000001",
        )
        written = _passed(gateway, "tech@corp.example", "[TKT-000001] hello")
        nowhere = _passed(gateway, "tech@corp.example", "[TKT-000777] hello")
    assert (written, nowhere) == (
        (250, b"2.0.0 OK created TKT-000002"),
        (250, b"2.0.0 OK created TKT-000003"),
    )
    assert len(_messages("TKT-000001")) == 1
    assert _messages("TKT-000002")[0].author_staff_id is None


@pytest.mark.parametrize(("mode", "visible"), [("team", "support"), ("own", "own")])
def test_a_staff_members_proven_note_on_a_ticket_they_see_and_an_admins_on_any_are_kept(
    app, hidden, agent, admin, mode, visible
):
    app.config["AGENT_VISIBILITY"] = mode
    for gateway in start_gateway(app, TRUSTED_AUTHSERV_ID=TRUSTED):
        for sender, number in ((agent, hidden[visible]), (admin, hidden["field"])):
            answer = _passed(gateway, sender.email, f"[{number}] the technician is late")
            assert answer == (250, f"2.0.0 OK appended {number}".encode())
            note = _messages(number)[-1]
            assert (note.kind, note.author_staff_id) == ("note", sender.id)


def test_staff_who_lost_sight_of_a_ticket_cannot_answer_its_mail_as_staff(
    app, service, agent, admin, field_agent, sink
):
    """Under `own` the agent, in Cc of Ann's ticket, got the copy of a public reply
    while it was assigned to them; it was handed to a colleague since. Answering the
    copy (its signed Message-ID the proof) was still a public staff reply, mailed to
    Ann, on a ticket the agent may no longer see. Now the agent writes there as the
    participant they are, as a customer would, never mailed; removed from Cc as
    well, their answer is a stranger's, held. Without any proof, the From of a staff
    address is an unverified note, as it is for whoever forges it."""
    app.config["AGENT_VISIBILITY"] = "own"
    staff = Actor.staff(admin)
    ticket = open_ticket(service, cc=[(agent.email, "Agnes Agent")], assignee_id=agent.id)
    service.add_message(ticket, body="Which model?", actor=staff, channel="web")
    db.session.commit()
    (copy,) = [mail for mail in deliver(app, sink) if mail["To"].addresses[0].addr_spec == agent.email]
    service.assign(ticket, field_agent.id, actor=staff)
    db.session.commit()
    mailed = len(_reply_rows())

    def answer(gateway, body: str) -> tuple[int, bytes]:  # type: ignore[no-untyped-def]
        subject = "Re: " + str(copy["Subject"])
        return gateway.send(
            message(sender=agent.email, subject=subject, body=body, in_reply_to=copy["Message-ID"])
        )

    for gateway in start_gateway(app):
        assert answer(gateway, "Refund approved.") == (250, b"2.0.0 OK appended TKT-000001")
        last = _messages("TKT-000001")[-1]
        assert (last.kind, last.author_staff_id) == ("reply", None)
        assert last.author_contact_id is not None  # the participant's, as a customer's
        assert len(_reply_rows()) == mailed

        forged = message(sender=agent.email, subject="[TKT-000001] note", body="No proof.")
        assert gateway.send(forged) == (250, b"2.0.0 OK appended TKT-000001")
        last = _messages("TKT-000001")[-1]
        assert (last.kind, last.author_staff_id) == ("note", None)
        assert "unverified" in last.author_label

        db.session.execute(Participant.__table__.delete().where(Participant.ticket_id == ticket.id))
        db.session.commit()
        written = len(_messages("TKT-000001"))
        assert answer(gateway, "Refund approved, again.") == (250, b"2.0.0 OK quarantined")
        assert len(_messages("TKT-000001")) == written
        assert _held_from(agent.email).ticket_id == ticket.id
    assert len(_reply_rows()) == mailed
