"""Who a chat or assistant request acts for (docs/integrations.md, "Who the customer
is"): a WhatsApp number the assistant's platform vouches for is the person; a phone
typed into a chat is only a claim and never becomes anyone's identity; the stand-in
address of someone known by phone is no address a customer may give."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from functools import partial

import pytest
from sqlalchemy import func, select, update

from helpdesk import addresses
from helpdesk.clock import now
from helpdesk.errors import Conflict
from helpdesk.extensions import db
from helpdesk.models import (
    Contact,
    EmailProof,
    Message,
    OutboxMessage,
    Participant,
    SatisfactionRating,
    Ticket,
)
from helpdesk.services import contacts, email_proofs, notifications
from helpdesk.services.integrations import IntegrationsService
from helpdesk.services.staff import StaffService
from tests.support import proofs
from tests.support.database import open_ticket, resolve
from tests.support.outbox import deliver, html_of, text_of

VICTIM_PHONE = "+5215512345678"
ATTACKER_PHONE = "+5215587654321"


@pytest.fixture
def call(app, client):  # type: ignore[no-untyped-def]
    """POST to an integration endpoint with a token of the kind it needs."""
    tokens = {
        kind: IntegrationsService(db.session).add(f"{kind}-1", kind)[1]
        for kind in ("chat", "assistant", "workflow")
    }
    db.session.commit()

    def post(path: str, body: object):  # type: ignore[no-untyped-def]
        kind = path.partition("/")[0] if path.startswith(("assistant", "workflow")) else "chat"
        return client.post(f"/api/v1/{path}", json=body, headers={"Authorization": f"Bearer {tokens[kind]}"})

    return post


def tools(call, customer: dict, *calls: tuple[str, dict], channel: str = "whatsapp") -> list[dict]:  # type: ignore[no-untyped-def]
    response = call(
        "assistant/tool-calls",
        {
            "customer": customer,
            "channel": channel,
            "tool_calls": [
                # A fresh id per call, as runtimes give: one submitted again with the
                # same arguments is answered the ticket it opened (docs/integrations.md).
                {
                    "id": f"call_{uuid.uuid4().hex}",
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(args)},
                }
                for name, args in calls
            ],
        },
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return [json.loads(item["output"]) for item in response.get_json()["tool_outputs"]]


def whatsapp_customer(service, phone: str = VICTIM_PHONE) -> Ticket:  # type: ignore[no-untyped-def]
    """Someone who wrote only by WhatsApp so far: a stand-in contact with a ticket."""
    ticket = open_ticket(service, requester_email=addresses.for_phone(phone), requester_name="Lucía")
    ticket.requester.phone = phone
    db.session.commit()
    return ticket


def contact(email: str) -> Contact | None:
    return db.session.execute(select(Contact).where(Contact.email == email)).scalar_one_or_none()


def known_contact(email: str) -> None:
    """A contact of `email` with no ticket yet (a chat's lookup no longer makes one)."""
    contacts.find_or_create(db.session, email)
    db.session.commit()


def test_a_chat_naming_someones_whatsapp_number_gets_none_of_their_tickets(call, service):
    ticket = whatsapp_customer(service)
    known_contact("mallory@example.com")
    answer = call(
        "chat/lookup", {"customer": {"email": "mallory@example.com", "phone": VICTIM_PHONE}, "text": "TKT-1"}
    )
    assert answer.status_code == 200 and answer.get_json() == {"tickets": []}
    db.session.expire_all()
    assert ticket.requester.email == addresses.for_phone(VICTIM_PHONE)
    assert ticket.requester.phone == VICTIM_PHONE
    assert contact("mallory@example.com").phone is None  # type: ignore[union-attr]


def test_a_phone_typed_into_a_chat_does_not_claim_that_number_for_later(call, service):
    known_contact("mallory@example.com")
    call("chat/lookup", {"customer": {"email": "mallory@example.com", "phone": VICTIM_PHONE}, "text": ""})
    db.session.expire_all()
    assert contact("mallory@example.com").phone is None  # type: ignore[union-attr]
    # The number's owner writes on WhatsApp later: they are themselves, not Mallory.
    (created,) = tools(
        call, {"phone": VICTIM_PHONE}, ("create_ticket_report", {"title": "Sin red", "description": "."})
    )
    ticket = db.session.execute(select(Ticket)).scalar_one()
    assert created["success"] and ticket.requester.email == addresses.for_phone(VICTIM_PHONE)


def test_an_email_given_from_another_number_does_not_move_its_phone(call, service):
    """Naming Lucía's email from Mallory's WhatsApp must not make Mallory's number
    Lucía's: Lucía's own number keeps reaching her tickets, Mallory's none of them."""
    lucia = open_ticket(service, requester_email="lucia@example.com").requester
    lucia.phone = VICTIM_PHONE
    db.session.commit()
    listed = tools(call, {"email": "lucia@example.com", "phone": ATTACKER_PHONE}, ("list_my_tickets", {}))
    assert listed[0]["tickets"] == []
    db.session.expire_all()
    assert contact("lucia@example.com").phone == VICTIM_PHONE  # type: ignore[union-attr]
    (own,) = tools(call, {"phone": VICTIM_PHONE}, ("list_my_tickets", {}))
    assert [t["ticketId"] for t in own["tickets"]] == ["TKT-000001"]


def test_a_whatsapp_number_is_one_customer_whatever_emails_it_gives(call, app):
    """A new email on each call opened a fresh contact, and so a fresh hourly limit."""
    app.config["CUSTOMER_MAX_TICKETS_PER_HOUR"] = 3
    answers = [
        tools(
            call,
            {"email": f"alias{n}@example.com", "phone": ATTACKER_PHONE},
            ("create_ticket_report", {"title": f"Falla {n}", "description": "."}),
        )[0]
        for n in range(5)
    ]
    assert [a["success"] for a in answers] == [True, True, True, False, False]
    requesters = db.session.execute(select(Contact.email).join(Ticket, Ticket.requester_id == Contact.id))
    assert set(requesters.scalars()) == {addresses.for_phone(ATTACKER_PHONE)}  # no email proven


def test_whatsapp_with_a_first_email_moves_the_number_s_tickets_there(call, service):
    """The case the merge is for, still working: a WhatsApp-only customer proves their
    email, and mail's contact takes their number and their tickets."""
    ticket = whatsapp_customer(service)
    lucia = {"email": "Lucia@Example.com", "phone": VICTIM_PHONE}
    confirmed = proofs.verify_by_tools(partial(tools, call), db.session, lucia, "Lucia@Example.com")
    assert confirmed == {
        "success": True,
        "verified": True,
        "email": "lucia@example.com",
        "message": "lucia@example.com is verified and linked to this number",
    }
    listed = tools(call, lucia, ("list_my_tickets", {}))
    assert [t["ticketId"] for t in listed[0]["tickets"]] == ["TKT-000001"]
    db.session.expire_all()
    assert (ticket.requester.email, ticket.requester.phone) == ("lucia@example.com", VICTIM_PHONE)


def test_an_assistant_in_a_web_chat_names_the_customer_by_email(call):
    """Off WhatsApp the phone is typed by the visitor: it proves nothing."""
    response = call(
        "assistant/tool-calls",
        {
            "customer": {"phone": VICTIM_PHONE},
            "channel": "chat",
            "tool_calls": [
                {"id": "c0", "type": "function", "function": {"name": "list_my_tickets", "arguments": "{}"}}
            ],
        },
    )
    assert response.status_code == 422
    assert response.get_json()["error"]["fields"] == {"customer.email": "is required"}


def test_a_new_number_naming_an_email_with_tickets_gets_none_of_them(call, service):
    """The reviewer's squat: any new WhatsApp number that named bob@ was bound to
    Bob's contact for good, listed and read his tickets, and locked Bob's own number
    out (a number is never replaced). Typing an address proves nothing: the number
    acts for a contact of its own, and Bob's stays as mail left it."""
    open_ticket(service, requester_email="bob@example.com", requester_name="Bob", subject="Router password")
    db.session.commit()
    squatter = {"phone": ATTACKER_PHONE, "email": "bob@example.com"}
    listed, read = tools(
        call, squatter, ("list_my_tickets", {}), ("get_ticket_information", {"ticketId": "TKT-000001"})
    )
    assert listed["tickets"] == [] and read["success"] is False and "description" not in read
    db.session.expire_all()
    assert contact("bob@example.com").phone is None  # type: ignore[union-attr]
    assert contact(addresses.for_phone(ATTACKER_PHONE)) is None  # reading stores no one
    # Bob's own number is not locked out: it is not his mail contact either (no proof),
    # but a customer of its own, free to open tickets.
    (created,) = tools(
        call,
        {"phone": VICTIM_PHONE, "email": "bob@example.com"},
        ("create_ticket_report", {"title": "x", "description": "."}),
    )
    assert created["success"] is True
    db.session.expire_all()
    assert contact(addresses.for_phone(VICTIM_PHONE)).phone == VICTIM_PHONE  # type: ignore[union-attr]


def test_a_new_number_naming_an_address_copied_on_a_ticket_is_not_bound(call, service):
    """No contact of bob@ yet, but he is copied on Carol's ticket: binding the number
    would show it to whoever typed his address."""
    carol = open_ticket(service, requester_email="carol@example.com", subject="Charged twice")
    service.add_participant(carol, "bob@example.com", "Bob")
    db.session.commit()
    (listed,) = tools(call, {"phone": ATTACKER_PHONE, "email": "Bob@Example.com"}, ("list_my_tickets", {}))
    assert listed["tickets"] == []
    db.session.expire_all()
    bob = contact("bob@example.com")
    assert bob is None or bob.phone is None


def test_a_whatsapp_customer_naming_an_email_with_tickets_stays_apart(call, service):
    """The merge took the email's contact on the email's word: a WhatsApp-only
    customer naming bob@ moved their tickets into Bob's contact and then read his.
    Now each keeps their own; the number lists the phone-only contact's tickets."""
    whatsapp_customer(service)
    open_ticket(service, requester_email="bob@example.com", subject="Bob's")
    db.session.commit()
    (listed,) = tools(call, {"phone": VICTIM_PHONE, "email": "bob@example.com"}, ("list_my_tickets", {}))
    assert [t["ticketId"] for t in listed["tickets"]] == ["TKT-000001"]
    db.session.expire_all()
    assert contact("bob@example.com").phone is None  # type: ignore[union-attr]
    assert contact(addresses.for_phone(VICTIM_PHONE)).phone == VICTIM_PHONE  # type: ignore[union-attr]
    requesters = db.session.execute(select(Contact.email).join(Ticket.requester).order_by(Ticket.number))
    assert requesters.scalars().all() == [addresses.for_phone(VICTIM_PHONE), "bob@example.com"]


def test_a_new_number_naming_a_known_address_without_history_is_bound_only_once_proven(call):
    """An address nothing has happened to yet (a contact but no ticket) was bound on
    the word of the conversation; now only the code mailed there binds it."""
    known_contact("new@example.com")
    customer = {"phone": VICTIM_PHONE, "email": "new@example.com"}
    report = ("create_ticket_report", {"title": "x", "description": "."})
    (created,) = tools(call, customer, report)
    assert created["success"] is True
    db.session.expire_all()
    assert contact("new@example.com").phone is None  # type: ignore[union-attr]
    assert db.session.execute(select(Ticket)).scalar_one().requester.phone == VICTIM_PHONE
    assert proofs.verify_by_tools(partial(tools, call), db.session, customer, "new@example.com")["verified"]
    db.session.expire_all()
    assert contact("new@example.com").phone == VICTIM_PHONE  # type: ignore[union-attr]
    assert db.session.execute(select(Ticket)).scalar_one().requester.email == "new@example.com"


@pytest.mark.parametrize("path", ["chat/lookup", "assistant/tool-calls"])
def test_a_stand_in_address_is_no_email_a_customer_may_give(call, service, path):
    whatsapp_customer(service)
    stand_in = {"email": addresses.for_phone(VICTIM_PHONE)}
    body = (
        {"customer": stand_in, "text": "TKT-1"}
        if path == "chat/lookup"
        else {
            "customer": {**stand_in, "phone": ATTACKER_PHONE},  # WhatsApp gives the sender's number
            "tool_calls": [
                {"id": "c0", "type": "function", "function": {"name": "list_my_tickets", "arguments": "{}"}}
            ],
        }
    )
    response = call(path, body)
    assert response.status_code == 422
    assert response.get_json()["error"]["fields"] == {"customer.email": addresses.INVALID}


@pytest.mark.parametrize(
    "lookalike",
    [
        "5215512345678@phone.ｉｎｖａｌｉｄ",  # fullwidth letters: the stand-in's mailbox on the wire
        "5215512345678@PHONE.INVALID",
        "5215512345678@phone.invalid.",
        "5215512345678+x@phone.invalid",
    ],
)
def test_no_spelling_of_a_stand_in_address_shares_its_customer_s_limits(call, app, lookalike):
    """Given with one's own WhatsApp number, `…@phone.ｉｎｖａｌｉｄ` passed as an email,
    and its mailbox (what the per-customer limits count by) was the WhatsApp
    customer's own stand-in: nine tickets opened with it locked that customer out
    until staff resolved them. Every spelling of a stand-in is refused now."""
    app.config.update(CUSTOMER_MAX_TICKETS_PER_HOUR=2, CUSTOMER_MAX_OPEN_TICKETS=2)
    report = ("create_ticket_report", {"title": "Sin red", "description": "."})
    assert tools(call, {"phone": VICTIM_PHONE}, report)[0]["success"]
    chat = call("chat/tickets", {"conversation_id": "c", "customer": {"email": lookalike}, "transcript": "x"})
    assistant = call(
        "assistant/tool-calls",
        {
            "customer": {"phone": ATTACKER_PHONE, "email": lookalike},
            "tool_calls": [
                {
                    "id": "c0",
                    "type": "function",
                    "function": {"name": report[0], "arguments": json.dumps(report[1])},
                }
            ],
        },
    )
    for response in (chat, assistant):
        assert response.status_code == 422
        assert response.get_json()["error"]["fields"] == {"customer.email": addresses.INVALID}
    assert tools(call, {"phone": VICTIM_PHONE}, report)[0]["success"]
    requesters = db.session.execute(select(Contact.email).join(Ticket, Ticket.requester_id == Contact.id))
    assert requesters.scalars().all() == [addresses.for_phone(VICTIM_PHONE)] * 2


def test_the_tracker_does_not_open_a_whatsapp_customers_ticket_by_the_stand_in(client, service):
    whatsapp_customer(service)
    response = client.post(
        "/api/v1/public/track",
        json={"ticket_number": "TKT-000001", "email": addresses.for_phone(VICTIM_PHONE)},
    )
    assert response.status_code == 404


def test_control_characters_in_a_conversation_s_subject_become_spaces(call):
    """Chat and assistant subjects reached the ticket (and every mail about it) with
    escape sequences and line breaks in them; the mail path already made one line."""
    chat = call(
        "chat/tickets",
        {
            "conversation_id": "conv-1",
            "customer": {"email": "ann@example.com"},
            "subject": "Router\r\nStatus: Resolved\x1b[2J\u2028ok",
            "transcript": "x",
        },
    )
    assert chat.status_code == 201, chat.get_json()
    (created,) = tools(
        call,
        {"phone": VICTIM_PHONE},
        ("create_ticket_report", {"title": "Sin\x85red\x07 ya", "description": "."}),
    )
    assert created["success"], created
    subjects = db.session.execute(select(Ticket.subject).order_by(Ticket.number)).scalars().all()
    assert subjects == ["Router Status: Resolved [2J ok", "Sin red ya"]


@pytest.mark.parametrize("conversation", ["conv\n1", "conv\x1b[2J", "\u2028"])
def test_a_conversation_id_is_printable_text(call, conversation):
    body = {"conversation_id": conversation, "customer": {"email": "ann@example.com"}, "transcript": "x"}
    response = call("chat/tickets", body)
    assert response.status_code == 422
    assert "conversation_id" in response.get_json()["error"]["fields"]
    response = call(
        "assistant/tool-calls",
        {
            "customer": {"phone": VICTIM_PHONE},
            "conversation_id": conversation,
            "tool_calls": [
                {"id": "c0", "type": "function", "function": {"name": "list_my_tickets", "arguments": "{}"}}
            ],
        },
    )
    assert response.status_code == 422
    assert "conversation_id" in response.get_json()["error"]["fields"]
    assert db.session.execute(select(Ticket)).first() is None


# The helpdesk's own addresses and its staff's, as a request may spell them: case, a
# plus-detail, the domain in fullwidth letters (IDNA maps it to ours), and anything at
# MESSAGE_ID_DOMAIN (TestingConfig: support@helpdesk.test, helpdesk.helpdesk.test).
NOT_CUSTOMERS = [
    "agent@helpdesk.test",
    "Agent+billing@HELPDESK.test",
    "support@helpdesk.test",
    "SUPPORT+TKT-000001@helpdesk.test",
    "support@\uff48\uff45\uff4c\uff50\uff44\uff45\uff53\uff4b.test",
    "tkt.1.1.abc@helpdesk.helpdesk.test",
]


def _naming(path: str, email: str) -> dict:
    """A request to `path` naming `email` as its customer (on WhatsApp with a number
    of its own, where the assistant is asked)."""
    lists = {"id": "c0", "type": "function", "function": {"name": "list_my_tickets", "arguments": "{}"}}
    return {
        "chat/lookup": {"customer": {"email": email}, "text": "TKT-1"},
        "chat/tickets": {"conversation_id": "c1", "customer": {"email": email}, "transcript": "refund me"},
        "assistant/tool-calls": {
            "customer": {"email": email, "phone": ATTACKER_PHONE},
            "tool_calls": [lists],
        },
        "workflow/tickets": {"title": "Install", "description": ".", "customer_email": email},
    }[path]


@pytest.mark.parametrize("email", NOT_CUSTOMERS)
@pytest.mark.parametrize("path", ["chat/lookup", "chat/tickets", "assistant/tool-calls", "workflow/tickets"])
def test_a_staff_or_helpdesk_address_is_no_customer_for_an_integration(call, service, agent, path, email):
    """Naming Agnes's address listed every ticket she was copied on and let the caller
    comment there; naming a support address opened tickets whose mail went to the
    helpdesk itself. Refused as the field's problem; nothing is stored."""
    carol = open_ticket(service, requester_email="carol@example.com", subject="Charged twice")
    service.add_participant(carol, agent.email, agent.name)
    db.session.commit()
    response = call(path, _naming(path, email))
    assert response.status_code == 422, response.get_data(as_text=True)
    field = "customer_email" if path.startswith("workflow") else "customer.email"
    assert response.get_json()["error"]["fields"] == {field: contacts.NOT_A_CUSTOMER}
    db.session.rollback()
    assert db.session.execute(select(func.count(Ticket.id))).scalar_one() == 1
    stored = db.session.execute(select(Contact.email).order_by(Contact.id)).scalars().all()
    assert stored == ["carol@example.com"]


@pytest.mark.parametrize(
    "email", ["noreply@example.com", "MAILER-DAEMON@example.com", "no-reply.billing@isp.test"]
)
@pytest.mark.parametrize("path", ["chat/lookup", "chat/tickets", "assistant/tool-calls", "workflow/tickets"])
def test_a_machine_s_mailbox_is_no_customer_on_any_channel(call, path, email):
    """The workflow API refused `noreply@` as a customer, the chat and the assistant
    took it: a ticket whose acknowledgment and replies the outbox never sends (and
    mail to such a mailbox can loop). Every channel refuses it now, as the field's
    problem, and stores nothing."""
    response = call(path, _naming(path, email))
    assert response.status_code == 422, response.get_data(as_text=True)
    field = "customer_email" if path.startswith("workflow") else "customer.email"
    assert response.get_json()["error"]["fields"] == {field: contacts.MACHINE_ADDRESS}
    db.session.rollback()
    assert db.session.execute(select(Ticket)).first() is None
    assert db.session.execute(select(Contact)).first() is None


def test_a_staff_address_given_in_a_web_chat_to_the_assistant_is_refused(call, agent):
    response = call(
        "assistant/tool-calls",
        {
            "customer": {"email": agent.email.upper()},
            "channel": "chat",
            "tool_calls": [
                {"id": "c0", "type": "function", "function": {"name": "list_my_tickets", "arguments": "{}"}}
            ],
        },
    )
    assert response.status_code == 422
    assert response.get_json()["error"]["fields"] == {"customer.email": contacts.NOT_A_CUSTOMER}


def test_a_former_or_plus_addressed_staff_member_is_no_customer_either(call, agent):
    """A deactivated agent is still copied on tickets; a staff address stored with a
    detail (`ops+helpdesk@`) is the mailbox `ops@` too."""
    staff = StaffService(db.session)
    staff.set_active(agent, False)
    staff.create(email="ops+helpdesk@isp.example", name="Ops", role="agent", password="ops-password-1")
    db.session.commit()
    for email in (agent.email, "ops@isp.example", "OPS+x@isp.example"):
        response = call("chat/lookup", {"customer": {"email": email}, "text": ""})
        assert response.status_code == 422, email
        assert response.get_json()["error"]["fields"] == {"customer.email": contacts.NOT_A_CUSTOMER}


def test_an_address_that_only_resembles_a_staff_one_is_a_customer(call, agent):
    """The staff address is compared by mailbox, not by prefix: agent2@ and agent@
    of another domain are customers like any other."""
    for email in ("agent2@helpdesk.test", "agent@example.com", "agent.x@helpdesk.test"):
        response = call("chat/lookup", {"customer": {"email": email}, "text": ""})
        assert response.status_code == 200, (email, response.get_json())


@pytest.mark.parametrize(
    "email", ["jane.doe@gmail.com", "janedoe@gmail.com", "j.a.n.e.doe@gmail.com", "Jane.Doe+x@googlemail.com"]
)
def test_a_staff_member_s_dotted_gmail_address_is_no_customer_in_any_spelling(call, app, service, email):
    """Gmail ignores dots, so the mailbox of `jane.doe@gmail.com` is `janedoe@gmail.com`
    and a search for staff rows beginning `janedoe@` never found hers: naming her
    address, exactly as stored, listed the ticket she was copied on (found by review)."""
    StaffService(db.session).create(
        email="jane.doe@gmail.com", name="Jane", role="agent", password="jane-password-1"
    )
    carol = open_ticket(service, requester_email="carol@example.com", subject="Charged twice")
    service.add_participant(carol, "jane.doe@gmail.com", "Jane")
    db.session.commit()
    assert contacts.is_ours(db.session, email, app.config) is True
    for path in ("chat/lookup", "assistant/tool-calls", "workflow/tickets"):
        response = call(path, _naming(path, email))
        assert response.status_code == 422, (path, response.get_data(as_text=True))
        field = "customer_email" if path.startswith("workflow") else "customer.email"
        assert response.get_json()["error"]["fields"] == {field: contacts.NOT_A_CUSTOMER}


def test_another_gmail_address_is_still_a_customer(call, service):
    """Only the staff member's own mailbox is refused: another Gmail inbox is not."""
    StaffService(db.session).create(
        email="jane.doe@gmail.com", name="Jane", role="agent", password="jane-password-1"
    )
    db.session.commit()
    for email in ("jane.doe2@gmail.com", "jane.doe@example.com", "janedo@googlemail.com"):
        response = call("chat/lookup", {"customer": {"email": email}, "text": ""})
        assert response.status_code == 200, (email, response.get_json())


def test_the_whatsapp_channel_needs_the_sender_s_number(call, service):
    """WhatsApp (the default channel) proves a number, never an email: a request
    there with Bob's email and no phone listed his tickets as a web chat would,
    while with a phone it listed none (found by review). Refused as the chat
    endpoints refuse a missing email; nothing is stored."""
    open_ticket(service, requester_email="bob@example.com", subject="Bob's secret")
    db.session.commit()
    lists = {"id": "c0", "type": "function", "function": {"name": "list_my_tickets", "arguments": "{}"}}
    for body in (
        {"customer": {"email": "bob@example.com"}, "tool_calls": [lists]},
        {"customer": {"email": "bob@example.com"}, "channel": "whatsapp", "tool_calls": [lists]},
    ):
        response = call("assistant/tool-calls", body)
        assert response.status_code == 422, response.get_data(as_text=True)
        assert response.get_json()["error"]["fields"] == {"customer.phone": "is required"}
    db.session.rollback()
    assert db.session.execute(select(Contact.email)).scalars().all() == ["bob@example.com"]


@pytest.mark.parametrize(
    "owner,claim",
    [
        ("bob@example.com", "bob+x@example.com"),
        ("bob.smith@gmail.com", "bobsmith@googlemail.com"),
        ("bob@example.com", "bob@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com"),
    ],
)
@pytest.mark.parametrize("history", ["requests", "copied"])
def test_a_new_number_naming_another_spelling_of_a_used_mailbox_is_not_bound(
    call, service, owner, claim, history
):
    """The history was judged by the exact address, the per-customer limits count by
    mailbox: a number naming `bob+x@` (or `bobsmith@googlemail.com` for
    `bob.smith@gmail.com`) was bound to that "unused" spelling, and its tickets used
    up Bob's limits and sent acknowledgments to his inbox (found by review). Any
    spelling of a mailbox with history is taken."""
    if history == "requests":
        open_ticket(service, requester_email=owner, requester_name="Bob")
    else:
        carol = open_ticket(service, requester_email="carol@example.com", subject="Charged twice")
        service.add_participant(carol, owner, "Bob")
    db.session.commit()
    (created,) = tools(
        call,
        {"email": claim, "phone": ATTACKER_PHONE},
        ("create_ticket_report", {"title": "x", "description": "."}),
    )
    assert created["success"] is True
    db.session.expire_all()
    claimed = contact(addresses.normalize(claim))
    assert claimed is None or claimed.phone is None
    ticket = db.session.execute(
        select(Ticket).where(Ticket.number == int(created["ticketId"][4:]))
    ).scalar_one()
    assert ticket.requester.email == addresses.for_phone(ATTACKER_PHONE)


def test_a_number_naming_another_spelling_of_an_address_copied_at_opening_is_not_bound(call, service):
    """A CC named when the ticket is opened (the numbered insert) counts as one added later."""
    open_ticket(service, requester_email="carol@example.com", cc=[("Bob.Smith@gmail.com", "Bob")])
    db.session.commit()
    (listed,) = tools(
        call, {"email": "bobsmith@googlemail.com", "phone": ATTACKER_PHONE}, ("list_my_tickets", {})
    )
    assert listed["tickets"] == []
    db.session.expire_all()
    bob = contact("bobsmith@googlemail.com")
    assert bob is None or bob.phone is None


def test_a_workflow_may_not_name_a_staff_member_s_contact_by_its_id(call, service, agent):
    """`customer_email` was checked and `customer_id` was not: a contact row with a
    staff address (a colleague who once wrote in as a customer, or was hired after)
    opened a ticket whose requester was that colleague, who then saw it as their own
    in the tracker and the assistant. Refused as `customer_id`'s problem."""
    carol = open_ticket(service, requester_email="carol@example.com", subject="Charged twice")
    colleague = contacts.find_or_create(db.session, agent.email.upper(), agent.name)
    db.session.commit()
    for customer_id in (colleague.id, str(colleague.id)):
        response = call(
            "workflow/tickets", {"title": "Install", "description": ".", "customer_id": customer_id}
        )
        assert response.status_code == 422, response.get_data(as_text=True)
        assert response.get_json()["error"]["fields"] == {"customer_id": contacts.NOT_A_CUSTOMER}
    db.session.rollback()
    assert db.session.execute(select(func.count(Ticket.id))).scalar_one() == 1
    response = call(
        "workflow/tickets", {"title": "Install", "description": ".", "customer_id": carol.requester_id}
    )
    assert response.status_code == 201, response.get_data(as_text=True)


def test_a_whatsapp_number_proven_for_an_address_that_became_staff_acts_for_no_customer(call, app, service):
    """Lucía proved her address on WhatsApp, and was hired later under it (or it was
    made a staff account): the number still acted for that address's contact, so it
    listed and read every ticket the new agent was copied on, other customers'
    included, and commented there as a customer, even once she was deactivated.
    Naming the address is refused (`is_ours`); its number is refused the same way,
    as `customer.phone`'s problem, and nothing is written (found by the channels
    review)."""
    proofs.prove(db.session, app.config, VICTIM_PHONE, "lucia@example.com", "Lucía")
    staff = StaffService(db.session)
    lucia, _ = staff.create(
        email="Lucia@example.com", name="Lucía", role="agent", password="lucia-password-1"
    )
    carol = open_ticket(service, requester_email="carol@example.com", subject="Charged twice")
    service.add_participant(carol, "lucia@example.com", "Lucía")
    db.session.commit()
    messages = db.session.execute(select(func.count(Message.id))).scalar_one()
    for active in (True, False):
        staff.set_active(lucia, active)
        db.session.commit()
        for name, args in (
            ("list_my_tickets", {}),
            ("add_ticket_comment", {"ticketId": "TKT-1", "text": "Hi"}),
        ):
            response = call(
                "assistant/tool-calls",
                {
                    "customer": {"phone": VICTIM_PHONE, "language": "es"},
                    "tool_calls": [
                        {
                            "id": "c0",
                            "type": "function",
                            "function": {"name": name, "arguments": json.dumps(args)},
                        }
                    ],
                },
            )
            assert response.status_code == 422, response.get_data(as_text=True)
            assert response.get_json()["error"]["fields"] == {
                "customer.phone": contacts.NUMBER_NOT_A_CUSTOMER
            }
    db.session.rollback()
    assert db.session.execute(select(func.count(Message.id))).scalar_one() == messages
    assert contact("lucia@example.com").language != "es"  # type: ignore[union-attr]
    # Another number is a customer as before.
    (listed,) = tools(call, {"phone": ATTACKER_PHONE}, ("list_my_tickets", {}))
    assert listed == {"success": True, "tickets": []}


def test_a_number_naming_an_unused_address_does_not_see_its_later_mail(call, service):
    """The squat that stayed possible: a number named bob@ before Bob ever wrote, was
    bound to it, and then listed and read the tickets Bob's mail opened. A typed
    address binds nothing without the mailbox's proof (`verify_email`)."""
    squatter = {"phone": ATTACKER_PHONE, "email": "bob@example.com"}
    (listed,) = tools(call, squatter, ("list_my_tickets", {}))
    assert listed["tickets"] == []
    open_ticket(service, requester_email="bob@example.com", requester_name="Bob", subject="Router password")
    listed, read = tools(
        call, squatter, ("list_my_tickets", {}), ("get_ticket_information", {"ticketId": "TKT-000001"})
    )
    assert listed["tickets"] == [] and read["success"] is False and "description" not in read
    db.session.expire_all()
    assert contact("bob@example.com").phone is None  # type: ignore[union-attr]


# -- verify_email: the mailbox's proof -------------------------------------------------------------


def _code_rows() -> list[OutboxMessage]:
    query = select(OutboxMessage).where(OutboxMessage.kind == "email_code").order_by(OutboxMessage.id)
    return list(db.session.execute(query).scalars())


def test_a_proven_address_with_history_is_bound_and_lists_its_tickets(call, service):
    """What the proof adds: someone with mail history who starts using WhatsApp is
    one customer once the code mailed to their address comes back from their number."""
    open_ticket(service, requester_email="bob@example.com", requester_name="Bob", subject="Router password")
    bob = {"phone": VICTIM_PHONE, "email": "bob@example.com"}
    (before,) = tools(call, bob, ("list_my_tickets", {}))
    assert before["tickets"] == []
    assert proofs.verify_by_tools(partial(tools, call), db.session, bob, "bob@example.com")["verified"]
    (listed,) = tools(call, bob, ("list_my_tickets", {}))
    assert [t["ticketId"] for t in listed["tickets"]] == ["TKT-000001"]
    db.session.expire_all()
    assert contact("bob@example.com").phone == VICTIM_PHONE  # type: ignore[union-attr]


def test_a_whatsapp_customer_s_ratings_stay_theirs_once_their_email_is_proven(call, service, agent_actor):
    """Lucía, known by her number only, takes part in Ann's TKT-1 and in TKT-2 of her
    own address (her WhatsApp tickets were merged into them) and rated both. Proving
    her email moved her participation to the address but left the ratings recorded
    as her stand-in's: she was refused changing her own rating ("Someone else on this
    ticket has rated it") and the tracker showed her "someone else rated" (found by
    the fixes review). Now the merge moves them too: to her address where she takes
    part, to the requester's where the ticket is hers (docs/integrations.md,
    "Satisfaction")."""
    stand_in = addresses.for_phone(VICTIM_PHONE)
    anns = open_ticket(service, subject="Outage")
    mine = open_ticket(service, requester_email="lucia@example.com", subject="Router")
    for kept in (anns, mine):
        duplicate = open_ticket(service, requester_email=stand_in, requester_name="Lucía")
        duplicate.requester.phone = VICTIM_PHONE
        service.merge(duplicate, kept, actor=agent_actor)
        resolve(service, kept, agent_actor)
    phone_only = {"phone": VICTIM_PHONE}
    rated = tools(
        call,
        phone_only,
        ("rate_ticket", {"ticketId": "TKT-000001", "rating": 2}),
        ("rate_ticket", {"ticketId": "TKT-000002", "rating": 3}),
    )
    assert [output["success"] for output in rated] == [True, True], rated
    lucia = {"phone": VICTIM_PHONE, "email": "lucia@example.com"}
    assert proofs.verify_by_tools(partial(tools, call), db.session, lucia, "lucia@example.com")["verified"]
    db.session.expire_all()
    raters = db.session.execute(
        select(Ticket.number, SatisfactionRating.participant_email)
        .join(Ticket, Ticket.id == SatisfactionRating.ticket_id)
        .order_by(Ticket.number)
    ).all()
    assert [tuple(row) for row in raters] == [(1, "lucia@example.com"), (2, None)]
    changed = tools(call, lucia, ("rate_ticket", {"ticketId": "TKT-000001", "rating": 5, "comment": "Bien"}))
    assert changed[0]["success"] is True, changed
    db.session.expire_all()
    assert db.session.get(Ticket, anns.id).satisfaction.rating == 5  # type: ignore[union-attr]


def test_a_proven_email_a_ticket_has_in_the_other_spelling_is_one_participant_there(
    call, service, agent_actor
):
    """Lucía, known by her number only, takes part in Ann's TKT-1 (her WhatsApp
    ticket was merged into it), where Ann's mail copied her as
    `lucia@xn--bcher-kva.example`. She proves `lucia@bücher.example`: the merge
    compared participants as written, so the stand-in's row became a second
    participant, the same person once in each spelling (found by review). The
    stand-in's row now goes, as it does for the same spelling."""
    ascii_form = "lucia@xn--bcher-kva.example"
    anns = open_ticket(service, subject="Outage")
    service.add_participant(anns, ascii_form, "Lucía")
    duplicate = open_ticket(
        service, requester_email=addresses.for_phone(VICTIM_PHONE), requester_name="Lucía"
    )
    duplicate.requester.phone = VICTIM_PHONE
    service.merge(duplicate, anns, actor=agent_actor)
    db.session.commit()
    lucia = {"phone": VICTIM_PHONE, "email": "lucia@b\u00fccher.example"}
    assert proofs.verify_by_tools(partial(tools, call), db.session, lucia, lucia["email"])["verified"]
    db.session.expire_all()
    people = select(Participant.email).where(Participant.ticket_id == anns.id)
    assert db.session.execute(people).scalars().all() == [ascii_form]
    (listed,) = tools(call, lucia, ("list_my_tickets", {}))
    assert "TKT-000001" in [ticket["ticketId"] for ticket in listed["tickets"]]


def test_the_code_is_mailed_stored_hashed_and_only_the_asking_number_can_give_it(call):
    squatter = {"phone": ATTACKER_PHONE, "email": "bob@example.com"}
    (asked,) = tools(call, {"phone": VICTIM_PHONE}, ("verify_email", {"email": "Bob@Example.com"}))
    assert {k: asked[k] for k in ("success", "verified", "email", "expiresInMinutes")} == {
        "success": True,
        "verified": False,
        "email": "bob@example.com",
        "expiresInMinutes": 15,
    }
    (row,) = _code_rows()
    assert (row.to_address, row.ticket_id, row.state) == ("bob@example.com", None, "pending")
    code = proofs.mailed_code(db.session, "bob@example.com")
    assert len(code) == 6 and code.isdigit()
    proof = db.session.execute(select(EmailProof)).scalar_one()
    assert code not in proof.code_hash and proof.phone == VICTIM_PHONE
    # Another number giving the code (it saw the mail, say) proves nothing.
    (stolen,) = tools(call, squatter, ("verify_email", {"email": "bob@example.com", "code": code}))
    assert stolen["success"] is False and stolen["error"] == "Invalid or expired verification code"
    (mine,) = tools(
        call, {"phone": VICTIM_PHONE}, ("verify_email", {"email": "bob@example.com", "code": code})
    )
    assert mine["verified"] is True
    # A code works once.
    (again,) = tools(call, squatter, ("verify_email", {"email": "bob@example.com", "code": code}))
    assert again["error"] == "Invalid or expired verification code"
    db.session.expire_all()
    assert contact("bob@example.com").phone == VICTIM_PHONE  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "stored,named",
    [
        ("ann@xn--bcher-kva.example", "ann@b\u00fccher.example"),
        ("ann@b\u00fccher.example", "ann@xn--bcher-kva.example"),
    ],
)
def test_a_number_bound_to_an_address_verifies_it_in_the_other_spelling(call, stored, named):
    """Ann's number is bound to `ann@xn--bcher-kva.example`, as her mail wrote her;
    the assistant names her `ann@bücher.example`, the same mailbox. Compared as
    written (`assistant._verify_email`), she was told the address is linked to
    another number. A homograph of it still is."""
    db.session.add(Contact(email=stored, name="Ann", phone=VICTIM_PHONE))
    db.session.commit()
    (again,) = tools(call, {"phone": VICTIM_PHONE}, ("verify_email", {"email": named}))
    assert (again["success"], again["verified"], again["email"]) == (True, True, stored), again
    assert _code_rows() == []
    (other,) = tools(call, {"phone": VICTIM_PHONE}, ("verify_email", {"email": "ann@b\u0430nk.example"}))
    assert other["success"] is False, other


