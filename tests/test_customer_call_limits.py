"""One customer's calls inside an integration's budget (`INTEGRATION_CUSTOMER_RATE_LIMIT`,
docs/integrations.md "Calls per customer"): the chat and assistant endpoints count
each customer apart, by the number or mailbox the request names in its canonical
form, so one customer over their limit is refused while the integration's other
customers go on; and a chat's lookup, or the assistant's calls that read or fail,
store no contact for an address (or a number) they do not know."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from helpdesk.extensions import db
from helpdesk.models import Contact
from helpdesk.services.integrations import IntegrationsService
from helpdesk.services.tickets import TicketsService
from tests.support.database import open_ticket

PER_CUSTOMER = 3
BUDGET = 8  # the integration's API_RATE_LIMIT


@pytest.fixture
def limited(app: Flask) -> Flask:
    app.config.update(
        INTEGRATION_CUSTOMER_RATE_LIMIT=f"{PER_CUSTOMER} per minute", API_RATE_LIMIT=f"{BUDGET} per minute"
    )
    return app


def _token(kind: str, name: str = "") -> dict[str, str]:
    _integration, token = IntegrationsService(db.session).add(name or f"{kind}-integration", kind)
    db.session.commit()
    return {"Authorization": f"Bearer {token}"}


def _lookup(client: FlaskClient, headers: dict[str, str], email: str, text: str = "TKT-000001") -> Any:
    return client.post(
        "/api/v1/chat/lookup", json={"customer": {"email": email}, "text": text}, headers=headers
    )


def _tool_calls(client: FlaskClient, headers: dict[str, str], phone: str, calls: int) -> list[dict[str, Any]]:
    return _batch(client, headers, {"phone": phone, "language": "es"}, [("list_my_tickets", {})] * calls)


def _batch(
    client: FlaskClient,
    headers: dict[str, str],
    customer: dict[str, str],
    calls: list[tuple[str, dict[str, Any]]],
    channel: str = "whatsapp",
) -> list[dict[str, Any]]:
    """The outputs of the assistant's tool `calls` (name, arguments) for `customer`."""
    body = {
        "customer": customer,
        "channel": channel,
        "tool_calls": [
            {
                "id": f"call_{n}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(arguments)},
            }
            for n, (name, arguments) in enumerate(calls)
        ],
    }
    response = client.post("/api/v1/assistant/tool-calls", json=body, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    return [json.loads(item["output"]) for item in response.get_json()["tool_outputs"]]


def _contacts() -> int:
    return db.session.scalar(select(func.count(Contact.id))) or 0


def test_a_chat_customer_over_their_limit_gets_429_while_the_others_go_on(limited: Flask) -> None:
    """One chat visitor hammering the lookup spent the widget's whole budget, and
    every other customer of the integration got 429 (found by review)."""
    client = limited.test_client()
    headers = _token("chat")
    answers = [_lookup(client, headers, "ann@example.com") for _ in range(PER_CUSTOMER + 1)]
    assert [answer.status_code for answer in answers] == [200] * PER_CUSTOMER + [429]
    refused = answers[-1]
    assert refused.get_json()["error"]["code"] == "too_many_customer_calls"
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    # Her other spellings are her mailbox, counted as one customer.
    for spelling in ("Ann@EXAMPLE.com", "ann+chat@example.com", "ann@ｅｘａｍｐｌｅ.com"):
        assert _lookup(client, headers, spelling).status_code == 429
    # A conversation of hers is refused too, before it opens anything.
    conversation = {"conversation_id": "c-1", "customer": {"email": "ann@example.com"}, "transcript": "Hi"}
    assert client.post("/api/v1/chat/tickets", json=conversation, headers=headers).status_code == 429
    # Her refused calls cost the integration nothing: its budget is the others'.
    others = [
        _lookup(client, headers, f"customer{n}@example.com").status_code for n in range(BUDGET - PER_CUSTOMER)
    ]
    assert others == [200] * (BUDGET - PER_CUSTOMER)
    assert _lookup(client, headers, "late@example.com").status_code == 429  # the integration's own budget
    assert _lookup(client, headers, "late@example.com").get_json()["error"]["code"] == "too_many_requests"


def test_an_assistant_customer_is_counted_per_tool_call_and_refused_as_outputs(limited: Flask) -> None:
    """A single WhatsApp user steering the model (20 tool calls a request) spent the
    assistant's budget for every customer of the ISP (found by review). Each tool
    call counts; over the limit a call is a failure output, never an HTTP error
    (SPEC §11), in the customer's language."""
    client = limited.test_client()
    headers = _token("assistant")
    first = _tool_calls(client, headers, "+5215512345678", 2)
    assert [output["success"] for output in first] == [True, True]
    # The same number as WhatsApp writes it: one customer. One call fits, two do not.
    second = _tool_calls(client, headers, "whatsapp:+52 1 55 1234 5678", 3)
    assert second[0]["success"] is True
    refused = {
        "success": False,
        "error": "Too many calls for this customer. Please try again later.",
        "userMessage": "Has hecho muchas solicitudes en poco tiempo. "
        "Por favor, inténtalo de nuevo en un momento.",
    }
    assert second[1:] == [refused, refused]
    # Requests of hers refused whole cost the integration nothing.
    for _ in range(BUDGET):
        assert _tool_calls(client, headers, "5215512345678", 1) == [refused]
    other = _tool_calls(client, headers, "+5215587654321", 3)
    assert [output["success"] for output in other] == [True, True, True]


def test_an_integration_s_customers_are_not_another_integration_s(limited: Flask) -> None:
    client = limited.test_client()
    first, second = _token("chat"), _token("chat", "another-chat")
    for _ in range(PER_CUSTOMER):
        assert _lookup(client, first, "ann@example.com").status_code == 200
    assert _lookup(client, first, "ann@example.com").status_code == 429
    assert _lookup(client, second, "ann@example.com").status_code == 200


def test_a_chat_lookup_stores_no_contact_for_an_address_it_does_not_know(app: Flask) -> None:
    """Every lookup naming a new address made a contact for good: storage grew with
    whatever addresses a caller invented (found by review). A CC without a contact
    of their own still gets the card of the ticket they take part in."""
    client = app.test_client()
    headers = _token("chat")
    service = TicketsService.from_config(db.session, app.config)
    open_ticket(service, cc=[("cc-only@example.com", "Cy")])
    contacts_before = db.session.scalar(select(func.count(Contact.id)))
    for n in range(5):
        answer = _lookup(client, headers, f"invented{n}@example.com")
        assert answer.status_code == 200 and answer.get_json() == {"tickets": []}
    cards = _lookup(client, headers, "cc-only@example.com").get_json()["tickets"]
    assert [card["number"] for card in cards] == ["TKT-000001"]
    assert db.session.scalar(select(func.count(Contact.id))) == contacts_before
    # A known customer is found as before, the language she gives kept.
    known = client.post(
        "/api/v1/chat/lookup",
        json={"customer": {"email": "ann@example.com", "language": "es"}, "text": "tkt-1"},
        headers=headers,
    )
    assert known.get_json()["tickets"][0]["sentence"] == "Recibimos tu ticket y un agente lo atenderá pronto."
    ann = db.session.execute(select(Contact).where(Contact.email == "ann@example.com")).scalar_one()
    assert ann.language == "es"


REPORT = ("create_ticket_report", {"title": "Slow internet", "description": "2 Mbps of 100."})
READS = [("list_my_tickets", {}), ("get_ticket_information", {"ticketId": "TKT-000001"})]


def test_the_assistant_on_a_chat_stores_no_contact_for_calls_that_only_read(app: Flask) -> None:
    """An assistant in a web chat made a contact for every email it was given, even
    for calls that only read, so storage grew with whatever addresses a caller
    invented, as the lookup's did (found by review). A CC without a contact of their
    own still reaches the ticket they take part in; a call that writes makes the
    contact, as before."""
    client = app.test_client()
    headers = _token("assistant")
    service = TicketsService.from_config(db.session, app.config)
    open_ticket(service, cc=[("cc-only@example.com", "Cy")])
    contacts_before = _contacts()
    for n in range(5):
        listed, asked = _batch(client, headers, {"email": f"invented{n}@example.com"}, READS, "chat")
        assert listed == {"success": True, "tickets": []}
        assert asked["success"] is False and "not found" in asked["error"]
    listed, asked = _batch(client, headers, {"email": "cc-only@example.com"}, READS, "chat")
    assert [ticket["ticketId"] for ticket in listed["tickets"]] == ["TKT-000001"]
    assert asked["ticketId"] == "TKT-000001" and asked["description"] is None  # a CC's view
    assert _contacts() == contacts_before
    # A batch that writes makes the contact, its reads answered for it.
    listed, created = _batch(client, headers, {"email": "new@example.com"}, [READS[0], REPORT], "chat")
    assert listed == {"success": True, "tickets": []} and created["ticketId"] == "TKT-000002"
    assert _contacts() == contacts_before + 1


def test_a_write_the_customer_s_limit_refuses_stores_no_contact_either(limited: Flask) -> None:
    """Only the calls that run can write: a report over the limit makes no contact."""
    client = limited.test_client()
    headers = _token("assistant")
    contacts_before = _contacts()
    outputs = _batch(
        client, headers, {"email": "invented@example.com"}, [READS[0]] * PER_CUSTOMER + [REPORT], "chat"
    )
    assert [output["success"] for output in outputs] == [True] * PER_CUSTOMER + [False]
    assert _contacts() == contacts_before


# Calls that may write but fail before writing anything: bad arguments, a ticket the
# customer does not reach, a tool the channel refuses, the customer's ticket limits.
FAILING_WRITES = [
    ("rate_ticket", {"ticketId": "TKT-000001", "rating": 9}),
    ("rate_ticket", {"ticketId": "TKT-000404", "rating": 5}),
    ("add_ticket_comment", {"ticketId": "TKT-000404", "text": "Any news?"}),
    REPORT,  # over CUSTOMER_MAX_TICKETS_PER_HOUR
]


@pytest.mark.parametrize("channel", ["chat", "whatsapp"])
def test_writes_that_fail_store_no_contact(app: Flask, channel: str) -> None:
    """A batch holding a call that may write stored the customer's contact before
    its calls ran, even when every one of them then failed, so a caller inventing an
    address (or, with a leaked token, a number) per request still grew storage by a
    contact a request (found by review). The contact is stored by the first call
    that writes, in its transaction."""
    app.config["CUSTOMER_MAX_TICKETS_PER_HOUR"] = 0
    client = app.test_client()
    headers = _token("assistant")
    open_ticket(TicketsService.from_config(db.session, app.config))
    contacts_before = _contacts()
    verify = (
        "verify_email",
        {"email": "not-an-address"} if channel == "whatsapp" else {"email": "a@b.example"},
    )
    for n in range(3):
        customer = (
            {"email": f"invented{n}@example.com"} if channel == "chat" else {"phone": f"+5215500000{n:03}"}
        )
        outputs = _batch(client, headers, customer, [*FAILING_WRITES, verify, *READS], channel)
        assert [output["success"] for output in outputs] == [False] * 5 + [True, False]
    assert _contacts() == contacts_before


@pytest.mark.parametrize("channel", ["chat", "whatsapp"])
def test_the_first_write_stores_the_contact_and_the_batch_goes_on_with_it(app: Flask, channel: str) -> None:
    """Once a call wrote for someone new, the batch's later calls act for the contact
    it stored: the ticket just opened is listed, and commented on."""
    client = app.test_client()
    headers = _token("assistant")
    customer = {"email": "new@example.com", "name": "Nia", "language": "es"}
    if channel == "whatsapp":
        customer = {"phone": "+5215511112222", "name": "Nia", "language": "es"}
    contacts_before = _contacts()
    comment = ("add_ticket_comment", {"ticketId": "TKT-000001", "text": "It is worse at night."})
    listed, created, listed_after, commented = _batch(
        client, headers, customer, [READS[0], REPORT, READS[0], comment], channel
    )
    assert listed == {"success": True, "tickets": []}
    assert created["success"] is True and created["ticketId"] == "TKT-000001"
    assert [ticket["ticketId"] for ticket in listed_after["tickets"]] == ["TKT-000001"]
    assert commented["success"] is True
    assert _contacts() == contacts_before + 1
    contact = db.session.execute(select(Contact).order_by(Contact.id.desc()).limit(1)).scalar_one()
    assert (contact.name, contact.language) == ("Nia", "es")
    assert contact.phone == (customer.get("phone") if channel == "whatsapp" else None)
    # The next batch finds the customer as known.
    (listed,) = _batch(client, headers, customer, [READS[0]], channel)
    assert [ticket["ticketId"] for ticket in listed["tickets"]] == ["TKT-000001"]
    assert _contacts() == contacts_before + 1


def test_a_chat_conversation_refused_stores_no_contact(app: Flask) -> None:
    """`/chat/tickets` committed the customer's contact before the ticket, "whatever
    happens to the ticket": each post refused over the ticket limits (a caller
    inventing `ann+1@`, `ann+2@`… of a mailbox at its limits) or naming another
    customer's conversation stored a contact for good (found by review)."""
    client = app.test_client()
    headers = _token("chat")

    def post(conversation: str, email: str) -> Any:
        body = {"conversation_id": conversation, "customer": {"email": email}, "transcript": "Hi"}
        return client.post("/api/v1/chat/tickets", json=body, headers=headers)

    assert post("c-ann", "ann@example.com").status_code == 201
    contacts_before = _contacts()
    for n in range(3):
        refused = post("c-ann", f"invented{n}@example.com")  # Ann's conversation
        assert refused.status_code == 409
    app.config["CUSTOMER_MAX_TICKETS_PER_HOUR"] = 0
    for n in range(3):
        refused = post(f"c-{n}", f"invented{n}@example.com")
        assert refused.get_json()["error"]["code"] == "too_many_tickets"
    assert _contacts() == contacts_before
    # Ann's repeat is answered as before, her contact untouched.
    assert post("c-ann", "ann@example.com").status_code == 200
    assert _contacts() == contacts_before


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
@pytest.mark.parametrize("channel", ["chat", "whatsapp"])
def test_two_first_batches_of_one_new_customer_at_once_store_one_contact(app: Flask, channel: str) -> None:
    """Review of the lazy contact: two batches for the same new address (or number)
    at once, each opening a ticket, both found no contact, and each stores one in its
    write's transaction. On PostgreSQL (SQLite lets one writer in) they really run
    together (threads, a barrier before the request): both answer, under one
    contact, no unique violation (500)."""
    import threading

    db.session.commit()
    headers = _token("assistant")
    contacts_before = _contacts()
    customer = {"email": "nova@example.com"} if channel == "chat" else {"phone": "+5215599990000"}
    start = threading.Barrier(2, timeout=30)
    outputs: list[object] = []

    def batch() -> None:
        client = app.test_client()
        start.wait()
        try:
            outputs.append(_batch(client, headers, customer, [REPORT, READS[0]], channel))
        except Exception as exc:  # a 500 or a failed answer, reported below
            outputs.append(exc)

    threads = [threading.Thread(target=batch) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(outputs) == 2, outputs
    for output in outputs:
        assert isinstance(output, list) and [call["success"] for call in output] == [True, True], output
    db.session.rollback()
    assert _contacts() == contacts_before + 1
