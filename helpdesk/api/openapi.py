"""The OpenAPI 3.0 document of `/api/v1`, served at `/api/v1/openapi.json`.

Written by hand next to the code it describes; `tests/test_api_openapi.py` keeps it
true (every route documented and every documented route real, and schemathesis
fuzzes the API against it).
"""

from __future__ import annotations

from typing import Any

from flask import jsonify
from flask.typing import ResponseReturnValue

from config import LANGUAGES
from helpdesk import sla
from helpdesk import vocabulary as v
from helpdesk.api import bp
from helpdesk.api.serializers import LISTED_DESCRIPTION_CHARS
from helpdesk.services.assistant import ANSWERED_DESCRIPTION_CHARS, TOO_MANY_CALLS
from helpdesk.services.queue import MAX_SEARCH_CHARS
from helpdesk.services.thread import CHARS_SHOWN
from helpdesk.services.tracking import REPLY_CHARS_SHOWN
from helpdesk.services.workflow import PRIORITIES as WORKFLOW_PRIORITIES


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Malformed request",
        401: "Missing, invalid, expired or revoked token",
        403: "Role not allowed",
        404: "Not found",
        409: "Conflict: a transition the ticket's status does not allow, or `conflict`, a change "
        "that clashed with another made at the same time (try again)",
        413: "Body too large",
        422: "Invalid fields",
        500: "`internal_error`: a bug on our side, logged with its traceback",
        503: "`database_unavailable`: the database cannot do the work now; retry after `Retry-After`",
    }
    return {str(code): _json(_ref("Error"), text[code]) for code in codes}


# Why a call is refused with 429, each a code and its why: the caller's budget (every
# call with a token), an integration's for a customer or the customer's share of it
# (docs/integrations.md, "Calls per customer"), the login and tracker budgets
# (docs/security.md).
CALLER_BUDGET_SPENT = "`too_many_requests`, the caller's budget (`API_RATE_LIMIT`) is spent"
BUDGET_SPENT = "`too_many_requests`, the integration's budget (`API_RATE_LIMIT`) is spent"
FAILED_LOGINS = (
    "`too_many_requests`, too many failed logins from the client's address (`LOGIN_RATE_LIMIT`) "
    "or of the account (`LOGIN_RATE_LIMIT_PER_ACCOUNT`)"
)
WRONG_PASSWORDS = (
    "`too_many_requests`, too many wrong current passwords and failed logins of the account "
    "(`LOGIN_RATE_LIMIT_PER_ACCOUNT`)"
)
TRACKING = (
    "`too_many_requests`, too many lookups from the client's address (`TRACK_RATE_LIMIT_PER_IP`) "
    "or of the ticket number (`TRACK_RATE_LIMIT_PER_TICKET`)"
)
CUSTOMER_CALLS_SPENT = (
    "`too_many_customer_calls`, the customer the request names has used their calls "
    "(`INTEGRATION_CUSTOMER_RATE_LIMIT`) while the integration's other customers go on"
)


def _too_many(*reasons: str) -> dict[str, Any]:
    """The 429 of a call refused for any of `reasons` (each a code and its why)."""
    listed = "; ".join(reasons[:-1]) + "; or " + reasons[-1] if len(reasons) > 1 else reasons[0]
    return {"429": _json(_ref("Error"), "Rate limited: " + listed)}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


STAFF: list[dict[str, list[str]]] = [{"bearer": []}]
INTEGRATION: list[dict[str, list[str]]] = [{"integration": []}]
CHAT_CUSTOMER = {
    "type": "object",
    "properties": {
        "email": {"type": "string"},
        "name": {"type": "string"},
        "phone": {"type": "string"},
        "language": {"type": "string"},
    },
    "required": ["email"],
    "additionalProperties": False,
}
CARD = {
    "type": "object",
    "properties": {
        "number": {"type": "string"},
        "subject": {"type": "string"},
        "status": {"type": "string"},
        "priority": {"type": "string"},
        "category": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
        "sentence": {"type": "string"},
        "merged_from": {
            "type": "string",
            "description": "the merged number asked for, when the card is its survivor's",
        },
    },
    "required": [
        "number",
        "subject",
        "status",
        "priority",
        "category",
        "created_at",
        "updated_at",
        "sentence",
    ],
}
TIME = {"type": "string", "format": "date-time"}
# What a ticket's creation and change take of an ISP's service fields (helpdesk.service_fields).
SERVICE_FIELDS: dict[str, Any] = {
    "ticket_type": {"type": "string", "enum": list(v.TICKET_TYPES)},
    "service_address": {"type": "string", "maxLength": 500},
    "affected_services": {"type": "array", "items": {"type": "string", "enum": list(v.SERVICES)}},
    "device_serials": {"type": "array", "items": {"type": "string"}, "maxItems": 20},
}
NULLABLE_TIME = {"type": "string", "format": "date-time", "nullable": True}
NULLABLE_NUMBER = {"type": "number", "nullable": True}
COUNTS = {"type": "object", "additionalProperties": {"type": "integer"}}
NUMBER_PARAM = {
    "name": "number",
    "in": "path",
    "required": True,
    "description": "TKT-000078, tkt-78 or 78",
    "schema": {"type": "string"},
}
STAFF_ERRORS = (400, 401, 404, 413, 422)
# The creating calls' optional retry key (helpdesk.api.idempotency; docs/web.md,
# "Idempotency keys").
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "The call is done at most once per caller and key (kept IDEMPOTENCY_KEY_LIFETIME, "
    "a day by default): sent again, the same request is answered 201 with what the first one made, "
    "read now, and `Idempotent-Replayed: true`; another request under the key is 422 "
    "`idempotency_key_reused`; a malformed key is 400 `invalid_idempotency_key`",
    "schema": {"type": "string", "pattern": "^[!-~]{1,255}$"},
}


