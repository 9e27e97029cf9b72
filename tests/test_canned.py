"""Canned replies (docs/isp-operations.md, "Canned replies"): placeholders filled
and nothing else evaluated, personal ones private to their owner, shared ones
managed by admins only, forms that show their errors, and insertion into the
ticket page's reply box without any script."""

from __future__ import annotations

import html
import re
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import flask_migrate
import pytest
from sqlalchemy import inspect, select, text

from helpdesk import addresses
from helpdesk.extensions import db
from helpdesk.models import CannedReply, Message, StaffUser
from helpdesk.services import Actor, TicketsService
from helpdesk.services.canned import MAX_BODY, MAX_TITLE, CannedRepliesService
from helpdesk.services.staff import StaffService
from tests.support.app import ApiClient, Portal, login_tokens, make_app
from tests.support.database import open_ticket, statements
from tests.support.waiting import wait_until

NUMBER = "TKT-000001"
PAGE = f"/tickets/{NUMBER}"


def _canned(owner: StaffUser | None, title: str = "Restored", body: str = "Hola {customer_name}") -> int:
    """A committed canned reply: `owner`'s own, or shared when None."""
    reply = CannedReply(title=title, body=body, owner_id=owner.id if owner else None)
    db.session.add(reply)
    db.session.commit()
    return reply.id


def _replies() -> list[tuple[str, str, int | None]]:
    rows = db.session.execute(
        select(CannedReply.title, CannedReply.body, CannedReply.owner_id).order_by(CannedReply.id)
    ).all()
    return [tuple(row) for row in rows]  # type: ignore[misc]


@pytest.fixture
def other_agent(app) -> StaffUser:  # type: ignore[no-untyped-def]
    user, _ = StaffService(db.session).create(
        email="otto@helpdesk.test", name="Otto Other", role="agent", password="otto-password-1"
    )
    db.session.commit()
    return user


@pytest.fixture
def other_portal(app, other_agent) -> Portal:  # type: ignore[no-untyped-def]
    session = Portal(app.test_client())
    assert session.login(other_agent.email, "otto-password-1").status_code == 302
    return session


@pytest.fixture
def admin_session(app, admin) -> Portal:  # type: ignore[no-untyped-def]
    """The admin in a browser of their own (`portal` and `admin_portal` share one cookie jar)."""
    session = Portal(app.test_client())
    assert session.login(admin.email, "admin-password-1").status_code == 302
    return session


@pytest.fixture
def other_api(app, other_agent) -> ApiClient:  # type: ignore[no-untyped-def]
    client = app.test_client()
    return ApiClient(client, login_tokens(client, other_agent.email, "otto-password-1")["access_token"])


def _textarea(page: str) -> str:
    """The reply box's text as the browser would show it."""
    found = re.search(r'<textarea id="body" name="body" required>(.*?)</textarea>', page, re.DOTALL)
    assert found, "no reply box"
    return html.unescape(found.group(1))


# -- placeholders --------------------------------------------------------------------------------


def test_placeholders_are_filled_and_nothing_else_is_evaluated(app, service, agent):
    ticket = open_ticket(service, requester_name="Lucía Pérez")
    reply = CannedReply(
        title="t",
        body=(
            "Hola {customer_name}, tu ticket {ticket_number} está resuelto. — {agent_name}\n"
            "{unknown} {ticket_number.__class__} {agent_name.__init__.__globals__} {0} {} "
            "{{customer_name}} {Customer_Name} { agent_name } {customer_name"
        ),
    )
    text_ = CannedRepliesService.from_config(db.session, app.config).render(reply, ticket, agent)
    assert text_ == (
        f"Hola Lucía Pérez, tu ticket {NUMBER} está resuelto. — Agnes Agent\n"
        "{unknown} {ticket_number.__class__} {agent_name.__init__.__globals__} {0} {} "
        "{Lucía Pérez} {Customer_Name} { agent_name } {customer_name"
    )


