"""The OpenAPI document stays true: it lists exactly the API's routes, and
schemathesis, generating requests from it (valid and invalid), finds no 500 and no
response that breaks the document."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import negative_data_rejection, positive_data_acceptance

from helpdesk import vocabulary as v
from helpdesk.api.openapi import DOCUMENT
from helpdesk.extensions import db
from helpdesk.services import Actor
from helpdesk.services.integrations import IntegrationsService
from tests.support.app import login_tokens

IGNORED_METHODS = {"HEAD", "OPTIONS"}
INPUTLESS = {"GET /health"}  # no parameters, no body, no security to get wrong


def test_document_lists_exactly_the_api_routes(app):
    routes: set[tuple[str, str]] = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1/"):
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule[len("/api/v1") :])
            routes |= {(path, method.lower()) for method in rule.methods - IGNORED_METHODS}
    documented = {
        (path, method)
        for path, item in DOCUMENT["paths"].items()
        for method in item
        if method != "parameters"
    }
    assert documented == routes


def test_document_is_served_and_valid(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200 and response.get_json() == DOCUMENT
    schema = schemathesis.openapi.from_dict(DOCUMENT)  # raises on an invalid document
    assert len(list(schema.get_all_operations())) == sum(
        1 for item in DOCUMENT["paths"].values() for m in item if m != "parameters"
    )


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_fuzzing_the_api_finds_no_500_and_no_undocumented_answer(app, client, agent, service, teams, mode):
    app.config.update(API_RATE_LIMIT="100000 per minute")  # one token makes every call
    service.open_ticket(
        subject="Fuzz target",
        description="x",
        requester_email="c@example.com",
        channel="web",
        actor=Actor.system(),
    )
    db.session.commit()
    token = login_tokens(client, agent.email, "agent-password-1")["access_token"]
    integrations = IntegrationsService(db.session)
    integration_tokens = {kind: integrations.add(f"fuzz-{kind}", kind)[1] for kind in v.INTEGRATION_KINDS}
    db.session.commit()
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    generation = GenerationMode.POSITIVE if mode == "positive" else GenerationMode.NEGATIVE
    checked = 0
    inputless: set[str] = set()
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path == "/auth/logout":
            continue  # revoking the fuzzer's own token would leave only the 401 path
        secret = integration_tokens.get(operation.path.split("/")[1], token)
        bearer = {"Authorization": f"Bearer {secret}"}

        @settings(max_examples=20, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=generation))
        def check(case):  # type: ignore[no-untyped-def]
            response = case.call(headers=bearer)  # noqa: B023 (check runs in this iteration)
            db.session.rollback()
            assert response.status_code < 500, (case.method, case.formatted_path, response.text)
            # Every answer must be documented (status, content type, body schema). Not
            # checked: that valid data is accepted (the document cannot say which staff
            # addresses exist) and that invalid data is refused (the fuzzer's missing-token
            # cases get the token back from `headers=`; the 401 sweep in test_api covers it).
            case.validate_response(
                response,
                headers=bearer,  # noqa: B023
                excluded_checks=[positive_data_acceptance, negative_data_rejection],
            )

        try:
            check()
        except Unsatisfiable:
            inputless.add(f"{operation.method.upper()} {operation.path}")
        checked += 1
    assert checked == len(DOCUMENT["paths"]) - 1 + 1  # GET and POST /tickets, less logout
    # Only operations that take no input at all can have no invalid input.
    assert inputless == (set() if mode == "positive" else INPUTLESS)


WRITES = {"post", "put", "patch", "delete"}


# Writes that give no `outcome_unknown`: they commit nothing, or (with the calls
# taking an Idempotency-Key) look for what they made when the COMMIT's answer is lost.
LOOKING_OR_WRITING_NOTHING = {"/auth/login", "/public/track"}


def _parameters(operation):  # type: ignore[no-untyped-def]
    return [parameter.get("name") for parameter in operation.get("parameters", [])]


def _operations():  # type: ignore[no-untyped-def]
    for path, item in DOCUMENT["paths"].items():
        for method, operation in item.items():
            if method != "parameters":
                yield path, method, operation


def test_document_lists_the_answers_any_call_can_give():
    """A client reading the document met answers it did not list (found by review):
    a 500 from a bug, a 503 with Retry-After while the database is away, a 409
    `conflict` for a write clashing with another, and the multipart reply's 400
    `invalid_form`. Each is listed wherever it can come."""
    for path, method, operation in _operations():
        answers = operation["responses"]
        assert "500" in answers, (method, path)
        if path != "/openapi.json":  # served from memory, no database
            assert "503" in answers, (method, path)
            assert "Retry-After" in answers["503"].get("headers", {}) or path == "/health", (method, path)
        if method in WRITES:
            assert "`conflict`" in answers["409"]["description"], (method, path)
            # A lost COMMIT answer, where the call cannot look for what it made.
            looks = path in LOOKING_OR_WRITING_NOTHING or "Idempotency-Key" in _parameters(operation)
            assert ("`outcome_unknown`" in answers["503"]["description"]) is not looks, (method, path)
        assert "`invalid_query`" in answers["400"]["description"], (method, path)
        body = operation.get("requestBody", {}).get("content", {})
        if "multipart/form-data" in body:
            assert "`invalid_form`" in answers["400"]["description"], (method, path)
        if "application/json" in body:
            assert "`invalid_json`" in answers["400"]["description"], (method, path)


def _refusal(
    client: FlaskClient, headers: dict[str, str], path: str, body: dict[str, Any]
) -> tuple[str, str]:
    """The path called and the code it answered (`ok` for a 200)."""
    response = client.post(f"/api/v1{path}", json=body, headers=headers)
    return path, "ok" if response.status_code == 200 else response.get_json()["error"]["code"]


def test_document_names_the_codes_of_a_customer_over_their_calls(app: Flask, client: FlaskClient) -> None:
    """The chat calls' 429 said "Rate limited", naming neither the customer's
    `too_many_customer_calls` nor the integration's `too_many_requests`, and the
    assistant's gave no word that a customer over their calls is answered 200, the
    calls refused as failure outputs (found by review). Each answer is provoked and
    looked for where the document describes that call's answers."""
    app.config.update(INTEGRATION_CUSTOMER_RATE_LIMIT="1 per minute", API_RATE_LIMIT="3 per minute")
    integrations = IntegrationsService(db.session)
    chat, assistant = (
        {"Authorization": f"Bearer {integrations.add(kind, kind)[1]}"} for kind in ("chat", "assistant")
    )
    db.session.commit()

    def lookup(email: str) -> tuple[str, str]:
        return _refusal(client, chat, "/chat/lookup", {"customer": {"email": email}, "text": ""})

    conversation = {"conversation_id": "c", "customer": {"email": "ann@example.com"}, "transcript": "Hi"}
    answers = [
        lookup("ann@example.com"),
        lookup("ann@example.com"),  # over her calls
        _refusal(client, chat, "/chat/tickets", conversation),
        lookup("bob@example.com"),
        lookup("cy@example.com"),  # the last of the integration's budget
        lookup("dan@example.com"),
    ]
    assert [code for _path, code in answers] == [
        "ok",
        "too_many_customer_calls",
        "too_many_customer_calls",
        "ok",
        "ok",
        "too_many_requests",
    ]
    for path, code in answers:
        described = DOCUMENT["paths"][path]["post"]["responses"]["429"]["description"]
        assert code == "ok" or f"`{code}`" in described, (path, code, described)
    # The assistant answers 200, the calls over the customer's limit failure outputs.
    call = {"id": "c", "type": "function", "function": {"name": "list_my_tickets", "arguments": "{}"}}
    response = client.post(
        "/api/v1/assistant/tool-calls",
        json={"customer": {"phone": "+5215512345678"}, "tool_calls": [call, {**call, "id": "d"}]},
        headers=assistant,
    )
    assert response.status_code == 200
    refused = json.loads(response.get_json()["tool_outputs"][1]["output"])
    assert refused["success"] is False
    described = DOCUMENT["paths"]["/assistant/tool-calls"]["post"]["responses"]["200"]["description"]
    assert f'"error": "{refused["error"]}"' in described and "`userMessage`" in described


