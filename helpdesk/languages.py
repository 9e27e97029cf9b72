"""The languages customers are written to in, and the words they read for a
ticket's status, priority and category in each (docs/integrations.md, "Languages").

A customer reads their contact's language, else `DEFAULT_LANGUAGE`; a language
there are no texts in falls back to English rather than failing. Every value of
helpdesk.vocabulary has its words in every language here (tests/test_chat.py
checks), so a lookup never misses. Mail is still English only and uses the
English words.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from helpdesk.models import Contact

LANGUAGES = ("en", "es")
FALLBACK = "en"

STATUS_LABELS = {
    "en": {
        "new": "New",
        "open": "Open",
        "in_progress": "In progress",
        "pending_customer": "Waiting for your answer",
        "resolved": "Resolved",
        "closed": "Closed",
        "reopened": "Reopened",
        "cancelled": "Cancelled",
    },
    "es": {
        "new": "Nuevo",
        "open": "Abierto",
        "in_progress": "En progreso",
        "pending_customer": "Esperando tu respuesta",
        "resolved": "Resuelto",
        "closed": "Cerrado",
        "reopened": "Reabierto",
        "cancelled": "Cancelado",
    },
}
PRIORITY_LABELS = {
    "en": {"low": "Low", "medium": "Medium", "high": "High", "urgent": "Urgent"},
    "es": {"low": "Baja", "medium": "Media", "high": "Alta", "urgent": "Urgente"},
}
CATEGORY_LABELS = {
    "en": {
        "support": "Support",
        "technical": "Technical support",
        "billing": "Billing",
        "sales": "Sales",
        "complaint": "Complaint",
        "feature_request": "Feature request",
        "account": "Account",
        "other": "Other",
    },
    "es": {
        "support": "Soporte",
        "technical": "Soporte técnico",
        "billing": "Facturación",
        "sales": "Ventas",
        "complaint": "Queja",
        "feature_request": "Sugerencia",
        "account": "Cuenta",
        "other": "Otro",
    },
}


def of_contact(contact: Contact, config: Mapping[str, Any]) -> str:
    """The language to write to this customer in: theirs, else the configured
    default, else English (a default no texts exist in must not break a reply)."""
    language = contact.language or config["DEFAULT_LANGUAGE"]
    return language if language in LANGUAGES else FALLBACK