def test_a_filled_in_value_is_not_scanned_again(app, service, agent):
    """A customer who calls themselves `{agent_name}` is greeted so: one pass only."""
    ticket = open_ticket(service, requester_name="{agent_name} {ticket_number}")
    reply = CannedReply(title="t", body="Hi {customer_name}")
    assert (
        CannedRepliesService.from_config(db.session, app.config).render(reply, ticket, agent)
        == "Hi {agent_name} {ticket_number}"
    )


@pytest.mark.parametrize(
    ("email", "greeted"),
    [("lucia.perez@example.com", "lucia.perez"), (addresses.for_phone("+5215512345678"), "customer")],
)
def test_a_customer_without_a_name_is_greeted_by_their_address_or_as_customer(app, agent, email, greeted):
    service = TicketsService.from_config(db.session, app.config)
    ticket = open_ticket(service, Actor.staff(agent), requester_email=email, requester_name="")
    reply = CannedReply(title="t", body="Hola {customer_name}")
    assert (
        CannedRepliesService.from_config(db.session, app.config).render(reply, ticket, agent)
        == f"Hola {greeted}"
    )


# -- inserting into the reply box ----------------------------------------------------------------


def test_a_canned_reply_is_inserted_without_javascript_and_sent(portal, service, agent, admin):
    open_ticket(service, requester_name="Ann <Example>")
    shared = _canned(
        None, "Outage over", "Hola {customer_name}, {ticket_number} <b>resuelto</b>.\n— {agent_name}"
    )
    own = _canned(agent, "Mine", "Personal note for {customer_name}")
    page = portal.get(PAGE).get_data(as_text=True)
    # A plain GET form back to the ticket page: no script involved.
    assert f'<form class="card row" method="get" action="{PAGE}#body"' in page
    assert f'<optgroup label="Shared"><option value="{shared}" >Outage over</option></optgroup>' in page
    assert f'<optgroup label="Yours"><option value="{own}" >Mine</option></optgroup>' in page
    assert _textarea(page) == ""
    inserted = portal.get(f"{PAGE}?canned={shared}")
    assert inserted.status_code == 200
    page = inserted.get_data(as_text=True)
    assert "&lt;b&gt;resuelto&lt;/b&gt;" in page and "<b>resuelto</b>" not in page  # escaped, as text
    assert _textarea(page) == f"Hola Ann <Example>, {NUMBER} <b>resuelto</b>.\n— Agnes Agent"
    assert f'<option value="{shared}" selected>' in page
    sent = portal.post(f"{PAGE}/reply", {"body": _textarea(page), "kind": "reply"}, page=PAGE)
    assert sent.status_code == 302
    bodies = db.session.execute(select(Message.body).order_by(Message.id)).scalars().all()
    assert bodies[-1] == f"Hola Ann <Example>, {NUMBER} <b>resuelto</b>.\n— Agnes Agent"


def test_the_ticket_page_reads_the_text_of_no_canned_reply_but_the_one_inserted(portal, service, agent):
    """The choice lists titles: every ticket page (and every live refresh of it) read
    the text of every reply on offer, up to 10,000 characters each, and showed none
    of it; the first view of a new ticket, whose move to open commits, then read each
    reply again, one query each. Now one query reads the titles alone, and `?canned=`
    reads the text of the one it fills in."""
    open_ticket(service)
    shared = _canned(None, "Outage over", "Hola {customer_name}, la caída terminó.")
    _canned(agent, "Mine", "Personal note for {customer_name}")
    db.session.close()  # as a request finds it: none of the replies loaded yet
    with statements() as sent:
        page = portal.get(PAGE).get_data(as_text=True)
    assert ">Outage over</option>" in page and ">Mine</option>" in page
    (listed,) = [statement for statement in sent if "FROM canned_replies" in statement]
    assert "canned_replies.body" not in listed
    with statements() as sent:
        page = portal.get(f"{PAGE}?canned={shared}").get_data(as_text=True)
    assert _textarea(page) == "Hola Ann Example, la caída terminó."
    assert len([statement for statement in sent if "canned_replies.body" in statement]) == 1


