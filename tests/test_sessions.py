"""Staff sessions and tokens end when they should (docs/security.md).

A portal session is a signed cookie and an API token a signed JWT: both are valid
wherever they are copied to until the server says otherwise. The server says so
through the staff member's session version: logout, a password change, a role
change, deactivation and an admin's password reset end every session and token of
that person at once. Refresh tokens rotate on use; a refresh token used twice means
it was copied, and ends its whole family.
"""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask_sqlalchemy.session import Session
from sqlalchemy import insert, select, update

from helpdesk.clock import now
from helpdesk.extensions import db
from helpdesk.models import RevokedToken, StaffUser
from helpdesk.portal import account
from helpdesk.services.staff import StaffService
from tests.support.app import ApiClient, Portal, login_tokens
from tests.support.database import refused_by_database
from tests.support.lost_commit import commit_answer_lost


def _copy_of(client, app: Flask):  # type: ignore[no-untyped-def]
    """Another browser holding a copy of `client`'s session cookie."""
    thief = app.test_client()
    cookie = client.get_cookie("helpdesk_session")
    assert cookie is not None
    thief.set_cookie("helpdesk_session", cookie.value)
    return thief


def _logged_in(response) -> bool:  # type: ignore[no-untyped-def]
    return response.status_code == 200


def _session_data(app: Flask, client) -> dict:  # type: ignore[no-untyped-def]
    cookie = client.get_cookie("helpdesk_session")
    if cookie is None:
        return {}
    return app.session_interface.get_signing_serializer(app).loads(cookie.value)  # type: ignore[attr-defined]


# -- the portal --------------------------------------------------------------------------------


def test_logout_ends_a_copied_session_cookie(app, client, portal):
    thief = _copy_of(client, app)
    assert _logged_in(thief.get("/tickets"))
    portal.post("/logout")
    assert thief.get("/tickets").status_code == 302


@pytest.mark.parametrize("kept", [True, False])
def test_a_logout_whose_commit_answer_was_lost_says_so_and_can_be_checked_and_sent_again(
    app, client, portal, kept
):
    """The connection drops as the logout's COMMIT goes. The cookie was cleared before
    the COMMIT, so this browser was signed out whatever the database did, and the
    page said "cannot reach its database. Try again": sent again, the logout ended
    nothing (nobody was signed in), and a copied cookie lived on if the database had
    not kept it. The page now says it may or may not have been saved, and this
    browser shows which at its next page: signed out if it was kept; still signed in,
    and a second logout ends every session, if not (docs/web.md, "A lost answer")."""
    copy = _copy_of(client, app)
    with commit_answer_lost(lambda statement: statement.startswith("UPDATE staff_users"), kept=kept):
        response = portal.post("/logout")
    said = response.get_data(as_text=True)
    assert response.status_code == 503 and "may or may not have been saved" in said
    assert "cannot reach its database" not in said
    assert _logged_in(client.get("/tickets")) is not kept
    assert _logged_in(copy.get("/tickets")) is not kept
    portal.post("/logout", page="/login")  # sent again: harmless if kept, done now if not
    assert not _logged_in(client.get("/tickets")) and not _logged_in(copy.get("/tickets"))


def test_portal_logout_ends_the_api_tokens_of_that_person(client, portal, agent):
    tokens = login_tokens(client, agent.email, "agent-password-1")
    api = ApiClient(client, tokens["access_token"])
    assert api.get("/tickets").status_code == 200
    portal.post("/logout")
    assert api.get("/tickets").status_code == 401
    assert ApiClient(client, tokens["refresh_token"]).post("/auth/refresh").status_code == 401


