"""The live-update endpoints the queue and ticket pages poll (docs/web.md, "Live updates")."""

from __future__ import annotations

from datetime import timedelta

from helpdesk.clock import iso, now
from helpdesk.extensions import db
from helpdesk.services import tags
from helpdesk.services.teams import TeamsService
from tests.support.database import open_ticket, tickets


def _changed(portal, path: str, since: str | None) -> bool:  # type: ignore[no-untyped-def]
    answer = portal.get(f"{path}?since={since}" if since is not None else path)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.headers["Cache-Control"] == "no-store"
    body = answer.get_json()
    assert body["now"].endswith("Z")
    return bool(body["changed"])


def test_the_queue_poll_says_whether_anything_changed_since(clock, portal, service, agent_actor):
    ticket = open_ticket(service)
    assert _changed(portal, "/live/queue", iso(now() - timedelta(seconds=5)))
    clock.shift(timedelta(minutes=1))
    later = iso(now())
    assert not _changed(portal, "/live/queue", later)
    clock.shift(timedelta(minutes=1))
    service.add_message(ticket, body="Vamos en camino.", actor=agent_actor, channel="web")
    db.session.commit()
    assert _changed(portal, "/live/queue", later)
    assert _changed(portal, "/live/queue", "not a time")  # unreadable: refresh once
    assert _changed(portal, "/live/queue", None)


def test_the_ticket_poll_follows_one_ticket_and_hides_what_the_agent_may_not_see(
    clock, app, portal, service, agent_actor
):
    mine, other = open_ticket(service), open_ticket(service)
    clock.shift(timedelta(minutes=1))
    since = iso(now())
    clock.shift(timedelta(minutes=1))
    service.change_status(other, "cancelled", actor=agent_actor, reason="duplicate")
    db.session.commit()
    assert _changed(portal, "/live/tickets/TKT-000002", since)
    assert not _changed(portal, "/live/tickets/TKT-000001", since)
    assert portal.get("/live/tickets/TKT-999999").status_code == 404
    TeamsService(db.session).add("field_ops")
    db.session.commit()
    service.update(mine, actor=agent_actor, team="field_ops")
    db.session.commit()
    app.config["AGENT_VISIBILITY"] = "team"
    assert portal.get("/live/tickets/TKT-000001").status_code == 404
    clock.shift(timedelta(minutes=1))
    since = iso(now())
    clock.shift(timedelta(minutes=1))
    service.add_message(mine, body="Nota", actor=agent_actor, channel="web", internal=True)
    db.session.commit()
    assert not _changed(portal, "/live/queue", since)  # the only change is to a hidden ticket


def test_the_polls_need_a_login(client):
    assert client.get("/live/queue").status_code == 302


def test_a_change_stamped_before_a_poll_but_committed_after_it_is_not_missed(clock, portal, service):
    """A ticket's `updated_at` is taken when its transaction writes it, which can be
    seconds before it commits (waiting for the numbering row, another host's clock).
    A poll in between must not move the cursor past it (reported: every later poll
    said "unchanged" and the new ticket never appeared)."""
    stamped = now()
    clock.shift(timedelta(seconds=3))
    answer = portal.get(f"/live/queue?since={iso(stamped - timedelta(seconds=1))}").get_json()
    assert answer["changed"] is False  # nothing committed yet
    clock.shift(timedelta(seconds=-3))
    open_ticket(service)  # written with the earlier time, committed only now
    clock.shift(timedelta(seconds=3 + 10))
    assert _changed(portal, "/live/queue", answer["now"])


def test_the_page_s_own_cursor_leaves_room_for_transactions_still_running(app, clock):
    from helpdesk.portal.live import live_cursor

    with app.test_request_context():
        cursor = live_cursor()
    assert cursor is not None
    assert cursor <= iso(now() - timedelta(seconds=app.config["LIVE_LAG_SECONDS"]))


def test_a_colleague_s_tags_show_on_the_ticket_page_live(clock, portal, service, agent_actor):
    """Tags are shown on the ticket page and in the queue, and the polls ask
    `updated_at`: a tag change that did not move it was never reported."""
    open_ticket(service)
    clock.shift(timedelta(minutes=1))
    since = iso(now())
    clock.shift(timedelta(minutes=1))
    (ticket,) = tickets()
    tags.set_tags(service, ticket, ["fibra"], agent_actor)
    db.session.commit()
    assert _changed(portal, "/live/tickets/TKT-000001", since)
    assert _changed(portal, "/live/queue", since)
    clock.shift(timedelta(minutes=1))
    since = iso(now())
    clock.shift(timedelta(minutes=1))
    tags.add_to(service, [ticket], ["vip"], agent_actor)
    db.session.commit()
    assert _changed(portal, "/live/tickets/TKT-000001", since)
