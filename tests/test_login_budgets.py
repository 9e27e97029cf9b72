"""The failed-login budgets when attempts come at the same moment (docs/security.md,
"Password guessing"): each attempt takes its place in the shared count before its
password is checked, so many web workers cannot all pass a check of the count
while it is still below the limit; a success, a refusal and a request refused for
its form give their place back."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from limits import parse

import helpdesk.auth
import helpdesk.models
from helpdesk.auth import _key_of
from helpdesk.extensions import limiter
from helpdesk.models import StaffUser
from tests.support.app import login_tokens

BUDGET = 5
AT_ONCE = 6
PASSWORD = "agent-password-1"
NEW_PASSWORD = "new-pass-word-9"


class PasswordCheckGate:
    """Holds every password check until each of the attempts at once has either
    reached a check or been answered without one. Before the fix every attempt
    passed the test of the count before any added to it: all of them reached the
    check. Now only the budget left reaches it, and the rest are answered 429."""

    def __init__(self, attempts: int) -> None:
        self.attempts = attempts
        self.checking = 0
        self.answered = 0
        self.changed = threading.Condition()

    def holding(self, check: Callable[..., bool]) -> Callable[..., bool]:
        def held(*args: Any) -> bool:
            with self.changed:
                self.checking += 1
                self.changed.notify_all()
                self.changed.wait_for(lambda: self.checking + self.answered >= self.attempts, timeout=30)
            return check(*args)

        return held

    def answered_without_check(self) -> None:
        with self.changed:
            self.answered += 1
            self.changed.notify_all()


def _stored(limit: str, *identifiers: str) -> int:
    """The count the limiter's store holds for one budget."""
    return int(limiter.limiter.storage.get(parse(limit).key_for(*identifiers)))


def _attempt(app: Flask, budget: str, n: int, token: str) -> int:
    client = app.test_client()
    if budget == "account":  # one account, from many addresses
        body = {"email": "agent@helpdesk.test", "password": f"guess-{n}"}
        return client.post(
            "/api/v1/auth/login", json=body, environ_base={"REMOTE_ADDR": f"10.5.0.{n + 1}"}
        ).status_code
    if budget == "address":  # many accounts (unknown ones too), from one address
        body = {"email": f"someone-{n}@example.com", "password": f"guess-{n}"}
        return client.post(
            "/api/v1/auth/login", json=body, environ_base={"REMOTE_ADDR": "10.6.0.1"}
        ).status_code
    body = {"current_password": f"guess-{n}", "new_password": NEW_PASSWORD}
    return client.post(
        "/api/v1/auth/password", json=body, headers={"Authorization": f"Bearer {token}"}
    ).status_code


# Real concurrency needs PostgreSQL: on SQLite every transaction takes the database's
# write lock, so requests held in their password check would hold it for the others.
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
@pytest.mark.parametrize("budget", ["account", "address", "current password"])
def test_attempts_at_the_same_moment_get_only_what_is_left_of_the_budget(
    app: Flask, agent: StaffUser, monkeypatch: pytest.MonkeyPatch, budget: str
) -> None:
    """All but one attempt of the budget spent, then several at once (as many web
    workers or hosts take them): exactly one more reaches the password check and
    fails there, the rest are refused 429, and the count stays at the limit. Before,
    all of them got 401 and the count went past the limit."""
    per_address, per_account = "1000 per minute", f"{BUDGET} per minute"
    if budget == "address":
        per_address, per_account = per_account, per_address
    app.config.update(LOGIN_RATE_LIMIT=per_address, LOGIN_RATE_LIMIT_PER_ACCOUNT=per_account)
    assert agent.email == "agent@helpdesk.test"
    token = login_tokens(app.test_client(), agent.email, PASSWORD)["access_token"]
    failed = 422 if budget == "current password" else 401

    spent = [_attempt(app, budget, 100 + n, token) for n in range(BUDGET - 1)]
    assert spent == [failed] * (BUDGET - 1)

    gate = PasswordCheckGate(AT_ONCE)
    for module in (helpdesk.models, helpdesk.auth):
        monkeypatch.setattr(module, "check_password_hash", gate.holding(module.check_password_hash))
    start = threading.Barrier(AT_ONCE)
    codes: list[int] = []
    lock = threading.Lock()

    def attempt(n: int) -> None:
        start.wait(30)
        code = _attempt(app, budget, n, token)
        if code == 429:
            gate.answered_without_check()
        with lock:
            codes.append(code)

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(AT_ONCE)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert sorted(codes) == [failed] + [429] * (AT_ONCE - 1), codes
    if budget == "address":
        assert _stored(per_address, "10.6.0.1", "login") == BUDGET
    else:
        assert _stored(per_account, _key_of(agent.email), "login-account") == BUDGET
    monkeypatch.undo()
    assert _attempt(app, budget, 200, token) == 429