@pytest.mark.parametrize("change", ["deactivate", "role", "reset"])
def test_admin_changes_end_every_session_of_that_person(app, client, admin_portal, agent, change):
    victim = app.test_client()
    assert Portal(victim).login(agent.email, "agent-password-1").status_code == 302
    token = login_tokens(victim, agent.email, "agent-password-1")["access_token"]
    page = "/admin/staff"
    if change == "deactivate":
        admin_portal.post(f"/admin/staff/{agent.id}/active", {"active": "0"}, page=page)
        admin_portal.post(f"/admin/staff/{agent.id}/active", {"active": "1"}, page=page)
    elif change == "role":
        admin_portal.post(f"/admin/staff/{agent.id}/role", {"role": "admin"}, page=page)
    else:
        admin_portal.post(f"/admin/staff/{agent.id}/password", page=page)
    assert victim.get("/tickets").status_code == 302
    assert ApiClient(victim, token).get("/tickets").status_code == 401


def test_a_role_change_takes_effect_and_is_refused_for_the_last_admin(admin_portal, admin, agent):
    response = admin_portal.post(f"/admin/staff/{agent.id}/role", {"role": "admin"}, page="/admin/staff")
    assert response.status_code == 302
    assert db.session.get(StaffUser, agent.id).role == "admin"
    admin_portal.post(f"/admin/staff/{agent.id}/role", {"role": "agent"}, page="/admin/staff")
    refused = admin_portal.post(f"/admin/staff/{admin.id}/role", {"role": "agent"}, page="/admin/staff")
    assert refused.status_code == 302
    assert db.session.get(StaffUser, admin.id).role == "admin"
    assert db.session.get(StaffUser, agent.id).role == "agent"
    bogus = admin_portal.post(f"/admin/staff/{agent.id}/role", {"role": "root"}, page="/admin/staff")
    assert bogus.status_code == 302
    assert db.session.get(StaffUser, agent.id).role == "agent"


def test_agents_cannot_change_roles_or_reset_passwords(portal, admin):
    assert portal.post(f"/admin/staff/{admin.id}/role", {"role": "agent"}).status_code == 403
    assert portal.post(f"/admin/staff/{admin.id}/password").status_code == 403


def test_changing_ones_own_password_keeps_this_session_and_ends_the_others(app, client, portal, agent):
    other = app.test_client()
    assert Portal(other).login(agent.email, "agent-password-1").status_code == 302
    wrong = portal.post(
        "/account/password",
        {"current_password": "not-my-password", "new_password": "brand-new-pass-1"},
        page="/account",
    )
    assert wrong.status_code == 400
    assert "current password is wrong" in wrong.get_data(as_text=True)
    short = portal.post(
        "/account/password",
        {"current_password": "agent-password-1", "new_password": "short"},
        page="/account",
    )
    assert short.status_code == 400
    changed = portal.post(
        "/account/password",
        {"current_password": "agent-password-1", "new_password": "brand-new-pass-1"},
        page="/account",
    )
    assert changed.status_code == 302
    assert _logged_in(portal.get("/tickets"))
    assert other.get("/tickets").status_code == 302
    assert Portal(app.test_client()).login(agent.email, "agent-password-1").status_code == 401
    assert Portal(app.test_client()).login(agent.email, "brand-new-pass-1").status_code == 302


def test_a_reset_password_is_shown_once_and_never_put_in_a_cookie(app, client, admin_portal, agent):
    response = admin_portal.post(f"/admin/staff/{agent.id}/password", page="/admin/staff")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    page = response.get_data(as_text=True)
    [password] = [
        line.split(">")[1].split("<")[0] for line in page.splitlines() if 'id="new-password"' in line
    ]
    assert len(password) >= 12
    assert password not in json.dumps(_session_data(app, client))
    assert password not in admin_portal.get("/admin/staff").get_data(as_text=True)
    assert Portal(app.test_client()).login(agent.email, password).status_code == 302


# -- a password change and an admin's reset at the same moment ---------------------------------
#
# A phished account: whoever holds the password changes it to itself over and over (a
# success gives its place in the login budget back) while an admin resets it. However
# the two interleave, once the reset has answered no session or token from before it
# works and the password it showed logs in (docs/security.md, "Sessions and tokens").

WAIT = 30  # seconds; a ceiling for a broken run, never reached by a working one


def _shown_password(response) -> str:  # type: ignore[no-untyped-def]
    [password] = [
        line.split(">")[1].split("<")[0]
        for line in response.get_data(as_text=True).splitlines()
        if 'id="new-password"' in line
    ]
    return password


