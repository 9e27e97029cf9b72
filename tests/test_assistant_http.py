"""The assistant's tools and the chat endpoints through a real gunicorn and a real
database (docs/integrations.md), as an integration reaches them: over loopback
HTTP with an integration token, the bytes of every answer read as they left the
server.

tests/test_assistant.py covers the tools' rules in-process; here the same calls
cross the real stack (gunicorn, the WSGI body, JSON in UTF-8, a committed
transaction read back from PostgreSQL or SQLite by another process). One server
per backend for the whole module; each test is a customer of its own, so tests do
not see each other's tickets.
"""

from __future__ import annotations

import http.client
import json
import re
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from helpdesk.extensions import db
from helpdesk.models import Contact, Message, OutboxMessage, Ticket
from helpdesk.services.assistant import MAX_ARGUMENTS
from helpdesk.services.integrations import IntegrationsService
from tests.support.app import make_app, migrate_database
from tests.support.web_process import WebServer

TOOL_CALLS = "/api/v1/assistant/tool-calls"
LIMIT = 10  # CUSTOMER_MAX_TICKETS_PER_HOUR and CUSTOMER_MAX_OPEN_TICKETS of the server
NUMBER = re.compile(r"TKT-\d{6}")
MISSING = object()  # a call whose function has no "arguments" at all

INVALID_EN = {
    "success": False,
    "error": "Invalid arguments format",
    "userMessage": "Sorry, I could not understand that request. Could you rephrase it?",
}
NOT_FOUND_ES = "No se encontró el ticket solicitado."

# Runs of an assistant that stopped for tool calls, as the runtime reports them
# (OpenAI's Assistants API: `required_action.submit_tool_outputs.tool_calls`). The
# model writes arguments as compact JSON text, accents unescaped. The second run
# asks about the number the first call's output gave (`<TICKET>`, filled in from
# it) and, in parallel, about a number the model made up.
RECORDED_RUNS: list[dict[str, Any]] = [
    {
        "id": "run_Qm3v8XkT2rLp9sWd1fZc6bNa",
        "object": "thread.run",
        "created_at": 1796400131,
        "assistant_id": "asst_H7tq2LmV9xRn4bWc0yKe5JdF",
        "thread_id": "thread_Ut7oP1aZ9sD4fG2hJ6kL8qWe",
        "status": "requires_action",
        "required_action": {
            "type": "submit_tool_outputs",
            "submit_tool_outputs": {
                "tool_calls": [
                    {
                        "id": "call_X8dk2PqL0vRn5sYt3mWa7cBe",
                        "type": "function",
                        "function": {
                            "name": "create_ticket_report",
                            "arguments": '{"title":"Internet lento por las noches","description":"Desde el '
                            "lunes la conexión baja a 2 Mbps entre las 20 y las 23 h; contraté 100 Mbps. "
                            'Ya reinicié el módem dos veces y sigue igual.","category":"technical",'
                            '"priority":"high"}',
                        },
                    }
                ]
            },
        },
        "last_error": None,
        "model": "gpt-4o-2024-08-06",
        "parallel_tool_calls": True,
    },
    {
        "id": "run_Bn5c0WqE7yTu3iOp9aSd2fGh",
        "object": "thread.run",
        "created_at": 1796400694,
        "assistant_id": "asst_H7tq2LmV9xRn4bWc0yKe5JdF",
        "thread_id": "thread_Ut7oP1aZ9sD4fG2hJ6kL8qWe",
        "status": "requires_action",
        "required_action": {
            "type": "submit_tool_outputs",
            "submit_tool_outputs": {
                "tool_calls": [
                    {
                        "id": "call_R2fT6yUi9oPa1sDf4gHj7kLz",
                        "type": "function",
                        "function": {
                            "name": "get_ticket_information",
                            "arguments": '{"ticketId":"<TICKET>"}',
                        },
                    },
                    {
                        "id": "call_M4nB7vCx0zLk3jHg6fDs9aQw",
                        "type": "function",
                        "function": {
                            "name": "get_ticket_information",
                            "arguments": '{"ticketId":"TKT-999999"}',
                        },
                    },
                ]
            },
        },
        "last_error": None,
        "model": "gpt-4o-2024-08-06",
        "parallel_tool_calls": True,
    },
]