def test_five_wrong_codes_kill_the_code(call):
    customer = {"phone": ATTACKER_PHONE, "language": "es"}
    tools(call, customer, ("verify_email", {"email": "bob@example.com"}))
    code = proofs.mailed_code(db.session, "bob@example.com")
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    answers = tools(call, customer, *[("verify_email", {"email": "bob@example.com", "code": wrong})] * 5)
    assert (
        answers
        == [
            {
                "success": False,
                "error": "Invalid or expired verification code",
                "userMessage": "Ese código no es válido o ya venció. Puedo enviarte uno nuevo.",
            }
        ]
        * 5
    )
    (late,) = tools(call, customer, ("verify_email", {"email": "bob@example.com", "code": code}))
    assert late["success"] is False
    db.session.expire_all()
    bob = contact("bob@example.com")
    assert bob is None or bob.phone is None
    assert db.session.execute(select(EmailProof.spent, EmailProof.wrong_tries)).one() == (True, 5)


def test_a_new_request_replaces_the_code_and_an_old_code_expires(call):
    customer = {"phone": VICTIM_PHONE}
    tools(call, customer, ("verify_email", {"email": "lucia@example.com"}))
    first = proofs.mailed_code(db.session, "lucia@example.com")
    tools(call, customer, ("verify_email", {"email": "lucia@example.com"}))
    second = proofs.mailed_code(db.session, "lucia@example.com")
    if first != second:  # one in a million they are equal
        (old,) = tools(call, customer, ("verify_email", {"email": "lucia@example.com", "code": first}))
        assert old["success"] is False
    db.session.execute(update(EmailProof).values(expires_at=now() - timedelta(seconds=1)))
    db.session.commit()
    (expired,) = tools(call, customer, ("verify_email", {"email": "lucia@example.com", "code": second}))
    assert expired["error"] == "Invalid or expired verification code"
    # A code proves the address it was mailed to, no other.
    tools(call, customer, ("verify_email", {"email": "lucia@example.com"}))
    third = proofs.mailed_code(db.session, "lucia@example.com")
    (other,) = tools(call, customer, ("verify_email", {"email": "ana@example.com", "code": third}))
    assert other["success"] is False


_ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
_FULLWIDTH = str.maketrans("0123456789", "０１２３４５６７８９")


@pytest.mark.parametrize(
    "keyboard",
    [
        lambda code: code.translate(_ARABIC_INDIC),
        lambda code: code.translate(_FULLWIDTH),
        lambda code: f"{code[:3].translate(_FULLWIDTH)} - {code[3:].translate(_ARABIC_INDIC)}",
        # Format characters a phone or a copy from a right-to-left chat adds: RLM, LRM,
        # zero-width space and joiner, BOM. Not typed by the customer, so not read.
        lambda code: f"\ufeff\u200f{code[:2]}\u200b{code[2:4]}\u200d{code[4:]}\u200e",
    ],
    ids=["arabic-indic", "fullwidth", "mixed", "format-characters"],
)
def test_a_code_typed_in_another_script_s_digits_is_read_as_those_digits(call, keyboard):
    """A phone keyboard in Arabic types '١٢٣٤٥٦', a Japanese one '１２３４５６': they
    were wrong tries, and the customer was told the code they read was not valid
    (found by review). Unicode decimal digits are read as the digits they are;
    anything else, a superscript '²' too, is still a wrong code."""
    customer = {"phone": VICTIM_PHONE}
    tools(call, customer, ("verify_email", {"email": "lucia@example.com"}))
    code = proofs.mailed_code(db.session, "lucia@example.com")
    wrong = tools(
        call,
        customer,
        ("verify_email", {"email": "lucia@example.com", "code": keyboard(_wrong(code))}),
        ("verify_email", {"email": "lucia@example.com", "code": keyboard(code)[:-1] + "²"}),
    )
    assert {a["error"] for a in wrong} == {"Invalid or expired verification code"}
    db.session.expire_all()
    assert db.session.execute(select(EmailProof.wrong_tries)).scalar_one() == 2
    (right,) = tools(call, customer, ("verify_email", {"email": "lucia@example.com", "code": keyboard(code)}))
    assert right["verified"] is True, right
    db.session.expire_all()
    assert contact("lucia@example.com").phone == VICTIM_PHONE  # type: ignore[union-attr]


