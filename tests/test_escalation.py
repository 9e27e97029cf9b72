"""Escalation L1-L3: the API call, the portal control, history, the mail to the new
assignee, and SLA_BREACH_RAISES_PRIORITY (docs/isp-operations.md)."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from flask import Flask, current_app
from sqlalchemy import select

from helpdesk.extensions import db
from helpdesk.inbound.ingest import Envelope, Outcome, ingest
from helpdesk.models import Contact, OutboxMessage, StaffUser, Ticket, TicketHistory
from helpdesk.services import TicketsService, contacts
from helpdesk.services.lifecycle_jobs import check_sla
from helpdesk.services.staff import StaffService
from tests.support.app import Portal
from tests.support.database import CUSTOMER, open_ticket
from tests.support.mail import message
from tests.support.outbox import deliver, text_of
from tests.support.sink import Sink


@pytest.fixture
def second_level(app: Flask) -> StaffUser:
    user, _ = StaffService(db.session).create(
        email="sol@helpdesk.test", name="Sol Segundo", role="agent", password="second-password-1"
    )
    db.session.commit()
    return user


def _opened(api) -> str:  # type: ignore[no-untyped-def]
    body = api.post(
        "/tickets", {"subject": "Caída en Col. Roma", "description": "?", "requester_email": "a@example.com"}
    )
    return body.get_json()["number"]


def test_escalating_to_someone_records_it_and_mails_them(app, api, agent, second_level, sink: Sink):
    number = _opened(api)
    answer = api.post(
        f"/tickets/{number}/escalate",
        {"level": "L2", "assignee": second_level.email, "reason": "Three customers on the same OLT."},
    )
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert (body["escalation_level"], body["assignee"]["id"], body["escalated_to"]["id"]) == (
        "L2",
        second_level.id,
        second_level.id,
    )
    assert body["escalated_at"] is not None
    rows = [(h["field"], h["from"], h["to"], h["reason"]) for h in body["history"] if h["field"] != "status"]
    assert rows == [
        ("assignee", None, second_level.email, ""),
        ("escalation", "L1", "L2", "Three customers on the same OLT."),
    ]
    mails = [mail for mail in deliver(app, sink) if mail["To"].endswith(second_level.email + ">")]
    assert len(mails) == 1
    assert mails[0]["Subject"] == f"[{number}] Escalated: Caída en Col. Roma"
    text = text_of(mails[0])
    assert "Escalated from L1 to L2 by Agnes Agent <agent@helpdesk.test>:" in text
    assert "Three customers on the same OLT." in text
    assert f"/tickets/{number}" in text
    staff_rows = db.session.execute(
        select(OutboxMessage.kind).where(OutboxMessage.kind == "escalation")
    ).all()
    assert len(staff_rows) == 1
    # L2 → L3 without naming anyone: recorded, nobody in particular is told.
    third = api.post(f"/tickets/{number}/escalate", {"level": "L3", "reason": "Needs the core network team."})
    assert (third.get_json()["escalation_level"], third.get_json()["escalated_to"]) == ("L3", None)
    assert third.get_json()["assignee"]["id"] == second_level.id
    assert len(db.session.execute(select(OutboxMessage).where(OutboxMessage.kind == "escalation")).all()) == 1


TRUSTED = "mx.helpdesk.test"


def _escalation_states() -> list[tuple[str, str]]:
    rows = db.session.execute(
        select(OutboxMessage.state, OutboxMessage.last_error)
        .where(OutboxMessage.kind == "escalation")
        .order_by(OutboxMessage.id)
    )
    return [(state, error.split(" ")[0]) for state, error in rows]


def _sols_mark(second_level: StaffUser) -> object:
    db.session.expire_all()
    return db.session.execute(
        select(Contact.undeliverable_since).where(Contact.email == second_level.email)
    ).scalar()


def test_a_staff_address_refused_once_is_shown_on_the_mail_page_and_cleared_by_its_proven_mail(
    app, api, portal, second_level, sink: Sink
):
    """One 5.1.1 at RCPT (a directory sync) marks Sol's address undeliverable, and
    every later escalation to Sol was skipped without a word: Sol's own mail was
    handled as staff, which never cleared the mark (docs/outbound-mail.md, "Loop
    rules"). The Mail page says so now, and Sol's mail with proof clears it; a mail
    merely claiming Sol's address does not."""
    number = _opened(api)
    sink.refuse_rcpt[second_level.email] = "550 5.1.1 <sol@helpdesk.test>: unknown (directory sync)"
    escalate = {"level": "L2", "assignee": second_level.id, "reason": "Three customers on one OLT."}
    assert api.post(f"/tickets/{number}/escalate", escalate).status_code == 200
    deliver(app, sink)
    sink.refuse_rcpt.clear()
    assert api.post(f"/tickets/{number}/escalate", {**escalate, "level": "L3"}).status_code == 200
    deliver(app, sink)
    assert _escalation_states() == [("failed", "550"), ("skipped", "undeliverable")]
    page = portal.get("/mail").get_data(as_text=True)
    assert "Alerts to these staff members are not mailed" in page
    assert "Sol Segundo &lt;sol@helpdesk.test&gt;: marked undeliverable since" in page
    assert "1 alert skipped since." in page

    app.config.update(TRUSTED_AUTHSERV_ID=TRUSTED)
    envelope = Envelope(second_level.email, ("support@helpdesk.test",), "smtp")
    claimed = message(sender=second_level.email, subject=f"Re: [{number}] Caída en Col. Roma", body="Mine.")
    ingest(claimed.as_bytes(), envelope, app.config)
    db.session.commit()
    assert _sols_mark(second_level) is not None  # no proof: anyone may write a From
    claimed["Authentication-Results"] = f"{TRUSTED}; dmarc=pass header.from=helpdesk.test"
    claimed.replace_header("Message-ID", "<sol-2@helpdesk.test>")
    assert ingest(claimed.as_bytes(), envelope, app.config).outcome is Outcome.APPENDED
    db.session.commit()
    assert _sols_mark(second_level) is None
    assert "Alerts to these staff members" not in portal.get("/mail").get_data(as_text=True)
    again = _opened(api)
    assert api.post(f"/tickets/{again}/escalate", escalate).status_code == 200
    assert [mail["Subject"] for mail in deliver(app, sink) if second_level.email in mail["To"]] == [
        f"[{again}] Escalated: Caída en Col. Roma"
    ]


def test_an_admin_clears_a_staff_addresss_undeliverable_mark_on_the_staff_page(
    app, admin_portal, admin, agent, second_level, caplog
):
    """The admin's clearing is logged with who they are (docs/outbound-mail.md)."""
    caplog.set_level(logging.INFO, logger="helpdesk.services.contacts")
    contacts.mark_undeliverable(db.session, second_level.email)
    db.session.commit()
    page = admin_portal.get("/admin/staff").get_data(as_text=True)
    assert "alerts are not mailed" in page and f"/admin/staff/{second_level.id}/deliverable" in page
    clear = f"/admin/staff/{second_level.id}/deliverable"
    assert admin_portal.post(clear, csrf=False).status_code == 400
    as_agent = Portal(app.test_client())
    assert as_agent.login(agent.email, "agent-password-1").status_code == 302
    assert as_agent.post(clear).status_code == 403
    assert _sols_mark(second_level) is not None
    done = admin_portal.post(clear, page="/admin/staff")
    assert done.status_code == 302
    assert _sols_mark(second_level) is None
    page = admin_portal.get("/admin/staff").get_data(as_text=True)
    assert "Alerts to sol@helpdesk.test are mailed again." in page
    assert "alerts are not mailed" not in page
    assert [r.getMessage() for r in caplog.records if r.name == "helpdesk.services.contacts"] == [
        "undeliverable mark cleared: address='sol@helpdesk.test' contacts=['sol@helpdesk.test'] "
        f"by='Ada Admin <admin@helpdesk.test>' kind=staff staff_id={admin.id}"
    ]


def test_escalating_to_oneself_mails_nobody(api, agent):
    number = _opened(api)
    answer = api.post(
        f"/tickets/{number}/escalate", {"level": "L2", "assignee": agent.id, "reason": "Mine now."}
    )
    assert answer.status_code == 200
    assert db.session.execute(select(OutboxMessage).where(OutboxMessage.kind == "escalation")).first() is None


def test_a_reason_with_control_characters_is_refused_and_lines_are_kept(app, api, second_level, sink: Sink):
    """An escape sequence or a bell typed in the reason was stored in the history and
    reached the escalation mail's text, where a terminal acts on it; refused as a
    password holding one is (docs/isp-operations.md). Lines and tabs are text."""
    number = _opened(api)
    for reason in ("Fibra\x1b[2J cortada", "Urgente\x07", "Caída\x9b31m norte", "OLT \u202enorte"):
        body = {"level": "L2", "assignee": second_level.id, "reason": reason}
        refused = api.post(f"/tickets/{number}/escalate", body)
        assert refused.get_json()["error"]["fields"] == {"reason": "must not contain control characters"}
    assert db.session.execute(select(OutboxMessage).where(OutboxMessage.kind == "escalation")).first() is None
    # The one rule for reasons: a status move's, mailed to the customer, too.
    moved = api.post(f"/tickets/{number}/status", {"status": "cancelled", "reason": "Spam\x1b]0;x\x07"})
    assert moved.get_json()["error"]["fields"] == {"reason": "must not contain control characters"}
    body = {"level": "L2", "assignee": second_level.id, "reason": "Tres clientes:\r\n\tOLT norte"}
    assert api.post(f"/tickets/{number}/escalate", body).status_code == 200
    (mail,) = [mail for mail in deliver(app, sink) if mail["To"].endswith(second_level.email + ">")]
    assert "Tres clientes:\n\tOLT norte" in text_of(mail)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"level": "L4", "reason": "x"}, "level"),
        ({"level": "l2", "reason": "x"}, "level"),
        ({"level": "L2"}, "reason"),
        ({"level": "L2", "reason": "   "}, "reason"),
        ({"level": "L2", "reason": "x" * 2001}, "reason"),
        ({"level": "L2", "reason": "x", "assignee": "ghost@example.com"}, "assignee"),
        ({"level": "L2", "reason": "x", "assignee": 99999}, "assignee"),
        ({"level": 2, "reason": "x"}, "level"),
    ],
)
def test_a_bad_escalation_is_a_422_naming_the_field(api, body, field):
    number = _opened(api)
    answer = api.post(f"/tickets/{number}/escalate", body)
    assert answer.status_code == 422
    assert field in answer.get_json()["error"]["fields"]
    assert api.get(f"/tickets/{number}").get_json()["escalation_level"] == "L1"