def test_document_names_the_code_and_the_limit_of_every_other_429(
    app: Flask, client: FlaskClient, agent
) -> None:
    """The login's, the password change's, the tracker's and every token call's 429
    said "Rate limited", naming neither the code a client reads nor the limit it hit,
    while the chat calls' named theirs (found by review). Each is provoked and its
    code and setting looked for where the document describes that call's answers."""
    app.config.update(
        LOGIN_RATE_LIMIT="2 per minute",
        LOGIN_RATE_LIMIT_PER_ACCOUNT="1 per minute",
        TRACK_RATE_LIMIT_PER_IP="1 per minute",
        API_RATE_LIMIT="3 per minute",
    )
    token = login_tokens(client, agent.email, "agent-password-1")["access_token"]
    staff = {"Authorization": f"Bearer {token}"}
    answers: list[tuple[str, str, int, str, str]] = []

    def call(method: str, path: str, setting: str, **kwargs: Any) -> None:
        response = client.open(f"/api/v1{path}", method=method, **kwargs)
        code = response.get_json()["error"]["code"] if response.status_code >= 400 else "ok"
        answers.append((method.lower(), path, response.status_code, code, setting))

    for n in range(3):  # failed logins from one address, each of another account
        body = {"email": f"nobody{n}@example.com", "password": "wrong"}
        call("POST", "/auth/login", "LOGIN_RATE_LIMIT", json=body)
    wrong = {"current_password": "wrong", "new_password": "a-new-password-42"}
    for _ in range(2):
        call("POST", "/auth/password", "LOGIN_RATE_LIMIT_PER_ACCOUNT", json=wrong, headers=staff)
    for _ in range(3):
        call("GET", "/tickets", "API_RATE_LIMIT", headers=staff)
    for _ in range(2):
        body = {"ticket_number": "TKT-000001", "email": "ann@example.com"}
        call("POST", "/public/track", "TRACK_RATE_LIMIT_PER_IP", json=body)
    refused = [
        (method, path, code, setting) for method, path, status, code, setting in answers if status == 429
    ]
    assert {(path, code) for _method, path, code, _setting in refused} == {
        ("/auth/login", "too_many_requests"),
        ("/auth/password", "too_many_requests"),
        ("/tickets", "too_many_requests"),
        ("/public/track", "too_many_requests"),
    }, answers
    for method, path, code, setting in refused:
        described = DOCUMENT["paths"][path][method]["responses"]["429"]["description"]
        assert f"`{code}`" in described and f"`{setting}`" in described, (path, code, described)