class _Changer:
    """The person changing their own password (old = new), over the API or the portal,
    in a thread of its own named "changer"."""

    def __init__(self, app: Flask, email: str, where: str) -> None:
        self.client, self.where, self.answer = app.test_client(), where, None
        if where == "api":
            self.tokens = login_tokens(self.client, email, "agent-password-1")
        else:
            portal = Portal(self.client)
            assert portal.login(email, "agent-password-1").status_code == 302
            self.csrf = portal.token("/account")

    def change(self) -> None:
        form = {"current_password": "agent-password-1", "new_password": "agent-password-1"}
        if self.where == "api":
            self.answer = self.client.post(
                "/api/v1/auth/password",
                json=form,
                headers={"Authorization": f"Bearer {self.tokens['access_token']}"},
            )
        else:
            self.answer = self.client.post("/account/password", data={**form, "csrf_token": self.csrf})

    def race(self, app: Flask, victim: StaffUser, paused: threading.Event, go_on: threading.Event) -> str:
        """Start the change; when it has `paused`, an admin resets the password, and
        then it may `go_on`. Returns the password the reset showed."""
        admin_client = app.test_client()
        admin_portal = Portal(admin_client)
        assert admin_portal.login("admin@helpdesk.test", "admin-password-1").status_code == 302
        csrf = admin_portal.token("/admin/staff")
        thread = threading.Thread(target=self.change, name="changer")
        thread.start()
        try:
            assert paused.wait(WAIT), "the change never reached its pause"
            reset = admin_client.post(f"/admin/staff/{victim.id}/password", data={"csrf_token": csrf})
            assert reset.status_code == 200
        finally:
            go_on.set()
            thread.join(WAIT)
        assert not thread.is_alive()
        return _shown_password(reset)

    def still_in(self) -> bool:
        """Does anything this person was handed before or by the change still work?"""
        if self.where == "portal":
            return _logged_in(self.client.get("/tickets"))
        handed = [self.tokens["access_token"]]
        if self.answer is not None and self.answer.status_code == 200:
            handed.append(self.answer.get_json()["access_token"])
        return any(ApiClient(self.client, token).get("/tickets").status_code == 200 for token in handed)