def _an_hour_passes() -> None:
    """Every code asked so far was asked an hour and a minute earlier."""
    _earlier(timedelta(minutes=61))


def _earlier(age: timedelta) -> None:
    """Every code asked so far was asked `age` earlier (in Python: SQLite stores the
    moments as text, which SQL arithmetic would turn into a number)."""
    for proof in db.session.execute(select(EmailProof)).scalars():
        proof.created_at -= age
    db.session.commit()


def test_code_requests_are_limited_per_number_and_per_mailbox(call):
    """Three an hour for a number, ten for a mailbox in any spelling from every
    number together: the helpdesk cannot be made to flood an inbox."""
    answers = tools(
        call, {"phone": ATTACKER_PHONE}, *[("verify_email", {"email": f"a{n}@example.com"}) for n in range(4)]
    )
    assert [a["success"] for a in answers] == [True, True, True, False]
    assert answers[3]["error"] == "Too many verification codes requested. Please try again later."
    spellings = ["victim@gmail.com", "vic.tim@gmail.com", "victim+x@googlemail.com", "VICTIM@gmail.com"]
    answered = [
        tools(call, {"phone": f"+5215510000{n:02d}"}, ("verify_email", {"email": spellings[n % 4]}))[0]
        for n in range(11)
    ]
    assert [a["success"] for a in answered] == [True] * 10 + [False]
    assert answered[10]["error"] == "Too many verification codes requested. Please try again later."
    assert len(_code_rows()) == 13


