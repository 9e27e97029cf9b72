"""Merging tickets (later mail, replies by number and tracker lookups lead to the
survivor), related-ticket links and tags (docs/isp-operations.md)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from helpdesk.errors import Conflict
from helpdesk.extensions import db
from helpdesk.models import Tag, Ticket, TicketHistory
from helpdesk.services import Actor, tags
from helpdesk.services.teams import TeamsService
from helpdesk.services.tickets import MAX_MERGE_CHAIN, survivor
from tests.support.app import Portal
from tests.support.database import open_ticket, tickets
from tests.support.mail import message


def _open(api, subject: str = "Sin internet", email: str = "a@example.com") -> str:  # type: ignore[no-untyped-def]
    answer = api.post("/tickets", {"subject": subject, "description": "?", "requester_email": email})
    assert answer.status_code == 201
    return answer.get_json()["number"]


def _history(number: str, field: str) -> list[tuple[str | None, str | None]]:
    ticket = db.session.execute(select(Ticket).where(Ticket.number == int(number[-6:]))).scalar_one()
    rows = db.session.execute(
        select(TicketHistory.old_value, TicketHistory.new_value)
        .where(TicketHistory.ticket_id == ticket.id, TicketHistory.field == field)
        .order_by(TicketHistory.id)
    ).all()
    return [tuple(row) for row in rows]  # type: ignore[misc]


# -- tags ----------------------------------------------------------------------------------------


def test_tags_are_set_normalized_recorded_and_filtered_on(api, portal):
    first, second, _third = _open(api), _open(api), _open(api)
    answer = api.put(f"/tickets/{first}/tags", {"tags": ["Fibra", "olt-norte", "fibra", "fibra-óptica"]})
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["tags"] == ["fibra", "fibra-óptica", "olt-norte"]
    api.put(f"/tickets/{second}/tags", {"tags": ["fibra"]})
    listed = api.get("/tickets?tag=FIBRA").get_json()["items"]
    assert [(item["number"], item["tags"]) for item in listed] == [
        (second, ["fibra"]),
        (first, ["fibra", "fibra-óptica", "olt-norte"]),
    ]
    assert api.get("/tickets?tag=olt-norte").get_json()["total"] == 1
    assert api.get("/tickets?tag=nothing").get_json()["total"] == 0
    api.put(f"/tickets/{first}/tags", {"tags": ["olt-norte"]})
    assert _history(first, "tags") == [
        (None, "fibra, fibra-óptica, olt-norte"),
        ("fibra, fibra-óptica, olt-norte", "olt-norte"),
    ]
    page = portal.get("/tickets?tag=fibra").get_data(as_text=True)
    assert second in page and first not in page
    saved = portal.post(f"/tickets/{second}/tags", {"tags": "vip, fibra  norte"}, page=f"/tickets/{second}")
    assert saved.status_code == 302
    assert api.get(f"/tickets/{second}").get_json()["tags"] == ["fibra", "norte", "vip"]


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("İzmir", "i\u0307zmir"),  # lower case of İ is i and a combining dot
        ("फाइबर", "फाइबर"),  # Devanagari vowel signs are combining marks
        ("ไฟเบอร์", "ไฟเบอร์"),
        ("ফাইবার", "ফাইবার"),
        ("cafe\u0301", "café"),  # decomposed, stored composed: one tag either way
    ],
)
def test_tags_take_letters_of_any_script(typed, stored):
    """Python's \\w leaves out combining marks, which many scripts' words need."""
    assert tags.read([typed]) == [stored]


@pytest.mark.parametrize(
    "value",
    [["has space"], ["<b>"], ["x" * 41], [f"t{n}" for n in range(21)], [7], "fibra", ["_lead"], ["a\x00"]],
)
def test_a_bad_tag_is_a_422_and_changes_nothing(api, value):
    number = _open(api)
    answer = api.put(f"/tickets/{number}/tags", {"tags": value})
    assert answer.status_code == 422
    assert api.get(f"/tickets/{number}").get_json()["tags"] == []
    assert db.session.execute(select(Tag)).first() is None


# -- links ---------------------------------------------------------------------------------------


def test_links_go_both_ways_once_and_are_recorded_on_both(api, portal):
    outage, complaint = _open(api, "Caída OLT norte"), _open(api, "Sin servicio")
    linked = api.post(f"/tickets/{complaint}/links", {"ticket": outage.lower()})
    assert linked.status_code == 200
    assert linked.get_json()["related"] == [outage]
    assert api.get(f"/tickets/{outage}").get_json()["related"] == [complaint]
    assert api.post(f"/tickets/{outage}/links", {"ticket": complaint}).status_code == 200  # already: once
    assert _history(outage, "link") == [(None, complaint)]
    assert _history(complaint, "link") == [(None, outage)]
    assert api.post(f"/tickets/{outage}/links", {"ticket": outage}).status_code == 422
    assert api.post(f"/tickets/{outage}/links", {"ticket": "TKT-999999"}).status_code == 404
    page = portal.get(f"/tickets/{outage}").get_data(as_text=True)
    assert f">{complaint}</a> Sin servicio" in page
    removed = portal.post(
        f"/tickets/{outage}/links", {"ticket": complaint, "action": "remove"}, page=f"/tickets/{outage}"
    )
    assert removed.status_code == 302
    assert api.get(f"/tickets/{complaint}").get_json()["related"] == []
    assert _history(complaint, "link") == [(None, outage), (outage, None)]
    assert api.delete(f"/tickets/{outage}/links/{complaint}").status_code == 200  # not linked: nothing to do


def test_unlinking_tickets_that_were_never_linked_says_so_and_records_nothing(api, portal):
    """The API's DELETE of a link that is not there answers 200, as linking twice
    does (nothing to do), but the portal said "Link removed." of two tickets that
    had never been linked. It now says they were not linked (in Spanish:
    tests/test_staff_languages.py), and neither ticket gets a history row."""
    outage, complaint = _open(api, "Caída OLT norte"), _open(api, "Sin servicio")
    form = {"ticket": complaint, "action": "remove"}
    assert portal.post(f"/tickets/{outage}/links", form, page=f"/tickets/{outage}").status_code == 302
    page = portal.get(f"/tickets/{outage}").get_data(as_text=True)
    assert "These tickets were not linked." in page and "Link removed." not in page
    assert api.delete(f"/tickets/{outage}/links/{complaint}").status_code == 200
    assert _history(outage, "link") == [] and _history(complaint, "link") == []


def test_a_ticket_the_agent_may_not_see_cannot_be_linked_or_merged_into(app, api, agent, service):
    teams = TeamsService(db.session)
    teams.add("field_ops")
    db.session.commit()
    hidden = open_ticket(service, team="field_ops")
    visible = _open(api)
    app.config["AGENT_VISIBILITY"] = "team"
    number = service.display_number(hidden)
    assert api.post(f"/tickets/{visible}/links", {"ticket": number}).status_code == 404
    assert api.post(f"/tickets/{visible}/merge", {"into": number}).status_code == 404
    assert api.get(f"/tickets/{visible}").get_json()["status"] == "new"


def test_merging_into_a_visible_ticket_whose_survivor_is_hidden_is_not_found(app, api, agent, service):
    """A visible ticket merged earlier into a hidden one leads there: the old code merged
    into the hidden survivor, wrote the customer into it and answered with all of it,
    internal notes included."""
    TeamsService(db.session).add("field_ops")
    db.session.commit()
    hidden = open_ticket(service, subject="Gate code 4711", team="field_ops")
    bridge, mine = _open(api, "Bridge"), _open(api, "Mine", "carl@example.com")
    assert api.post(f"/tickets/{bridge}/merge", {"into": service.display_number(hidden)}).status_code == 200
    app.config["AGENT_VISIBILITY"] = "team"
    answer = api.post(f"/tickets/{mine}/merge", {"into": bridge})
    assert answer.status_code == 404, answer.get_json()
    assert "4711" not in answer.get_data(as_text=True)
    assert api.get(f"/tickets/{mine}").get_json()["status"] == "new"
    db.session.expire_all()
    assert "carl@example.com" not in [p.email for p in db.session.get(Ticket, hidden.id).participants]
    app.config["AGENT_VISIBILITY"] = "all"  # who may see the survivor merges into it
    merged = api.post(f"/tickets/{mine}/merge", {"into": bridge}).get_json()
    assert merged["number"] == service.display_number(hidden)


def test_a_related_ticket_the_agent_may_not_see_is_left_out_of_the_list(app, api, portal, service):
    """The list showed a hidden ticket's subject and status to whoever could see the
    other end of the link."""
    TeamsService(db.session).add("field_ops")
    db.session.commit()
    hidden = open_ticket(service, subject="Gate code 4711", team="field_ops")
    mine, other = _open(api, "Mine"), _open(api, "Other")
    for number in (service.display_number(hidden), other):
        assert api.post(f"/tickets/{mine}/links", {"ticket": number}).status_code == 200
    app.config["AGENT_VISIBILITY"] = "team"
    assert api.get(f"/tickets/{mine}").get_json()["related"] == [other]
    page = portal.get(f"/tickets/{mine}").get_data(as_text=True)
    assert "4711" not in page and f">{other}</a>" in page


# -- merge ---------------------------------------------------------------------------------------


def test_a_merged_ticket_closes_and_its_customer_follows_the_survivor(api, portal):
    duplicate = _open(api, "Internet lento", "rosa@example.com")
    survivor = _open(api, "Caída OLT norte", "mario@example.com")
    answer = api.post(f"/tickets/{duplicate}/merge", {"into": survivor, "reason": "Same outage"})
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["number"] == survivor
    assert body["cc"] == ["rosa@example.com"]
    merged = api.get(f"/tickets/{duplicate}").get_json()
    assert (merged["status"], merged["merged_into"]) == ("closed", survivor)
    assert _history(duplicate, "merge") == [(None, survivor)]
    assert _history(survivor, "merge") == [(None, duplicate)]
    page = portal.get(f"/tickets/{duplicate}").get_data(as_text=True)
    assert "Merged into" in page and f">{survivor}</a>" in page
    assert "Merge and close this ticket" not in page
    # Numbering is untouched: the next ticket takes the next number.
    assert _open(api) == "TKT-000003"


def test_a_merged_ticket_is_not_worked_again_its_survivor_is(api):
    """Reopened, moved on and escalated, a merged ticket was worked as a live one
    (in the queue, its SLA clock running) while its mail went to the survivor."""
    duplicate, kept = _open(api), _open(api)
    assert api.post(f"/tickets/{duplicate}/merge", {"into": kept}).status_code == 200
    for path, body in (("status", {"status": "reopened"}), ("escalate", {"level": "L2", "reason": "Fibra"})):
        answer = api.post(f"/tickets/{duplicate}/{path}", body)
        assert answer.status_code == 409, answer.get_json()
        assert answer.get_json()["error"]["message"] == f"{duplicate} is already merged into {kept}."
    merged = api.get(f"/tickets/{duplicate}").get_json()
    assert (merged["status"], merged["merged_into"]) == ("closed", kept)


def test_merging_refuses_itself_twice_and_cancelled_tickets_and_follows_a_merged_target(
    api, service, agent_actor
):
    a, b, c = _open(api), _open(api), _open(api)
    assert api.post(f"/tickets/{a}/merge", {"into": a}).status_code == 409
    assert api.post(f"/tickets/{b}/merge", {"into": c}).status_code == 200
    # Into b, which lives on as c: the survivor is c.
    assert api.post(f"/tickets/{a}/merge", {"into": b}).get_json()["number"] == c
    again = api.post(f"/tickets/{a}/merge", {"into": c})
    assert again.status_code == 409 and "already merged into" in again.get_json()["error"]["message"]
    assert api.post(f"/tickets/{c}/merge", {"into": a}).status_code == 409  # a lives on as c itself
    cancelled = open_ticket(service)
    service.change_status(cancelled, "cancelled", actor=agent_actor, reason="spam")
    db.session.commit()
    assert api.post(f"/tickets/{c}/merge", {"into": "TKT-000004"}).status_code == 409
    assert api.post(f"/tickets/{c}/merge", {"into": "TKT-999999"}).status_code == 404
    assert api.post(f"/tickets/{c}/merge", {"into": "x", "reason": "r" * 2001}).status_code in (404, 422)


def test_a_merged_ticket_points_at_the_last_survivor_however_many_merges_follow(api, service, agent_actor):
    """Each merge allowed alone, TKT-1 into TKT-2, TKT-2 into TKT-3, … TKT-21 into
    TKT-22: the walk to the survivor stopped after MAX_MERGE_CHAIN steps at TKT-21,
    itself merged, so a customer's message to TKT-1 reopened TKT-21 and a merge into
    TKT-1 went into TKT-21. A merge now moves the tickets merged into the merged one
    to its survivor: none is ever more than one step from it."""
    chain = [open_ticket(service, requester_email=f"c{n}@example.com") for n in range(MAX_MERGE_CHAIN + 2)]
    numbers = [service.display_number(ticket) for ticket in chain]
    for merged, into in zip(numbers, numbers[1:], strict=False):
        assert api.post(f"/tickets/{merged}/merge", {"into": into}).status_code == 200
    last = numbers[-1]
    assert {api.get(f"/tickets/{n}").get_json()["merged_into"] for n in numbers[:-1]} == {last}
    assert _history(numbers[0], "merge") == [(None, numbers[1])] + [
        (numbers[k], numbers[k + 1]) for k in range(1, MAX_MERGE_CHAIN + 1)
    ]
    first = service.get(numbers[0])
    written = service.add_message(
        first, body="Any news?", actor=Actor.customer("c0@example.com"), channel="email"
    )
    db.session.commit()
    assert service.display_number(written.ticket) == last
    statuses = {n: api.get(f"/tickets/{n}").get_json()["status"] for n in numbers}
    assert set(list(statuses.values())[:-1]) == {"closed"}, statuses
    late = _open(api)
    assert api.post(f"/tickets/{late}/merge", {"into": numbers[0]}).get_json()["number"] == last


def test_a_chain_of_merges_too_long_to_follow_is_a_conflict_not_a_merged_ticket(service):
    """Stored before merges moved the tickets merged into the merged one (migration
    0042 flattens those), a chain longer than MAX_MERGE_CHAIN ended the walk on a
    ticket itself merged, which was then written on and merged into as the survivor."""
    chain = [open_ticket(service) for _ in range(MAX_MERGE_CHAIN + 2)]
    for merged, into in zip(chain, chain[1:], strict=False):
        merged.merged_into_id = into.id
    db.session.commit()
    with pytest.raises(Conflict):
        survivor(db.session, chain[0])
    assert survivor(db.session, chain[2]) is chain[-1]


def test_later_mail_and_tracker_lookups_of_a_merged_number_reach_the_survivor(
    gateway, senders, api, client, service
):
    assert gateway.send(message(subject="Internet lento", body="Desde ayer."))[0] == 250  # ann
    first_mail = db.session.execute(select(Ticket)).scalar_one().messages[0].inbound_mail
    assert first_mail is not None and first_mail.message_id
    survivor = _open(api, "Caída OLT norte", "zed@other.example")
    assert api.post("/tickets/TKT-000001/merge", {"into": survivor}).status_code == 200
    code, text = gateway.send(message(subject="Re: [TKT-000001] Internet lento", body="Sigue igual."))
    assert code == 250 and b"TKT-000002" in text
    reply = message(
        subject="Re: Internet lento",
        body="¿Alguna novedad?",
        in_reply_to=f"<{first_mail.message_id}>",
    )
    assert gateway.send(reply)[0] == 250
    merged, kept = tickets()
    assert [m.body for m in merged.messages] == ["Desde ayer."]
    assert [m.body for m in kept.messages][-2:] == ["Sigue igual.", "¿Alguna novedad?"]
    token = Portal(client).token("/track")
    page = client.post(
        "/track", data={"ticket_number": "TKT-000001", "email": "ann@example.com", "csrf_token": token}
    ).get_data(as_text=True)
    # The survivor's number under Ann's own subject (below: her own conversation only).
    assert "TKT-000002 · Internet lento" in page and "Caída OLT norte" not in page
    assert "Sigue igual." in page
    stranger = client.post(
        "/track", data={"ticket_number": "TKT-000001", "email": "eve@example.com", "csrf_token": token}
    )
    assert stranger.status_code == 404


def test_the_tracker_shows_a_merged_in_customer_their_own_conversation_only(client, service, agent_actor):
    """Bob's ticket is merged into Ann's outage ticket. The tracker (lookup, API, the
    status link of every mail) showed him the survivor as Ann sees it: her subject
    (account and street), her description and messages, and the staff reply written
    to her before the merge; and showed Ann what Bob wrote since (files and customer
    pages review). Each now reads their own conversation, as their mail does
    (docs/outbound-mail.md, "Merged tickets"): its subject, its people's messages, and
    the staff replies mailed to them."""
    ann = open_ticket(service, subject="Sin internet, cuenta 88812, Durango 14", description="PIN 4321")
    bob = Actor.customer("bob@example.org", "Bob")
    duplicate = open_ticket(
        service, actor=bob, requester_email="bob@example.org", subject="No internet", description="Desde ayer"
    )
    service.add_message(ann, body="Revisamos la cuenta 88812", actor=agent_actor, channel="web")
    service.merge(duplicate, ann, actor=agent_actor)
    service.add_message(duplicate, body="Mi tarjeta acaba en 9911", actor=bob, channel="email")
    service.add_message(ann, body="Clave hunter2", actor=Actor.customer("ann@example.com"), channel="email")
    service.add_message(ann, body="Estamos en ello", actor=agent_actor, channel="web")
    db.session.commit()

    def view(number: str, email: str) -> tuple[str, str, list[str]]:
        body = {"ticket_number": number, "email": email}
        answer = client.post("/api/v1/public/track", json=body).get_json()
        return answer["number"], answer["subject"], [reply["body"] for reply in answer["replies"]]

    assert view("TKT-000002", "bob@example.org") == (
        "TKT-000001",
        "No internet",
        ["Mi tarjeta acaba en 9911", "Estamos en ello"],
    )
    assert view("TKT-000001", "ann@example.com") == (
        "TKT-000001",
        "Sin internet, cuenta 88812, Durango 14",
        ["PIN 4321", "Revisamos la cuenta 88812", "Clave hunter2", "Estamos en ello"],
    )