@pytest.mark.parametrize("where", ["api", "portal"])
def test_a_reset_committed_between_a_password_changes_commit_and_its_answer_ends_it(
    app, admin, agent, monkeypatch, where
):
    """The change's answer (a token pair, the portal session's new version) read the
    session version again after its commit, and by then it was the reset's: the
    changer's new token and session outlived the reset (SQLite, PostgreSQL alike)."""
    changer = _Changer(app, agent.email, where)
    committed, reset_done = threading.Event(), threading.Event()
    commit = Session.commit

    def commit_then_wait(self: Session) -> None:
        commit(self)
        if threading.current_thread().name == "changer" and not committed.is_set():
            committed.set()
            assert reset_done.wait(WAIT)

    monkeypatch.setattr(Session, "commit", commit_then_wait)
    shown = changer.race(app, agent, committed, reset_done)
    monkeypatch.undo()

    assert changer.answer is not None and changer.answer.status_code in (200, 302)
    assert not changer.still_in()
    assert login_tokens(app.test_client(), agent.email, shown)


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
@pytest.mark.parametrize("where", ["api", "portal"])
def test_a_password_change_that_read_the_account_before_a_reset_is_judged_after_it(
    app, admin, agent, monkeypatch, where
):
    """The change checked the current password against the account as its request
    had read it, before the reset committed, and wrote that hash back with the
    same session version the reset wrote: the reset was undone and the changer's new
    token worked (PostgreSQL, every time; on SQLite a request holds the write lock
    from its first read, so the reset waits for the change instead)."""
    changer = _Changer(app, agent.email, where)
    loaded, reset_done = threading.Event(), threading.Event()
    change_password = StaffService.change_password

    def wait_then_change(self: StaffService, *args: Any) -> Any:
        if threading.current_thread().name == "changer":
            loaded.set()
            assert reset_done.wait(WAIT)
        return change_password(self, *args)

    monkeypatch.setattr(StaffService, "change_password", wait_then_change)
    shown = changer.race(app, agent, loaded, reset_done)
    monkeypatch.undo()

    # The current password was wrong by then; the portal's session had ended with it.
    assert changer.answer is not None and changer.answer.status_code in (302, 422)
    if where == "portal":
        assert changer.answer.headers["Location"].startswith("/login")
    assert not changer.still_in()
    assert login_tokens(app.test_client(), agent.email, shown)
    assert (
        app.test_client()
        .post("/api/v1/auth/login", json={"email": agent.email, "password": "agent-password-1"})
        .status_code
        == 401
    )


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
@pytest.mark.parametrize(
    ("path", "form", "judge"),
    [
        ("/account/preferences", {"language": "xx", "timezone": ""}, (account, "set_preferences")),
    ],
)
def test_a_session_ended_while_its_form_was_judged_goes_to_the_login_page(
    app, client, agent, monkeypatch, path, form, judge
):
    """A form refused after a reset (or a logout elsewhere) committed while it was
    judged: the rollback makes the page read the account again, and the page found
    nobody signed in and answered 500. It goes to the login page, as the next request
    would (PostgreSQL: on SQLite a request holds the write lock from its first read,
    so the reset waits for it)."""
    portal = Portal(client)
    assert portal.login(agent.email, "agent-password-1").status_code == 302
    page = "/account" if path.startswith("/account") else path
    owner, name = judge
    real = getattr(owner, name)

    def judged_while_reset(*args: Any, **kwargs: Any) -> Any:
        with db.engine.begin() as other:  # another request's transaction, committed
            other.execute(
                update(StaffUser)
                .where(StaffUser.id == agent.id)
                .values(session_version=StaffUser.session_version + 1)
            )
        return real(*args, **kwargs)

    token = portal.token(page)
    monkeypatch.setattr(owner, name, judged_while_reset)
    response = client.post(path, data={**form, "csrf_token": token})
    monkeypatch.undo()
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_a_generated_password_for_a_new_account_is_never_put_in_a_cookie(app, client, admin_portal):
    response = admin_portal.post(
        "/admin/staff",
        {"name": "Nina New", "email": "nina@helpdesk.test", "role": "agent", "password": ""},
        page="/admin/staff",
    )
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    [password] = [
        line.split(">")[1].split("<")[0] for line in page.splitlines() if 'id="new-password"' in line
    ]
    assert password not in json.dumps(_session_data(app, client))
    assert Portal(app.test_client()).login("nina@helpdesk.test", password).status_code == 302


# -- the API -----------------------------------------------------------------------------------


def test_api_logout_ends_every_token_and_portal_session_of_that_person(app, client, agent):
    browser = app.test_client()
    assert Portal(browser).login(agent.email, "agent-password-1").status_code == 302
    first = login_tokens(client, agent.email, "agent-password-1")
    second = login_tokens(client, agent.email, "agent-password-1")
    response = ApiClient(client, first["access_token"]).post("/auth/logout")
    assert response.get_json() == {"revoked": True}
    for token in (first["access_token"], second["access_token"]):
        assert ApiClient(client, token).get("/tickets").status_code == 401
    assert ApiClient(client, second["refresh_token"]).post("/auth/refresh").status_code == 401
    assert browser.get("/tickets").status_code == 302


def test_refresh_tokens_rotate_and_a_reused_one_ends_its_family(client, agent):
    login = login_tokens(client, agent.email, "agent-password-1")
    other_login = login_tokens(client, agent.email, "agent-password-1")
    rotated = ApiClient(client, login["refresh_token"]).post("/auth/refresh").get_json()
    assert set(rotated) == {"access_token", "refresh_token"}
    assert ApiClient(client, rotated["access_token"]).get("/tickets").status_code == 200
    # The old refresh token again: someone holds a copy. The family ends, every member.
    reused = ApiClient(client, login["refresh_token"]).post("/auth/refresh")
    assert reused.status_code == 401 and reused.get_json()["error"]["code"] == "token_revoked"
    assert ApiClient(client, rotated["refresh_token"]).post("/auth/refresh").status_code == 401
    assert ApiClient(client, rotated["access_token"]).get("/tickets").status_code == 401
    assert ApiClient(client, login["access_token"]).get("/tickets").status_code == 401
    # Another login of the same person is another family and goes on.
    assert ApiClient(client, other_login["access_token"]).get("/tickets").status_code == 200
    assert ApiClient(client, other_login["refresh_token"]).post("/auth/refresh").status_code == 200