def _created(schema: dict[str, Any]) -> dict[str, Any]:
    """A 201, which a retry under its Idempotency-Key gets again, marked."""
    answer = _json(schema, "Created (or, marked Idempotent-Replayed, made by an earlier call under the key)")
    answer["headers"] = {
        "Idempotent-Replayed": {
            "description": "`true` when the answer is an earlier call's under the same Idempotency-Key",
            "schema": {"type": "string", "enum": ["true"]},
        }
    }
    return answer


def _object(
    properties: dict[str, Any], required: list[str] | None = None, extra: bool = False
) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": extra}
    if required:
        schema["required"] = required
    return schema


# A chat's ticket: the API's ticket with its status card's sentence (and, answering a
# repeat of a conversation whose ticket was merged, the number it opened).
CHAT_TICKET = {
    "allOf": [
        _ref("Ticket"),
        _object(
            {"sentence": {"type": "string"}, "merged_from": {"type": "string"}},
            ["sentence"],
            extra=True,
        ),
    ],
    "description": "the ticket, with its status card's one-line sentence",
}


SCHEMAS: dict[str, Any] = {
    "Error": _object(
        {
            "error": _object(
                {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "fields": {"type": "object", "additionalProperties": True},
                },
                ["code", "message", "fields"],
            )
        },
        ["error"],
    ),
    "Staff": _object(
        {"id": {"type": "integer"}, "name": {"type": "string"}, "email": {"type": "string"}},
        ["id", "name", "email"],
    ),
    "Tokens": _object(
        {"access_token": {"type": "string"}, "refresh_token": {"type": "string"}},
        ["access_token", "refresh_token"],
    ),
    "Sla": _object(
        {
            "state": {"type": "string", "enum": list(sla.STATES)},
            "first_response_due_at": NULLABLE_TIME,
            "first_responded_at": NULLABLE_TIME,
            "first_response_breached": {"type": "boolean", "nullable": True},
            "resolution_due_at": NULLABLE_TIME,
            "resolved_at": NULLABLE_TIME,
            "resolution_breached": {"type": "boolean", "nullable": True},
        },
        ["state"],
    ),
    "Ticket": _object(
        {
            "number": {"type": "string", "example": "TKT-000078"},
            "subject": {"type": "string"},
            "description": {
                "type": "string",
                "description": f"in GET /tickets, its first {LISTED_DESCRIPTION_CHARS:,} characters; "
                f"in the chat's answers, its first {ANSWERED_DESCRIPTION_CHARS:,}; in a TicketDetail, its "
                f"first {CHARS_SHOWN:,}; whole in POST /tickets' answer. The whole is the first "
                "message's body (GET /tickets/{number}/messages/{message_id})",
            },
            "description_truncated": {
                "type": "boolean",
                "description": "whether `description` is cut",
            },
            "status": {"type": "string", "enum": list(v.STATUSES)},
            "priority": {"type": "string", "enum": list(v.PRIORITIES)},
            "category": {"type": "string", "enum": list(v.CATEGORIES)},
            "channel": {"type": "string", "enum": list(v.CHANNELS)},
            "source": {"type": "string", "enum": list(v.SOURCES)},
            "conversation_id": {"type": "string", "nullable": True},
            "ticket_type": {"type": "string", "enum": list(v.TICKET_TYPES)},
            "service_address": {"type": "string"},
            "affected_services": {"type": "array", "items": {"type": "string", "enum": list(v.SERVICES)}},
            "device_serials": {"type": "array", "items": {"type": "string"}},
            "is_email_originated": {"type": "boolean"},
            "requester_email": {"type": "string"},
            "requester_name": {"type": "string"},
            "assignee": {"allOf": [_ref("Staff")], "nullable": True},
            "team": {"type": "string", "nullable": True},
            "tags": {"type": "array", "items": {"type": "string"}},
            "merged_into": {"type": "string", "nullable": True, "description": "the survivor, once merged"},
            "escalation_level": {"type": "string", "enum": list(v.ESCALATION_LEVELS)},
            "escalated_at": NULLABLE_TIME,
            "language": {
                "type": "string",
                "enum": list(LANGUAGES),
                "nullable": True,
                "description": "the language its customer mail is written in; null until the first "
                "customer mail or staff fix it",
            },
            "created_at": TIME,
            "updated_at": TIME,
            "allowed_transitions": {"type": "array", "items": {"type": "string"}},
            "sla": _ref("Sla"),
        },
        [
            "number",
            "subject",
            "description",
            "status",
            "priority",
            "category",
            "channel",
            "source",
            "ticket_type",
            "service_address",
            "affected_services",
            "device_serials",
            "is_email_originated",
            "requester_email",
            "requester_name",
            "assignee",
            "created_at",
            "updated_at",
        ],
        extra=True,
    ),
    "Attachment": _object(
        {
            "id": {"type": "integer"},
            "filename": {"type": "string"},
            "content_type": {"type": "string"},
            "size": {"type": "integer"},
            "inline": {"type": "boolean"},
        }
    ),
    "Message": _object(
        {
            "id": {"type": "integer"},
            "kind": {"type": "string", "enum": ["reply", "note"]},
            "author": {"type": "string"},
            "author_type": {"type": "string", "enum": ["staff", "customer", "system"]},
            "channel": {"type": "string"},
            "body": {
                "type": "string",
                "description": f"in a TicketDetail's messages, its first {CHARS_SHOWN:,} characters; "
                "whole elsewhere (GET /tickets/{number}/messages/{message_id})",
            },
            "body_truncated": {"type": "boolean", "description": "whether `body` is cut"},
            "body_html": {
                "type": "string",
                "nullable": True,
                "description": f"sanitized; cut to {CHARS_SHOWN:,} characters as `body` is",
            },
            "body_html_truncated": {"type": "boolean", "description": "whether `body_html` is cut"},
            "created_at": TIME,
            "attachments": {"type": "array", "items": _ref("Attachment")},
        },
        ["id", "kind", "author", "body", "body_truncated", "created_at", "attachments"],
    ),
    "History": _object(
        {
            "field": {"type": "string"},
            "from": {"type": "string", "nullable": True},
            "to": {"type": "string", "nullable": True},
            "actor": {"type": "string"},
            "reason": {"type": "string"},
            "automated": {"type": "boolean"},
            "created_at": TIME,
        },
        ["field", "from", "to", "actor", "automated", "created_at"],
    ),
    "TicketDetail": {
        "allOf": [
            _ref("Ticket"),
            _object(
                {
                    "organization": {"type": "string", "nullable": True},
                    "cc": {"type": "array", "items": {"type": "string"}},
                    "linked_ticket": {"type": "string", "nullable": True},
                    "closed_at": NULLABLE_TIME,
                    "messages": {
                        "type": "array",
                        "items": _ref("Message"),
                        "description": "the first message and the newest 50 (older than `before`)",
                    },
                    "messages_total": {"type": "integer", "description": "every message of the ticket"},
                    "messages_older": {
                        "type": "integer",
                        "description": "messages left out between the first and the oldest of the newest; "
                        "`?before=<id of that oldest>` reads them",
                    },
                    "history": {"type": "array", "items": _ref("History")},
                    "satisfaction": {
                        **_object(
                            {
                                "rating": {"type": "integer", "minimum": 1, "maximum": 5},
                                "comment": {"type": "string"},
                                "via": {"type": "string", "enum": list(v.RATING_CHANNELS)},
                                "rated_by": {
                                    "type": "string",
                                    "description": "who rated: the requester's address or a CC participant's",
                                },
                                "agent": {"allOf": [_ref("Staff")], "nullable": True},
                                "rated_at": TIME,
                            },
                            ["rating", "comment", "via", "rated_by", "agent", "rated_at"],
                        ),
                        "nullable": True,
                        "description": "the customer's satisfaction rating, once given",
                    },
                    "escalated_to": {
                        "allOf": [_ref("Staff")],
                        "nullable": True,
                        "description": "who the last escalation handed the ticket to",
                    },
                    "related": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "linked tickets",
                    },
                },
                ["messages", "history"],
                extra=True,
            ),
        ]
    },
    "TicketPage": _object(
        {
            "items": {"type": "array", "items": _ref("Ticket")},
            "page": {"type": "integer"},
            "per_page": {"type": "integer"},
            "total": {"type": "integer"},
        },
        ["items", "page", "per_page", "total"],
    ),
    "Satisfaction": _object(
        {"count": {"type": "integer"}, "average": NULLABLE_NUMBER},
        ["count", "average"],
    ),
    "Durations": _object(
        {
            "average_seconds": NULLABLE_NUMBER,
            "median_seconds": NULLABLE_NUMBER,
            "count": {"type": "integer", "description": "tickets the duration is known for"},
        },
        ["average_seconds", "median_seconds", "count"],
    ),
    "Stats": _object(
        {
            "total": {"type": "integer"},
            "by_status": COUNTS,
            "by_priority": COUNTS,
            "by_category": COUNTS,
            "by_channel": COUNTS,
            "by_source": COUNTS,
            "first_response": _ref("Durations"),
            "resolution": _ref("Durations"),
            "sla": _object(
                {
                    "first_response_breached": {"type": "integer"},
                    "resolution_breached": {"type": "integer"},
                    "first_response_met": {"type": "integer"},
                    "resolution_met": {"type": "integer"},
                    "first_response_met_percent": NULLABLE_NUMBER,
                    "resolution_met_percent": NULLABLE_NUMBER,
                    "by_state": _object({name: {"type": "integer"} for name in sla.STATES}, list(sla.STATES)),
                },
                [
                    "first_response_breached",
                    "resolution_breached",
                    "first_response_met",
                    "resolution_met",
                    "first_response_met_percent",
                    "resolution_met_percent",
                    "by_state",
                ],
            ),
            "created_per_day": {
                "type": "array",
                "description": "the last 30 UTC days, oldest first",
                "items": _object(
                    {"date": {"type": "string", "format": "date"}, "count": {"type": "integer"}},
                    ["date", "count"],
                ),
            },
            "satisfaction": _ref("Satisfaction"),
            "reopens": _object(
                {"count": {"type": "integer"}, "tickets": {"type": "integer"}}, ["count", "tickets"]
            ),
            "by_agent": {
                "type": "array",
                "items": _object(
                    {
                        "id": {"type": "integer"},
                        "name": {"type": "string"},
                        "email": {"type": "string"},
                        "open": {"type": "integer"},
                        "resolved": {"type": "integer"},
                        "satisfaction": _ref("Satisfaction"),
                    },
                    ["id", "name", "email", "open", "resolved", "satisfaction"],
                ),
            },
        },
        [
            "total",
            "by_status",
            "by_priority",
            "by_category",
            "by_channel",
            "by_source",
            "first_response",
            "resolution",
            "sla",
            "created_per_day",
            "reopens",
            "satisfaction",
            "by_agent",
        ],
        extra=True,
    ),
    "CannedReply": _object(
        {
            "id": {"type": "integer"},
            "title": {"type": "string"},
            "body": {
                "type": "string",
                "description": "as written: {customer_name}, {ticket_number}, {agent_name} unfilled",
            },
            "shared": {"type": "boolean", "description": "false: the caller's own"},
            "updated_at": TIME,
        },
        ["id", "title", "body", "shared", "updated_at"],
    ),
    "CustomerView": _object(
        {
            "number": {"type": "string"},
            "subject": {"type": "string"},
            "status": {"type": "string"},
            "priority": {"type": "string"},
            "category": {"type": "string"},
            "created_at": TIME,
            "updated_at": TIME,
            "replies": {
                "type": "array",
                "items": _object(
                    {
                        "author": {"type": "string"},
                        "body": {
                            "type": "string",
                            "description": f"its first {REPLY_CHARS_SHOWN:,} characters",
                        },
                        "body_truncated": {"type": "boolean", "description": "whether it had more"},
                        "created_at": TIME,
                        "from_customer": {"type": "boolean"},
                    }
                ),
                "description": "the newest 50 public replies, oldest first",
            },
            "older_replies": {"type": "boolean", "description": "whether older replies were left out"},
            "timeline": {
                "type": "array",
                "items": _object({"status": {"type": "string"}, "created_at": TIME}),
            },
            "satisfaction": {
                **_object(
                    {"rating": {"type": "integer"}, "comment": {"type": "string"}}, ["rating", "comment"]
                ),
                "nullable": True,
                "description": "the rating the address asked with gave, once given; "
                "someone else's is never shown",
            },
            "rated": {"type": "boolean", "description": "whether anyone on the ticket has rated it"},
        },
        ["number", "subject", "status", "replies", "timeline", "satisfaction", "rated"],
    ),
}


