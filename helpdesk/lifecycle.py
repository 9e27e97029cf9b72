"""The one ticket transition table (docs/lifecycle.md)."""

from __future__ import annotations

TRANSITIONS: dict[str, tuple[str, ...]] = {
    "new": ("open", "cancelled"),
    "open": ("in_progress", "cancelled"),
    "in_progress": ("pending_customer", "resolved", "cancelled"),
    "pending_customer": ("in_progress", "resolved", "cancelled"),
    "resolved": ("closed", "reopened"),
    "closed": ("reopened",),
    "reopened": ("in_progress",),
    "cancelled": (),
}

# Where a customer's reply moves a ticket (recorded as automated).
ON_CUSTOMER_REPLY: dict[str, str] = {
    "pending_customer": "in_progress",
    "resolved": "reopened",
    "closed": "reopened",
}


def allowed_targets(status: str) -> tuple[str, ...]:
    return TRANSITIONS.get(status, ())


def can_move(current: str, target: str) -> bool:
    return target in allowed_targets(current)