@pytest.mark.parametrize("value", ["999999", "abc", "-1", "99999999999999999999"])
def test_an_unknown_canned_reply_is_a_404(portal, service, value):
    open_ticket(service)
    assert portal.get(f"{PAGE}?canned={value}").status_code == 404
    assert portal.get(f"{PAGE}?canned=").status_code == 200  # nothing picked: the page as it is


# -- personal and shared -------------------------------------------------------------------------


def test_someone_elses_personal_reply_does_not_exist_for_them(
    portal, api, other_portal, other_api, admin_session, service, agent
):
    open_ticket(service)
    mine = _canned(agent, "Mine", "Only for {customer_name}")
    shared = _canned(None, "Shared", "For all")
    own_list = [item["title"] for item in api.get("/canned-replies").get_json()["items"]]
    assert own_list == ["Mine", "Shared"]
    assert [item["title"] for item in other_api.get("/canned-replies").get_json()["items"]] == ["Shared"]
    assert other_api.get(f"/tickets/{NUMBER}/canned-replies/{mine}").status_code == 404
    assert other_api.get(f"/tickets/{NUMBER}/canned-replies/{shared}").get_json() == {"text": "For all"}
    for session in (other_portal, admin_session):  # admins manage shared replies, not other people's
        assert ">Mine<" not in session.get(PAGE).get_data(as_text=True)
        assert session.get(f"{PAGE}?canned={mine}").status_code == 404
        assert ">Mine<" not in session.get("/account/canned").get_data(as_text=True)
        assert session.get(f"/canned/{mine}/edit").status_code == 404
        edit = {"title": "Stolen", "body": "x"}
        assert session.post(f"/canned/{mine}/edit", edit, page="/account/canned").status_code == 404
        assert session.post(f"/canned/{mine}/delete", page="/account/canned").status_code == 404
    assert _replies() == [("Mine", "Only for {customer_name}", agent.id), ("Shared", "For all", None)]
    assert portal.get(f"{PAGE}?canned={mine}").status_code == 200


def test_staff_manage_their_own_replies_on_their_account(portal, agent):
    assert "Your canned replies" in portal.get("/account").get_data(as_text=True)
    added = portal.post(
        "/account/canned", {"title": "  Speed\n\u202etest\x1b ", "body": "Run a test.\r\nThanks"}
    )
    assert added.status_code == 302 and added.headers["Location"] == "/account/canned"
    (reply_id,) = db.session.execute(select(CannedReply.id)).scalars()
    assert _replies() == [("Speed test", "Run a test.\nThanks", agent.id)]
    assert "Run a test." in portal.get("/account/canned").get_data(as_text=True)
    edit_page = portal.get(f"/canned/{reply_id}/edit").get_data(as_text=True)
    assert 'value="Speed test"' in edit_page
    saved = portal.post(
        f"/canned/{reply_id}/edit", {"title": "Speed", "body": "Again"}, page="/account/canned"
    )
    assert saved.status_code == 302 and saved.headers["Location"] == "/account/canned"
    assert _replies() == [("Speed", "Again", agent.id)]
    deleted = portal.post(f"/canned/{reply_id}/delete", page="/account/canned")
    assert deleted.status_code == 302 and _replies() == []


