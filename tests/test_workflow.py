"""The workflow API (docs/isp-operations.md, "Workflows"): an ISP's onboarding and
installation systems open tickets for customers, over HTTP with a `workflow`
integration's token or in-process, and get the same dictionary either way."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from helpdesk.errors import ValidationError
from helpdesk.extensions import db
from helpdesk.models import Contact, OutboxMessage, Ticket, TicketHistory
from helpdesk.services import contacts
from helpdesk.services.integrations import IntegrationsService
from helpdesk.services.workflow import open_workflow_ticket
from tests.support.app import ApiClient
from tests.support.database import open_ticket
from tests.support.lost_commit import commit_answer_lost
from tests.support.web_process import WebServer, api_call

ROOT = Path(__file__).resolve().parents[1]
INSTALLATION: dict[str, Any] = {
    "title": "Fibre installation",
    "description": "New 300 Mbps plan: install the ONT and test the line.",
    "customer_email": "lucia@example.com",
    "ticket_type": "installation_request",
    "service_address": "Calle Durango 12,\nCol. Roma, 06700 CDMX",
}


def _integration(kind: str, name: str) -> str:
    _integration, token = IntegrationsService(db.session).add(name, kind)
    db.session.commit()
    return token


@pytest.fixture
def workflow(client) -> ApiClient:  # type: ignore[no-untyped-def]
    return ApiClient(client, _integration("workflow", "crm-onboarding"))


def _open(workflow: ApiClient, **fields: Any) -> dict[str, Any]:
    response = workflow.post("/workflow/tickets", {**INSTALLATION, **fields})
    assert response.status_code == 201, response.get_json()
    answer: dict[str, Any] = response.get_json()
    return answer


def _refusal(workflow: ApiClient, body: dict[str, Any]) -> dict[str, Any]:
    response = workflow.post("/workflow/tickets", body)
    assert response.status_code == 422, response.get_json()
    error: dict[str, Any] = response.get_json()["error"]
    return error


def test_an_installation_request_goes_to_field_ops_with_its_service_address(workflow, teams, clock):
    answer = _open(workflow)
    ticket = db.session.execute(select(Ticket)).scalar_one()
    contact = db.session.execute(select(Contact)).scalar_one()
    assert answer == {
        "ticket_id": ticket.id,
        "ticket_number": "TKT-000001",
        "title": "Fibre installation",
        "description": "New 300 Mbps plan: install the ONT and test the line.",
        "customer_id": contact.id,
        "origin_type": "customer",
        "target_type": "tenant",
        "priority": "normal",
        "ticket_type": "installation_request",
        "status": "new",
        "assigned_team": "field_ops",
        "service_address": "Calle Durango 12, Col. Roma, 06700 CDMX",
        "sla_due_date": "2026-03-05T08:00:00Z",  # medium: 3 days
        "context": {"assigned_team": "field_ops", "routing": {"team": "field_ops"}},
        "created_at": "2026-03-02T08:00:00Z",
    }
    assert (contact.email, ticket.requester_id) == ("lucia@example.com", contact.id)
    assert (ticket.priority, ticket.category, ticket.channel, ticket.source, ticket.team.name) == (
        "medium",
        "support",
        "api",
        "system",
        "field_ops",
    )
    history = db.session.execute(select(TicketHistory)).scalar_one()
    assert (history.actor_label, history.reason) == ("crm-onboarding (workflow)", "created via api")
    # The provider's system opened it: the customer is not acknowledged.
    assert db.session.execute(select(OutboxMessage)).first() is None


def test_a_named_team_wins_over_routing_and_the_answer_shows_both(workflow, teams, clock):
    onboarding = _open(
        workflow, ticket_type=None, service_address=None, assigned_team="Onboarding_Team", priority="high"
    )
    assert (onboarding["assigned_team"], onboarding["context"]) == (
        "onboarding_team",
        {"assigned_team": "onboarding_team", "routing": {"team": "support_team"}},
    )
    assert (onboarding["ticket_type"], onboarding["service_address"]) == ("general_inquiry", None)
    assert (onboarding["priority"], onboarding["sla_due_date"]) == ("high", "2026-03-03T08:00:00Z")
    unrouted = _open(workflow, ticket_type="billing_issue", priority="low")
    assert (unrouted["assigned_team"], unrouted["context"]) == (
        None,
        {"assigned_team": None, "routing": {"team": None}},
    )
    assert unrouted["priority"] == "low"


def test_the_customer_is_found_or_made_by_email_and_named_by_id_after(workflow, service):
    known = open_ticket(service).requester  # Ann, a customer who mailed before
    new = _open(workflow, customer_email="New.Customer@Example.com")
    contact = db.session.get(Contact, new["customer_id"])
    assert contact is not None and contact.email == "new.customer@example.com"
    assert _open(workflow, customer_email="new.customer@example.com")["customer_id"] == contact.id
    by_id = _open(workflow, customer_email=None, customer_id=contact.id)
    assert by_id["customer_id"] == contact.id
    assert _open(workflow, customer_email=None, customer_id=str(known.id))["customer_id"] == known.id
    requesters = db.session.execute(select(Ticket.requester_id).order_by(Ticket.number)).scalars()
    assert list(requesters) == [known.id, contact.id, contact.id, contact.id, known.id]


def test_an_unknown_customer_id_is_refused_in_the_words_workflows_match(workflow, service):
    for customer_id in (999, "999"):
        error = _refusal(workflow, {**INSTALLATION, "customer_email": None, "customer_id": customer_id})
        assert error["message"] == "Invalid customer_id: 999"
        assert error["fields"]["customer_id"] == "is not a known customer"
    error = _refusal(workflow, {"title": "", "description": "?", "customer_id": "abc", "priority": "x"})
    assert error["message"] == "Invalid customer_id: abc"
    # The id is echoed as one line: an escape sequence in it reached whoever reads logs.
    escaped = _refusal(workflow, {**INSTALLATION, "customer_email": None, "customer_id": "\x1b]0;pwn\x07 9"})
    assert escaped["message"] == "Invalid customer_id: ]0;pwn 9"
    assert set(error["fields"]) == {"customer_id", "priority"}
    assert db.session.execute(select(Ticket)).first() is None
    assert open_ticket(service).number == 1  # no number was taken


def test_a_fullwidth_domain_is_the_customer_it_reaches(workflow):
    """`lucia@ｅｘａｍｐｌｅ.com` reaches lucia@example.com's mailbox, but was a
    second contact beside hers (docs/integrations.md, "Who the customer is")."""
    first = _open(workflow)
    again = _open(workflow, customer_email="lucia@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com")
    assert again["customer_id"] == first["customer_id"]
    assert db.session.execute(select(Contact.email)).scalars().all() == ["lucia@example.com"]


@pytest.mark.parametrize(
    ("customer", "field"),
    [
        ({"customer_id": 1, "customer_email": "lucia@example.com"}, "customer_email"),
        ({}, "customer_id"),
        ({"customer_id": None, "customer_email": None}, "customer_id"),
        ({"customer_id": "", "customer_email": ""}, "customer_id"),
    ],
)
def test_the_customer_is_named_exactly_once(workflow, service, customer, field):
    open_ticket(service)  # contact 1 exists
    body = {"title": "Alta", "description": "?", **customer}
    assert set(_refusal(workflow, body)["fields"]) == {field}
    assert db.session.execute(select(func.count(Ticket.id))).scalar() == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"priority": "medium"}, "priority"),  # the workflow's word is `normal`
        ({"priority": "critical"}, "priority"),
        ({"ticket_type": "installation"}, "ticket_type"),
        ({"assigned_team": "noc"}, "assigned_team"),
        ({"title": "  "}, "title"),
        # A title of characters that show nothing (zero-width space, Hangul filler) is none.
        ({"title": "\u200b\u3164"}, "title"),
        ({"title": "x" * 501}, "title"),
        ({"customer_email": "not an address"}, "customer_email"),
        # A stand-in of someone known by phone only is no address (docs/integrations.md).
        ({"customer_email": "5215512345678@phone.invalid"}, "customer_email"),
        ({"customer_email": "5215512345678@phone.ｉｎｖａｌｉｄ"}, "customer_email"),  # the same on the wire
        ({"service_address": "x" * 501}, "service_address"),
        ({"customer_email": None, "customer_id": True}, "customer_id"),
        ({"description": None}, "description"),
        # Nothing to work from: the description is the ticket's first message.
        ({"description": ""}, "description"),
        ({"description": " \n\t "}, "description"),
        # Only invisible format characters (zero-width space, bidirectional marks): nothing to read.
        ({"description": "\u200b"}, "description"),
        ({"description": "\u200f\u2066 \u00ad\ufeff"}, "description"),
        # Letters and marks that show nothing: Hangul fillers, the blank braille
        # pattern, the combining grapheme joiner, a variation selector.
        ({"description": "\u3164"}, "description"),
        ({"description": "\u115f\u1160\uffa0 \u2800\u034f\ufe0f"}, "description"),
        # A machine's mailbox reads nothing staff write to the customer (docs/isp-operations.md).
        ({"customer_email": "noreply@isp.example"}, "customer_email"),
        ({"customer_email": "MAILER-DAEMON@isp.example"}, "customer_email"),
        ({"customer_email": "no-reply.billing@isp.example"}, "customer_email"),
        ({"team": "field_ops"}, "team"),
        # An address literal: a relay mailing it connects to that host (docs/integrations.md).
        ({"customer_email": "lucia@[127.0.0.1]"}, "customer_email"),
        ({"customer_email": "lucia@[IPv6:::1]"}, "customer_email"),
    ],
)
def test_invalid_fields_are_refused_naming_the_workflows_field(workflow, teams, change, field):
    error = _refusal(workflow, {**INSTALLATION, **change})
    assert set(error["fields"]) == {field}, error
    assert db.session.execute(select(Ticket)).first() is None
    assert db.session.execute(select(Contact)).first() is None


def test_a_machine_s_contact_named_by_id_is_no_workflow_customer(workflow):
    """A contact at `noreply@` (mail from it made one once) named by its id was the
    customer as an address would be refused for (docs/isp-operations.md)."""
    robot = contacts.find_or_create(db.session, "no-reply@billing.example", "")
    db.session.commit()
    body = {"title": "Alta", "description": "Instalar", "customer_id": robot.id}
    assert _refusal(workflow, body)["fields"] == {"customer_id": contacts.MACHINE_ADDRESS}
    assert db.session.execute(select(Ticket)).first() is None


def test_a_whatsapp_customer_named_by_the_id_of_a_contact_merged_since_gets_the_ticket_as_they_are_now(
    workflow,
):
    """Marta wrote from WhatsApp (a phone-only contact the workflow kept the id of),
    then proved her address: that contact was merged into her email's. The ticket
    is hers as she is now, where it went to the merged-away row no one reaches."""
    known_by_phone = contacts._phone_only(db.session, "+5215512345678", "Lucía")
    merged_away = contacts._phone_only(db.session, "+5215587654321", "Marta")
    db.session.commit()
    ids = (known_by_phone.id, merged_away.id)
    marta = contacts.bind_proven(db.session, "+5215587654321", "marta@example.com")
    db.session.commit()
    assert marta is not None and marta.id not in ids

    answers = [_open(workflow, customer_email=None, customer_id=customer_id) for customer_id in ids]
    assert [answer["customer_id"] for answer in answers] == [ids[0], marta.id]
    requesters = db.session.execute(select(Ticket.requester_id).order_by(Ticket.number)).scalars().all()
    assert requesters == [ids[0], marta.id]


@pytest.mark.parametrize(
    "path,kind,needed",
    [
        ("/assistant/tools", "workflow", "This needs an assistant integration."),
        ("/chat/lookup", "assistant", "This needs a chat integration."),
    ],
)
def test_a_token_of_another_kind_is_told_in_english_which_kind_it_needs(client, path, kind, needed):
    """The 403 of an integration endpoint names the kind it needs with its article:
    an assistant's endpoint read "This needs a assistant integration."."""
    other = ApiClient(client, _integration(kind, f"site-{kind}"))
    response = other.get(path) if path == "/assistant/tools" else other.post(path, {"text": ""})
    assert response.status_code == 403
    assert response.get_json()["error"]["message"] == needed