def _list_of(values: tuple[str, ...]) -> dict[str, str]:
    """A comma-separated list of known values, e.g. `new,open`; empty means any."""
    one = "(" + "|".join(values) + ")"
    return {"type": "string", "pattern": f"^({one}(,{one})*)?$"}


LIST_PARAMETERS = [
    {"name": name, "in": "query", "required": False, "schema": schema, "description": text}
    for name, schema, text in (
        ("status", _list_of(v.STATUSES), "comma-separated statuses"),
        ("priority", _list_of(v.PRIORITIES), "comma-separated priorities"),
        ("category", _list_of(v.CATEGORIES), "comma-separated categories"),
        ("channel", _list_of(v.CHANNELS), "comma-separated channels"),
        ("source", _list_of(v.SOURCES), "comma-separated sources: customer, agent, ai, system"),
        ("ticket_type", _list_of(v.TICKET_TYPES), "comma-separated ticket types"),
        ("assignee", {"type": "string"}, "staff id or email, `me` or `none`"),
        ("team", {"type": "string"}, "a team's name, or `none` for tickets of no team"),
        ("tag", {"type": "string"}, "tickets carrying this tag"),
        (
            "q",
            {"type": "string", "maxLength": MAX_SEARCH_CHARS},
            "number, or a subject, service address, device serial or requester containing it, "
            "or a description holding its words (each begins a word of the description)",
        ),
        ("sla", {"type": "string", "enum": ["", *sla.STATES]}, "SLA state; empty means any"),
        ("page", {"type": "integer", "minimum": 1, "maximum": 1_000_000}, "page number"),
        (
            "per_page",
            {"type": "integer", "minimum": 1, "maximum": 1_000_000},
            "larger values are capped at 100",
        ),
        (
            "sort",
            {"type": "string"},
            "number, created_at, updated_at, priority, status or subject; prefix - for descending",
        ),
    )
]