def test_a_body_the_textarea_takes_is_taken_whatever_its_line_breaks(portal, agent):
    """The textarea's maxlength counts a line break as one character; the browser
    sends it as CR LF. A body of MAX_BODY characters with line breaks is taken and
    stored with LF (`inputs.typed_text`, the rating comment's rule)."""
    body = "x" * (MAX_BODY // 2 - 1) + "\r\n" + "x" * (MAX_BODY // 2)
    assert portal.post("/account/canned", {"title": "Lines", "body": body}).status_code == 302
    assert _replies() == [("Lines", body.replace("\r\n", "\n"), agent.id)]


def test_only_admins_manage_shared_replies(portal, admin_session, service):
    open_ticket(service)
    assert "/admin/canned" not in portal.get("/account").get_data(as_text=True)  # no nav link for agents
    assert ">Canned replies</a>" in admin_session.get("/account").get_data(as_text=True)
    assert portal.get("/admin/canned").status_code == 403
    assert portal.post("/admin/canned", {"title": "x", "body": "y"}).status_code == 403
    added = admin_session.post("/admin/canned", {"title": "Outage", "body": "Fixed, {customer_name}."})
    assert added.status_code == 302 and added.headers["Location"] == "/admin/canned"
    (shared,) = db.session.execute(select(CannedReply.id)).scalars()
    assert _replies() == [("Outage", "Fixed, {customer_name}.", None)]
    assert portal.get(f"/canned/{shared}/edit").status_code == 403
    assert portal.post(f"/canned/{shared}/edit", {"title": "Mine now", "body": "x"}).status_code == 403
    assert portal.post(f"/canned/{shared}/delete").status_code == 403
    assert _replies() == [("Outage", "Fixed, {customer_name}.", None)]
    assert _textarea(portal.get(f"{PAGE}?canned={shared}").get_data(as_text=True)) == "Fixed, Ann Example."
    saved = admin_session.post(f"/canned/{shared}/edit", {"title": "Outage over", "body": "Back."})
    assert saved.status_code == 302 and saved.headers["Location"] == "/admin/canned"
    assert "Back." in admin_session.get("/admin/canned").get_data(as_text=True)
    assert admin_session.post(f"/canned/{shared}/delete").status_code == 302
    assert _replies() == []


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"title": "", "body": "text"}, "The title is required."),
        ({"title": "   ", "body": "text"}, "The title is required."),
        ({"title": "\u200b\u3164", "body": "text"}, "The title is required."),  # nothing to read
        ({"title": "Title", "body": "\u200b\n\u2800"}, "The body is required."),
        ({"title": "Title", "body": " \r\n "}, "The body is required."),
        (
            {"title": "x" * (MAX_TITLE + 1), "body": "text"},
            f"The title must be at most {MAX_TITLE} characters.",
        ),
        ({"title": "Title", "body": "x" * (MAX_BODY + 1)}, "The body must be at most 10,000 characters."),
        (
            {"title": "Title", "body": "a\x00b"},
            "The body must not contain NUL characters or lone surrogates.",
        ),
    ],
)
def test_a_bad_reply_gives_the_form_again_with_the_message(portal, admin_session, agent, form, message):
    for session, page in ((portal, "/account/canned"), (admin_session, "/admin/canned")):
        answer = session.post(page, form, page=page)
        assert answer.status_code == 422
        body = answer.get_data(as_text=True)
        assert message in body
        if form["title"].strip():
            assert f'value="{form["title"]}"' in body  # what was typed is still there
    reply_id = _canned(agent, "Kept", "Kept text")
    answer = portal.post(f"/canned/{reply_id}/edit", form, page="/account/canned")
    assert answer.status_code == 422 and message in answer.get_data(as_text=True)
    assert _replies() == [("Kept", "Kept text", agent.id)]


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
@pytest.mark.parametrize("change", ["edit", "delete"])
def test_a_shared_reply_deleted_while_another_admin_changes_it_is_not_found(
    app, admin, admin_session, change
):
    """Two admins at once: Ada's delete of a shared reply holds its row, uncommitted,
    when Bea saves an edit of it (or deletes it too). Bea's request read the reply
    without waiting and then its UPDATE (DELETE) found no row once Ada committed:
    StaleDataError, a 500. Read for change, the reply is waited for, then not found."""
    shared = _canned(None)
    token = admin_session.token("/admin/canned")
    deleted, go = threading.Event(), threading.Event()
    answers: dict[str, object] = {}

    def delete_and_hold() -> None:
        with app.app_context():
            ada = db.session.get(StaffUser, admin.id)
            assert ada is not None
            CannedRepliesService(db.session).delete(shared, Actor.staff(ada))
            deleted.set()
            go.wait(30)
            db.session.commit()

    def change_it() -> None:
        form = {"csrf_token": token, "title": "Outage over", "body": "Back."}
        try:
            answers[change] = admin_session.client.post(f"/canned/{shared}/{change}", data=form).status_code
        except Exception as exc:  # the 500, reported below
            answers[change] = exc

    ada, bea = threading.Thread(target=delete_and_hold), threading.Thread(target=change_it)
    ada.start()
    try:
        assert deleted.wait(30), "the first delete never ran"
        bea.start()
        waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        wait_until(
            lambda: db.session.execute(text(waiting + " AND datname = current_database()")).scalar_one(),
            timeout=30,
            between=db.session.rollback,
            what="the second admin waiting for the reply's row",
        )
    finally:
        go.set()
        ada.join(30)
        if bea.is_alive():
            bea.join(30)
    assert answers == {change: 404}, answers
    assert _replies() == []