def test_one_number_asking_for_a_mailbox_every_hour_does_not_lock_its_owner_out(call):
    """A number's three requests an hour were the mailbox's three an hour: one
    attacker's number asking codes for bob@ every hour kept Bob's own number refused
    for ever (found by review). A mailbox takes ten an hour now, and a number can
    spend only its own three on it: it takes four numbers, each spending every
    request on that mailbox every hour, to keep the owner out."""
    attackers = ["+5215587654321", "+5215587654322", "+5215587654323"]
    bob = {"phone": VICTIM_PHONE}
    for hour in range(2):
        if hour:
            _an_hour_passes()
        for number in attackers:
            asked = tools(call, {"phone": number}, *[("verify_email", {"email": "Bob+x@Example.com"})] * 3)
            assert [a["success"] for a in asked] == [True] * 3
        (mine,) = tools(call, bob, ("verify_email", {"email": "bob@example.com"}))
        assert mine["success"] is True, mine
    (fourth,) = tools(call, {"phone": "+5215587654324"}, ("verify_email", {"email": "bob@example.com"}))
    assert fourth["error"] == "Too many verification codes requested. Please try again later."
    code = proofs.mailed_code(db.session, "bob@example.com")
    (proven,) = tools(call, bob, ("verify_email", {"email": "bob@example.com", "code": code}))
    assert proven["verified"] is True


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def test_a_mailbox_takes_twenty_wrong_codes_a_day_and_then_one_per_number(call):
    """Five wrong tries a code, fifteen an hour from one number, without end: about
    12 % a year to guess a code for one mailbox (found by review). A mailbox takes
    20 wrong codes a day; after that, a number that gave a wrong code for it that
    day gives none more and asks for none, while a number that gave none (its owner's,
    who reads the code) still may: a guesser gets one try a day per number it has."""
    guesser = {"phone": ATTACKER_PHONE}
    for _code in range(4):
        tools(call, guesser, ("verify_email", {"email": "bob@example.com"}))
        code = proofs.mailed_code(db.session, "bob@example.com")
        answers = tools(
            call, guesser, *[("verify_email", {"email": "bob@example.com", "code": _wrong(code)})] * 5
        )
        assert {a["error"] for a in answers} == {"Invalid or expired verification code"}
        _an_hour_passes()
    (refused,) = tools(call, guesser, ("verify_email", {"email": "bob@example.com"}))
    assert refused["error"] == "Too many wrong verification codes. Please try again tomorrow."
    tools(call, guesser, ("verify_email", {"email": "other@example.com"}))  # other mailboxes are not its
    # Another number gets one try, and then neither tries nor codes.
    second = {"phone": "+5215587650000", "language": "es"}
    tools(call, second, ("verify_email", {"email": "bob@example.com"}))
    code = proofs.mailed_code(db.session, "bob@example.com")
    answers = tools(call, second, *[("verify_email", {"email": "bob@example.com", "code": _wrong(code)})] * 2)
    assert [a["error"] for a in answers] == [
        "Invalid or expired verification code",
        "Too many wrong verification codes. Please try again tomorrow.",
    ]
    assert (
        answers[1]["userMessage"]
        == "Se dieron demasiados códigos incorrectos para esta dirección. Inténtalo de nuevo mañana."
    )
    (late,) = tools(call, second, ("verify_email", {"email": "bob@example.com", "code": code}))
    assert late["error"] == "Too many wrong verification codes. Please try again tomorrow."
    # Bob's own number still proves his mailbox, and a day later the guessers may again.
    bob = {"phone": VICTIM_PHONE}
    assert proofs.verify_by_tools(partial(tools, call), db.session, bob, "bob@example.com")["verified"]
    _earlier(timedelta(days=1))
    (again,) = tools(call, second, ("verify_email", {"email": "bob@example.com"}))
    assert again["success"] is True