def test_a_success_gives_its_place_back(app: Flask, agent: StaffUser) -> None:
    """The attempt is counted before its password is checked; a right password takes
    it back, so staff logging in (one NAT address, one account) use up nothing."""
    app.config.update(
        LOGIN_RATE_LIMIT=f"{BUDGET} per minute", LOGIN_RATE_LIMIT_PER_ACCOUNT=f"{BUDGET} per minute"
    )
    client = app.test_client()

    def login(password: str) -> int:
        return client.post(
            "/api/v1/auth/login", json={"email": agent.email, "password": password}
        ).status_code

    assert [login(PASSWORD) for _ in range(BUDGET + 2)] == [200] * (BUDGET + 2)
    assert [login("guess-guess") for _ in range(BUDGET - 1)] == [401] * (BUDGET - 1)
    assert login(PASSWORD) == 200  # the last place is free again afterwards
    assert _stored(f"{BUDGET} per minute", _key_of(agent.email), "login-account") == BUDGET - 1
    assert _stored(f"{BUDGET} per minute", "127.0.0.1", "login") == BUDGET - 1
    assert [login("guess-guess"), login(PASSWORD)] == [401, 429]
    assert _stored(f"{BUDGET} per minute", _key_of(agent.email), "login-account") == BUDGET


def test_a_form_refused_before_the_password_check_costs_nothing(app: Flask, agent: StaffUser) -> None:
    """A login without a password, a password change whose new one is too short:
    no password was checked and failed, so the budget is as it was."""
    app.config.update(
        LOGIN_RATE_LIMIT=f"{BUDGET} per minute", LOGIN_RATE_LIMIT_PER_ACCOUNT=f"{BUDGET} per minute"
    )
    client = app.test_client()
    token = login_tokens(client, agent.email, PASSWORD)["access_token"]
    for _ in range(BUDGET + 1):
        assert client.post("/api/v1/auth/login", json={"email": agent.email}).status_code == 422
        answer = client.post(
            "/api/v1/auth/password",
            json={"current_password": PASSWORD, "new_password": "short"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert answer.status_code == 422
    assert _stored(f"{BUDGET} per minute", _key_of(agent.email), "login-account") == 0
    assert _stored(f"{BUDGET} per minute", "127.0.0.1", "login") == 0


def test_a_refused_attempt_answers_as_before(app: Flask, agent: StaffUser) -> None:
    """The 429 keeps its envelope and its Retry-After, and is not counted: the count
    stays at the limit however often the client asks."""
    app.config.update(LOGIN_RATE_LIMIT_PER_ACCOUNT=f"{BUDGET} per minute")
    client = app.test_client()
    for _ in range(BUDGET):
        client.post("/api/v1/auth/login", json={"email": agent.email, "password": "guess-guess"})
    for _ in range(3):
        refused = client.post("/api/v1/auth/login", json={"email": agent.email, "password": PASSWORD})
        assert refused.status_code == 429
        assert refused.get_json()["error"]["code"] == "too_many_requests"
        assert 0 < int(refused.headers["Retry-After"]) <= 60
        assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert _stored(f"{BUDGET} per minute", _key_of(agent.email), "login-account") == BUDGET


def test_a_place_is_given_back_only_to_the_window_it_was_taken_in(
    app: Flask, agent: StaffUser, clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slow right login counted in one window gave its place back in the next,
    erasing a failure made there: a login crossing each window's end bought one
    more guess (found by review). Only the window it was taken in gets it back."""
    app.config.update(LOGIN_RATE_LIMIT=f"{BUDGET} per minute", LOGIN_RATE_LIMIT_PER_ACCOUNT="1000 per minute")
    key = parse(f"{BUDGET} per minute").key_for("127.0.0.1", "login")
    check = helpdesk.models.check_password_hash

    def slow_check(*args: Any) -> bool:
        clock.shift(61)  # the window the login was counted in ends while it is checked
        limiter.limiter.storage.incr(key, 60)  # a failed guess in the new window
        return check(*args)

    monkeypatch.setattr(helpdesk.models, "check_password_hash", slow_check)
    answer = app.test_client().post("/api/v1/auth/login", json={"email": agent.email, "password": PASSWORD})
    assert answer.status_code == 200
    assert _stored(f"{BUDGET} per minute", "127.0.0.1", "login") == 1
