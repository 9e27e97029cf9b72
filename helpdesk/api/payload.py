"""Reading API input: a JSON object with known fields of known types (or the same
fields as multipart/form-data, where files come along), or an error that names what
is wrong (docs/web.md: malformed JSON, wrong types and unknown fields are 400/422,
never a 500). JSON is RFC 8259's: an object naming a field twice, and `NaN` or
`Infinity`, which Python's parser takes, are malformed (docs/security.md, "JSON")."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from flask import request

from helpdesk.errors import DomainError, ValidationError
from helpdesk.inputs import echoed, strict_json, unstorable

# A field's allowed JSON types; `None` in the tuple admits null.
Spec = Mapping[str, tuple[type | None, ...]]


class MalformedJSON(DomainError):
    """Answered 400 by the API's error handler."""

    code = "invalid_json"

    def __init__(self) -> None:
        super().__init__("The request body is not valid JSON.")


def json_value() -> Any:
    """The body as the API's views read it: JSON whatever its content type says, {}
    when there is none, None when it is not JSON (or is JSON `null`). A rate limit's
    key that names what the view will look up reads the body through this too, so the
    two cannot read different things (docs/security.md, "Tracker numbers")."""
    parsed, value = _parsed()
    return value if parsed else None


def canonical_json() -> bytes | None:
    """The body's JSON in one spelling (names sorted, no spaces, letters unescaped),
    None when it is not JSON: two bodies that differ only in how they were written
    are one request to an idempotency key (docs/web.md, "Idempotency keys")."""
    parsed, value = _parsed()
    if not parsed:
        return None
    spelt = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return spelt.encode("utf-8", "surrogatepass")


def _parsed() -> tuple[bool, Any]:
    """(True, the body's JSON value), {} for no body, or (False, None) when it is
    not JSON as RFC 8259 has it or is nested deeper than the parser recurses."""
    data = request.get_data(cache=True)
    if not data:
        return True, {}
    try:
        return True, strict_json(data)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError included
        return False, None


def json_object(spec: Spec, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """The request's JSON object, checked against `spec` (unknown fields refused)."""
    parsed, data = _parsed()
    if not parsed:
        raise MalformedJSON()
    if not isinstance(data, dict):
        raise ValidationError({"body": "must be a JSON object"})
    errors: dict[str, str] = {}
    for name in data:
        if name not in spec:
            errors[_shown(name)] = "is not a known field"
    for name, types in spec.items():
        if name not in data:
            if name in required:
                errors[name] = "is required"
            continue
        value = data[name]
        if not _is_one_of(value, types):
            errors[name] = f"must be {_describe(types)}"
        elif unstorable(value):
            errors[name] = "must not contain NUL characters or lone surrogates"
    if errors:
        raise ValidationError(errors)
    return data


def form_object(spec: Spec, required: tuple[str, ...] = (), files: tuple[str, ...] = ()) -> dict[str, Any]:
    """A multipart/form-data request's fields, checked as `json_object` checks JSON:
    each field at most once, text, `true` or `false` for a boolean, unknown fields
    refused, and files only under the names in `files` (the caller reads them)."""
    form = request.form
    errors: dict[str, str] = {
        _shown(name): "is not a known file field" for name in request.files if name not in files
    }
    data: dict[str, Any] = {}
    for name in form:
        if name not in spec:
            errors[_shown(name)] = "is not a known field"
        elif len(form.getlist(name)) > 1:
            errors[name] = "must be given once"
    for name, types in spec.items():
        value = form.get(name)
        if value is None:
            if name in required:
                errors.setdefault(name, "is required")
        elif bool in types:
            if value not in ("true", "false"):
                errors.setdefault(name, "must be true or false")
            data[name] = value == "true"
        elif unstorable(value):
            errors.setdefault(name, "must not contain NUL characters or lone surrogates")
        else:
            data[name] = value
    if errors:
        raise ValidationError(errors)
    return data


def _shown(name: object) -> str:
    """A field name the client chose, as an error may name it: a part may have no
    name at all, or one no decoder or terminal should see (`inputs.echoed`)."""
    if not isinstance(name, str) or not name:
        return "(unnamed field)"
    return echoed(name)


def _is_one_of(value: Any, types: tuple[type | None, ...]) -> bool:
    for kind in types:
        if kind is None and value is None:
            return True
        if kind is int and isinstance(value, bool):
            continue  # JSON true is not a number
        if kind is not None and isinstance(value, kind):
            return True
    return False


def _describe(types: tuple[type | None, ...]) -> str:
    names: dict[type | None, str] = {str: "a string", bool: "true or false", int: "an integer", None: "null"}
    return " or ".join(names.get(kind) or str(getattr(kind, "__name__", "?")) for kind in types)