def test_a_number_bound_to_an_address_proves_no_other_and_a_bound_address_keeps_its_number(call):
    bob = {"phone": VICTIM_PHONE, "email": "bob@example.com"}
    assert proofs.verify_by_tools(partial(tools, call), db.session, bob, "bob@example.com")["verified"]
    (other,) = tools(call, bob, ("verify_email", {"email": "alice@example.com"}))
    assert other["error"] == "Already linked to another number or email address"
    (same,) = tools(call, bob, ("verify_email", {"email": "BOB@example.com"}))
    assert same["verified"] is True
    # Bob's mailbox, asked for from another number: no code is mailed (his number is
    # never replaced, so none could bind it), and none given binds it.
    second = {"phone": ATTACKER_PHONE}
    (asked,) = tools(call, second, ("verify_email", {"email": "bob@example.com"}))
    assert asked["success"] is True
    (given,) = tools(call, second, ("verify_email", {"email": "bob@example.com", "code": "123456"}))
    assert given["error"] == "Invalid or expired verification code"
    assert len(_code_rows()) == 1
    db.session.expire_all()
    assert contact("bob@example.com").phone == VICTIM_PHONE  # type: ignore[union-attr]
    assert contact(addresses.for_phone(ATTACKER_PHONE)) is None  # asking for a code stores no one