@pytest.mark.parametrize("kept", [True, False])
def test_a_reused_refresh_token_whose_family_revocation_lost_its_commit_answer_is_outcome_unknown(
    client, agent, kept
):
    """A rotated refresh token presented again ends its family; the connection drops
    as that revocation's COMMIT goes. It was answered from inside the token check's
    error handler, where an error is no longer handled: a 500. It is `503
    outcome_unknown` with `Retry-After`, as every change whose answer was lost; the
    same token presented again ends the family for certain (docs/web.md, "A lost answer")."""
    login = login_tokens(client, agent.email, "agent-password-1")
    rotated = ApiClient(client, login["refresh_token"]).post("/auth/refresh").get_json()
    with commit_answer_lost(lambda statement: statement.startswith("INSERT INTO revoked_tokens"), kept=kept):
        lost = ApiClient(client, login["refresh_token"]).post("/auth/refresh")
    assert lost.status_code == 503 and lost.get_json()["error"]["code"] == "outcome_unknown"
    assert lost.headers["Retry-After"] == "30"
    family_alive = ApiClient(client, rotated["access_token"]).get("/tickets").status_code == 200
    assert family_alive is not kept
    again = ApiClient(client, login["refresh_token"]).post("/auth/refresh")
    assert again.status_code == 401 and again.get_json()["error"]["code"] == "token_revoked"
    assert ApiClient(client, rotated["access_token"]).get("/tickets").status_code == 401


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_reused_refresh_token_whose_family_revocation_failed_now_is_503_database_unavailable(client, agent):
    """The family's revocation refused for now (a serialization failure): raised from
    the token check's error handler, it was a 500 of a retryable failure. It is `503
    database_unavailable` with `Retry-After`, and the retry ends the family."""
    login = login_tokens(client, agent.email, "agent-password-1")
    rotated = ApiClient(client, login["refresh_token"]).post("/auth/refresh").get_json()
    with refused_by_database("family:", "40001", "revoked_tokens", "jti"):
        failed = ApiClient(client, login["refresh_token"]).post("/auth/refresh")
    assert failed.status_code == 503 and failed.get_json()["error"]["code"] == "database_unavailable"
    assert failed.headers["Retry-After"] == "30"
    assert ApiClient(client, rotated["access_token"]).get("/tickets").status_code == 200
    again = ApiClient(client, login["refresh_token"]).post("/auth/refresh")
    assert again.get_json()["error"]["code"] == "token_revoked"
    assert ApiClient(client, rotated["access_token"]).get("/tickets").status_code == 401