PATHS: dict[str, Any] = {
    "/auth/login": {
        "post": {
            "summary": "Log in with email and password",
            "security": [],
            "requestBody": _body(
                _object({"email": {"type": "string"}, "password": {"type": "string"}}, ["email", "password"])
            ),
            "responses": {
                "200": _json(_ref("Tokens")),
                **_errors(400, 401, 413, 422),
                **_too_many(FAILED_LOGINS),
            },
        }
    },
    "/auth/refresh": {
        "post": {
            "summary": "A new token pair for a refresh token (sent as the bearer token), which is "
            "used up: presented again, it revokes every token of its login",
            "security": STAFF,
            "responses": {"200": _json(_ref("Tokens")), **_errors(401)},
        }
    },
    "/auth/password": {
        "post": {
            "summary": "Change the caller's password; every earlier token and portal session ends",
            "description": "A wrong current password counts as a failed login of the account; "
            "429 once the account's budget is used up.",
            "security": STAFF,
            "requestBody": _body(
                _object(
                    {"current_password": {"type": "string"}, "new_password": {"type": "string"}},
                    ["current_password", "new_password"],
                )
            ),
            "responses": {
                "200": _json(_ref("Tokens")),
                **_errors(400, 401, 413, 422),
                **_too_many(WRONG_PASSWORDS, CALLER_BUDGET_SPENT),
            },
        }
    },
    "/auth/logout": {
        "post": {
            "summary": "End every token and portal session of the caller (a refresh_token field is "
            "accepted and not needed)",
            "security": STAFF,
            "requestBody": {
                "required": False,
                "content": {"application/json": {"schema": _object({"refresh_token": {"type": "string"}})}},
            },
            "responses": {
                "200": _json(_object({"revoked": {"type": "boolean"}})),
                **_errors(400, 401, 413, 422),
            },
        }
    },
    "/tickets": {
        "get": {
            "summary": "The queue: filters, search, sorting, pages",
            "security": STAFF,
            "parameters": LIST_PARAMETERS,
            "responses": {"200": _json(_ref("TicketPage")), **_errors(401, 422)},
        },
        "post": {
            "summary": "Open a ticket (channel api)",
            "security": STAFF,
            "parameters": [IDEMPOTENCY_KEY],
            "requestBody": _body(
                _object(
                    {
                        "subject": {"type": "string"},
                        "description": {"type": "string"},
                        "requester_email": {"type": "string"},
                        "requester_name": {"type": "string", "nullable": True},
                        "priority": {
                            "type": "string",
                            "nullable": True,
                            "enum": [*v.PRIORITIES, "normal", None],
                        },
                        "category": {"type": "string", "nullable": True, "enum": [*v.CATEGORIES, None]},
                        "cc": {
                            "type": "array",
                            "items": {"type": "string"},
                            "nullable": True,
                            "description": "at most MAX_CC_PARTICIPANTS addresses (50 by default), else 422",
                        },
                        "team": {
                            "type": "string",
                            "nullable": True,
                            "description": "a team's name; unsaid, the ticket type's team",
                        },
                        **SERVICE_FIELDS,
                    },
                    ["subject", "description", "requester_email"],
                )
            ),
            "responses": {"201": _created(_ref("Ticket")), **_errors(400, 401, 404, 409, 413, 422)},
        },
    },
    "/tickets/{number}": {
        "parameters": [NUMBER_PARAM],
        "get": {
            "summary": "A ticket with its first and newest messages and its history",
            "security": STAFF,
            "parameters": [
                {
                    "name": "before",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 1},
                    "description": "show the messages older than this message id",
                }
            ],
            "responses": {"200": _json(_ref("TicketDetail")), **_errors(401, 404, 422)},
        },
        "patch": {
            "summary": "Change priority, category, assignee, team, ticket type, service fields or the "
            "customer's language",
            "security": STAFF,
            "requestBody": _body(
                _object(
                    {
                        "priority": {"type": "string"},
                        "category": {"type": "string"},
                        "team": {
                            "type": "string",
                            "nullable": True,
                            "description": "a team's name; null for none",
                        },
                        **SERVICE_FIELDS,
                        "assignee": {
                            "oneOf": [{"type": "integer"}, {"type": "string"}],
                            "nullable": True,
                            "description": "staff id or email; null unassigns",
                        },
                        "language": {
                            "type": "string",
                            "enum": list(LANGUAGES),
                            "description": "the customer's language: this ticket's mail and their "
                            "contact's (a history row records it)",
                        },
                    }
                )
            ),
            "responses": {"200": _json(_ref("TicketDetail")), **_errors(*STAFF_ERRORS)},
        },
    },
    "/tickets/bulk": {
        "post": {
            "summary": "Assign, move or tag up to 100 tickets; each is changed on its own and the answer "
            "lists what was done and what was refused, with why",
            "security": STAFF,
            "requestBody": _body(
                _object(
                    {
                        "tickets": {"type": "array", "items": {"type": "string"}, "maxItems": 100},
                        "action": {"type": "string", "enum": ["assign", "status", "tag"]},
                        "assignee": {"oneOf": [{"type": "integer"}, {"type": "string"}], "nullable": True},
                        "status": {"type": "string", "enum": list(v.STATUSES)},
                        "reason": {"type": "string", "nullable": True},
                        "tags": {"type": "array", "items": {"type": "string"}},
                    },
                    ["tickets", "action"],
                )
            ),
            "responses": {
                "200": _json(
                    _object(
                        {
                            "done": {"type": "array", "items": {"type": "string"}},
                            "refused": {
                                "type": "array",
                                "items": _object(
                                    {"ticket": {"type": "string"}, "error": {"type": "string"}},
                                    ["ticket", "error"],
                                ),
                            },
                        },
                        ["done", "refused"],
                    )
                ),
                **_errors(400, 401, 413, 422),
            },
        },
    },
    "/tickets/{number}/messages/{message_id}": {
        "parameters": [
            NUMBER_PARAM,
            {
                "name": "message_id",
                "in": "path",
                "required": True,
                "schema": {"type": "integer", "minimum": 1},
            },
        ],
        "get": {
            "summary": "One message of the ticket, its text and HTML whole (a ticket's answer cuts them)",
            "security": STAFF,
            "responses": {"200": _json(_ref("Message")), **_errors(401, 404)},
        },
    },
    "/tickets/{number}/tags": {
        "parameters": [NUMBER_PARAM],
        "put": {
            "summary": "Replace the ticket's tags (letters, digits, - and _, at most 40 characters; 20 tags)",
            "security": STAFF,
            "requestBody": _body(_object({"tags": {"type": "array", "items": {"type": "string"}}}, ["tags"])),
            "responses": {"200": _json(_ref("TicketDetail")), **_errors(*STAFF_ERRORS)},
        },
    },
    "/tickets/{number}/links": {
        "parameters": [NUMBER_PARAM],
        "post": {
            "summary": "Link a related ticket (both ways)",
            "security": STAFF,
            "requestBody": _body(
                _object({"ticket": {"oneOf": [{"type": "string"}, {"type": "integer"}]}}, ["ticket"])
            ),
            "responses": {"200": _json(_ref("TicketDetail")), **_errors(*STAFF_ERRORS)},
        },
    },
    "/tickets/{number}/links/{other}": {
        "parameters": [NUMBER_PARAM, {**NUMBER_PARAM, "name": "other"}],
        "delete": {
            "summary": "Remove the link between two tickets",
            "security": STAFF,
            "responses": {"200": _json(_ref("TicketDetail")), **_errors(401, 404)},
        },
    },
    "/tickets/{number}/merge": {
        "parameters": [NUMBER_PARAM],
        "post": {
            "summary": "Merge this ticket into another: it closes pointing at the survivor, which answers; "
            "409 when either is cancelled or this one is already merged",
            "security": STAFF,
            "requestBody": _body(
                _object(
                    {
                        "into": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
                        "reason": {"type": "string", "nullable": True},
                    },
                    ["into"],
                )
            ),
            "responses": {"200": _json(_ref("TicketDetail")), **_errors(*STAFF_ERRORS, 409)},
        },
    },
    "/tickets/{number}/escalate": {
        "parameters": [NUMBER_PARAM],
        "post": {
            "summary": "Raise the support level (L1-L3), optionally handing the ticket to someone, who is "
            "told by mail; 409 when the ticket is finished or already at that level or higher",
            "security": STAFF,
            "requestBody": _body(
                _object(
                    {
                        "level": {"type": "string", "enum": list(v.ESCALATION_LEVELS)},
                        "assignee": {
                            "oneOf": [{"type": "integer"}, {"type": "string"}],
                            "nullable": True,
                            "description": "staff id or email; unsaid, the assignee stays",
                        },
                        "reason": {"type": "string"},
                    },
                    ["level", "reason"],
                )
            ),
            "responses": {"200": _json(_ref("TicketDetail")), **_errors(*STAFF_ERRORS, 409)},
        },
    },
    "/tickets/{number}/status": {
        "parameters": [NUMBER_PARAM],
        "post": {
            "summary": "Move the ticket; 409 names the allowed targets",
            "security": STAFF,
            "requestBody": _body(
                _object(
                    {
                        "status": {"type": "string", "enum": list(v.STATUSES)},
                        "reason": {"type": "string", "nullable": True},
                    },
                    ["status"],
                )
            ),
            "responses": {"200": _json(_ref("TicketDetail")), **_errors(*STAFF_ERRORS, 409)},
        },
    },
    "/tickets/{number}/replies": {
        "parameters": [NUMBER_PARAM],
        "post": {
            "summary": "A public reply (mailed to requester and CCs, with its attachments) or internal "
            "note; files come as multipart/form-data under `attachments`, within MAX_ATTACHMENTS, "
            "MAX_ATTACHMENT_BYTES and MAX_ATTACHMENTS_TOTAL_BYTES (422); the whole body within "
            "MAX_REQUEST_BYTES + MAX_ATTACHMENTS_TOTAL_BYTES (413)",
            "security": STAFF,
            "parameters": [IDEMPOTENCY_KEY],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": _object(
                            {"body": {"type": "string"}, "internal": {"type": "boolean"}}, ["body"]
                        )
                    },
                    "multipart/form-data": {
                        "schema": _object(
                            {
                                "body": {"type": "string"},
                                "internal": {"type": "string", "enum": ["true", "false"]},
                                "attachments": {
                                    "type": "array",
                                    "items": {"type": "string", "format": "binary"},
                                },
                            },
                            ["body"],
                        )
                    },
                },
            },
            "responses": {"201": _created(_ref("Message")), **_errors(*STAFF_ERRORS, 409)},
        },
    },
    "/tickets/{number}/canned-replies/{reply_id}": {
        "parameters": [
            NUMBER_PARAM,
            {"name": "reply_id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}},
        ],
        "get": {
            "summary": "A canned reply filled in for this ticket, written by the caller; 404 for a reply "
            "that is neither shared nor the caller's",
            "security": STAFF,
            "responses": {
                "200": _json(_object({"text": {"type": "string"}}, ["text"])),
                **_errors(401, 404),
            },
        },
    },
    "/canned-replies": {
        "get": {
            "summary": "The canned replies the caller may use: the shared ones and their own, as written",
            "security": STAFF,
            "responses": {
                "200": _json(_object({"items": {"type": "array", "items": _ref("CannedReply")}}, ["items"])),
                **_errors(401),
            },
        }
    },
    "/tickets/{number}/share": {
        "parameters": [NUMBER_PARAM],
        "get": {
            "summary": "The message an agent pastes to the customer, in the customer's language",
            "security": STAFF,
            "responses": {
                "200": _json(_object({"text": {"type": "string"}}, ["text"])),
                **_errors(401, 404),
            },
        },
    },
    "/stats": {
        "get": {
            "summary": "Counts, response and resolution times, SLA",
            "security": STAFF,
            "responses": {"200": _json(_ref("Stats")), **_errors(401)},
        }
    },
    "/public/track": {
        "post": {
            "summary": "The customer's view of a ticket; the same 404 for an unknown number "
            "and a wrong email",
            "security": [],
            "requestBody": _body(
                _object(
                    {"ticket_number": {"type": "string"}, "email": {"type": "string"}},
                    ["ticket_number", "email"],
                )
            ),
            "responses": {
                "200": _json(_ref("CustomerView")),
                **_errors(400, 404, 413, 422),
                **_too_many(TRACKING),
            },
        }
    },
    "/health": {
        "get": {
            "summary": "Liveness and a database round trip, which reads the schema's revision",
            "security": [],
            "responses": {
                "200": _json(
                    _object(
                        {
                            "status": {"type": "string"},
                            "database": {"type": "string"},
                            "schema": {"type": "string", "enum": ["ok", "ahead", "unknown"]},
                        }
                    )
                ),
                "503": _json(
                    _ref("Error"),
                    "Database unreachable (`database_unavailable`), or its schema behind this code's "
                    "(`schema_behind`: run `flask --app wsgi db upgrade`); the schema's revisions are named "
                    "(`fields.database_revision`, `fields.code_revision`) only to a caller sending the "
                    "METRICS_TOKEN as its bearer token",
                ),
            },
        }
    },
    "/assistant/tools": {
        "get": {
            "summary": "The tool definitions an assistant's model can call (assistant integrations)",
            "security": INTEGRATION,
            "responses": {
                "200": _json(_object({"tools": {"type": "array", "items": {"type": "object"}}}, ["tools"])),
                **_errors(401, 403),
            },
        }
    },
    "/assistant/tool-calls": {
        "post": {
            "summary": "Run the model's tool calls for the customer named; one output per call, in order",
            "security": INTEGRATION,
            "requestBody": _body(
                _object(
                    {
                        "customer": _object(
                            {
                                "email": {"type": "string", "description": "required on the chat channel"},
                                "phone": {
                                    "type": "string",
                                    "description": "the sender's WhatsApp id: required on whatsapp",
                                },
                                "name": {"type": "string"},
                                "language": {"type": "string"},
                            }
                        ),
                        "conversation_id": {"type": "string"},
                        "channel": {"type": "string", "enum": ["whatsapp", "chat"], "default": "whatsapp"},
                        "tool_calls": {
                            "type": "array",
                            "items": _object(
                                {
                                    "id": {"type": "string"},
                                    "type": {"type": "string", "enum": ["function"]},
                                    "function": _object(
                                        {"name": {"type": "string"}, "arguments": {"type": "string"}},
                                        ["name"],
                                    ),
                                },
                                ["id", "type", "function"],
                            ),
                        },
                    },
                    ["customer", "tool_calls"],
                )
            ),
            "responses": {
                "200": _json(
                    _object(
                        {
                            "tool_outputs": {
                                "type": "array",
                                "items": _object(
                                    {"tool_call_id": {"type": "string"}, "output": {"type": "string"}},
                                    ["tool_call_id", "output"],
                                ),
                            }
                        },
                        ["tool_outputs"],
                    ),
                    "One output per call, in order. A call that fails is an output, "
                    '`{"success": false, "error", "userMessage"}`, never an HTTP error: so is each call '
                    "over the customer's calls (`INTEGRATION_CUSTOMER_RATE_LIMIT`, counted per tool call), "
                    f'`"error": "{TOO_MANY_CALLS}"`, the `userMessage` in the customer\'s language',
                ),
                **_errors(400, 401, 403, 413, 422),
                **_too_many(BUDGET_SPENT),
            },
        }
    },
    "/chat/tickets": {
        "post": {
            "summary": "A chat conversation becomes a ticket (channel chat) for the customer named",
            "security": INTEGRATION,
            "requestBody": _body(
                _object(
                    {
                        "conversation_id": {"type": "string"},
                        "customer": CHAT_CUSTOMER,
                        "subject": {"type": "string"},
                        "transcript": {"type": "string"},
                    },
                    ["conversation_id", "customer", "transcript"],
                )
            ),
            "responses": {
                "201": _json(CHAT_TICKET, "Created"),
                "200": _json(
                    CHAT_TICKET,
                    "The conversation was posted before (a retry): the ticket it opened, or"
                    " its survivor with `merged_from`; nothing is created or mailed",
                ),
                **_errors(400, 401, 403, 409, 413, 422),
                **_too_many(
                    "`too_many_tickets`, the customer is at their ticket limits "
                    "(`CUSTOMER_MAX_TICKETS_PER_HOUR`, `CUSTOMER_MAX_OPEN_TICKETS`)",
                    CUSTOMER_CALLS_SPENT,
                    BUDGET_SPENT,
                ),
            },
        }
    },
    "/chat/lookup": {
        "post": {
            "summary": "Status cards for the customer's tickets whose numbers a chat message mentions",
            "security": INTEGRATION,
            "requestBody": _body(
                _object({"customer": CHAT_CUSTOMER, "text": {"type": "string"}}, ["customer", "text"])
            ),
            "responses": {
                "200": _json(_object({"tickets": {"type": "array", "items": CARD}}, ["tickets"])),
                **_errors(400, 401, 403, 413, 422),
                **_too_many(CUSTOMER_CALLS_SPENT, BUDGET_SPENT),
            },
        }
    },
    "/workflow/tickets": {
        "post": {
            "summary": "An ISP workflow (onboarding, installation) opens a ticket for a customer named by "
            "customer_id or customer_email, exactly one (workflow integrations; docs/isp-operations.md)",
            "security": INTEGRATION,
            "parameters": [IDEMPOTENCY_KEY],
            "requestBody": _body(
                {
                    **_object(
                        {
                            "title": {"type": "string"},
                            "description": {
                                "type": "string",
                                "description": "the ticket's first message; blank (only spaces or line "
                                "breaks): 422",
                            },
                            "customer_id": {
                                "type": "integer",
                                "nullable": True,
                                "description": "a customer's id, as an earlier answer gave it (its digits as "
                                "a string are taken too); unknown: 422 `Invalid customer_id: X`",
                            },
                            "customer_email": {
                                "type": "string",
                                "format": "email",
                                "nullable": True,
                                "description": "the customer, found or created by address; a machine's "
                                "mailbox (noreply@, mailer-daemon@…): 422",
                            },
                            "priority": {
                                "type": "string",
                                "enum": list(WORKFLOW_PRIORITIES),
                                "nullable": True,
                            },
                            "assigned_team": {
                                "type": "string",
                                "nullable": True,
                                "description": "a team's name; unsaid, the team the type is routed to",
                            },
                            "ticket_type": {**SERVICE_FIELDS["ticket_type"], "nullable": True},
                            "service_address": {**SERVICE_FIELDS["service_address"], "nullable": True},
                        },
                        ["title", "description"],
                    ),
                    "oneOf": [{"required": ["customer_id"]}, {"required": ["customer_email"]}],
                }
            ),
            "responses": {
                "201": _created(
                    _object(
                        {
                            "ticket_id": {"type": "integer", "description": "the helpdesk's internal id"},
                            "ticket_number": {"type": "string", "example": "TKT-000123"},
                            "title": {"type": "string"},
                            "description": {"type": "string"},
                            "customer_id": {"type": "integer"},
                            "origin_type": {"type": "string", "enum": ["customer"]},
                            "target_type": {"type": "string", "enum": ["tenant"]},
                            "priority": {"type": "string", "enum": list(WORKFLOW_PRIORITIES)},
                            "ticket_type": {"type": "string", "enum": list(v.TICKET_TYPES)},
                            "status": {"type": "string", "enum": list(v.STATUSES)},
                            "assigned_team": {"type": "string", "nullable": True},
                            "service_address": {"type": "string", "nullable": True},
                            "sla_due_date": {**TIME, "description": "the resolution target"},
                            "context": _object(
                                {
                                    "assigned_team": {"type": "string", "nullable": True},
                                    "routing": _object(
                                        {
                                            "team": {
                                                "type": "string",
                                                "nullable": True,
                                                "description": "the team the type is routed to",
                                            }
                                        },
                                        ["team"],
                                    ),
                                },
                                ["assigned_team", "routing"],
                            ),
                            "created_at": TIME,
                        },
                        [
                            "ticket_id",
                            "ticket_number",
                            "title",
                            "description",
                            "customer_id",
                            "origin_type",
                            "target_type",
                            "priority",
                            "ticket_type",
                            "status",
                            "assigned_team",
                            "service_address",
                            "sla_due_date",
                            "context",
                            "created_at",
                        ],
                    )
                ),
                **_errors(400, 401, 403, 404, 409, 413, 422),
            },
        }
    },
    "/openapi.json": {
        "get": {"summary": "This document", "security": [], "responses": {"200": _json({"type": "object"})}}
    },
}