def test_a_missing_title_is_refused_like_the_rest_of_the_api(workflow):
    body = {key: value for key, value in INSTALLATION.items() if key != "title"}
    assert _refusal(workflow, body)["fields"] == {"title": "is required"}


def test_only_workflow_integrations_may_open_workflow_tickets(workflow, api):
    # As the other integration endpoints answer: another kind 403, anything else 401.
    for kind in ("chat", "assistant"):
        response = workflow.post("/workflow/tickets", INSTALLATION, token=_integration(kind, f"site-{kind}"))
        assert response.status_code == 403
        assert response.get_json()["error"]["message"] == "This needs a workflow integration."
    assert workflow.post("/workflow/tickets", INSTALLATION, token=api.token).status_code == 401
    assert workflow.post("/workflow/tickets", INSTALLATION, token="").status_code == 401
    IntegrationsService(db.session).revoke("crm-onboarding")
    db.session.commit()
    assert workflow.post("/workflow/tickets", INSTALLATION).status_code == 401
    assert db.session.execute(select(Ticket)).first() is None


def test_per_customer_limits_do_not_hold_back_the_providers_workflow(app, workflow):
    app.config.update(CUSTOMER_MAX_TICKETS_PER_HOUR=1, CUSTOMER_MAX_OPEN_TICKETS=1)
    numbers = [_open(workflow)["ticket_number"] for _ in range(3)]
    assert numbers == ["TKT-000001", "TKT-000002", "TKT-000003"]


