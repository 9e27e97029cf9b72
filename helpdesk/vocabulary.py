"""The allowed values of the model's string fields (SPEC §4), in one place."""
from __future__ import annotations

STATUSES = (
    "new", "open", "in_progress", "pending_customer", "resolved", "closed",
    "reopened", "cancelled",
)
PRIORITIES = ("low", "medium", "high", "urgent")
PRIORITY_ALIASES = {"normal": "medium"}
CATEGORIES = (
    "support", "technical", "billing", "sales", "complaint", "feature_request",
    "account", "other",
)
CHANNELS = ("web", "api", "email", "chat", "system")
ROLES = ("admin", "agent")
MESSAGE_KINDS = ("reply", "note")
HISTORY_FIELDS = ("status", "assignee", "priority", "category")
INBOUND_CHANNELS = ("smtp", "imap")
INBOUND_OUTCOMES = (
    "created", "appended", "quarantined", "ignored", "rejected",
)
QUARANTINE_STATES = ("pending", "approved", "rejected", "spam")
OUTBOX_STATES = ("pending", "sent", "failed", "skipped")
