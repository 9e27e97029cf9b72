"""The live-chat widget's backend (docs/integrations.md): conversations become
tickets, numbers typed in the chat every way get status cards of the customer's
own tickets only, the per-customer limit answers 429, and staff get a ticket's
share text in the customer's language."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, select, update

from helpdesk import addresses, languages
from helpdesk import vocabulary as v
from helpdesk.extensions import db
from helpdesk.models import Contact, Message, OutboxMessage, Participant, Ticket
from helpdesk.services.assistant import ANSWERED_DESCRIPTION_CHARS
from helpdesk.services.chat import SHARE_TEXTS, STATUS_SENTENCES, status_sentence
from helpdesk.services.integrations import IntegrationsService
from tests.support.database import open_ticket
from tests.support.hostile import distinct_words
from tests.support.lost_commit import commit_answer_lost
from tests.support.memory import peak_of

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


def test_a_chat_ticket_is_answered_as_the_api_s_ticket_with_its_card(chat, api):
    """SPEC §11: `POST /chat/tickets` → 201 ticket. It answered the status card
    alone, without `channel`, `description`, `requester_email`, `assignee`…; the
    body is now the ticket as the staff API gives it, with the card's `sentence`,
    less what only staff work with (team, tags, level, the moves staff may make:
    an integration acts for a customer; found by review)."""
    response = chat(
        "tickets",
        {"conversation_id": "conv-7", "customer": ANN, "subject": "Router", "transcript": "It blinks red."},
    )
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    expected = api.get("/tickets/TKT-000001").get_json()
    for key in ("messages", "messages_total", "messages_older", "history", "cc", "organization"):
        expected.pop(key)
    for key in ("linked_ticket", "closed_at", "satisfaction"):
        expected.pop(key)
    for key in ("escalated_to", "related", "team", "tags", "escalation_level", "escalated_at"):
        expected.pop(key)
    assert expected.pop("allowed_transitions")
    assert not {"team", "tags", "escalation_level", "allowed_transitions"} & set(body)
    sentence = body.pop("sentence")
    assert body == expected
    assert (body["channel"], body["description"], body["conversation_id"]) == (
        "chat",
        "It blinks red.",
        "conv-7",
    )
    assert (body["requester_email"], body["requester_name"], body["assignee"]) == (
        "ann@example.com",
        "Ann Example",
        None,
    )
    assert sentence == "We have received your ticket and an agent will pick it up soon."


def test_a_transcript_of_more_words_than_a_tsvector_holds_becomes_a_ticket(chat):
    """Answered 503 "retry" on PostgreSQL before migration 0027: the widget retried
    forever."""
    transcript = distinct_words(140_000)
    response = chat("tickets", {"conversation_id": "c1", "customer": ANN, "transcript": transcript})
    assert response.status_code == 201, response.get_json()
    assert db.session.execute(select(Ticket.description)).scalar_one() == transcript


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


def test_a_merged_number_shows_the_survivor_the_customer_takes_part_in(chat, service, agent_actor):
    """Bo's TKT-2 is merged into Ann's TKT-1. His lookup of TKT-2 answered "Your
    ticket is closed" with no word of TKT-1, where the assistant and the tracker
    show him the survivor: now the card is the survivor's, naming the number he
    typed (`merged_from`), once however often he names either. Someone with no part
    in the survivor (a merge before its people became participants) gets nothing,
    as the assistant answers them "not found"."""
    kept = open_ticket(service, subject="Outage Roma")
    duplicate = open_ticket(service, requester_email="bo@example.com", subject="Sin internet")
    orphan = open_ticket(service, requester_email="cy@example.com", subject="Sin TV")
    service.merge(duplicate, kept, actor=agent_actor)
    service.merge(orphan, kept, actor=agent_actor)
    db.session.execute(delete(Participant).where(Participant.email == "cy@example.com"))
    db.session.commit()
    bo = {"email": "bo@example.com", "language": "es"}
    (card,) = chat("lookup", {"customer": bo, "text": "¿Y el TKT-000002? (tkt-1, tkt-2)"}).get_json()[
        "tickets"
    ]
    # the survivor's card under his own subject, never Ann's (files review)
    assert (card["number"], card["subject"], card["status"]) == ("TKT-000001", "Sin internet", "new")
    assert card["merged_from"] == "TKT-000002"
    assert card["sentence"] == "Recibimos tu ticket y un agente lo atenderá pronto."
    assert chat("lookup", {"customer": {"email": "cy@example.com"}, "text": "TKT-3"}).get_json() == {
        "tickets": []
    }
    (own,) = chat("lookup", {"customer": ANN, "text": "TKT-1"}).get_json()["tickets"]
    assert own["number"] == "TKT-000001" and "merged_from" not in own


def test_the_status_sentence_is_in_the_customers_language(chat, service):
    open_ticket(service)
    chat("tickets", {"conversation_id": "c", "customer": {**ANN, "language": "es"}, "transcript": "x"})
    cards = chat("lookup", {"customer": ANN, "text": "TKT-1 y TKT-2"}).get_json()["tickets"]
    assert [card["sentence"] for card in cards] == ["Recibimos tu ticket y un agente lo atenderá pronto."] * 2


@pytest.mark.parametrize(
    ("tag", "kept"), [("es-MX", "es"), ("ES_ar", "es"), ("esperanto", ""), ("english", ""), ("en", "en")]
)
def test_a_customer_s_language_is_the_main_language_of_its_tag(chat, tag, kept):
    """A tag's first two letters were taken for its language: `esperanto` was
    Spanish, `english` English by luck. Its main language (before `-` or `_`) is,
    and one the product does not speak is none (the default applies)."""
    chat("tickets", {"conversation_id": "c", "customer": {**ANN, "language": tag}, "transcript": "x"})
    assert db.session.execute(select(Contact.language)).scalar_one() == kept


def test_the_per_customer_limit_answers_429(chat, app):
    app.config["CUSTOMER_MAX_TICKETS_PER_HOUR"] = 2
    codes = [
        chat("tickets", {"conversation_id": f"c{n}", "customer": ANN, "transcript": "help"}).status_code
        for n in range(3)
    ]
    assert codes == [201, 201, 429]
    assert len(db.session.execute(select(Ticket)).all()) == 2


# -- a widget's retry (docs/integrations.md, "Chat") ---------------------------------------


def _acknowledgments() -> int:
    return len(db.session.execute(select(OutboxMessage).where(OutboxMessage.kind == "created")).all())


def test_a_retried_conversation_gets_its_ticket_back_and_no_second_acknowledgment(chat, service):
    """A widget posts the conversation again after a lost answer or a 503: each post
    opened a ticket and mailed an acknowledgment (3 posts, TKT-000001..3; found by
    review). The repeat answers the same ticket, 200, and queues nothing; the next
    number is still the next one."""
    body = {"conversation_id": "conv-42", "customer": ANN, "transcript": "Ann: my internet is down"}
    first = chat("tickets", body)
    repeats = [chat("tickets", body) for _ in range(2)]
    assert first.status_code == 201, first.get_json()
    assert [response.status_code for response in repeats] == [200, 200]
    assert all(response.get_json() == first.get_json() for response in repeats)
    assert len(db.session.execute(select(Ticket)).all()) == 1
    assert _acknowledgments() == 1
    assert open_ticket(service).number == 2


def test_a_conversation_whose_commit_answer_was_lost_is_outcome_unknown_and_its_repeat_its_ticket(chat):
    """The connection drops as the ticket's COMMIT goes, and the database kept it:
    the widget was told 503 `database_unavailable`, "nothing was kept". It is told
    `outcome_unknown`; posting the conversation again, as it does, answers the
    ticket (docs/integrations.md, "Chat")."""
    body = {"conversation_id": "conv-lost", "customer": ANN, "transcript": "Ann: no internet"}
    with commit_answer_lost(lambda statement: "INSERT INTO tickets" in statement):
        lost = chat("tickets", body)
    assert lost.status_code == 503 and lost.get_json()["error"]["code"] == "outcome_unknown"
    again = chat("tickets", body)
    assert again.status_code == 200 and again.get_json()["number"] == "TKT-000001"
    assert _acknowledgments() == 1


def test_a_conversation_that_went_on_gets_its_ticket_back_unchanged(chat):
    """A repeat whose transcript grew is the same conversation: its ticket, with
    nothing added (what a retry adds cannot be told from what was said since)."""
    body = {"conversation_id": "conv-42", "customer": ANN, "transcript": "Ann: my internet is down"}
    assert chat("tickets", body).status_code == 201
    longer = {**body, "subject": "Other", "transcript": body["transcript"] + "\nAnn: still down"}
    again = chat("tickets", longer)
    assert again.status_code == 200, again.get_json()
    assert (again.get_json()["number"], again.get_json()["description"]) == ("TKT-000001", body["transcript"])
    assert len(db.session.execute(select(Message)).all()) == 1


def test_a_repeat_does_not_spend_the_customers_tickets_per_hour(chat, app):
    app.config["CUSTOMER_MAX_TICKETS_PER_HOUR"] = 1
    body = {"conversation_id": "conv-42", "customer": ANN, "transcript": "help"}
    codes = [chat("tickets", body).status_code for _ in range(3)]
    other = chat("tickets", {**body, "conversation_id": "conv-43"}).status_code
    assert (codes, other) == ([201, 200, 200], 429)


def test_one_conversation_id_of_two_integrations_is_two_conversations(chat, client):
    _integration, token = IntegrationsService(db.session).add("shop-chat", "chat")
    db.session.commit()
    body = {"conversation_id": "1", "customer": ANN, "transcript": "help"}
    assert chat("tickets", body).status_code == 201
    other = client.post("/api/v1/chat/tickets", json=body, headers={"Authorization": f"Bearer {token}"})
    assert (other.status_code, other.get_json()["number"]) == (201, "TKT-000002")


@pytest.mark.parametrize(
    "conversation", ["\u200b", "conv-42\u200b", "\ufeffconv-42", "conv\u00ad-42", "conv\u00a042"]
)
def test_a_conversation_id_with_an_invisible_character_is_refused(chat, client, conversation):
    """A zero-width space, a BOM or a soft hyphen made an id that reads as
    `conv-42` (or as nothing) another conversation: a second ticket beside the
    first, under an id staff cannot tell from it. Refused on both endpoints that
    take one; spaces around an id are trimmed as before (docs/integrations.md)."""
    assert (
        chat("tickets", {"conversation_id": " conv-42 ", "customer": ANN, "transcript": "help"}).status_code
        == 201
    )
    refused = chat("tickets", {"conversation_id": conversation, "customer": ANN, "transcript": "help"})
    assert refused.status_code == 422, refused.get_json()
    assert "conversation_id" in refused.get_json()["error"]["fields"]
    _integration, token = IntegrationsService(db.session).add("bot", "assistant")
    db.session.commit()
    body = {
        "customer": ANN,
        "channel": "chat",
        "conversation_id": conversation,
        "tool_calls": [
            {"id": "c0", "type": "function", "function": {"name": "list_my_tickets", "arguments": "{}"}}
        ],
    }
    assistant = client.post(
        "/api/v1/assistant/tool-calls", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    assert assistant.status_code == 422, assistant.get_json()
    assert db.session.execute(select(Ticket.conversation_id)).scalars().all() == ["conv-42"]


@pytest.mark.parametrize("address", ["ann@[192.0.2.1]", "ann@[IPv6:2001:db8::1]"])
def test_a_customer_at_an_address_literal_is_refused(chat, address):
    """`ann@[192.0.2.1]` is valid mail syntax, but a relay mailing it connects to
    that host, whatever it is (the relay's own loopback, an internal server): a
    customer named by a chat gets 422, and nothing is mailed (docs/integrations.md)."""
    refused = chat("tickets", {"conversation_id": "c1", "customer": {"email": address}, "transcript": "help"})
    assert refused.status_code == 422, refused.get_json()
    assert refused.get_json()["error"]["fields"] == {"customer.email": "is not a valid email address"}
    assert db.session.execute(select(Contact)).first() is None
    assert _acknowledgments() == 0


def test_a_fullwidth_spelling_of_a_customer_s_domain_is_that_customer(chat):
    """`ann@ｅｘａｍｐｌｅ.com` is mailed at ann@example.com (IDNA folds fullwidth
    letters), but was a second contact beside ann@example.com's: another identity
    for one mailbox, shown in the queue as if it were the customer's. The address
    a chat names is taken with its domain as IDNA maps it (docs/integrations.md)."""
    assert (
        chat("tickets", {"conversation_id": "c1", "customer": ANN, "transcript": "help"}).status_code == 201
    )
    for n, address in enumerate(
        ["ann@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com", "ann@example\uff0ecom"]
    ):
        twin = chat(
            "tickets", {"conversation_id": f"c{n + 2}", "customer": {"email": address}, "transcript": "x"}
        )
        assert twin.status_code == 201, twin.get_json()
        assert twin.get_json()["requester_email"] == "ann@example.com"
    assert db.session.execute(select(Contact.email)).scalars().all() == ["ann@example.com"]


def test_a_customer_stored_with_a_fullwidth_domain_is_still_that_customer(chat):
    """A contact a chat named before domains were folded keeps its spelling
    (`ann@ｅｘａｍｐｌｅ.com`): named so again, it is that customer, with their
    tickets, not a new contact at ann@example.com (docs/integrations.md)."""
    fullwidth = "ann@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com"
    first = chat("tickets", {"conversation_id": "c1", "customer": ANN, "transcript": "help"})
    db.session.execute(update(Contact).values(email=fullwidth))  # as stored before
    db.session.commit()
    again = chat("lookup", {"customer": {"email": fullwidth}, "text": first.get_json()["number"]})
    assert [card["number"] for card in again.get_json()["tickets"]] == [first.get_json()["number"]]
    assert db.session.execute(select(Contact.email)).scalars().all() == [fullwidth]


def test_a_conversation_id_naming_another_customer_is_refused(chat):
    """A conversation's ticket is its customer's: the same id naming someone else
    gets 409, not the other customer's ticket, and opens nothing."""
    body = {"conversation_id": "conv-42", "customer": ANN, "transcript": "help"}
    assert chat("tickets", body).status_code == 201
    other = chat("tickets", {**body, "customer": {"email": "bob@example.com"}})
    assert other.status_code == 409, other.get_json()
    assert other.get_json()["error"]["code"] == "conflict"
    assert len(db.session.execute(select(Ticket)).all()) == 1
    assert _acknowledgments() == 1


def test_a_repeat_of_a_merged_conversation_answers_the_survivor(chat, service, agent_actor):
    body = {"conversation_id": "conv-42", "customer": ANN, "transcript": "help"}
    assert chat("tickets", body).status_code == 201
    survivor = open_ticket(service, requester_email=ANN["email"])
    merged = db.session.execute(select(Ticket).where(Ticket.number == 1)).scalar_one()
    service.merge(merged, survivor, actor=agent_actor)
    db.session.commit()
    again = chat("tickets", body)
    assert again.status_code == 200, again.get_json()
    assert (again.get_json()["number"], again.get_json()["merged_from"]) == ("TKT-000002", "TKT-000001")


def test_a_repeat_merged_into_a_mail_of_megabytes_answers_its_description_cut(chat, service, agent_actor):
    """Ann's conversation opened TKT-1, merged into her mail's TKT-2, whose text is
    the mail's whole (up to 25 MB): the repeat answered all of it to the widget's
    backend, read whole into memory on the way. It answers the first
    ANSWERED_DESCRIPTION_CHARS, as the assistant's `get_ticket_information` does,
    with `description_truncated`; a transcript no longer than that is answered whole."""
    body = {"conversation_id": "conv-42", "customer": ANN, "transcript": "é" * ANSWERED_DESCRIPTION_CHARS}
    first = chat("tickets", body).get_json()
    assert (first["description"], first["description_truncated"]) == (body["transcript"], False)
    size = 4_000_000
    whole = "línea de log del router\n" * (size // 24)
    survivor = open_ticket(service, requester_email=ANN["email"], description=whole)
    merged = db.session.execute(select(Ticket).where(Ticket.number == 1)).scalar_one()
    service.merge(merged, survivor, actor=agent_actor)
    db.session.commit()
    db.session.expunge_all()
    again, peak = peak_of(lambda: chat("tickets", body))
    assert again.status_code == 200, again.get_json()
    answer = again.get_json()
    assert (answer["number"], answer["merged_from"]) == ("TKT-000002", "TKT-000001")
    assert answer["description"] == whole[:ANSWERED_DESCRIPTION_CHARS]
    assert answer["description_truncated"] is True
    assert len(again.data) < 100_000 and peak < size // 4, f"{len(again.data):,} bytes, {peak:,} at the peak"


def test_a_repeat_reaching_someone_elses_survivor_answers_its_card_alone(chat, service, agent_actor):
    """Bo's conversation opened TKT-2, merged into Ann's TKT-1. His widget's repeat
    answered the whole of Ann's ticket: her address, name, description, service
    address and devices (found by review). Bo takes part in TKT-1 (the merge made
    him a participant), as a CC does, and a lookup shows him its card: the repeat
    answers that card, naming the number his conversation opened."""
    open_ticket(
        service,
        subject="Outage",
        description="My PIN is 4321, my contract ACC-99",
        requester_name="Ann Private",
        service_address="Via Roma 12, Milano",
        device_serials=["SN-ANN-1"],
    )
    bo = {"email": "bo@example.com"}
    body = {"conversation_id": "conv-bo", "customer": bo, "transcript": "no internet"}
    assert chat("tickets", body).status_code == 201
    kept, duplicate = db.session.execute(select(Ticket).order_by(Ticket.number)).scalars()
    service.merge(duplicate, kept, actor=agent_actor)
    db.session.commit()
    again = chat("tickets", body)
    assert again.status_code == 200, again.get_json()
    (card,) = chat("lookup", {"customer": bo, "text": "TKT-2"}).get_json()["tickets"]
    assert again.get_json() == card
    assert (card["number"], card["merged_from"]) == ("TKT-000001", "TKT-000002")
    said = str(again.get_json())
    secrets = ("ann@example.com", "Ann Private", "4321", "Via Roma", "SN-ANN")
    assert not any(secret in said for secret in secrets)


# -- a subject that says nothing ------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "subject"),
    [
        ({}, "My internet is down"),
        ({"subject": ""}, "My internet is down"),
        ({"subject": " "}, "My internet is down"),
        ({"subject": "\t\n"}, "My internet is down"),
        ({"subject": "\x07\x1b"}, "My internet is down"),
        ({"subject": " \x1b[2J Router "}, "[2J Router"),
        ({"transcript": "\x07\nMy internet is down"}, "My internet is down"),
        ({"transcript": "\x1b\n\u2028\n  My internet\x07is down"}, "My internet is down"),
        ({"transcript": "\x1b\n\x07"}, "Chat conversation"),
        # Only characters that show nothing (zero-width space, BOM, Hangul filler,
        # blank braille, a variation selector) say nothing either.
        ({"subject": "\u200b\ufeff"}, "My internet is down"),
        ({"subject": "\u3164", "transcript": "\u2800\ufe0f\nMy internet is down"}, "My internet is down"),
        ({"subject": "\u200b", "transcript": "\u200b"}, "Chat conversation"),
        # A line is cut to 80 characters before it is judged: these 80 show nothing.
        ({"transcript": "\u200b" * 80 + "x\nMy internet is down"}, "My internet is down"),
    ],
)
def test_a_chat_whose_subject_says_nothing_takes_the_transcripts_first_line(chat, extra, subject):
    """A lone control character was a line that said something (`str.strip`), and a
    blank subject was taken as given: both became an empty subject, refused with
    422 `subject: is required`, a field the widget never sent (found by review)."""
    body = {"conversation_id": "c", "customer": ANN, "transcript": "My internet is down", **extra}
    response = chat("tickets", body)
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["subject"] == subject


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


# -- the share text ----------------------------------------------------------------------


def _share(api, number: str = "TKT-000001") -> str:  # type: ignore[no-untyped-def]
    response = api.get(f"/tickets/{number}/share")
    assert response.status_code == 200, response.get_json()
    return response.get_json()["text"]


def test_the_share_text_names_the_ticket_and_how_to_follow_up(api, service):
    open_ticket(
        service,
        subject="Router blinks red",
        priority="high",
        category="technical",
        cc=[("bo@example.com", "Bo")],
    )
    assert _share(api) == (
        "We have received your ticket and an agent will pick it up soon.\n"
        "\n"
        "Reference: TKT-000001\n"
        "Title: Router blinks red\n"
        "Status: New\n"
        "Priority: High\n"
        "Category: Technical support\n"
        "Requester: Ann Example <ann@example.com>\n"
        "\n"
        "Quote TKT-000001 whenever you contact us about this ticket.\n"
        "To add anything, reply to our email or write to support@helpdesk.test "
        "with TKT-000001 in the subject.\n"
        "Follow it at http://helpdesk.test/track with the reference and your email address."
    )  # the CC participant is not named: the text is for the requester


def test_the_share_text_is_in_the_customers_language(api, service):
    ticket = open_ticket(service, subject="Internet lento", priority="high", category="technical")
    ticket.requester.language = "es"
    db.session.commit()
    assert _share(api).splitlines() == [
        "Recibimos tu ticket y un agente lo atenderá pronto.",
        "",
        "Referencia: TKT-000001",
        "Título: Internet lento",
        "Estado: Nuevo",
        "Prioridad: Alta",
        "Categoría: Soporte técnico",
        "Solicitante: Ann Example <ann@example.com>",
        "",
        "Menciona TKT-000001 siempre que nos contactes sobre este ticket.",
        "Para añadir algo, responde a nuestro correo o escribe a support@helpdesk.test "
        "con TKT-000001 en el asunto.",
        "Consulta su avance en http://helpdesk.test/track con la referencia y tu correo electrónico.",
    ]


@pytest.mark.parametrize(
    ("contact_language", "default", "status_line"),
    [
        ("", "es", "Estado: Nuevo"),  # no language of their own: DEFAULT_LANGUAGE
        ("en", "es", "Status: New"),  # theirs wins over the default
        ("", "de", "Status: New"),  # a default there are no texts in: English
    ],
)
def test_the_share_text_falls_back_to_the_default_language(
    app, api, service, contact_language, default, status_line
):
    app.config["DEFAULT_LANGUAGE"] = default
    ticket = open_ticket(service)
    ticket.requester.language = contact_language
    db.session.commit()
    assert status_line in _share(api).splitlines()


def test_control_characters_in_a_subject_stay_on_the_title_line(api, service):
    open_ticket(service, subject="Router\r\nStatus: Resolved\x1b[2J\u2028Priority:\tLow\x85end")
    lines = _share(api).splitlines()
    assert len(lines) == 12
    assert lines[3] == "Title: Router Status: Resolved [2J Priority: Low end"
    assert lines[4:6] == ["Status: New", "Priority: Medium"]


def test_a_customer_known_by_phone_only_is_told_to_quote_the_number(api, service):
    ticket = open_ticket(
        service, requester_email=addresses.for_phone("+5215512345678"), requester_name="Lucía"
    )
    ticket.requester.phone = "+5215512345678"
    db.session.commit()
    text = _share(api)
    assert "Requester: Lucía (+5215512345678)" in text.splitlines()
    assert text.endswith("Quote TKT-000001 whenever you contact us about this ticket.")
    assert "phone.invalid" not in text and "/track" not in text  # no mail, no tracker for them


@pytest.mark.parametrize("number", ["tkt-1", "1", "TKT-000001", "[TKT-1]"])
def test_the_share_text_takes_numbers_as_people_type_them(api, service, number):
    open_ticket(service)
    assert "Reference: TKT-000001" in _share(api, number)


def test_the_share_text_is_for_staff_only(api, service):
    open_ticket(service)
    _integration, chat_token = IntegrationsService(db.session).add("site-chat", "chat")
    db.session.commit()
    assert api.get("/tickets/TKT-000001/share", token="").status_code == 401
    assert api.get("/tickets/TKT-000001/share", token=chat_token).status_code == 401
    unknown = api.get("/tickets/TKT-000099/share")
    assert unknown.status_code == 404 and unknown.get_json()["error"]["code"] == "not_found"


# The status sentences as customers read them (the texts the per-language tables
# held before the catalogs; the catalogs must keep saying exactly this).
SENTENCES = {
    "en": {
        "new": "We have received your ticket and an agent will pick it up soon.",
        "open": "An agent has seen your ticket.",
        "in_progress": "An agent is working on your ticket.",
        "pending_customer": "We are waiting for your answer to continue.",
        "resolved": "We consider your ticket solved; reply if it is not.",
        "closed": "Your ticket is closed.",
        "reopened": "Your ticket was reopened and is back with an agent.",
        "cancelled": "Your ticket was cancelled.",
    },
    "es": {
        "new": "Recibimos tu ticket y un agente lo atenderá pronto.",
        "open": "Un agente ya vio tu ticket.",
        "in_progress": "Un agente está trabajando en tu ticket.",
        "pending_customer": "Esperamos tu respuesta para continuar.",
        "resolved": "Consideramos resuelto tu ticket; responde si no es así.",
        "closed": "Tu ticket está cerrado.",
        "reopened": "Tu ticket fue reabierto y volvió con un agente.",
        "cancelled": "Tu ticket fue cancelado.",
    },
}


def test_every_value_has_its_words_in_every_language():
    assert set(languages.STATUS_LABELS) == set(v.STATUSES)
    assert set(languages.PRIORITY_LABELS) == set(v.PRIORITIES)
    assert set(languages.CATEGORY_LABELS) == set(v.CATEGORIES)
    assert set(STATUS_SENTENCES) == set(v.STATUSES) and set(SENTENCES) == set(languages.LANGUAGES)
    for language, sentences in SENTENCES.items():
        assert {status: status_sentence(status, language) for status in v.STATUSES} == sentences
    for key, text in SHARE_TEXTS.items():  # every share text has its own Spanish words
        assert languages.gettext_in("es", text) != text, key