def test_escalation_only_goes_up_and_only_while_the_ticket_is_worked_on(api, service, agent_actor):
    number = _opened(api)
    assert api.post(f"/tickets/{number}/escalate", {"level": "L1", "reason": "x"}).status_code == 409
    assert api.post(f"/tickets/{number}/escalate", {"level": "L3", "reason": "x"}).status_code == 200
    down = api.post(f"/tickets/{number}/escalate", {"level": "L2", "reason": "x"})
    assert down.status_code == 409
    assert "escalation only goes up" in down.get_json()["error"]["message"]
    other = open_ticket(service)
    service.change_status(other, "cancelled", actor=agent_actor, reason="spam")
    db.session.commit()
    refused = api.post("/tickets/TKT-000002/escalate", {"level": "L2", "reason": "x"})
    assert refused.status_code == 409
    assert "only open tickets are escalated" in refused.get_json()["error"]["message"]
    assert api.post("/tickets/TKT-999999/escalate", {"level": "L2", "reason": "x"}).status_code == 404


def test_the_portal_escalates_from_the_ticket_page(portal, service, second_level):
    open_ticket(service)
    page = portal.get("/tickets/TKT-000001").get_data(as_text=True)
    assert 'aria-label="Escalation"' in page and '<option value="L2">' in page
    answer = portal.post(
        "/tickets/TKT-000001/escalate",
        {"level": "L2", "assignee": str(second_level.id), "reason": "Fibra cortada"},
        page="/tickets/TKT-000001",
    )
    assert answer.status_code == 302
    page = portal.get("/tickets/TKT-000001").get_data(as_text=True)
    assert "Escalated to L2." in page
    assert "to Sol Segundo" in page
    assert '<option value="L2">' not in page  # only higher levels are offered
    refused = portal.post(
        "/tickets/TKT-000001/escalate", {"level": "L2", "reason": "again"}, page="/tickets/TKT-000001"
    )
    assert "already at L2" in portal.get(refused.headers["Location"]).get_data(as_text=True)
    ticket = db.session.execute(select(Ticket)).scalar_one()
    db.session.refresh(ticket)
    assert (ticket.escalation_level, ticket.escalated_to_id, ticket.assignee_id) == (
        "L2",
        second_level.id,
        second_level.id,
    )