def test_no_code_is_mailed_for_an_address_linked_to_another_number_and_the_asker_cannot_tell(call):
    """Bob's address has his number, which is never replaced: a code another number
    asked for was still mailed to him, on a stranger's request, and refused only when
    it came back (found by review). No code is mailed now, but the number that asked
    is answered as for any address, counted against the same limits, and any code it
    gives is a wrong one: whether an address is linked is nobody's to learn there."""
    bob = {"phone": VICTIM_PHONE}
    assert proofs.verify_by_tools(partial(tools, call), db.session, bob, "bob@example.com")["verified"]
    _an_hour_passes()
    mailed = len(_code_rows())
    stranger = {"phone": ATTACKER_PHONE, "language": "es"}
    (linked,) = tools(call, stranger, ("verify_email", {"email": "Bob@Example.com"}))
    (normal,) = tools(
        call, {"phone": "+5215587650000", "language": "es"}, ("verify_email", {"email": "ann@example.com"})
    )
    assert linked == json.loads(json.dumps(normal).replace("ann@example.com", "bob@example.com"))
    assert [row.to_address for row in _code_rows()[mailed:]] == ["ann@example.com"]
    # Any code is a wrong one, counted as every wrong try is; never "linked elsewhere".
    answers = tools(
        call,
        stranger,
        *[("verify_email", {"email": "bob@example.com", "code": f"{n:06d}"}) for n in range(2)],
    )
    assert {a["error"] for a in answers} == {"Invalid or expired verification code"}
    wrong = db.session.execute(
        select(EmailProof.wrong_tries).where(EmailProof.phone == ATTACKER_PHONE)
    ).scalar_one()
    assert wrong == 2
    # The number's three requests an hour are spent alike.
    asked = tools(
        call,
        stranger,
        *[("verify_email", {"email": "bob@example.com"})] * 2,
        ("verify_email", {"email": "ann@example.com"}),
    )
    assert [a["success"] for a in asked] == [True, True, False]
    assert asked[2]["error"] == "Too many verification codes requested. Please try again later."
    # And the mailbox's ten, every number together.
    answered = [
        tools(call, {"phone": f"+52155100000{n:02d}"}, ("verify_email", {"email": "bob@example.com"}))[0]
        for n in range(8)
    ]
    assert [a["success"] for a in answered] == [True] * 7 + [False]
    assert answered[7]["error"] == "Too many verification codes requested. Please try again later."
    assert [row.to_address for row in _code_rows()[mailed:]] == ["ann@example.com"]
    db.session.expire_all()
    assert contact("bob@example.com").phone == VICTIM_PHONE  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "email",
    [
        "not an address",
        "5215512345678@phone.invalid",
        "support@helpdesk.test",
        "x@\x00.com",
        # The outbox never mails a machine address: the customer was told a code
        # was mailed that never would be (found by the review of the proof).
        "noreply@example.com",
        "mailer-daemon@example.com",
        # Nor one whose domain has no ASCII form a relay could take (a label of 60
        # `ü` is valid, but 63 letters are too few for its IDNA form; found by the
        # chat review).
        "ana@" + "\u00fc" * 60 + ".example",
        # An address literal: a relay mailing it connects to that host, whatever it
        # is (its own loopback, an internal server); found by the inputs review.
        "ana@[127.0.0.1]",
        "ana@[IPv6:::1]",
    ],
)
def test_verify_email_takes_only_a_customer_s_address(call, email):
    (answer,) = tools(call, {"phone": VICTIM_PHONE}, ("verify_email", {"email": email}))
    assert answer["error"] == "Invalid arguments format"
    assert _code_rows() == []


def test_verify_email_takes_a_fullwidth_domain_as_the_mailbox_it_reaches(call):
    """`ana@ｅｘａｍｐｌｅ.com` is mailed at ana@example.com (IDNA folds fullwidth
    letters), but the proof bound the number to a second contact beside
    ana@example.com's, another identity for one mailbox. The address is proven, and
    the number bound, with its domain as IDNA maps it (docs/integrations.md)."""
    fullwidth = "ana@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com"
    (asked,) = tools(call, {"phone": VICTIM_PHONE}, ("verify_email", {"email": fullwidth}))
    assert asked["success"] is True and asked["email"] == "ana@example.com", asked
    assert [row.to_address for row in _code_rows()] == ["ana@example.com"]


def test_verify_email_of_a_number_bound_before_folding_is_that_address(call):
    """A number proven for `ana@ｅｘａｍｐｌｅ.com` before domains were folded keeps
    that contact: the same address named again is the one it is linked to, not
    "linked elsewhere" (docs/integrations.md, "Who the customer is")."""
    fullwidth = "ana@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com"
    contacts.find_or_create(db.session, fullwidth, "Ana").phone = VICTIM_PHONE  # as bound before
    db.session.commit()
    (asked,) = tools(call, {"phone": VICTIM_PHONE}, ("verify_email", {"email": fullwidth}))
    assert asked["success"] is True and asked["email"] == fullwidth, asked
    assert _code_rows() == []


def test_verify_email_of_the_bound_address_in_its_other_spelling_is_that_address(call, app):
    """Ana's mail program writes her domain in punycode, so her contact is
    `ana@xn--bcher-kva.example`, and her number was proven for it. The assistant
    naming it as she types it, `ana@bücher.example`, is the same mailbox: it was
    answered "Already linked to another number or email address", telling her the
    address she linked was someone else's (found by the channels review)."""
    contacts.find_or_create(db.session, "ana@xn--bcher-kva.example", "Ana")
    db.session.commit()
    proofs.prove(db.session, app.config, VICTIM_PHONE, "ana@bücher.example", "Ana")
    mailed = len(_code_rows())
    for spelling in ("ana@bücher.example", "Ana@BÜCHER.example", "ana@xn--bcher-kva.example"):
        (asked,) = tools(call, {"phone": VICTIM_PHONE}, ("verify_email", {"email": spelling}))
        assert asked["success"] is True and asked["verified"] is True, (spelling, asked)
        assert asked["email"] == "ana@xn--bcher-kva.example"
    assert len(_code_rows()) == mailed  # no code mailed: nothing to prove
    (other,) = tools(call, {"phone": VICTIM_PHONE}, ("verify_email", {"email": "ana@example.com"}))
    assert other["error"] == "Already linked to another number or email address"


def test_the_right_code_given_with_the_other_spelling_of_the_address_is_right(call):
    """The code was asked for `ana@xn--bcher-kva.example` (her contact's spelling, as
    her mail program writes it) and given back naming `ana@bücher.example`, one
    mailbox: the right code was a wrong try, one of the code's 5 and of the
    mailbox's 20 a day (found by the channels review)."""
    contacts.find_or_create(db.session, "ana@xn--bcher-kva.example", "Ana")
    db.session.commit()
    ana = {"phone": VICTIM_PHONE}
    (asked,) = tools(call, ana, ("verify_email", {"email": "ana@xn--bcher-kva.example"}))
    assert asked["verified"] is False, asked
    code = proofs.mailed_code(db.session, "ana@xn--bcher-kva.example")
    (given,) = tools(call, ana, ("verify_email", {"email": "ana@bücher.example", "code": code}))
    assert given["success"] is True and given["verified"] is True, given
    db.session.expire_all()
    assert contact("ana@xn--bcher-kva.example").phone == VICTIM_PHONE  # type: ignore[union-attr]
    assert db.session.execute(select(func.sum(EmailProof.wrong_tries))).scalar_one() == 0


