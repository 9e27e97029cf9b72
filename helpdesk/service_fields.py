"""An ISP ticket's service fields (docs/isp-operations.md): the ticket type, the
service address, the affected services and the devices' serial numbers.

Every channel hands them over as it reads them (form text, JSON lists), so they
are read here once, each into its column's stored form, with the same messages
everywhere. Bounded: an address is one cleaned line, at most 20 serials of at
most 64 characters each.
"""

from __future__ import annotations

import re

from helpdesk import inputs
from helpdesk import vocabulary as v

MAX_ADDRESS = 500
MAX_SERIALS = 20
MAX_SERIAL = 64
# A serial, a MAC or an ONT id: letters and digits with the usual separators.
_SERIAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9:._/-]*")
_SEPARATORS = re.compile(r"[\s,;]+")
_MAX_LIST_TEXT = MAX_SERIALS * (MAX_SERIAL + 2)


def ticket_type(value: object, errors: dict[str, str]) -> str:
    if not isinstance(value, str) or value.strip().lower() not in v.TICKET_TYPES:
        errors["ticket_type"] = f"must be one of {', '.join(v.TICKET_TYPES)}"
        return ""
    return value.strip().lower()


def service_address(value: object, errors: dict[str, str]) -> str:
    """One line: control characters and line breaks become spaces. An address with
    nothing to read (zero-width spaces, Hangul fillers…: `inputs.nothing_to_read`)
    is no address, stored empty as a blank one is (docs/isp-operations.md)."""
    if not isinstance(value, str):
        errors["service_address"] = "must be text"
        return ""
    cleaned = inputs.readable_line(value)
    if len(cleaned) > MAX_ADDRESS:
        errors["service_address"] = f"must be at most {MAX_ADDRESS} characters"
    return cleaned


def affected_services(value: object, errors: dict[str, str]) -> str:
    """A list (or comma-separated text) of services, stored as `internet,tv`."""
    items = _items(value)
    if items is None or any(item.lower() not in v.SERVICES for item in items):
        errors["affected_services"] = f"must be a list of {', '.join(v.SERVICES)}"
        return ""
    chosen = {item.lower() for item in items}
    return ",".join(service for service in v.SERVICES if service in chosen)


def device_serials(value: object, errors: dict[str, str]) -> str:
    """A list (or text, one per line or comma-separated) of serials, stored one per line."""
    items = _items(value)
    distinct = list(dict.fromkeys(items or ()))
    if (
        items is None
        or len(distinct) > MAX_SERIALS
        or any(len(item) > MAX_SERIAL or not _SERIAL.fullmatch(item) for item in distinct)
    ):
        errors["device_serials"] = (
            f"must be a list of at most {MAX_SERIALS} serial numbers of letters and digits "
            f"(and : . _ / -), each at most {MAX_SERIAL} characters"
        )
        return ""
    return "\n".join(distinct)


def as_list(stored: str, separator: str) -> list[str]:
    """A stored list column as a list."""
    return [item for item in stored.split(separator) if item]


def _items(value: object) -> list[str] | None:
    """Text split at commas, semicolons and white space, or a list of text; None for
    anything else, and for more than any valid list holds (so nothing huge is split)."""
    if isinstance(value, str):
        if len(value) > _MAX_LIST_TEXT:
            return None
        return [item for item in _SEPARATORS.split(value) if item]
    if isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
        if len(value) > MAX_SERIALS * 2:
            return None
        return [item.strip() for item in value if item.strip()]
    return None