def test_a_breach_raises_the_priority_one_step_when_configured(app, service: TicketsService, clock):
    app.config["SLA_BREACH_RAISES_PRIORITY"] = True
    low = open_ticket(service, priority="low")
    urgent = open_ticket(service, priority="urgent")
    clock.shift(timedelta(days=8))  # every target of both has run out
    result = check_sla(db.session, current_app.config)
    db.session.commit()
    assert len(result.breaches) == 4 and result.raised == 1
    db.session.expire_all()
    assert (low.priority, urgent.priority) == ("medium", "urgent")
    rows = db.session.execute(
        select(
            TicketHistory.ticket_id, TicketHistory.old_value, TicketHistory.new_value, TicketHistory.automated
        ).where(TicketHistory.field == "priority")
    ).all()
    assert [tuple(row) for row in rows] == [(low.id, "low", "medium", True)]
    assert check_sla(db.session, current_app.config).raised == 0  # each breach raises once
    app.config["SLA_BREACH_RAISES_PRIORITY"] = False
    quiet = open_ticket(service, priority="low")
    clock.shift(timedelta(days=8))
    assert check_sla(db.session, current_app.config).raised == 0
    db.session.commit()
    db.session.refresh(quiet)
    assert quiet.priority == "low"


@pytest.mark.parametrize("pause", ["pending_customer", "reopened"])
def test_a_raised_priority_sets_no_tighter_target_when_a_pause_ends(
    app, service: TicketsService, agent_actor, clock, pause
):
    """The raise leaves the due times as they were, yet ending a pause (the customer
    answering a pending ticket, a reopen) computed them again from the creation time
    with the raised priority: a low ticket breached on its first answer became
    medium, got medium's 3-day resolution target for its 7-day one, breached it on
    day 3 and was raised to high (found by the SLA review). A pause moves the due
    time on by the paused time; only staff choosing a priority sets new targets."""
    app.config["SLA_BREACH_RAISES_PRIORITY"] = True
    ticket = open_ticket(service, priority="low")
    service.mark_viewed(ticket, actor=agent_actor)
    service.change_status(ticket, "in_progress", actor=agent_actor)
    db.session.commit()
    resolution_due = ticket.resolution_due_at
    clock.shift(timedelta(hours=25))  # low's first answer is due in 24 hours
    assert check_sla(db.session, current_app.config).raised == 1
    db.session.commit()
    db.session.refresh(ticket)
    assert (ticket.priority, ticket.resolution_due_at) == ("medium", resolution_due)
    service.add_message(ticket, body="¿Me manda el registro?", actor=agent_actor, channel="web")
    if pause == "pending_customer":
        service.change_status(ticket, "pending_customer", actor=agent_actor)
        db.session.commit()
        clock.shift(timedelta(minutes=10))
        service.add_message(ticket, body="Aquí está.", actor=CUSTOMER, channel="email")
    else:
        service.change_status(ticket, "resolved", actor=agent_actor)
        db.session.commit()
        clock.shift(timedelta(minutes=10))
        service.change_status(ticket, "reopened", actor=CUSTOMER)
    db.session.commit()
    db.session.refresh(ticket)
    assert ticket.resolution_due_at == resolution_due + timedelta(minutes=10)
    clock.shift(timedelta(days=2))  # day 3: medium's target, far from low's 7 days
    assert not check_sla(db.session, current_app.config).breaches
    db.session.commit()
    db.session.refresh(ticket)
    assert (ticket.priority, ticket.resolution_breached) == ("medium", None)
    service.update(ticket, actor=agent_actor, priority="high")  # staff choose: new targets
    db.session.commit()
    assert ticket.resolution_due_at == ticket.created_at + timedelta(hours=24, minutes=10)