def test_one_refresh_token_presented_twice_at_once_ends_its_family(app, client, agent):
    """Both requests passed the revocation check before either wrote its revocation,
    whose insert ignored the second: two working token chains, no family revoked (on
    PostgreSQL in about half of the races). Now whatever the timing the family ends."""

    def present(token: str, start: threading.Barrier, answers: list) -> None:
        own = app.test_client()
        start.wait()
        response = own.post("/api/v1/auth/refresh", headers={"Authorization": f"Bearer {token}"})
        answers.append((response.status_code, response.get_json()))

    for _ in range(12):
        pair = login_tokens(client, agent.email, "agent-password-1")
        start, answers = threading.Barrier(2), []
        threads = [
            threading.Thread(target=present, args=(pair["refresh_token"], start, answers)) for _ in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(code for code, _ in answers) in ([200, 401], [401, 401]), answers
        for code, body in answers:
            if code == 200:  # the winner's chain ended with the family
                assert ApiClient(client, body["refresh_token"]).post("/auth/refresh").status_code == 401
                assert ApiClient(client, body["access_token"]).get("/tickets").status_code == 401
        assert ApiClient(client, pair["access_token"]).get("/tickets").status_code == 401


def test_refreshing_never_takes_a_family_past_its_logins_lifetime(app, clock, client, agent):
    """Each refresh answered a new refresh token of the full lifetime, so a stolen one
    refreshed now and then lived until a logout or a password change. A family's
    tokens now end JWT_REFRESH_TOKEN_EXPIRES after the login that began it."""
    lifetime = app.config["JWT_REFRESH_TOKEN_EXPIRES"]
    pair = login_tokens(client, agent.email, "agent-password-1")
    clock.shift(lifetime / 2)
    pair = ApiClient(client, pair["refresh_token"]).post("/auth/refresh").get_json()
    clock.shift(lifetime / 2 - timedelta(minutes=1))
    last = ApiClient(client, pair["refresh_token"]).post("/auth/refresh")
    assert last.status_code == 200
    pair = last.get_json()
    assert ApiClient(client, pair["access_token"]).get("/tickets").status_code == 200
    clock.shift(timedelta(minutes=1, seconds=1))
    for token, path in ((pair["refresh_token"], "/auth/refresh"), (pair["access_token"], "/tickets")):
        answer = ApiClient(client, token).call("POST" if path == "/auth/refresh" else "GET", path)
        assert answer.status_code == 401
        assert answer.get_json()["error"]["code"] == "token_expired"
    assert login_tokens(client, agent.email, "agent-password-1")  # a new login starts again


def _swept(app: Flask) -> int:
    """The gateway's lifecycle jobs, once: how many revocations their sweep deleted."""
    from mailgateway.periodic import LifecycleJobs

    [result] = [r for r in LifecycleJobs(app).run_once() if r.summary().startswith("revoked-tokens:")]
    return int(result.deleted)


def test_a_reused_refresh_token_ends_its_family_up_to_its_expiry_whatever_is_swept(
    app, clock, client, agent, runner
):
    """`revoked_tokens` kept a row for every rotated refresh token and ended family
    for ever. The gateway's lifecycle jobs (and `flask revoked-tokens-sweep`) now
    delete a row an hour past its token's expiry: a rotated token presented again
    still ends its family at its last second, also when the sweeping host's clock
    runs up to that hour ahead of the web host's, and once its row is gone it is
    refused as expired (docs/security.md, "Refresh tokens rotate")."""
    from helpdesk.services.revoked_tokens import SKEW_MARGIN

    lifetime = app.config["JWT_REFRESH_TOKEN_EXPIRES"]
    second = timedelta(seconds=1)
    first = login_tokens(client, agent.email, "agent-password-1")
    rotated = ApiClient(client, first["refresh_token"]).post("/auth/refresh").get_json()
    clock.shift(lifetime - second + SKEW_MARGIN - second)  # a sweeper almost an hour ahead
    assert _swept(app) == 0
    clock.shift(-(SKEW_MARGIN - second))  # the web host: the first token's last second
    reused = ApiClient(client, first["refresh_token"]).post("/auth/refresh")
    assert reused.get_json()["error"]["code"] == "token_revoked"
    ended = ApiClient(client, rotated["refresh_token"]).post("/auth/refresh")  # the family's last second too
    assert ended.get_json()["error"]["code"] == "token_revoked"
    clock.shift(second + SKEW_MARGIN + second)
    assert _swept(app) == 1  # the first token's; the family's outlives every member
    expired = ApiClient(client, first["refresh_token"]).post("/auth/refresh")
    assert expired.get_json()["error"]["code"] == "token_expired"
    clock.shift(lifetime)
    swept = runner.invoke(args=["revoked-tokens-sweep"])
    assert (swept.exit_code, swept.output) == (0, "revoked-tokens: 1 expired revocations deleted\n")
    assert db.session.scalars(select(RevokedToken)).first() is None


def test_expired_revocations_are_swept_in_batches_and_the_live_ones_kept(app, clock):
    """Soonest expiry first, a batch a transaction; a revocation is kept the margin
    and any JWT_DECODE_LEEWAY past its token's expiry (docs/security.md)."""
    from helpdesk.services import revoked_tokens

    app.config["JWT_DECODE_LEEWAY"] = 10
    spent = now() - revoked_tokens.SKEW_MARGIN - timedelta(seconds=11)
    rows = [dict(jti=f"old-{n}", expires_at=spent) for n in range(5)]
    db.session.execute(
        insert(RevokedToken), [*rows, dict(jti="leeway", expires_at=spent + timedelta(seconds=2))]
    )
    db.session.commit()
    assert revoked_tokens.sweep(db.session, app.config, batch=2).deleted == 5
    db.session.commit()
    assert db.session.scalars(select(RevokedToken.jti)).all() == ["leeway"]


def test_changing_the_password_over_the_api(client, agent):
    tokens = login_tokens(client, agent.email, "agent-password-1")
    api = ApiClient(client, tokens["access_token"])
    wrong = api.post(
        "/auth/password", {"current_password": "nope-nope-1", "new_password": "brand-new-pass-1"}
    )
    assert wrong.status_code == 422
    assert wrong.get_json()["error"]["fields"] == {"current_password": "is wrong"}
    changed = api.post(
        "/auth/password", {"current_password": "agent-password-1", "new_password": "brand-new-pass-1"}
    )
    assert changed.status_code == 200
    fresh = changed.get_json()
    assert set(fresh) == {"access_token", "refresh_token"}
    assert api.get("/tickets").status_code == 401
    assert ApiClient(client, fresh["access_token"]).get("/tickets").status_code == 200
    assert (
        client.post(
            "/api/v1/auth/login", json={"email": agent.email, "password": "brand-new-pass-1"}
        ).status_code
        == 200
    )


def test_the_session_version_moves_only_when_sessions_must_end(app, agent):
    service = StaffService(db.session)
    user = db.session.execute(select(StaffUser).where(StaffUser.id == agent.id)).scalar_one()
    before = user.session_version
    service.set_active(user, True)  # no change: nothing ends
    assert user.session_version == before
    service.set_active(user, False)
    assert user.session_version == before + 1


def test_a_portal_login_ends_after_its_lifetime_however_often_it_is_used(app, clock, client, agent):
    """STAFF_SESSION_LIFETIME is how long a login lasts. Every response signed the
    cookie afresh (Flask refreshes a permanent session), so a tab's live poll, or a
    stolen cookie replayed twice a day, kept a login for ever (found by the auth
    review). The login's time is in the session, and after the lifetime it ends,
    used or not; a new login starts again."""
    lifetime = app.config["PERMANENT_SESSION_LIFETIME"]
    portal = Portal(client)
    assert portal.login(agent.email, "agent-password-1").status_code == 302
    thief = _copy_of(client, app)
    for _ in range(3):
        clock.shift(lifetime / 4)
        assert _logged_in(client.get("/tickets"))
        assert _logged_in(thief.get("/tickets"))
    clock.shift(lifetime / 4 + timedelta(seconds=1))
    assert client.get("/tickets").status_code == 302
    assert thief.get("/tickets").status_code == 302
    assert client.get("/live/queue").status_code in (302, 401)
    assert Portal(client).login(agent.email, "agent-password-1").status_code == 302
    assert _logged_in(client.get("/tickets"))


def test_a_password_change_keeps_the_portal_logins_time(app, clock, client, portal):
    """The change logged the session in again, which started its lifetime afresh:
    a stolen cookie's holder who knew the password could keep it for ever."""
    lifetime = app.config["PERMANENT_SESSION_LIFETIME"]
    clock.shift(lifetime / 2)
    changed = portal.post(
        "/account/password",
        {"current_password": "agent-password-1", "new_password": "brand-new-pass-1"},
        page="/account",
    )
    assert changed.status_code == 302
    assert _logged_in(client.get("/tickets"))
    clock.shift(lifetime / 2 + timedelta(seconds=1))
    assert client.get("/tickets").status_code == 302