@dataclass(frozen=True)
class Answer:
    """An HTTP answer as it left the server: status, Content-Type and the raw body."""

    status: int
    content_type: str
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Site:
    web: WebServer
    assistant: str  # an assistant integration's token
    chat: str  # a chat integration's token
    checker: Flask  # the app in this process, to read what the server committed

    def send(self, path: str, body: bytes | None, token: str | None, method: str = "POST") -> Answer:
        """One request on a connection of its own, the body sent as given."""
        connection = http.client.HTTPConnection("127.0.0.1", self.web.port, timeout=60)
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return Answer(response.status, response.getheader("Content-Type", ""), response.read())
        finally:
            connection.close()

    def post(self, path: str, body: object, token: str | None) -> Answer:
        return self.send(path, json.dumps(body, ensure_ascii=False).encode(), token)

    def tool_calls(
        self, customer: dict[str, str], calls: Sequence[tuple[object, object]], **extra: object
    ) -> list[dict[str, Any]]:
        """The outputs of a batch of calls, checked to be one per call, in order, in
        the shape a runtime submits. Arguments given as text are sent as they are;
        anything else is sent as a JSON value (which is wrong: they must be text)."""
        envelope: list[dict[str, Any]] = [
            {
                "id": f"call_{n}",
                "type": "function",
                "function": {"name": name}
                if arguments is MISSING
                else {"name": name, "arguments": arguments},
            }
            for n, (name, arguments) in enumerate(calls)
        ]
        answer = self.post(
            TOOL_CALLS, {"customer": customer, "tool_calls": envelope, **extra}, self.assistant
        )
        return submitted_outputs(answer, [call["id"] for call in envelope])

    def read(self, statement: Any) -> list[Any]:
        with self.checker.app_context():
            return list(db.session.execute(statement).all())


def args(**values: object) -> str:
    """Arguments as a model writes them: JSON text, non-ASCII unescaped."""
    return json.dumps(values, ensure_ascii=False)


def submitted_outputs(answer: Answer, call_ids: Sequence[str]) -> list[dict[str, Any]]:
    """The body must be exactly what a runtime submits back (`{"tool_outputs":
    [{"tool_call_id", "output"}]}`), one output per call in order; the outputs parsed."""
    assert (answer.status, answer.content_type) == (200, "application/json"), answer
    body = answer.json()
    assert list(body) == ["tool_outputs"]
    items = body["tool_outputs"]
    assert [sorted(item) for item in items] == [["output", "tool_call_id"]] * len(call_ids)
    assert [item["tool_call_id"] for item in items] == list(call_ids)
    assert all(isinstance(item["output"], str) for item in items)
    return [json.loads(item["output"]) for item in items]


def moment(text: str) -> datetime:
    """An API time: ISO 8601 in UTC, to the second, with `Z`."""
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", text), text
    return datetime.fromisoformat(text)