def _rate_limited(paths: dict[str, Any]) -> dict[str, Any]:
    """Every call made with a token may answer 429 once its caller's budget
    (`API_RATE_LIMIT`) is spent; calls without one (`security: []`) are not counted."""
    for item in paths.values():
        for method, operation in item.items():
            if method != "parameters" and operation.get("security", STAFF):
                operation["responses"].setdefault("429", _too_many(CALLER_BUDGET_SPENT)["429"])
                operation["responses"]["429"]["headers"] = RATE_HEADERS
    return paths


# What a 400 names, per kind of input an operation reads (docs/web.md, the JSON API's errors).
_MALFORMED = {
    "application/json": "`invalid_json` (the body is not JSON)",
    "multipart/form-data": "`invalid_form` (a multipart body not exactly readable as UTF-8 form data)",
}


def _generic_answers(paths: dict[str, Any]) -> dict[str, Any]:
    """The answers any call can give, listed on each: 500 for a bug; 503 with
    `Retry-After` when the database cannot do the work (all but this document, which
    reads none); on a write, 409 `conflict` for a clash with a change made at the
    same time, and `outcome_unknown` in the 503 where the answer to its COMMIT can
    be lost with nothing to look for; and a 400 that names what was malformed in the
    input it reads, the query string on every call (`helpdesk.form_data`)."""
    for path, item in paths.items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            answers = operation["responses"]
            answers.setdefault("500", _errors(500)["500"])
            if path != "/openapi.json":
                if "503" not in answers:
                    answers["503"] = {**_errors(503)["503"], "headers": {"Retry-After": RETRY_AFTER}}
                if method in WRITES and _commits_blind(path, operation):
                    answers["503"] = {
                        **answers["503"],
                        "description": answers["503"]["description"] + OUTCOME,
                    }
            if method in WRITES:
                answers.setdefault("409", _errors(409)["409"])
            malformed = ["`invalid_query` (a query string that is not percent-encoded UTF-8)"]
            malformed += [text for kind, text in _MALFORMED.items() if kind in _content(operation)]
            if IDEMPOTENCY_KEY in operation.get("parameters", []):
                malformed.append("`invalid_idempotency_key` (a malformed Idempotency-Key)")
            answers["400"] = _json(_ref("Error"), "Malformed request: " + ", ".join(malformed))
    return paths