def test_verify_email_in_a_web_chat_changes_nothing(call):
    """The chat's email is vouched for by the widget's backend: nothing to prove there."""
    (answer,) = tools(
        call,
        {"email": "ana@example.com", "language": "es"},
        ("verify_email", {"email": "ana@example.com"}),
        channel="chat",
    )
    assert answer == {
        "success": False,
        "error": "Email verification is only for WhatsApp",
        "userMessage": "Tu dirección de correo ya es conocida en este chat.",
    }
    assert _code_rows() == []


def test_the_code_mail_is_in_the_customer_s_language_about_no_ticket(app, call, sink):
    tools(call, {"phone": VICTIM_PHONE, "language": "es"}, ("verify_email", {"email": "lucia@example.com"}))
    code = proofs.mailed_code(db.session, "lucia@example.com")
    (mail,) = deliver(app, sink)
    assert mail["Subject"] == f"Tu código de verificación: {code}"
    assert mail["To"] == "lucia@example.com" and mail["Auto-Submitted"] == "auto-replied"
    assert "In-Reply-To" not in mail and "TKT" not in mail["Message-ID"]
    assert code in text_of(mail) and code in html_of(mail)
    assert "15 minutos" in text_of(mail)


def test_the_code_mails_minutes_have_a_plural_form_in_both_languages(app):
    """A lifetime of 1 minute read "1 minutes" and "1 minutos" (found by review): the
    minutes choose their form like every count in a sentence (docs/languages.md)."""
    from helpdesk.outbound.compose import Composer

    composer = Composer(app.config)
    for language, minutes, phrase in (
        ("en", 1, "works for 1 minute and"),
        ("es", 1, "durante 1 minuto y"),
        ("en", 1234, "works for 1,234 minutes and"),
        ("es", 1234, "durante 1.234 minutos y"),
    ):
        row = OutboxMessage(
            ticket_id=None,
            kind="email_code",
            to_address="lucia@example.com",
            cc_addresses="",
            status_reason=notifications.code_reason(language, "123456", minutes),
            state="pending",
            attempts=0,
        )
        db.session.add(row)
        db.session.flush()
        composer.render(db.session, row)
        assert phrase in (row.body_text or "") and phrase in (row.body_html or ""), (phrase, row.body_text)


def test_the_code_leaves_its_row_once_rendered_or_skipped(app, call, sink):
    """The row keeps the code as text only until the sender renders it (the mail
    keeps its own copy): it stayed in `status_reason` for good, and a row skipped
    unrendered kept it too (found by review; docs/outbound-mail.md, "Verification
    codes"). A machine's address skips it (`verify_email` refuses one: queued here)."""
    tools(call, {"phone": VICTIM_PHONE}, ("verify_email", {"email": "lucia@example.com"}))
    notifications.queue_email_code(db.session, "noreply@example.com", "en", "123456", 15)
    db.session.commit()
    code = proofs.mailed_code(db.session, "lucia@example.com")
    (mail,) = deliver(app, sink)
    assert code in text_of(mail)
    db.session.expire_all()
    rows = [(row.to_address, row.state, row.status_reason) for row in _code_rows()]
    assert rows == [("lucia@example.com", "sent", ""), ("noreply@example.com", "skipped", "")]


def test_a_code_row_never_mailed_cannot_be_retried_and_is_never_mailed_without_its_code(app, call, sink):
    """A row skipped before it was rendered no longer holds its code: `flask outbox
    retry` of it mailed "Your verification code: " with no code, valid "for 0
    minutes" (found by the second review of the fixes). It is refused, the customer
    asks for a new code; and a code row found without its code fails visibly. A
    machine's address skips it (`verify_email` refuses one: queued here)."""
    notifications.queue_email_code(db.session, "noreply@example.com", "en", "123456", 15)
    db.session.commit()
    assert deliver(app, sink) == []
    (row,) = _code_rows()
    with pytest.raises(Conflict, match="never mailed"):
        notifications.retry(db.session, row.id)
    db.session.rollback()
    # As if retried by hand in the database, to an address the sender mails.
    row.state, row.next_attempt_at, row.to_address = "pending", now(), "gone@example.com"
    db.session.commit()
    assert deliver(app, sink) == []
    db.session.expire_all()
    (row,) = _code_rows()
    assert row.state == "failed" and "verification code is gone" in row.last_error, row.last_error


def test_a_code_row_that_cannot_be_rendered_keeps_no_copy_of_its_code(app, call, sink, tmp_path):
    """A broken operator template failed the row after its subject, holding the code,
    was written: the code never went out and stayed in the row (found by the third
    review of the fixes). The row is written only once all of it rendered."""
    (tmp_path / "email_code.txt").write_text("{% include 'no-such-template.txt' %}\n")
    app.config["MAIL_TEMPLATES_DIR"] = str(tmp_path)
    tools(call, {"phone": VICTIM_PHONE}, ("verify_email", {"email": "lucia@example.com"}))
    code = proofs.mailed_code(db.session, "lucia@example.com")
    assert deliver(app, sink) == []
    db.session.expire_all()
    (row,) = _code_rows()
    assert row.state == "failed" and row.last_error.startswith("cannot render"), row.last_error
    kept = [row.status_reason, row.subject, row.body_text, row.body_html]
    assert not any(code in (value or "") for value in kept), kept


def test_code_mail_is_under_neither_outbox_limit_on_automatic_mail(app, call, sink):
    """A code mail is about no ticket: counting `ticket_id IS NULL` as its ticket
    would make every other code mail its ticket's, under the per-ticket limit. Nor is
    it under the limit per recipient: `email_proofs` bounds the codes a mailbox gets
    (docs/outbound-mail.md, "Verification codes")."""
    for n in range(3):
        tools(call, {"phone": f"+52155100000{n}"}, ("verify_email", {"email": f"c+{n}@example.com"}))
    limits = {"OUTBOUND_MAX_AUTO_PER_TICKET": 1, "OUTBOUND_MAX_AUTO_PER_RECIPIENT": 1}
    assert len(deliver(app, sink, **limits)) == 3


def test_the_owner_s_code_is_mailed_whatever_other_mail_filled_the_address_s_budget(
    app, call, service, agent_actor, sink
):
    """Acknowledgments (of mail forged with Bob's From, say) filled the outbox's
    automatic mail per recipient, and the code Bob's own number asked for was skipped
    by that limit while the assistant told him it was mailed (found by review). A code
    neither counts toward that budget nor is skipped by it; the codes are bounded by
    their own limits, and the acknowledgments by the budget, as before."""
    limits = {"OUTBOUND_MAX_AUTO_PER_RECIPIENT": 3}
    # Codes first: they do not spend the acknowledgments' budget.
    for number in ("+5215587650001", "+5215587650002"):
        tools(call, {"phone": number}, ("verify_email", {"email": "bob+x@example.com"}))
    for n in range(4):
        open_ticket(service, agent_actor, requester_email="bob@example.com", subject=f"Forged {n}")
    deliver(app, sink, **limits)
    acknowledgments = db.session.execute(
        select(OutboxMessage.state).where(OutboxMessage.kind == "created").order_by(OutboxMessage.id)
    ).scalars()
    assert list(acknowledgments) == ["sent", "sent", "sent", "skipped"]
    assert [row.state for row in _code_rows()] == ["sent", "sent"]
    # The budget is full: Bob's own code still goes, and proves his mailbox.
    bob = {"phone": VICTIM_PHONE}
    (asked,) = tools(call, bob, ("verify_email", {"email": "bob@example.com"}))
    assert asked["success"] is True
    code = proofs.mailed_code(db.session, "bob@example.com")
    mails = deliver(app, sink, **limits)
    assert len(mails) == 6 and code in text_of(mails[-1]), [m["Subject"] for m in mails]
    # The codes cannot flood it either: ten an hour for the mailbox, every number together.
    strangers = [f"+52155876510{n:02d}" for n in range(4)]
    answers = [
        answer
        for number in strangers
        for answer in tools(call, {"phone": number}, *[("verify_email", {"email": "Bob@example.com"})] * 3)
    ]
    assert [a["success"] for a in answers] == [True] * 7 + [False] * 5
    assert len(deliver(app, sink, **limits)) == 3 + email_proofs.MAILBOX_MAX_REQUESTS
    assert {row.state for row in _code_rows()} == {"sent"}
    (proven,) = tools(call, bob, ("verify_email", {"email": "bob@example.com", "code": code}))
    assert proven["verified"] is True