def test_in_process_workflows_get_the_same_dictionary(app, workflow, teams, clock):
    over_http = _open(workflow)
    in_process = open_workflow_ticket(db.session, app.config, **INSTALLATION)
    db.session.commit()
    second = db.session.execute(select(Ticket).where(Ticket.number == 2)).scalar_one()
    assert in_process == {**over_http, "ticket_id": second.id, "ticket_number": "TKT-000002"}
    assert (second.channel, second.source) == ("system", "system")
    with pytest.raises(ValidationError, match="Invalid customer_id: 999"):
        open_workflow_ticket(db.session, app.config, title="x", description="y", customer_id=999)
    with pytest.raises(ValidationError) as refused:  # in process, nothing refused the surrogate before
        open_workflow_ticket(
            db.session, app.config, title="x", description="y", customer_id="\ud800" + "9" * 300
        )
    assert refused.value.message == "Invalid customer_id: \ufffd" + "9" * 99
    refused.value.message.encode()


def test_workflow_tickets_take_their_numbers_from_the_one_sequence(app, workflow, portal, teams):
    assert _open(workflow)["ticket_number"] == "TKT-000001"
    form = {"subject": "Phone call", "description": "Caller", "requester_email": "carl@example.com"}
    assert portal.post("/tickets/new", form, page="/tickets/new").headers["Location"] == "/tickets/TKT-000002"
    assert _open(workflow)["ticket_number"] == "TKT-000003"
    in_process = open_workflow_ticket(db.session, app.config, **INSTALLATION)
    db.session.commit()
    assert in_process["ticket_number"] == "TKT-000004"


