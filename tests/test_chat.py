"""The live-chat widget's backend (docs/integrations.md): conversations become
tickets, numbers typed in the chat every way get status cards of the customer's
own tickets only, and the per-customer limit answers 429."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from helpdesk.extensions import db
from helpdesk.models import Ticket
from helpdesk.services.integrations import IntegrationsService
from tests.support.database import open_ticket

ANN = {"email": "ann@example.com", "name": "Ann Example"}


@pytest.fixture
def chat(app, client):  # type: ignore[no-untyped-def]
    _integration, token = IntegrationsService(db.session).add("site-chat", "chat")
    db.session.commit()
    headers = {"Authorization": f"Bearer {token}"}

    def post(path: str, body: object):  # type: ignore[no-untyped-def]
        return client.post(f"/api/v1/chat/{path}", json=body, headers=headers)

    return post


def test_a_conversation_becomes_a_chat_ticket_with_its_id(chat, portal):
    response = chat(
        "tickets",
        {
            "conversation_id": "conv-42",
            "customer": ANN,
            "transcript": "\n  Ann: my router blinks red   since noon\nBot: let me open a ticket",
        },
    )
    assert response.status_code == 201, response.get_json()
    card = response.get_json()
    assert (card["number"], card["subject"], card["conversation_id"]) == (
        "TKT-000001",
        "Ann: my router blinks red since noon",
        "conv-42",
    )
    assert card["sentence"] == "We have received your ticket and an agent will pick it up soon."
    ticket = db.session.execute(select(Ticket)).scalar_one()
    assert (ticket.channel, ticket.source, ticket.conversation_id) == ("chat", "customer", "conv-42")
    assert "conversation conv-42" in portal.get("/tickets/TKT-000001").get_data(as_text=True)


@pytest.mark.parametrize(
    "text",
    [
        "what about tkt-1?",
        "TKT-000001",
        "(TKT-1), and TKT-0000001.",
        "Ticket [tkt-000001] please",
        "re:TKT-1!",
    ],
)
def test_numbers_typed_every_way_find_the_customers_ticket(chat, service, text):
    open_ticket(service)
    (card,) = chat("lookup", {"customer": {"email": "ANN@example.com"}, "text": text}).get_json()["tickets"]
    assert card["number"] == "TKT-000001" and card["status"] == "new"


def test_other_peoples_and_unknown_numbers_are_left_out_silently(chat, service):
    open_ticket(service)  # Ann's, TKT-000001
    open_ticket(service, requester_email="zed@example.com", subject="Zed's")
    open_ticket(service, requester_email="bo@example.com", cc=[("ann@example.com", "Ann")])  # Ann is CC
    answer = chat("lookup", {"customer": ANN, "text": "tkt-2, tkt-3, tkt-1 and TKT-999, mytkt-1"}).get_json()
    assert [card["number"] for card in answer["tickets"]] == ["TKT-000003", "TKT-000001"]


def test_the_status_sentence_is_in_the_customers_language(chat, service):
    open_ticket(service)
    chat("tickets", {"conversation_id": "c", "customer": {**ANN, "language": "es"}, "transcript": "x"})
    cards = chat("lookup", {"customer": ANN, "text": "TKT-1 y TKT-2"}).get_json()["tickets"]
    assert [card["sentence"] for card in cards] == ["Recibimos tu ticket y un agente lo atenderá pronto."] * 2


def test_the_per_customer_limit_answers_429(chat, app):
    app.config["CUSTOMER_MAX_TICKETS_PER_HOUR"] = 2
    codes = [
        chat("tickets", {"conversation_id": f"c{n}", "customer": ANN, "transcript": "help"}).status_code
        for n in range(3)
    ]
    assert codes == [201, 201, 429]
    assert len(db.session.execute(select(Ticket)).all()) == 2


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("tickets", {"conversation_id": "c", "customer": {"phone": "+5215512345678"}, "transcript": "x"}),
        ("tickets", {"conversation_id": "", "customer": ANN, "transcript": "x"}),
        ("tickets", {"conversation_id": "c" * 201, "customer": ANN, "transcript": "x"}),
        ("tickets", {"conversation_id": "c", "customer": ANN}),
        ("tickets", {"conversation_id": "c", "customer": ANN, "transcript": "x", "subject": "s" * 501}),
        ("tickets", {"conversation_id": "c\u0000", "customer": ANN, "transcript": "x"}),
        ("lookup", {"customer": ANN, "text": "x" * 10_001}),
        ("lookup", {"customer": {"email": "nobody"}, "text": "tkt-1"}),
        ("lookup", {"text": "tkt-1"}),
    ],
)
def test_malformed_chat_requests_are_refused(chat, path, body):
    assert chat(path, body).status_code == 422
    assert db.session.execute(select(Ticket)).first() is None


def test_an_assistant_token_is_not_a_chat_token(client, app):
    _integration, token = IntegrationsService(db.session).add("bot", "assistant")
    db.session.commit()
    response = client.post(
        "/api/v1/chat/lookup",
        json={"customer": ANN, "text": "tkt-1"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 403
