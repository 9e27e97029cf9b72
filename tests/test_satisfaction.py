"""Customer satisfaction: the rating link of the resolution mail, the status link of
every customer mail, `rate_ticket`, and where ratings show (docs/integrations.md)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from flask import Flask
from sqlalchemy import select

from helpdesk import customer_links
from helpdesk.errors import Conflict, ValidationError
from helpdesk.extensions import db
from helpdesk.models import SatisfactionRating, StaffUser, Ticket
from helpdesk.services import Actor, TicketsService, satisfaction
from helpdesk.services.trends import daily_trends
from tests.support.app import Portal
from tests.support.database import CUSTOMER, open_ticket, resolve
from tests.support.outbox import deliver, html_of, text_of
from tests.support.sink import Sink

_LINK = re.compile(r"http://helpdesk\.test(/(?:track|rate)/[A-Za-z0-9_.\-]+)")


def _links(text: str) -> dict[str, str]:
    """The site-relative status and rating links of a mail, by purpose."""
    found = {"track" if path.startswith("/track/") else "rate": path for path in _LINK.findall(text)}
    return found


def _path(config: object, purpose: str, ticket: Ticket, address: str) -> str:
    return urlsplit(customer_links.url(config, purpose, ticket.id, address)).path  # type: ignore[arg-type]


@pytest.fixture
def resolved(app: Flask, service: TicketsService, agent: StaffUser, agent_actor: Actor) -> Ticket:
    ticket = open_ticket(service, subject="Internet cortado desde ayer")
    service.assign(ticket, agent.id, actor=agent_actor)
    resolve(service, ticket, agent_actor)
    return ticket


def _rate(client, path: str, rating: str, comment: str = ""):  # type: ignore[no-untyped-def]
    return client.post(
        path, data={"rating": rating, "comment": comment, "csrf_token": Portal(client).token("/track")}
    )


def test_every_customer_mail_links_to_the_ticket_and_the_resolution_mail_to_a_rating(
    app, service, agent_actor, sink: Sink, client
):
    ticket = open_ticket(service)
    service.add_message(ticket, body="We are on it.", actor=agent_actor, channel="web")
    resolve(service, ticket, agent_actor)
    mails = deliver(app, sink)
    kinds = ["created", "reply", "status", "resolved"]
    assert len(mails) == len(kinds)
    for kind, mail in zip(kinds, mails, strict=True):
        for body in (text_of(mail), html_of(mail)):
            links = _links(body)
            opened = customer_links.open_link(
                db.session, app.config, "status", links["track"][len("/track/") :]
            )
            assert opened.ticket.id == ticket.id, kind
            assert ("rate" in links) == (kind == "resolved"), kind
    status_page = client.get(_links(text_of(mails[0]))["track"])
    assert status_page.status_code == 200
    assert b"VPN drops every hour" in status_page.data
    assert b"We are on it." in status_page.data
    # The HTML mail offers the five choices, each preselecting one on the page.
    rate_path = _links(html_of(mails[-1]))["rate"]
    for choice in range(1, 6):
        assert f"{rate_path}?rating={choice}" in html_of(mails[-1])
    page = client.get(f"{rate_path}?rating=4")
    assert page.status_code == 200
    assert b'value="4" required\n      checked' in page.data


def test_opening_the_rating_page_rates_nothing_and_the_form_rates_once_per_ticket(
    app, resolved: Ticket, client, agent: StaffUser
):
    path = _path(app.config, "rating", resolved, "ann@example.com")
    assert client.get(f"{path}?rating=1").status_code == 200  # a mail scanner following the link
    assert db.session.execute(select(SatisfactionRating)).first() is None
    answer = _rate(client, path, "2", "Tardaron mucho.")
    assert answer.status_code == 303
    assert answer.headers["Location"].startswith("/track/")
    # Reusing the link changes the rating; it never adds a second one.
    assert _rate(client, path, "5", "  Al final, excelente.  ").status_code == 303
    rows = db.session.execute(select(SatisfactionRating)).scalars().all()
    assert [(row.rating, row.comment, row.via, row.agent_id) for row in rows] == [
        (5, "Al final, excelente.", "link", agent.id)
    ]
    shown = client.get(answer.headers["Location"])
    assert b"Thank you for your rating." in shown.data
    assert b"Your rating: <strong>5 of 5</strong>" in shown.data


@pytest.mark.parametrize("rating", ["0", "6", "", "3.5", "-1", "٣", "99999999999999999999"])
def test_a_rating_outside_one_to_five_is_refused_with_the_form_again(app, resolved, client, rating):
    path = _path(app.config, "rating", resolved, "ann@example.com")
    answer = _rate(client, path, rating)
    assert answer.status_code == 422
    assert b"Choose a rating from 1 to 5" in answer.data
    assert db.session.execute(select(SatisfactionRating)).first() is None


def test_a_comment_too_long_or_with_a_nul_is_refused(app, resolved, client):
    path = _path(app.config, "rating", resolved, "ann@example.com")
    assert _rate(client, path, "3", "x" * (satisfaction.MAX_COMMENT + 1)).status_code == 422
    assert _rate(client, path, "3", "bien\x00").status_code == 422
    assert db.session.execute(select(SatisfactionRating)).first() is None


def test_the_rating_form_needs_its_csrf_token(app, resolved, client):
    path = _path(app.config, "rating", resolved, "ann@example.com")
    client.get(path)
    answer = client.post(path, data={"rating": "1"})
    assert answer.status_code == 400
    assert db.session.execute(select(SatisfactionRating)).first() is None


def test_forged_altered_expired_and_crossed_links_open_nothing(clock, app, resolved, service, client):
    other = open_ticket(service, requester_email="eve@example.com", requester_name="Eve")
    good = _path(app.config, "rating", resolved, "ann@example.com")
    token = good.rsplit("/", 1)[1]
    forged = [
        good[:-2] + ("AA" if not good.endswith("AA") else "BB"),  # signature altered
        "/rate/" + "A" * 40,  # made up
        "/rate/" + "x" * 5000,  # huge
        _path(app.config, "status", resolved, "ann@example.com").replace(
            "/track/", "/rate/"
        ),  # other purpose
        _path(app.config, "rating", resolved, "eve@example.com"),  # signed, but Eve may not read it
        _path(app.config, "rating", other, "ann@example.com"),  # Ann's link to Eve's ticket
        "/track/" + token,  # a rating token is no status link
    ]
    for path in forged:
        answers = [client.get(path)] + ([_rate(client, path, "1")] if path.startswith("/rate/") else [])
        for answer in answers:
            assert answer.status_code == 404, path
            assert customer_links.INVALID.encode() in answer.data
    clock.shift(app.config["CUSTOMER_LINK_MAX_AGE"].total_seconds() + 60)
    assert client.get(good).status_code == 404
    assert db.session.execute(select(SatisfactionRating)).first() is None


def test_a_cc_participant_rates_with_their_own_link_until_they_are_removed(app, service, agent_actor, client):
    ticket = open_ticket(service)
    service.add_participant(ticket, "bob@example.com", "Bob")
    resolve(service, ticket, agent_actor)
    path = _path(app.config, "rating", ticket, "bob@example.com")
    assert _rate(client, path, "4").status_code == 303
    for participant in list(ticket.participants):
        db.session.delete(participant)
    db.session.commit()
    assert client.get(path).status_code == 404


def test_a_reopened_ticket_keeps_its_rating_and_its_page_says_it_can_change_once_resolved_again(
    app, service, agent_actor, client
):
    ticket = open_ticket(service)
    resolve(service, ticket, agent_actor)
    path = _path(app.config, "rating", ticket, "ann@example.com")
    assert _rate(client, path, "3").status_code == 303
    service.add_message(ticket, body="It dropped again.", actor=CUSTOMER, channel="email")
    db.session.commit()
    assert ticket.status == "reopened"
    page = client.get(path).get_data(as_text=True)
    assert "This ticket is closed" not in page
    assert "Your rating was 3 of 5. The ticket was reopened" in page
    assert "once it is resolved again" in page
    client.post(
        "/track/language",
        data={
            "language": "es",
            "purpose": "rating",
            "token": path.rsplit("/", 1)[1],
            "csrf_token": Portal(client).token("/track"),
        },
    )
    page = client.get(path).get_data(as_text=True)
    assert "cerrado" not in page and "Tu calificación fue 3 de 5" in page


def test_a_ticket_not_yet_resolved_cannot_be_rated_and_a_closed_one_keeps_its_rating(
    app, service, agent_actor, client
):
    ticket = open_ticket(service)
    path = _path(app.config, "rating", ticket, "ann@example.com")
    page = client.get(path)
    assert b"ratings are taken once it is resolved" in page.data
    assert _rate(client, path, "5").status_code == 409
    resolve(service, ticket, agent_actor)
    assert _rate(client, path, "3").status_code == 303
    service.change_status(ticket, "closed", actor=agent_actor)
    db.session.commit()
    assert _rate(client, path, "1").status_code == 409
    assert b"your rating was 3 of 5" in client.get(path).data
    assert db.session.execute(select(SatisfactionRating.rating)).scalars().all() == [3]


def test_a_closed_ticket_nobody_rated_still_takes_a_first_rating(app, service, agent_actor):
    ticket = open_ticket(service)
    resolve(service, ticket, agent_actor)
    service.change_status(ticket, "closed", actor=agent_actor)
    satisfaction.rate(db.session, ticket, 4, "", via="link")
    with pytest.raises(Conflict):
        satisfaction.rate(db.session, ticket, 5, "", via="link")
    with pytest.raises(ValidationError):
        satisfaction.rate(db.session, ticket, True, "", via="link")


def test_the_ticket_page_the_api_and_the_tracker_show_the_rating(app, resolved, client, portal, api, agent):
    path = _path(app.config, "rating", resolved, "ann@example.com")
    assert _rate(client, path, "2", "Lento <b>pero</b> resuelto").status_code == 303
    page = portal.get("/tickets/TKT-000001")
    assert b"Customer rating</strong><br>2 of 5" in page.data
    assert "“Lento &lt;b&gt;pero&lt;/b&gt; resuelto”".encode() in page.data
    token = Portal(client).token("/track")
    tracker = client.post(
        "/track", data={"ticket_number": "TKT-000001", "email": "ann@example.com", "csrf_token": token}
    )
    assert b"Your rating: <strong>2 of 5</strong>" in tracker.data
    public = client.post("/api/v1/public/track", json={"ticket_number": "1", "email": "ann@example.com"})
    assert public.get_json()["satisfaction"] == {"rating": 2, "comment": "Lento <b>pero</b> resuelto"}
    detail = api.get("/tickets/TKT-000001").get_json()
    assert detail["satisfaction"]["rating"] == 2
    assert detail["satisfaction"]["via"] == "link"
    assert detail["satisfaction"]["agent"]["id"] == agent.id


def test_the_status_link_offers_the_rating_only_while_it_can_be_given(app, service, agent_actor, client):
    ticket = open_ticket(service)
    status = _path(app.config, "status", ticket, "ann@example.com")
    assert b"Rate this ticket" not in client.get(status).data
    resolve(service, ticket, agent_actor)
    rate_link = re.search(rb'href="(/rate/[^"]+)"', client.get(status).data)
    assert rate_link is not None
    assert _rate(client, rate_link.group(1).decode(), "5").status_code == 303
    assert b"Change your rating" in client.get(status).data
    # The customer's thread and rating: no shared cache or browser history keeps them.
    for path in (status, rate_link.group(1).decode(), "/track"):
        assert client.get(path).headers["Cache-Control"] == "private, no-store", path


def test_a_lookup_shows_the_ticket_but_neither_rates_nor_sets_the_contacts_language(app, resolved, client):
    """The tracker form proves knowing a number and an address, not holding the mail:
    its answer's token (purpose `lookup`) reopens the view only. It used to be a
    status token, whose page offered the rating link: anyone who knew both rated the
    ticket, overwrote the customer's rating and changed their contact's language."""
    token = Portal(client).token("/track")
    found = client.post(
        "/track", data={"ticket_number": "TKT-000001", "email": "ann@example.com", "csrf_token": token}
    ).get_data(as_text=True)
    assert "Internet cortado desde ayer" in found and "/rate/" not in found
    lookup = re.search(r'name="purpose" value="lookup">\s*<input [^>]*name="token" value="([^"]+)"', found)
    assert lookup is not None, found
    lookup_token = lookup.group(1)
    # It opens no status, rating or language-setting page of a mailed link.
    assert client.get(f"/track/{lookup_token}").status_code == 404
    assert client.get(f"/rate/{lookup_token}").status_code == 404
    assert _rate(client, f"/rate/{lookup_token}", "1", "awful").status_code == 404
    switched = client.post(
        "/track/language",
        data={"language": "es", "purpose": "status", "token": lookup_token, "csrf_token": token},
    )
    assert switched.status_code == 404
    # Its own page: the view again, in the language chosen, without a rating link.
    switched = client.post(
        "/track/language",
        data={"language": "es", "purpose": "lookup", "token": lookup_token, "csrf_token": token},
    )
    assert switched.status_code == 303
    assert switched.headers["Location"] == f"/track/lookup/{lookup_token}"
    again = client.get(switched.headers["Location"])
    page = again.get_data(as_text=True)
    assert again.status_code == 200 and "Consulta tu ticket" in page and "Internet cortado desde ayer" in page
    assert "/rate/" not in page and again.headers["Cache-Control"] == "private, no-store"
    assert db.session.execute(select(SatisfactionRating)).first() is None
    db.session.expire_all()
    assert db.session.get(Ticket, resolved.id).requester.language in ("", None)
    # A lookup token is refused where a mailed link is asked for, and the other way round.
    status = _path(app.config, "status", resolved, "ann@example.com")
    assert client.get("/track/lookup/" + status.rsplit("/", 1)[1]).status_code == 404
    # The mailed status link still offers the rating, as before.
    assert re.search(r'href="/rate/[^"]+"', client.get(status).get_data(as_text=True))


def test_statistics_and_the_dashboard_give_the_average_overall_and_per_agent(
    app, service, agent, agent_actor, admin, api, portal
):
    other = Actor.staff(admin)
    for n, (rating, staff) in enumerate(((5, agent), (2, agent), (4, admin))):
        ticket = open_ticket(service, requester_email=f"c{n}@example.com")
        service.assign(ticket, staff.id, actor=agent_actor if staff is agent else other)
        resolve(service, ticket, agent_actor)
        satisfaction.rate(db.session, ticket, rating, "", via="link")
    db.session.commit()
    stats = api.get("/stats").get_json()
    assert stats["satisfaction"] == {"count": 3, "average": 3.67}
    by_agent = {row["email"]: row["satisfaction"] for row in stats["by_agent"]}
    assert by_agent == {agent.email: {"count": 2, "average": 3.5}, admin.email: {"count": 1, "average": 4.0}}
    page = portal.get("/dashboard").get_data(as_text=True)
    assert "3.67 / 5" in page and "3 ratings" in page
    assert "3.5 / 5" in page
    assert "Customer satisfaction per day" in page
    trend = daily_trends(db.session, 30).satisfaction_average
    assert trend[-1] == 3.67 and trend[:-1] == [None] * 29