@pytest.fixture(scope="module")
def site(
    backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    """gunicorn (`wsgi:app`, as operators run it) on a migrated database of its own,
    with an assistant and a chat integration."""
    scratch = tmp_path_factory.mktemp(f"assistant-http-{backend}")
    if backend == "sqlite":
        url = f"sqlite:///{scratch / 'helpdesk.db'}"
    else:
        url = request.getfixturevalue("pg_server").create_database("assistant_http")
    migrate_database(url)
    checker = make_app(url)
    with checker.app_context():
        integrations = IntegrationsService(db.session)
        _integration, assistant = integrations.add("whatsapp-bot", "assistant")
        _integration, chat = integrations.add("site-chat", "chat")
        db.session.commit()
    limits = {"CUSTOMER_MAX_TICKETS_PER_HOUR": str(LIMIT), "CUSTOMER_MAX_OPEN_TICKETS": str(LIMIT)}
    web = WebServer(url, scratch, workers=2, **limits)
    try:
        yield Site(web, assistant, chat, checker)
    finally:
        web.stop()
        with checker.app_context():
            db.engine.dispose()


# -- tokens and definitions ---------------------------------------------------------------------


def test_the_tools_are_served_to_assistant_tokens_only(site: Site) -> None:
    answer = site.send("/api/v1/assistant/tools", None, site.assistant, method="GET")
    assert (answer.status, answer.content_type) == (200, "application/json")
    tools = answer.json()["tools"]
    assert all(tool["type"] == "function" and tool["function"]["parameters"]["type"] for tool in tools)
    names = {tool["function"]["name"] for tool in tools}
    assert {
        "create_ticket_report",
        "get_ticket_information",
        "list_my_tickets",
        "add_ticket_comment",
    } <= names
    refusals = {
        "no token": site.send("/api/v1/assistant/tools", None, None, method="GET"),
        "a chat token": site.send("/api/v1/assistant/tools", None, site.chat, method="GET"),
        "a made-up token": site.send("/api/v1/assistant/tools", None, "hdi_" + "x" * 43, method="GET"),
    }
    assert {name: (a.status, a.content_type) for name, a in refusals.items()} == {
        "no token": (401, "application/json"),
        "a chat token": (403, "application/json"),
        "a made-up token": (401, "application/json"),
    }


def test_a_revoked_token_is_refused_at_its_next_call(site: Site) -> None:
    with site.checker.app_context():
        _integration, token = IntegrationsService(db.session).add("old-bot", "assistant")
        db.session.commit()
    assert site.send("/api/v1/assistant/tools", None, token, method="GET").status == 200
    with site.checker.app_context():
        IntegrationsService(db.session).revoke("old-bot")
        db.session.commit()
    refused = site.send("/api/v1/assistant/tools", None, token, method="GET")
    assert refused.status == 401 and refused.json()["error"]["code"] == "invalid_token"


# -- a recorded exchange --------------------------------------------------------------------------


def test_a_recorded_runtime_exchange_creates_and_looks_up_a_ticket(site: Site) -> None:
    """Each run's `tool_calls` go to the helpdesk untouched; our answer is what the
    runtime submits as the run's tool outputs, so it is checked as exactly that."""
    customer = {"phone": "+52 1 55 1234 5678", "name": "Lucía Pérez", "language": "es"}
    first, second = RECORDED_RUNS
    calls = first["required_action"]["submit_tool_outputs"]["tool_calls"]
    answer = site.post(
        TOOL_CALLS,
        {
            "customer": customer,
            "conversation_id": first["thread_id"],
            "channel": "whatsapp",
            "tool_calls": calls,
        },
        site.assistant,
    )
    (created,) = submitted_outputs(answer, [call["id"] for call in calls])
    number = created.get("ticketId", "")
    assert NUMBER.fullmatch(number), created
    assert created == {
        "success": True,
        "ticketId": number,
        "message": f"Ticket {number} created successfully",
        "status": "new",
        "priority": "high",
    }

    # Later in the conversation the runtime knows the customer by the WhatsApp id alone.
    calls = json.loads(
        json.dumps(second["required_action"]["submit_tool_outputs"]["tool_calls"]).replace("<TICKET>", number)
    )
    answer = site.post(
        TOOL_CALLS,
        {"customer": {"phone": "5215512345678"}, "conversation_id": second["thread_id"], "tool_calls": calls},
        site.assistant,
    )
    information, made_up = submitted_outputs(answer, [call["id"] for call in calls])
    sent = json.loads(
        first["required_action"]["submit_tool_outputs"]["tool_calls"][0]["function"]["arguments"]
    )
    assert list(information) == [
        "success",
        "ticketId",
        "status",
        "priority",
        "category",
        "title",
        "description",
        "descriptionTruncated",
        "createdAt",
        "updatedAt",
        "assignedAgent",
        "sla",
    ]
    assert information["success"] is True and information["ticketId"] == number
    assert (information["status"], information["priority"], information["category"]) == (
        "new",
        "high",
        "technical",
    )
    assert (information["title"], information["description"]) == (sent["title"], sent["description"])
    created_at, updated_at = moment(information["createdAt"]), moment(information["updatedAt"])
    assert abs(datetime.now(timezone.utc) - created_at) < timedelta(minutes=5)
    assert created_at <= updated_at
    assert information["assignedAgent"] is None
    sla = information["sla"]
    assert list(sla) == ["firstResponseMet", "resolutionTarget", "timeRemaining"]
    assert sla["firstResponseMet"] is None  # nobody has answered yet
    target = moment(sla["resolutionTarget"]) - created_at
    assert timedelta(hours=24) - timedelta(seconds=2) <= target <= timedelta(hours=24) + timedelta(seconds=2)
    assert isinstance(sla["timeRemaining"], str) and sla["timeRemaining"] not in ("", "overdue")
    # The contact's language came with the first run: the failure is in Spanish.
    assert made_up == {
        "success": False,
        "error": "Ticket TKT-999999 not found or does not belong to this customer",
        "userMessage": NOT_FOUND_ES,
    }

    ((channel, source, subject, phone, language),) = site.read(
        select(Ticket.channel, Ticket.source, Ticket.subject, Contact.phone, Contact.language)
        .join(Contact, Ticket.requester_id == Contact.id)
        .where(Ticket.number == int(number[4:]))
    )
    assert (channel, source, subject, phone, language) == (
        "whatsapp",
        "ai",
        sent["title"],
        "+5215512345678",
        "es",
    )


# -- every tool, valid calls --------------------------------------------------------------------


def number_of(email: str) -> str:
    """The WhatsApp number the customer named by `email` writes from, one of its own
    (the server's database outlives a test): WhatsApp, the default channel, always
    gives the sender's, and an email alone there is refused."""
    return f"+346{zlib.crc32(email.encode()) % 10**8:08d}"


def test_comments_and_lists_reach_the_customers_own_tickets(site: Site) -> None:
    customer = {"email": "marta@example.com", "name": "Marta Gil", "language": "es"}
    created = site.tool_calls(
        customer,
        [
            ("create_ticket_report", args(title="Factura duplicada", description="Me cobraron dos veces.")),
            ("create_ticket_report", args(title="Cambio de plan", description="Quiero 300 Mbps.")),
        ],
        channel="chat",
    )
    first, second = (output["ticketId"] for output in created)
    lowercase_short = "tkt-" + str(int(first[4:]))  # as a customer types it
    answers = site.tool_calls(
        customer,
        [
            ("add_ticket_comment", args(ticketId=lowercase_short, text="Adjunto el recibo: ¿lo ven?")),
            ("get_ticket_information", args(ticketId=first)),
            ("list_my_tickets", "{}"),
            ("list_my_tickets", ""),  # some runtimes send no text for a call without parameters
        ],
        channel="chat",  # an email alone is believed in a web chat only
    )
    assert answers[0] == {"success": True, "ticketId": first, "message": f"Comment added to ticket {first}"}
    assert (answers[1]["title"], answers[1]["category"], answers[1]["priority"]) == (
        "Factura duplicada",
        "support",
        "medium",
    )
    for listing in answers[2:]:
        assert listing["success"] is True
        assert [(t["ticketId"], t["title"], t["status"]) for t in listing["tickets"]] == [
            (second, "Cambio de plan", "new"),
            (first, "Factura duplicada", "new"),
        ]
        assert all(moment(t["updatedAt"]) for t in listing["tickets"])
    messages = site.read(
        select(Message.body, Message.kind, Message.channel, Contact.email)
        .join(Ticket, Message.ticket_id == Ticket.id)
        .join(Contact, Message.author_contact_id == Contact.id)
        .where(Ticket.number == int(first[4:]))
        .order_by(Message.id)
    )
    assert messages[-1] == ("Adjunto el recibo: ¿lo ven?", "reply", "chat", customer["email"])
    channels = site.read(select(Ticket.channel).where(Ticket.number.in_([int(first[4:]), int(second[4:])])))
    assert {row[0] for row in channels} == {"chat"}


# -- invalid calls --------------------------------------------------------------------------------

OVER_SUBJECT = "x" * 501
OVER_TEXT = "y" * 20_001

INVALID_CALLS: dict[str, list[object]] = {
    "create_ticket_report": [
        "not json",
        "[]",
        '"Internet lento"',
        "42",
        "null",
        "{'title': 'single quotes'}",
        '{"title": "x", "description": "y",}',  # a trailing comma
        {"title": "Sin internet", "description": "Desde ayer."},  # an object, not its JSON text
        MISSING,
        args(title="Sin descripción"),
        args(title=5, description="."),
        args(title="", description="."),
        args(title="x", description=["a", "list"]),
        args(title="x", description=".", category="feature_request"),
        args(title="x", description=".", priority="critical"),
        args(title="x", description=".", priority=None),
        args(title="x", description=".", assignee="agent@helpdesk.test"),  # not the model's to choose
        args(title=OVER_SUBJECT, description="."),
        args(title="x", description=OVER_TEXT),
    ],
    "get_ticket_information": [
        "{}",
        args(ticketId=1),
        args(ticketId=""),
        args(ticketId=["TKT-000001"]),
        args(ticketId="T" * 65),
        args(ticketId="TKT-000001", email="someone-else@example.com"),  # acting for another customer
        "[]",
        MISSING,
    ],
    "list_my_tickets": ["[]", "not json", args(status="open"), {}, MISSING],
    "add_ticket_comment": [
        args(ticketId="<OWN>"),
        args(text="¿Y mi ticket?"),
        args(ticketId="<OWN>", text=""),
        args(ticketId="<OWN>", text=7),
        args(ticketId="<OWN>", text=OVER_TEXT),
        args(ticketId="<OWN>", text="x", internal=True),  # a customer never writes internal notes
        "not json",
    ],
    "verify_email": [
        "{}",
        args(email=7),
        args(email="not an address"),
        args(email="<OWN>@phone.invalid"),
        args(email="x@example.com", code=123456),
        args(email="x@example.com", code=""),
        args(email="x@example.com", phone="+5215512345678"),
    ],
}


@pytest.mark.parametrize("tool", list(INVALID_CALLS))
def test_invalid_arguments_to_every_tool_are_outputs_and_change_nothing(site: Site, tool: str) -> None:
    email = f"invalid-{tool.replace('_', '-')}@example.com"
    customer = {"phone": number_of(email), "email": email}
    (own,) = site.tool_calls(customer, [("create_ticket_report", args(title="Mine", description="."))])
    calls = [
        (tool, a.replace("<OWN>", own["ticketId"]) if isinstance(a, str) else a) for a in INVALID_CALLS[tool]
    ]
    assert site.tool_calls(customer, calls) == [INVALID_EN] * len(calls)
    ((tickets, messages),) = site.read(
        select(func.count(func.distinct(Ticket.id)), func.count(Message.id))
        .select_from(Ticket)
        .join(Message, Message.ticket_id == Ticket.id)
        .join(Contact, Ticket.requester_id == Contact.id)
        .where(Contact.phone == customer["phone"])  # an email typed into WhatsApp binds nothing
    )
    assert (tickets, messages) == (1, 1)  # their one ticket, with its description only
    assert site.read(select(OutboxMessage.id).where(OutboxMessage.kind == "email_code")) == []


def test_an_unknown_tool_is_named_in_the_output(site: Site) -> None:
    calls: list[tuple[object, object]] = [
        ("delete_ticket", args(ticketId="TKT-000001")),
        ("CREATE_TICKET_REPORT", args(title="x", description=".")),  # names are exact
        ("", "{}"),
        (42, "{}"),
        (None, "{}"),
        ("z" * 10_000, "{}"),
    ]
    answers = site.tool_calls({"email": "unknown-tool@example.com", "language": "es"}, calls, channel="chat")
    assert [a["error"] for a in answers] == [
        "Unknown function: delete_ticket",
        "Unknown function: CREATE_TICKET_REPORT",
        "Unknown function: ",
        "Unknown function: 42",
        "Unknown function: None",
        "Unknown function: " + "z" * 100,  # the name is cut, not echoed in full
    ]
    assert {(a["success"], a["userMessage"]) for a in answers} == {
        (False, "Lo siento, todavía no puedo hacer eso.")
    }


# -- hostile calls --------------------------------------------------------------------------------


def test_someone_elses_ticket_answers_exactly_as_an_unknown_number(site: Site) -> None:
    """Byte for byte, apart from the number typed: nothing tells a caller that a
    number exists, whichever tool they probe with."""
    (theirs,) = site.tool_calls(
        {"email": "ana@example.com"},
        [("create_ticket_report", args(title="Privado", description="."))],
        channel="chat",
    )
    taken = int(theirs["ticketId"][4:])
    eve = {"phone": number_of("eve@example.com"), "email": "eve@example.com", "language": "es"}
    for typed_theirs, typed_unknown in (
        (f"TKT-{taken:06d}", f"TKT-{taken + 500_000:06d}"),
        (f"tkt-{taken}", f"tkt-{taken + 500_000}"),
    ):
        answers = []
        for typed in (typed_theirs, typed_unknown):
            calls = [
                ("get_ticket_information", args(ticketId=typed)),
                ("add_ticket_comment", args(ticketId=typed, text="¿Es mío?")),
            ]
            body = {
                "customer": eve,
                "tool_calls": [
                    {
                        "id": f"call_{n}",
                        "type": "function",
                        "function": {"name": name, "arguments": arguments},
                    }
                    for n, (name, arguments) in enumerate(calls)
                ],
            }
            answer = site.post(TOOL_CALLS, body, site.assistant)
            outputs = submitted_outputs(answer, ["call_0", "call_1"])
            assert [output["userMessage"] for output in outputs] == [NOT_FOUND_ES] * 2
            answers.append((answer.status, answer.content_type, answer.body.replace(typed.encode(), b"<N>")))
        assert answers[0] == answers[1], (typed_theirs, typed_unknown)
    listed = site.tool_calls(eve, [("list_my_tickets", "{}")])
    assert listed == [{"success": True, "tickets": []}]
    comments = site.read(
        select(func.count(Message.id))
        .join(Ticket, Message.ticket_id == Ticket.id)
        .where(Ticket.number == taken)
    )
    assert comments == [(1,)]  # Ana's description; Eve's comments went nowhere


def test_huge_strings_are_kept_whole_or_refused_never_cut(site: Site) -> None:
    customer = {"phone": number_of("long@example.com"), "email": "long@example.com"}
    longest = ("Descripción del corte en la zona norte, poste 14. " * 400)[:20_000]
    created, too_large, not_json_either = site.tool_calls(
        customer,
        [
            ("create_ticket_report", args(title="t" * 500, description=longest)),
            ("create_ticket_report", args(title="x", description="a" * 70_000)),  # over 20,000 characters
            ("create_ticket_report", '{"title": "' + "x" * MAX_ARGUMENTS + '"'),  # over the cap, not JSON
        ],
    )
    assert created["success"] is True
    assert too_large == not_json_either == INVALID_EN
    (looked,) = site.tool_calls(customer, [("get_ticket_information", args(ticketId=created["ticketId"]))])
    assert (looked["title"], looked["description"]) == ("t" * 500, longest)

    # A request over MAX_REQUEST_BYTES (1 MiB) is refused as a whole, in JSON.
    oversized = {
        "customer": customer,
        "tool_calls": [
            {
                "id": "c",
                "type": "function",
                "function": {
                    "name": "create_ticket_report",
                    "arguments": args(title="x", description="z" * 1_100_000),
                },
            }
        ],
    }
    refused = site.post(TOOL_CALLS, oversized, site.assistant)
    assert (refused.status, refused.content_type) == (413, "application/json")
    assert refused.json()["error"]["code"] == "request_entity_too_large"
    envelope = [
        {"id": "i" * 201, "type": "function", "function": {"name": "list_my_tickets", "arguments": "{}"}}
    ]
    assert site.post(TOOL_CALLS, {"customer": customer, "tool_calls": envelope}, site.assistant).status == 422


def test_the_longest_arguments_fit_the_cap_in_any_encoder_s_escapes(site: Site) -> None:
    """Runtimes whose JSON encoder escapes non-ASCII (Python's default, many others)
    write a character outside the BMP as two `\\uXXXX` escapes, 12 characters: a
    description within the schema's 20,000 characters was refused as invalid when
    it had accents or emoji, by the raw cap alone (64 KiB). The cap is now the
    longest valid arguments in that encoding (MAX_ARGUMENTS); past it, refused."""
    customer = {"phone": number_of("escaped@example.com"), "email": "escaped@example.com", "language": "es"}
    spanish = ("¿Señal? 📶😢😢😢 ñÑ " * 2000)[:20_000]
    spanish_arguments = json.dumps({"title": "Sin señal", "description": spanish})  # ensure_ascii
    assert len(spanish_arguments) > 64 * 1024
    longest = {
        "title": "📶" * 500,
        "description": "😀" * 20_000,
        "category": "complaint",
        "priority": "urgent",
    }
    escaped = json.dumps(longest, ensure_ascii=True, indent=2)
    assert len(escaped) > 240_000
    padded = escaped + " " * (MAX_ARGUMENTS - len(escaped))  # JSON whitespace: still valid
    spanish_created, longest_created, at_cap, over_cap = site.tool_calls(
        customer,
        [
            ("create_ticket_report", spanish_arguments),
            ("create_ticket_report", escaped),
            ("create_ticket_report", padded),
            ("create_ticket_report", padded + " "),
        ],
    )
    assert [spanish_created["success"], longest_created["success"], at_cap["success"]] == [True] * 3
    assert over_cap == {
        "success": False,
        "error": "Invalid arguments format",
        "userMessage": "Lo siento, no pude entender la solicitud. ¿Podrías reformularla?",
    }
    looked = site.tool_calls(
        customer,
        [
            ("get_ticket_information", args(ticketId=spanish_created["ticketId"])),
            ("get_ticket_information", args(ticketId=longest_created["ticketId"])),
        ],
    )
    assert [(a["title"], a["description"]) for a in looked] == [
        ("Sin señal", spanish),
        (longest["title"], longest["description"]),
    ]


def test_nul_characters_are_refused_wherever_they_are(site: Site) -> None:
    customer = {"phone": number_of("nul@example.com"), "email": "nul@example.com"}
    answers = site.tool_calls(
        customer,
        [
            ("create_ticket_report", args(title="nul\u0000", description=".")),  # as the \u0000 escape
            ("create_ticket_report", '{"title": "raw\x00nul", "description": "."}'),  # a raw NUL in the text
            ("add_ticket_comment", args(ticketId="TKT-000001\u0000", text=".")),
            ("create_ticket_report", '{"title": "\\ud800", "description": "."}'),  # a lone surrogate
        ],
    )
    assert answers == [INVALID_EN] * 4
    (unknown,) = site.tool_calls(customer, [("list\u0000tickets", "{}")])
    assert unknown["error"] == "Unknown function: list\ufffdtickets"  # echoed clean (inputs.echoed)
    call: dict[str, Any] = {
        "id": "c",
        "type": "function",
        "function": {"name": "list_my_tickets", "arguments": "{}"},
    }
    refusals = [
        site.post(
            TOOL_CALLS, {"customer": dict(customer, name="Nul\u0000"), "tool_calls": [call]}, site.assistant
        ),
        site.post(
            TOOL_CALLS, {"customer": customer, "tool_calls": [{**call, "id": "c\u0000"}]}, site.assistant
        ),
        site.post(
            TOOL_CALLS,
            {"customer": customer, "conversation_id": "\u0000", "tool_calls": [call]},
            site.assistant,
        ),
        site.send(
            TOOL_CALLS, b'{"customer": {"email": "nul@example.com"}, \x00 "tool_calls": []}', site.assistant
        ),
    ]
    assert [(a.status, a.content_type) for a in refusals] == [(422, "application/json")] * 3 + [
        (400, "application/json")
    ]
    assert (
        site.read(
            select(Ticket.id)
            .join(Contact, Ticket.requester_id == Contact.id)
            .where(Contact.email == customer["email"])
        )
        == []
    )


def strictly_decoded(answer: Answer) -> Any:
    """The body as a strict decoder reads it (serde_json, Go's encoding/json): JSON
    whose every string is Unicode text, a lone surrogate's escape refused; the tool
    outputs inside it too."""

    def check(value: Any) -> Any:
        pending = [value]
        while pending:
            item = pending.pop()
            if isinstance(item, str):
                item.encode("utf-8")  # raises on a lone surrogate
            elif isinstance(item, dict):
                pending.extend(item)
                pending.extend(item.values())
            elif isinstance(item, list):
                pending.extend(item)
        return value

    body = check(answer.json())
    for item in body.get("tool_outputs", []):
        check(json.loads(item["output"]))
    return body


def test_caller_text_an_answer_names_is_clean_and_bounded(site: Site) -> None:
    """An unknown tool's name, a ticket number that is not found and an unknown
    field are echoed, as text a strict JSON decoder takes: a lone surrogate or a
    control character the caller sent is U+FFFD, and the echo is cut."""
    customer = {"phone": number_of("echo@example.com"), "email": "echo@example.com"}

    def call(name: str, arguments: str) -> dict[str, Any]:
        return {"id": "c", "type": "function", "function": {"name": name, "arguments": arguments}}

    calls = [
        call("\ud800x", "{}"),  # a lone surrogate, sent as JSON's escape
        call("list\u0000tickets\u001b[2J\u2028", "{}"),
        call("\udfff" * 10_000, "{}"),
        call("get_ticket_information", json.dumps({"ticketId": "TKT-1\u001b[31m\u0085"})),
    ]
    body = json.dumps({"customer": customer, "tool_calls": calls}).encode()  # ASCII: escapes stay escapes
    answer = site.send(TOOL_CALLS, body, site.assistant)
    assert answer.status == 200
    outputs = [json.loads(item["output"]) for item in strictly_decoded(answer)["tool_outputs"]]
    assert [output["error"] for output in outputs] == [
        "Unknown function: \ufffdx",
        "Unknown function: list\ufffdtickets\ufffd[2J\ufffd",
        "Unknown function: " + "\ufffd" * 100,
        "Ticket TKT-1\ufffd[31m\ufffd not found or does not belong to this customer",
    ]

    # The fields of a request refused as a whole: the envelope's, the customer's, the chat's.
    unknown = "\ud800" + "k" * 10_000
    refused = [
        site.send(
            TOOL_CALLS,
            json.dumps(
                {"customer": customer, "tool_calls": [call("list_my_tickets", "{}")], unknown: 1}
            ).encode(),
            site.assistant,
        ),
        site.send(
            TOOL_CALLS,
            json.dumps(
                {"customer": {**customer, unknown: "x"}, "tool_calls": [call("list_my_tickets", "{}")]}
            ).encode(),
            site.assistant,
        ),
        site.send(
            "/api/v1/chat/lookup",
            json.dumps({"customer": customer, "text": "TKT-1", unknown: 1}).encode(),
            site.chat,
        ),
    ]
    assert [(a.status, a.content_type) for a in refused] == [(422, "application/json")] * 3
    shown = "\ufffd" + "k" * 99
    assert [strictly_decoded(a)["error"]["fields"] for a in refused] == [
        {shown: "is not a known field"},
        {f"customer.{shown}": "is not a known field"},
        {shown: "is not a known field"},
    ]


def test_deeply_nested_arguments_are_invalid_not_a_crash(site: Site) -> None:
    customer = {"phone": number_of("nested@example.com"), "email": "nested@example.com", "language": "es"}
    deepest = "[" * 30_000 + "]" * 30_000  # within MAX_ARGUMENTS, far past any parser's recursion
    answers = site.tool_calls(
        customer,
        [
            ("create_ticket_report", '{"title": ' + deepest + ', "description": "."}'),
            ("create_ticket_report", deepest),
            ("list_my_tickets", '{"a": ' + "{" * 200 + "}" * 200 + "}"),
            ("get_ticket_information", '{"ticketId": ' + '{"ticketId": ' * 500 + '"TKT-1"' + "}" * 501),
        ],
    )
    assert {a["error"] for a in answers} == {"Invalid arguments format"}
    assert {a["userMessage"] for a in answers} == {
        "Lo siento, no pude entender la solicitud. ¿Podrías reformularla?"
    }
    call = '{"id": "c", "type": "function", "function": {"name": "list_my_tickets", "arguments": "{}"}}'
    nested_customer = '{"customer": {"email": "nested@example.com", "name": ' + "[" * 500 + "]" * 500 + "}"
    answer = site.send(TOOL_CALLS, f'{nested_customer}, "tool_calls": [{call}]}}'.encode(), site.assistant)
    assert answer.status == 422 and "customer.name" in answer.json()["error"]["fields"]
    # The worker is still there and answers the next call.
    (listed,) = site.tool_calls(customer, [("list_my_tickets", "{}")])
    assert listed == {"success": True, "tickets": []}


def test_a_deeply_nested_request_body_is_a_400(site: Site) -> None:
    answer = site.send(TOOL_CALLS, b"[" * 100_000 + b"]" * 100_000, site.assistant)
    assert (answer.status, answer.content_type) == (400, "application/json")
    assert answer.json()["error"]["code"] == "invalid_json"


def test_ticket_numbers_past_any_column_are_not_found(site: Site) -> None:
    customer = {"phone": number_of("big-numbers@example.com"), "email": "big-numbers@example.com"}
    typed = ["TKT-999999999999999999", "TKT-9999999999999999999", "9" * 64, "TKT-0", "-1", "TKT-1e9"]
    answers = site.tool_calls(
        customer, [("get_ticket_information", args(ticketId=number)) for number in typed]
    )
    assert [a["error"] for a in answers] == [
        f"Ticket {number} not found or does not belong to this customer" for number in typed
    ]


def test_the_limit_on_new_tickets_is_an_output_in_the_customers_language(site: Site) -> None:
    customer = {"phone": "+34 612 345 678", "language": "es"}
    calls = [("create_ticket_report", args(title=f"Avería {n}", description=".")) for n in range(LIMIT + 1)]
    answers = site.tool_calls(customer, calls)
    assert [a["success"] for a in answers] == [True] * LIMIT + [False]
    assert answers[-1] == {
        "success": False,
        "error": "Too many tickets created. Please try again later.",
        "userMessage": "Has abierto muchos tickets recientemente. Por favor, inténtalo más tarde.",
    }
    numbers = sorted(int(a["ticketId"][4:]) for a in answers[:LIMIT])
    stored = site.read(
        select(Ticket.number)
        .join(Contact, Ticket.requester_id == Contact.id)
        .where(Contact.phone == "+34612345678")
    )
    assert sorted(row[0] for row in stored) == numbers


# -- chat ----------------------------------------------------------------------------------------


def test_a_chat_conversation_becomes_a_ticket_and_its_number_a_card(site: Site) -> None:
    customer = {"email": "carlos@example.com", "name": "Carlos Ruiz", "language": "es"}
    created = site.post(
        "/api/v1/chat/tickets",
        {
            "conversation_id": "web-chat-5521",
            "customer": customer,
            "transcript": "\nCarlos: el router parpadea en rojo desde el mediodía\nBot: abro un ticket",
        },
        site.chat,
    )
    assert (created.status, created.content_type) == (201, "application/json")
    card = created.json()
    number = card["number"]
    assert NUMBER.fullmatch(number)
    assert card["subject"] == "Carlos: el router parpadea en rojo desde el mediodía"
    assert card["conversation_id"] == "web-chat-5521" and card["status"] == "new"
    assert card["sentence"] == "Recibimos tu ticket y un agente lo atenderá pronto."
    ((channel, source, conversation),) = site.read(
        select(Ticket.channel, Ticket.source, Ticket.conversation_id).where(Ticket.number == int(number[4:]))
    )
    assert (channel, source, conversation) == ("chat", "customer", "web-chat-5521")

    text = f"hola, ¿qué pasó con {number.lower()}? y con TKT-999999"
    found = site.post(
        "/api/v1/chat/lookup", {"customer": {"email": "Carlos@Example.com"}, "text": text}, site.chat
    )
    assert found.status == 200
    assert [(c["number"], c["sentence"]) for c in found.json()["tickets"]] == [
        (number, "Recibimos tu ticket y un agente lo atenderá pronto.")
    ]
    stranger = site.post(
        "/api/v1/chat/lookup", {"customer": {"email": "eve@example.com"}, "text": text}, site.chat
    )
    assert stranger.json() == {"tickets": []}
    wrong_kind = site.post("/api/v1/chat/lookup", {"customer": customer, "text": text}, site.assistant)
    assert wrong_kind.status == 403
