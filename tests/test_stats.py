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

Per day (`trends`; the clock ends at T0 + 39 h, so today is 2026-03-03):

- 02-27: E created (email), answered in time (100 %) after 36000 s; 1 open at the end.
- 02-28: E resolved in time (100 %); 0 open.
- 03-02: A, D (email), B (api), C, F (web) created; F and A resolved, D cancelled: 2
  open (B, C). First responses: A, D, F met, B, C breached (due that day): 60 %;
  resolutions: A, F met, C breached: 66.7 %; answers after 600, 1800, 3600 and 7200 s:
  median 2700.
- 03-03: B resolved late and reopened: 2 open (B, C). Its resolution was due at
  T0 + 26 h, + 1 h paused while it lay resolved: 03-03 11:00, breached: 0 %.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from flask import current_app

from helpdesk.extensions import db
from helpdesk.models import Ticket
from helpdesk.services import Actor
from helpdesk.services.lifecycle_jobs import check_sla
from helpdesk.services.stats import ticket_stats
from helpdesk.services.trends import daily_trends
from helpdesk.vocabulary import CHANNELS
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
        "1 hr",
        "Resolution (median)",
        "10 hr",
        "66.7%",
        "60%",
        "1 reopening of 1 ticket",
        # 2026-03-02 in the tables of the charts: web 2, api 1, email 2; created 5, resolved 2.
        '<th scope="row" class="nowrap">2026-03-02</th><td>2</td><td>1</td><td>2</td><td>0</td>',
        '<th scope="row" class="nowrap">2026-03-02</th><td>5</td><td>2</td></tr>',
        "Agnes Agent</a></td><td>1</td><td>2</td>",
    ):
        assert figure in page, figure
    assert page.count('class="chart-svg"') == 6
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


def _ending(tail: list[object], before: object, length: int = 30) -> list[object]:
    """A series of `length` days: `before` on every day up to the story's last six."""
    return [before] * (length - len(tail)) + tail


STORY_TRENDS = {  # the last six days, 2026-02-26 to 2026-03-03 (see the table above)
    "resolved": [0, 0, 1, 0, 2, 1],
    "backlog": [0, 1, 0, 0, 2, 2],
    "first_response_met_percent": [None, 100.0, None, None, 60.0, None],
    "resolution_met_percent": [None, None, 100.0, None, 66.7, 0.0],
    "median_first_response_seconds": [None, 36000.0, None, None, 2700.0, None],
}
STORY_CREATED = {"web": [0, 0, 0, 0, 2, 0], "api": [0, 0, 0, 0, 1, 0], "email": [0, 1, 0, 0, 2, 0]}


@pytest.mark.parametrize("length", [30, 90])
def test_trends_per_day_match_the_hand_computed_story(story, length):
    trends = daily_trends(db.session, length)
    assert len(trends.days) == length
    assert trends.days[-1] == date(2026, 3, 3)
    assert trends.days[0] == date(2026, 3, 3) - timedelta(days=length - 1)
    assert list(trends.created) == list(CHANNELS)  # chat, whatsapp… too, with nothing created
    for channel, values in trends.created.items():
        assert values == _ending(STORY_CREATED.get(channel, [0] * 6), 0, length), channel
    assert trends.created_total == _ending([0, 1, 0, 0, 5, 0], 0, length)
    for name, tail in STORY_TRENDS.items():
        before = 0 if name in ("resolved", "backlog") else None
        assert getattr(trends, name) == _ending(tail, before, length), name
    # Today's backlog is what is open now: B (reopened) and C (new).
    assert trends.backlog[-1] == sum(ticket_stats(db.session)["by_status"][s] for s in ("new", "reopened"))


def test_trends_keep_to_the_scope(story):
    email = daily_trends(db.session, 30, scope=Ticket.channel == "email")
    assert email.created["email"] == _ending([0, 1, 0, 0, 2, 0], 0)
    assert email.created["web"] == [0] * 30
    assert email.resolved == _ending([0, 0, 1, 0, 1, 0], 0)  # E, then A
    assert email.backlog == _ending([0, 1, 0, 0, 0, 0], 0)  # D cancelled, A resolved
    assert email.first_response_met_percent == _ending([None, 100.0, None, None, 100.0, None], None)
    assert email.resolution_met_percent == _ending([None, None, 100.0, None, 100.0, None], None)
    assert email.median_first_response_seconds == _ending([None, 36000.0, None, None, 2700.0, None], None)


def test_trends_up_to_a_past_day_count_the_backlog_back_from_now(story):
    """Up to 2026-03-01, the changes of the two days after come off today's backlog."""
    trends = daily_trends(db.session, 30, moment=datetime(2026, 3, 1, 12, 0))
    assert trends.days[-1] == date(2026, 3, 1)
    assert trends.backlog[-4:] == [0, 1, 0, 0]
    assert trends.resolved[-4:] == [0, 0, 1, 0]


def test_trends_of_an_empty_helpdesk_are_zeros_and_nulls(app, clock):
    trends = daily_trends(db.session, 30)
    assert trends.days[-1] == date(2026, 3, 2)
    assert trends.created_total == trends.resolved == trends.backlog == [0] * 30
    assert list(trends.created) == list(CHANNELS)
    assert trends.first_response_met_percent == trends.median_first_response_seconds == [None] * 30