@pytest.mark.parametrize(
    "account,contact",
    [("jana@b\u00fccher.example", "jana@xn--bcher-kva.example"), ("jana@\uff42\u00fccher.example", None)],
    ids=["other-spelling", "fullwidth"],
)
def test_a_staff_address_marked_in_its_other_spelling_is_shown_and_cleared(
    app, admin_portal, account, contact
):
    """A bounce marks the contact it finds in either spelling of an internationalised
    domain, and the sender skips alerts for a mark in either: Jana's account is
    `jana@bücher.example`, the contact she once mailed in from
    `jana@xn--bcher-kva.example`. Her alerts were skipped while the Mail and Staff
    pages named nobody, and the admin's button cleared only the account's spelling
    (found by review). An account typed in fullwidth letters is marked on the form
    the relay is given (`contacts.mark_undeliverable`), and is named and cleared
    too, the marks read as the sender reads them."""
    user, _ = StaffService(db.session).create(
        email=account, name="Jana Brandt", role="agent", password="jana-password-1"
    )
    if contact is not None:
        db.session.add(Contact(email=contact, name="Jana Brandt"))
    db.session.commit()
    contacts.mark_undeliverable(db.session, user.email)
    db.session.commit()
    assert db.session.execute(select(Contact.email)).scalars().all() == ["jana@xn--bcher-kva.example"]
    assert f"Jana Brandt &lt;{account}&gt;: marked undeliverable since" in (
        admin_portal.get("/mail").get_data(as_text=True)
    )
    clear = f"/admin/staff/{user.id}/deliverable"
    assert clear in admin_portal.get("/admin/staff").get_data(as_text=True)
    assert admin_portal.post(clear, page="/admin/staff").status_code == 302
    db.session.expire_all()
    assert db.session.execute(select(Contact.undeliverable_since)).scalars().all() == [None]
    assert "not mailed" not in admin_portal.get("/mail").get_data(as_text=True)
