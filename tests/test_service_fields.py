"""An ISP ticket's type and service fields on the API, the portal, the queue's
filters and search (docs/isp-operations.md)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from helpdesk import service_fields
from helpdesk.extensions import db
from helpdesk.models import Ticket, TicketHistory

INSTALLATION = {
    "subject": "Instalación de fibra",
    "description": "Cliente nuevo, plan 300 Mbps.",
    "requester_email": "lucia@example.com",
    "ticket_type": "installation_request",
    "service_address": "Av. Insurgentes Sur 1602,\r\nCol. Crédito Constructor, CDMX",
    "affected_services": ["tv", "internet", "tv"],
    "device_serials": ["ZTEGC8A1B2C3", "aa:bb:cc:dd:ee:ff", "ZTEGC8A1B2C3"],
}


def _numbers(api, query: str) -> list[str]:  # type: ignore[no-untyped-def]
    answer = api.get(f"/tickets?{query}")
    assert answer.status_code == 200, answer.get_json()
    return [item["number"] for item in answer.get_json()["items"]]


def test_the_api_opens_a_ticket_with_its_service_fields_stored_in_one_shape(api):
    answer = api.post("/tickets", INSTALLATION)
    assert answer.status_code == 201, answer.get_json()
    body = answer.get_json()
    assert body["ticket_type"] == "installation_request"
    assert body["service_address"] == "Av. Insurgentes Sur 1602, Col. Crédito Constructor, CDMX"
    assert body["affected_services"] == ["internet", "tv"]
    assert body["device_serials"] == ["ZTEGC8A1B2C3", "aa:bb:cc:dd:ee:ff"]
    stored = db.session.execute(select(Ticket)).scalar_one()
    assert (stored.affected_services, stored.device_serials) == (
        "internet,tv",
        "ZTEGC8A1B2C3\naa:bb:cc:dd:ee:ff",
    )
    assert api.get(f"/tickets/{body['number']}").get_json()["device_serials"] == body["device_serials"]


def test_a_ticket_opened_without_them_is_a_general_inquiry(api):
    body = api.post(
        "/tickets", {"subject": "Hola", "description": "?", "requester_email": "a@example.com"}
    ).get_json()
    assert (
        body["ticket_type"],
        body["service_address"],
        body["affected_services"],
        body["device_serials"],
    ) == (
        "general_inquiry",
        "",
        [],
        [],
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("ticket_type", "installation"),
        ("ticket_type", 7),
        ("service_address", "x" * 501),
        ("service_address", ["Calle 1"]),
        ("affected_services", ["internet", "phone"]),
        ("affected_services", "internet"),
        ("affected_services", [1]),
        ("device_serials", ["has space"]),
        ("device_serials", ["-starts-with-a-dash"]),
        ("device_serials", ["x" * 65]),
        ("device_serials", [f"SN{n}" for n in range(21)]),
        ("device_serials", [f"SN{n}" for n in range(1000)]),
        ("device_serials", ["ok\x00"]),
        ("device_serials", ["ÖNT123"]),
    ],
)
def test_a_bad_service_field_is_a_422_naming_it(api, field, value):
    answer = api.post("/tickets", {**INSTALLATION, field: value})
    assert answer.status_code == 422
    assert field in answer.get_json()["error"]["fields"]
    assert db.session.execute(select(Ticket)).first() is None


def test_patch_changes_the_type_with_a_history_row_and_the_service_fields(api, agent):
    number = api.post("/tickets", INSTALLATION).get_json()["number"]
    answer = api.patch(
        f"/tickets/{number}",
        {"ticket_type": "equipment_issue", "affected_services": [], "device_serials": ["HWTC9F8E7D6C"]},
    )
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert (body["ticket_type"], body["affected_services"], body["device_serials"]) == (
        "equipment_issue",
        [],
        ["HWTC9F8E7D6C"],
    )
    assert body["service_address"].startswith("Av. Insurgentes")  # not named, not changed
    history = [(h["field"], h["from"], h["to"]) for h in body["history"] if h["field"] == "ticket_type"]
    assert history == [("ticket_type", "installation_request", "equipment_issue")]
    assert api.patch(f"/tickets/{number}", {"affected_services": ["fax"]}).status_code == 422


def test_the_queue_filters_by_type_and_search_finds_a_serial_or_an_address(api, portal):
    api.post("/tickets", INSTALLATION)
    api.post(
        "/tickets",
        {
            "subject": "Sin señal",
            "description": "No hay internet.",
            "requester_email": "mario@example.com",
            "ticket_type": "outage_report",
            "service_address": "Calle Reforma 10, Puebla",
            "device_serials": ["HWTC9F8E7D6C"],
        },
    )
    api.post("/tickets", {"subject": "Factura", "description": "?", "requester_email": "x@example.com"})
    assert _numbers(api, "ticket_type=outage_report") == ["TKT-000002"]
    assert _numbers(api, "ticket_type=outage_report,installation_request") == ["TKT-000002", "TKT-000001"]
    assert _numbers(api, "q=hwtc9f8e7d6c") == ["TKT-000002"]
    assert _numbers(api, "q=AA:BB:CC") == ["TKT-000001"]
    assert _numbers(api, "q=reforma") == ["TKT-000002"]
    assert _numbers(api, "q=Crédito Constructor") == ["TKT-000001"]
    assert api.get("/tickets?ticket_type=installation").status_code == 422
    page = portal.get("/tickets?ticket_type=outage_report").get_data(as_text=True)
    assert "TKT-000002" in page and "TKT-000001" not in page and "TKT-000003" not in page
    page = portal.get("/tickets?q=ZTEGC8A1").get_data(as_text=True)
    assert "TKT-000001" in page and "TKT-000002" not in page
    assert "Installation request" in page  # the queue names the type


def test_the_portal_opens_shows_and_edits_the_service_fields(portal):
    form = {
        "requester_email": "lucia@example.com",
        "subject": "Instalación",
        "description": "Plan 300",
        "ticket_type": "installation_request",
        "service_address": "Av. Juárez 5, CDMX",
        "affected_services": "voip",
        "device_serials": "ZTEGC8A1B2C3\r\nHWTC9F8E7D6C",
    }
    answer = portal.post("/tickets/new", form, page="/tickets/new")
    assert answer.status_code == 302
    page = portal.get("/tickets/TKT-000001").get_data(as_text=True)
    assert "Installation request" in page
    assert "Av. Juárez 5, CDMX" in page
    assert "ZTEGC8A1B2C3, HWTC9F8E7D6C" in page
    ticket = db.session.execute(select(Ticket)).scalar_one()
    assert (ticket.affected_services, ticket.device_serials) == ("voip", "ZTEGC8A1B2C3\nHWTC9F8E7D6C")
    edit = portal.post(
        "/tickets/TKT-000001/update",
        {
            "priority": "high",
            "category": "technical",
            "ticket_type": "speed_issue",
            "service_address": "Av. Juárez 7, CDMX",
            "device_serials": "",
        },
        page="/tickets/TKT-000001",
    )
    assert edit.status_code == 302
    db.session.expire_all()
    ticket = db.session.execute(select(Ticket)).scalar_one()
    assert (ticket.ticket_type, ticket.service_address, ticket.affected_services, ticket.device_serials) == (
        "speed_issue",
        "Av. Juárez 7, CDMX",
        "",  # every box unticked
        "",
    )
    assert db.session.execute(
        select(TicketHistory.new_value).where(TicketHistory.field == "ticket_type")
    ).scalars().all() == ["speed_issue"]


def test_a_bad_serial_in_the_portal_form_is_shown_next_to_the_field(portal):
    answer = portal.post(
        "/tickets/new",
        {
            "requester_email": "lucia@example.com",
            "subject": "x",
            "description": "y",
            "device_serials": "bad serial!",
        },
        page="/tickets/new",
    )
    assert answer.status_code == 422
    assert "Device serials must be a list" in answer.get_data(as_text=True)
    assert db.session.execute(select(Ticket)).first() is None


def test_text_and_lists_read_alike():
    errors: dict[str, str] = {}
    assert service_fields.device_serials("A1, B2;\nC3  A1", errors) == "A1\nB2\nC3"
    assert service_fields.device_serials(["A1", " B2 ", ""], errors) == "A1\nB2"
    assert service_fields.affected_services("TV,internet", errors) == "internet,tv"
    assert service_fields.affected_services([], errors) == ""
    assert service_fields.service_address("  Calle\x1b1\n2 ", errors) == "Calle 1 2"
    assert errors == {}
    service_fields.device_serials("x" * 10_000_000, errors)
    assert "device_serials" in errors


@pytest.mark.parametrize("invisible", ["\u200b\u200b", "\u3164", "\u2800 \ufeff"])
def test_a_service_address_with_nothing_to_read_is_no_address(api, invisible):
    """As blank text always was, and as a subject of such characters is no subject
    (`inputs.readable_line`): stored empty, not echoed back as an address that
    shows nothing (docs/isp-operations.md)."""
    errors: dict[str, str] = {}
    assert service_fields.service_address(invisible, errors) == ""
    assert service_fields.service_address("Calle\u200b 5 \u200b", errors) == "Calle\u200b 5 \u200b"
    assert errors == {}
    answer = api.post("/tickets", {**INSTALLATION, "service_address": invisible})
    assert answer.status_code == 201, answer.get_json()
    assert answer.get_json()["service_address"] == ""
    number = api.post("/tickets", INSTALLATION).get_json()["number"]
    changed = api.patch(f"/tickets/{number}", {"service_address": invisible})
    assert changed.status_code == 200, changed.get_json()
    assert changed.get_json()["service_address"] == ""
    assert db.session.execute(select(Ticket.service_address)).scalars().all() == ["", ""]