def test_the_documented_in_process_example_runs_as_written(app, teams):
    docs = (ROOT / "docs" / "isp-operations.md").read_text()
    workflows = docs[docs.index("## Workflows") :]
    example = re.search(r"```python\n(.*?)```", workflows, re.DOTALL)
    assert example is not None
    namespace: dict[str, Any] = {}
    exec(example.group(1), namespace)
    welcome, installation = namespace["new_customer_signed_up"](
        db.session, app.config, "lucia@example.com", "Calle Durango 12"
    )
    assert (welcome["assigned_team"], welcome["context"]["routing"]["team"]) == (
        "onboarding_team",
        "support_team",
    )
    assert (installation["assigned_team"], installation["service_address"]) == (
        "field_ops",
        "Calle Durango 12",
    )
    assert installation["customer_id"] == welcome["customer_id"]
    db.session.rollback()
    assert db.session.execute(select(func.count(Ticket.id))).scalar() == 2  # the example committed


def test_a_workflow_opens_a_ticket_through_gunicorn(database_url, app, teams, tmp_path):
    token = _integration("workflow", "crm-onboarding")
    db.session.remove()  # the server's workers write to this database
    web = WebServer(database_url, tmp_path)
    try:
        created = api_call(web.base, "POST", "/workflow/tickets", INSTALLATION, token)
        unknown = api_call(
            web.base,
            "POST",
            "/workflow/tickets",
            {**INSTALLATION, "customer_email": None, "customer_id": 999},
            token,
        )
    finally:
        web.stop()
    status, answer = created
    assert status == 201 and isinstance(answer, dict), answer
    assert (answer["ticket_number"], answer["assigned_team"], answer["service_address"]) == (
        "TKT-000001",
        "field_ops",
        "Calle Durango 12, Col. Roma, 06700 CDMX",
    )
    status, refusal = unknown
    assert status == 422 and isinstance(refusal, dict)
    assert refusal["error"]["message"] == "Invalid customer_id: 999"


