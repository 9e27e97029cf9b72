"""The API's budget per proven caller (`API_RATE_LIMIT`, docs/web.md "Rate limits"):
a staff token's or an integration token's calls are counted under its caller, and
over the budget answered 429 with Retry-After; other callers, the public tracker
and calls without a valid token are not counted here."""

from __future__ import annotations

import time
from typing import Any

from flask import Flask

from helpdesk.api.openapi import DOCUMENT
from helpdesk.extensions import db
from helpdesk.models import StaffUser
from helpdesk.services.integrations import IntegrationsService
from tests.support.app import login_tokens

BUDGET = 2


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_each_proven_caller_has_its_own_budget(app: Flask, agent: StaffUser, admin: StaffUser) -> None:
    """One staff token made 1,000 searches and 100 creations, all answered (found
    by review): a stolen or looping token was unbounded."""
    app.config.update(API_RATE_LIMIT=f"{BUDGET} per minute")
    client = app.test_client()
    agent_token = login_tokens(client, agent.email, "agent-password-1")["access_token"]
    admin_token = login_tokens(client, admin.email, "admin-password-1")["access_token"]
    chat = IntegrationsService(db.session).add("widget", "chat")[1]
    db.session.commit()

    searches = [client.get("/api/v1/tickets?q=x", headers=_bearer(agent_token)) for _ in range(BUDGET + 1)]
    assert [answer.status_code for answer in searches] == [200] * BUDGET + [429]
    refused = searches[-1]
    assert refused.get_json()["error"]["code"] == "too_many_requests"
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    # Another endpoint draws from the same caller's budget.
    assert client.post("/api/v1/tickets", headers=_bearer(agent_token), json={}).status_code == 429

    # Another staff member and an integration are counted apart.
    assert client.get("/api/v1/tickets", headers=_bearer(admin_token)).status_code == 200
    chats = [
        client.post("/api/v1/chat/tickets", headers=_bearer(chat), json={}).status_code for _ in range(3)
    ]
    assert chats == [422] * BUDGET + [429]

    # Unproven calls and the public tracker are not counted by it.
    for _ in range(BUDGET + 1):
        assert client.get("/api/v1/tickets", headers=_bearer("not-a-token")).status_code == 401
        assert client.post("/api/v1/chat/tickets", headers=_bearer("hdi_wrong"), json={}).status_code == 401


def test_the_document_lists_the_429_on_every_call_made_with_a_token() -> None:
    for item in DOCUMENT["paths"].values():
        for method, operation in item.items():
            if method != "parameters" and operation.get("security", DOCUMENT["security"]):
                assert "429" in operation["responses"], (method, operation["summary"])


def test_every_counted_call_tells_its_budget_as_the_login_does(app: Flask, agent: StaffUser) -> None:
    """The API's 429 had only Retry-After, where the login's 429 has the
    X-RateLimit headers too (found by review): a client could not see its budget
    running out. Every counted call now carries them; the 429 its Retry-After."""
    app.config.update(API_RATE_LIMIT=f"{BUDGET} per minute", LOGIN_RATE_LIMIT_PER_ACCOUNT="1 per minute")
    client = app.test_client()
    token = login_tokens(client, agent.email, "agent-password-1")["access_token"]
    started = time.time()
    answers = [client.get("/api/v1/tickets", headers=_bearer(token)) for _ in range(BUDGET + 1)]
    assert [answer.headers.get("X-RateLimit-Remaining") for answer in answers] == ["1", "0", "0"]
    for answer in answers:
        assert answer.headers["X-RateLimit-Limit"] == str(BUDGET)
        assert started < int(answer.headers["X-RateLimit-Reset"]) <= started + 62
    assert "Retry-After" not in answers[0].headers
    assert 0 < int(answers[-1].headers["Retry-After"]) <= 60

    # The login's own 429 names the same headers.
    client.post("/api/v1/auth/login", json={"email": agent.email, "password": "guess-guess"})
    login = client.post("/api/v1/auth/login", json={"email": agent.email, "password": "guess-guess"})
    assert login.status_code == 429
    assert _rate_headers(login) == _rate_headers(answers[-1])


def _rate_headers(answer: Any) -> set[str]:
    return {name for name in answer.headers.keys() if name.startswith(("X-RateLimit-", "Retry-After"))}