def test_every_canned_form_needs_its_csrf_token(portal, admin_session, agent):
    own, shared = _canned(agent, "Own", "a"), _canned(None, "Shared", "b")
    for session, path in (
        (portal, "/account/canned"),
        (portal, f"/canned/{own}/edit"),
        (portal, f"/canned/{own}/delete"),
        (admin_session, "/admin/canned"),
        (admin_session, f"/canned/{shared}/edit"),
        (admin_session, f"/canned/{shared}/delete"),
    ):
        answer = session.post(path, {"title": "Forged", "body": "forged"}, csrf=False)
        assert answer.status_code == 400, path
    assert _replies() == [("Own", "a", agent.id), ("Shared", "b", None)]


def test_the_api_lists_usable_replies_and_fills_one_in_for_a_ticket(api, service, agent, admin):
    open_ticket(service, requester_name="Rosa")
    own = _canned(agent, "B mine", "Hola {customer_name}, soy {agent_name} ({ticket_number}).")
    _canned(None, "A shared", "Para todos")
    _canned(admin, "C admin's", "not for agents")
    items = api.get("/canned-replies").get_json()["items"]
    assert [(item["title"], item["shared"]) for item in items] == [("A shared", True), ("B mine", False)]
    assert items[1]["body"] == "Hola {customer_name}, soy {agent_name} ({ticket_number})."
    answer = api.get(f"/tickets/tkt-1/canned-replies/{own}")
    assert answer.status_code == 200
    assert answer.get_json() == {"text": f"Hola Rosa, soy Agnes Agent ({NUMBER})."}
    assert api.get(f"/tickets/TKT-000002/canned-replies/{own}").status_code == 404
    assert api.get(f"/tickets/{NUMBER}/canned-replies/abc").status_code == 404


# -- the migration -------------------------------------------------------------------------------


@pytest.fixture
def empty_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
    else:
        yield request.getfixturevalue("pg_server").create_database(f"canned_{uuid.uuid4().hex[:8]}")


def test_migration_0019_adds_the_table_and_its_downgrade_removes_it(empty_url):
    app = make_app(empty_url)
    with app.app_context():
        flask_migrate.upgrade(revision="0018")
        assert "canned_replies" not in inspect(db.engine).get_table_names()
        flask_migrate.upgrade(revision="0019")
        columns = {column["name"]: column for column in inspect(db.engine).get_columns("canned_replies")}
        assert set(columns) == {"id", "title", "body", "owner_id", "created_at", "updated_at"}
        assert columns["owner_id"]["nullable"] and not columns["title"]["nullable"]
        with db.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO canned_replies (title, body, owner_id, created_at, updated_at) "
                    "VALUES ('Shared', 'Hola {customer_name}', NULL, :now, :now)"
                ),
                {"now": "2026-01-01 00:00:00"},
            )
        flask_migrate.downgrade(revision="0018")
        assert "canned_replies" not in inspect(db.engine).get_table_names()
        db.engine.dispose()