@pytest.mark.parametrize("kept", [True, False], ids=["committed", "rolled-back"])
def test_a_creation_whose_commit_answer_is_lost_is_answered_by_what_the_database_kept(api, workflow, kept):
    """The connection drops as the COMMIT goes (review of writes under failure): the
    database may have kept the ticket or not. It was 503 "retry" either way, and a
    client that retried a kept one opened a second ticket (no idempotency key). The
    ticket is looked for on a new connection: kept, the answer is the 201 it would
    have been; not kept, 503, and the retry takes the same number."""
    with commit_answer_lost(lambda statement: "INSERT INTO tickets" in statement, kept=kept):
        by_staff = api.post(
            "/tickets", {"subject": "Router", "description": "Down", "requester_email": "a@b.example"}
        )
        by_workflow = workflow.post("/workflow/tickets", INSTALLATION)
    if kept:
        assert by_staff.status_code == 201 and by_staff.get_json()["number"] == "TKT-000001"
        assert by_workflow.status_code == 201 and by_workflow.get_json()["ticket_number"] == "TKT-000002"
    else:
        assert by_staff.status_code == 503 and by_workflow.status_code == 503
        assert _open(workflow)["ticket_number"] == "TKT-000001"
    db.session.rollback()
    assert db.session.scalars(select(Ticket.number).order_by(Ticket.number)).all() == (
        [1, 2] if kept else [1]
    )


def test_a_workflow_call_sent_again_under_its_idempotency_key_opens_one_ticket(client, workflow, teams):
    """Workflows retry as a matter of course (SPEC §12): one whose 201 was lost on
    the way back sent the call again and opened a second installation ticket. Under
    the same key the retry is answered the first one's ticket; another workflow
    integration's same key is its own (docs/web.md, "Idempotency keys")."""
    key = {"Idempotency-Key": "install-42"}
    first = workflow.post("/workflow/tickets", INSTALLATION, headers=key)
    again = workflow.post("/workflow/tickets", INSTALLATION, headers=key)
    assert (first.status_code, again.status_code) == (201, 201), again.get_json()
    assert db.session.scalar(select(func.count()).select_from(Ticket)) == 1
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.get_json() == first.get_json()
    other = ApiClient(client, _integration("workflow", "crm-installations"))
    theirs = other.post("/workflow/tickets", INSTALLATION, headers=key)
    assert theirs.status_code == 201 and theirs.get_json()["ticket_number"] == "TKT-000002"
    changed = workflow.post("/workflow/tickets", {**INSTALLATION, "priority": "high"}, headers=key)
    assert changed.status_code == 422 and changed.get_json()["error"]["code"] == "idempotency_key_reused"
    bad = workflow.post("/workflow/tickets", INSTALLATION, headers={"Idempotency-Key": "a b"})
    assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "invalid_idempotency_key"
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(Ticket)) == 2
