"""The assistant's tool calls over the API, for `assistant` integrations
(docs/integrations.md): the tool definitions, and a batch of calls answered with
one output per call, in order, in the shape a runtime submits as tool outputs."""

from __future__ import annotations

import json
from typing import Any

from flask import current_app, g, jsonify
from flask.typing import ResponseReturnValue

from helpdesk.api import bp, customer_calls
from helpdesk.api.customers import conversation_id, looked_up_customer, named, named_customer
from helpdesk.api.payload import json_object
from helpdesk.auth import integration_required
from helpdesk.database import commit_or_unknown
from helpdesk.errors import ValidationError
from helpdesk.extensions import db
from helpdesk.inputs import unstorable
from helpdesk.services.assistant import TOOLS, AssistantService, writes

MAX_CALLS = 20  # tool calls in one request
ASSISTANT_CHANNELS = ("whatsapp", "chat")


@bp.get("/assistant/tools")
@integration_required("assistant")
def assistant_tools() -> ResponseReturnValue:
    return jsonify({"tools": TOOLS})


@bp.post("/assistant/tool-calls")
@integration_required("assistant")
def assistant_tool_calls() -> ResponseReturnValue:
    data = json_object(
        {"customer": (dict,), "conversation_id": (str,), "channel": (str,), "tool_calls": (list,)},
        required=("customer", "tool_calls"),
    )
    channel = data.get("channel", "whatsapp")
    errors = {}
    if channel not in ASSISTANT_CHANNELS:
        errors["channel"] = f"must be one of {', '.join(ASSISTANT_CHANNELS)}"
    conversation = conversation_id(data["conversation_id"], errors) if "conversation_id" in data else None
    calls = data["tool_calls"]
    if not 1 <= len(calls) <= MAX_CALLS:
        errors["tool_calls"] = f"must hold 1 to {MAX_CALLS} calls"
    elif not all(_is_call(call) for call in calls):
        errors["tool_calls"] = 'each must be {"id", "type": "function", "function": {"name", "arguments"}}'
    if errors:
        raise ValidationError(errors)
    who = named(data["customer"], phone_vouched=channel == "whatsapp")
    # Each tool call is the customer's to count; those over their limit are failure
    # outputs, never an HTTP error (SPEC §11). Counted before the customer is found,
    # who is then found as before: a refused call is answered in their language.
    allowed = customer_calls.allowance(who, len(calls)).calls
    # On a chat, calls that write nothing (reads, and those over the limit, which
    # run no tool) store no contact for an address no one has, as a lookup does:
    # each invented address became one for good (docs/integrations.md, "Chat").
    if channel == "chat" and not any(writes(call["function"]["name"]) for call in calls[:allowed]):
        customer = looked_up_customer(who)
    else:
        customer = named_customer(who)
    # Read before the commit expires it: read after, it began a transaction of its
    # own, which on SQLite holds the write lock until the first call ends.
    integration_id = g.integration.id
    commit_or_unknown(db.session)  # the contact, before any call can roll back
    service = AssistantService(
        db.session, current_app.config, conversation_id=conversation, integration_id=integration_id
    )
    outputs = [
        {
            "tool_call_id": call["id"],
            "output": json.dumps(
                service.call(
                    customer,
                    call["function"]["name"],
                    call["function"].get("arguments"),
                    channel,
                    call_id=call["id"],
                )
                if n < allowed
                else service.over_limit(customer),
                ensure_ascii=False,
            ),
        }
        for n, call in enumerate(calls)
    ]
    return jsonify({"tool_outputs": outputs})


def _is_call(call: Any) -> bool:
    """The runtime's envelope of a call, its function's `name` field included (what
    the model chose, the name's value and the arguments, is judged per call, as an
    output; docs/integrations.md)."""
    return (
        isinstance(call, dict)
        and isinstance(call.get("id"), str)
        and 0 < len(call["id"]) <= 200
        and not unstorable(call["id"])
        and call.get("type") == "function"
        and isinstance(call.get("function"), dict)
        and "name" in call["function"]
    )
