"""The assistant's tool calls over the API, for `assistant` integrations
(docs/integrations.md): the tool definitions, and a batch of calls answered with
one output per call, in order, in the shape a runtime submits as tool outputs."""

from __future__ import annotations

import json
from typing import Any

from flask import current_app, g, jsonify
from flask.typing import ResponseReturnValue

from helpdesk.api import bp, customer_calls
from helpdesk.api.customers import conversation_id, looked_up_customer, named
from helpdesk.api.payload import json_object
from helpdesk.auth import integration_required
from helpdesk.database import commit_or_unknown
from helpdesk.errors import ValidationError
from helpdesk.extensions import db
from helpdesk.inputs import unstorable
from helpdesk.services.assistant import TOOLS, AssistantService

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
    # Someone no contact has yet is answered from an unsaved stand-in, on either
    # channel: their first call that writes stores the contact, in its own
    # transaction, so reads, failures and calls over the limit store no one, and a
    # caller inventing an address or a number per request grows nothing
    # (docs/integrations.md, "Chat" and "Who the customer is").
    customer = looked_up_customer(who)
    # Read before the commit expires it: read after, it began a transaction of its
    # own, which on SQLite holds the write lock until the first call ends.
    integration_id = g.integration.id
    commit_or_unknown(db.session)  # a known customer's name and language, before any call can roll back
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