WRITES = ("post", "put", "patch", "delete")
# A write's 503 when the answer to its COMMIT was lost (helpdesk.database.commit_or_unknown;
# docs/web.md, "A lost answer").
OUTCOME = (
    "; or `outcome_unknown`: the connection to the database broke as the change was saved, and it "
    "may have been kept: read what the call changes before sending it again (a PUT or PATCH, which "
    "sets values, is safe to send again; so is the chat's and the assistant's repeat)"
)
# Writes that keep nothing, or look for what they made when the answer is lost.
WRITING_NOTHING = ("/auth/login", "/public/track")


def _commits_blind(path: str, operation: dict[str, Any]) -> bool:
    """Does this write commit a change with nothing to look for when the COMMIT's
    answer is lost? The calls taking an `Idempotency-Key` look (`commit_or_found`)."""
    return path not in WRITING_NOTHING and IDEMPOTENCY_KEY not in operation.get("parameters", [])


def _content(operation: dict[str, Any]) -> dict[str, Any]:
    content: dict[str, Any] = operation.get("requestBody", {}).get("content", {})
    return content


_INTEGER = {"schema": {"type": "integer"}}
RETRY_AFTER = {"description": "seconds to wait before trying again", **_INTEGER}
# What a counted call says of its caller's budget (docs/web.md, "Rate limits").
RATE_HEADERS = {
    "Retry-After": {"description": "seconds until the budget's window ends", **_INTEGER},
    "X-RateLimit-Limit": {"description": "the budget's size", **_INTEGER},
    "X-RateLimit-Remaining": {"description": "calls left in this window", **_INTEGER},
    "X-RateLimit-Reset": {"description": "when the window ends, in seconds since the epoch", **_INTEGER},
}


DOCUMENT: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "Helpdesk API",
        "version": "1.0.0",
        "description": "Tickets, replies and the public tracker. Every error "
        'is {"error": {"code", "message", "fields"}}.',
    },
    "servers": [{"url": "/api/v1"}],
    "security": STAFF,
    "components": {
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            "integration": {
                "type": "http",
                "scheme": "bearer",
                "description": "An integration's token (`hdi_…`, `flask --app wsgi integrations add`)",
            },
        },
        "schemas": SCHEMAS,
    },
    "paths": _generic_answers(_rate_limited(PATHS)),
}


@bp.get("/openapi.json")
def openapi() -> ResponseReturnValue:
    return jsonify(DOCUMENT)
