"""Statistics (`GET /api/v1/stats`, the dashboard) against a fixture computed by
hand, on both databases. The story, in hours after Monday 2026-03-02 08:00 UTC:

| ticket | priority/channel/category | assignee | what happens | first response | resolution |
|---|---|---|---|---|---|
| A | medium/email/support | agent | reply +1, resolved +10 | 3600 met | 36000 met |
| B | high/api/billing | agent | reply +4, resolved +32, reopened +33 | 7200 breached | breached, reopened |
| C | urgent/web/technical | — | nothing; the SLA check at +39 | breached (check) | breached (check) |
| D | low/email/support | admin | reply +5.5, cancelled | 1800 met | — (void) |
| E | low/email/account | — | created 3 days before T0, reply +10, resolved +20 | 36000 met | 72000 met |
| F | medium/web/sales | agent | created +6, reply +6:10, resolved +7 | 600 met | 3600 met |

First responses 600, 1800, 3600, 7200, 36000: average 9840, median 3600.
Resolutions 3600, 36000, 72000 (B was reopened): average 37200, median 36000.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from flask import current_app

from helpdesk.extensions import db
from helpdesk.models import Ticket
from helpdesk.services import Actor
from helpdesk.services.lifecycle_jobs import check_sla
from helpdesk.services.stats import ticket_stats
from tests.support.app import CLOCK_START
from tests.support.database import open_ticket

ANN = Actor.customer("ann@example.com", "Ann Example")
STATUSES = {
    "new": 1,
    "open": 0,
    "in_progress": 0,
    "pending_customer": 0,
    "resolved": 3,
    "closed": 0,
    "reopened": 1,
    "cancelled": 1,
}


def at(clock, hours: float) -> None:  # type: ignore[no-untyped-def]
    """Move the clock to T0 + `hours`."""
    clock.move_to(CLOCK_START + timedelta(hours=hours))


@pytest.fixture
def story(service, agent, admin, clock):  # type: ignore[no-untyped-def]
    staff, boss = Actor.staff(agent), Actor.staff(admin)

    def ticket(priority: str, channel: str, category: str, assignee=None) -> Ticket:  # type: ignore[no-untyped-def]
        return open_ticket(
            service,
            priority=priority,
            channel=channel,
            category=category,
            assignee_id=assignee.id if assignee else None,
            is_email_originated=channel == "email",
        )

    def reply(t: Ticket, actor: Actor = staff) -> None:
        service.add_message(t, body="Answer", actor=actor, channel="web")
        db.session.commit()

    def move(t: Ticket, *targets: str, actor: Actor = staff) -> None:
        for target in targets:
            service.change_status(t, target, actor=actor)
        db.session.commit()

    at(clock, -72)
    e = ticket("low", "email", "account")
    at(clock, -62)
    reply(e)
    at(clock, -52)
    move(e, "open", "in_progress", "resolved")
    at(clock, 0)
    a = ticket("medium", "email", "support", agent)
    at(clock, 1)
    reply(a)
    at(clock, 2)
    b = ticket("high", "api", "billing", agent)
    at(clock, 3)
    ticket("urgent", "web", "technical")  # C: never answered, breaches both targets
    at(clock, 4)
    reply(b)
    at(clock, 5)
    d = ticket("low", "email", "support", admin)
    at(clock, 5.5)
    reply(d, boss)
    move(d, "cancelled", actor=boss)
    at(clock, 6)
    f = ticket("medium", "web", "sales", agent)
    at(clock, 6 + 10 / 60)
    reply(f)
    at(clock, 7)
    move(f, "open", "in_progress", "resolved")
    at(clock, 10)
    move(a, "open", "in_progress", "resolved")
    at(clock, 32)
    move(b, "open", "in_progress", "resolved")
    at(clock, 33)
    service.add_message(b, body="Not fixed.", actor=ANN, channel="email")
    db.session.commit()
    at(clock, 39)
    assert len(check_sla(db.session, current_app.config).breaches) == 2  # C: both targets
    db.session.commit()
    return {"agent": agent, "admin": admin}


def expected(story) -> dict[str, object]:  # type: ignore[no-untyped-def]
    days = [{"date": f"2026-02-{day:02d}", "count": 1 if day == 27 else 0} for day in range(2, 29)]
    days += [
        {"date": "2026-03-01", "count": 0},
        {"date": "2026-03-02", "count": 5},
        {"date": "2026-03-03", "count": 0},
    ]
    return {
        "total": 6,
        "by_status": STATUSES,
        "by_priority": {"low": 2, "medium": 2, "high": 1, "urgent": 1},
        "by_category": {
            "support": 2,
            "technical": 1,
            "billing": 1,
            "sales": 1,
            "complaint": 0,
            "feature_request": 0,
            "account": 1,
            "other": 0,
        },
        "by_channel": {"web": 2, "api": 1, "email": 3, "chat": 0, "whatsapp": 0, "phone": 0, "system": 0},
        "by_source": {"customer": 6, "agent": 0, "ai": 0, "system": 0},
        "first_response": {"average_seconds": 9840.0, "median_seconds": 3600.0, "count": 5},
        "resolution": {"average_seconds": 37200.0, "median_seconds": 36000.0, "count": 3},
        "sla": {
            "first_response_breached": 2,
            "resolution_breached": 2,
            "first_response_met": 4,
            "resolution_met": 3,
            "first_response_met_percent": 66.7,
            "resolution_met_percent": 60.0,
            "by_state": {"breached": 2, "due_soon": 0, "on_track": 0, "met": 3, "void": 1},
        },
        "created_per_day": days,
        "reopens": {"count": 1, "tickets": 1},
        "satisfaction": {"count": 0, "average": None},
        "by_agent": [
            {
                "id": story["admin"].id,
                "name": "Ada Admin",
                "email": "admin@helpdesk.test",
                "open": 0,
                "resolved": 0,
                "satisfaction": {"count": 0, "average": None},
            },
            {
                "id": story["agent"].id,
                "name": "Agnes Agent",
                "email": "agent@helpdesk.test",
                "open": 1,
                "resolved": 2,
                "satisfaction": {"count": 0, "average": None},
            },
        ],
    }


def test_stats_match_the_hand_computed_story(story):
    assert ticket_stats(db.session) == expected(story)


def test_stats_api_answers_the_same_figures(story, api):
    response = api.get("/stats")
    assert response.status_code == 200
    assert response.get_json() == expected(story)


def test_dashboard_shows_medians_sla_percentages_days_and_agents(story, portal):  # noqa: F811
    page = portal.get("/dashboard").data.decode()
    for figure in (
        "First response (median)",
        "1.0 h",
        "Resolution (median)",
        "10.0 h",
        "66.7 %",
        "60.0 %",
        "1 reopenings of 1 tickets",
        '<meter class="bar" min="0" max="5" value="5">5</meter>',
        "2026-03-02",
        "Agnes Agent</a></td><td>1</td><td>2</td>",
    ):
        assert figure in page, figure
    assert "style=" not in page and "<script" not in page  # the CSP allows neither inline


def test_stats_of_an_empty_helpdesk_are_zeros_and_nulls(app, clock):
    stats = ticket_stats(db.session)
    assert stats["total"] == 0
    assert stats["first_response"] == {"average_seconds": None, "median_seconds": None, "count": 0}
    assert stats["sla"]["first_response_met_percent"] is None
    assert len(stats["created_per_day"]) == 30 and stats["created_per_day"][-1] == {
        "date": "2026-03-02",
        "count": 0,
    }
    assert stats["by_agent"] == [] and stats["reopens"] == {"count": 0, "tickets": 0}
