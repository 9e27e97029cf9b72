"""The allowed values of the model's string fields (docs/lifecycle.md), in one place."""

from __future__ import annotations

STATUSES = (
    "new",
    "open",
    "in_progress",
    "pending_customer",
    "resolved",
    "closed",
    "reopened",
    "cancelled",
)
PRIORITIES = ("low", "medium", "high", "urgent")
PRIORITY_ALIASES = {"normal": "medium"}
CATEGORIES = (
    "support",
    "technical",
    "billing",
    "sales",
    "complaint",
    "feature_request",
    "account",
    "other",
)
CHANNELS = ("web", "api", "email", "chat", "whatsapp", "phone", "system")
# What an ISP's ticket is about (docs/isp-operations.md), beside its category. Mail,
# chat and the assistant open `general_inquiry` until staff say otherwise.
TICKET_TYPES = (
    "general_inquiry",
    "billing_issue",
    "technical_support",
    "installation_request",
    "outage_report",
    "service_upgrade",
    "service_downgrade",
    "cancellation_request",
    "equipment_issue",
    "speed_issue",
    "network_issue",
    "connectivity_issue",
)
DEFAULT_TICKET_TYPE = TICKET_TYPES[0]
# The services a ticket can affect, stored as a comma-separated subset in this order.
SERVICES = ("internet", "voip", "tv")
# Who opened a ticket, whatever the channel: the customer, an agent for them, an
# assistant's language model (a tool call), or the system (a workflow, a job).
SOURCES = ("customer", "agent", "ai", "system")
ROLES = ("admin", "agent")
# Other systems that call the API for customers, never as staff (docs/integrations.md).
INTEGRATION_KINDS = ("assistant", "chat", "workflow")
# How a customer rated a ticket: the link in the resolution mail, or an assistant's
# `rate_ticket` tool call.
RATING_CHANNELS = ("link", "assistant")
MESSAGE_KINDS = ("reply", "note")
# "sla": a target ran out (helpdesk.sla; recorded once per breach by the SLA check).
HISTORY_FIELDS = (
    "status",
    "assignee",
    "priority",
    "category",
    "sla",
    "ticket_type",
    "team",
    "escalation",
    "merge",
    "link",
    "tags",
    "language",  # the customer's language, set by staff (TicketsService.set_language)
    "deliverable",  # an admin cleared an address's undeliverable mark on the ticket's page
)
# Support levels, first to third (docs/isp-operations.md, "Escalation"); tickets start at L1.
ESCALATION_LEVELS = ("L1", "L2", "L3")
INBOUND_CHANNELS = ("smtp", "imap")
INBOUND_OUTCOMES = (
    "created",
    "appended",
    "quarantined",
    "ignored",
    "rejected",
)
# Where an inbound mail's sender was read, in the order tried (docs/mail-gateway.md),
# with the words staff read; "" on a record means none named one.
SENDER_SOURCES = {
    "from": "From",
    "sender": "Sender",
    "reply-to": "Reply-To",
    "return-path": "Return-Path",
    "envelope": "the SMTP envelope (MAIL FROM)",
}
QUARANTINE_STATES = ("pending", "approved", "rejected", "spam")
# pending → sending (claimed by a sender, see mailgateway.outbound) → sent, then
# possibly bounced; failed (a 5xx, or retried too long) and skipped (never to be
# sent: undeliverable, machine or own address, rate limit) are final.
OUTBOX_STATES = ("pending", "sending", "sent", "failed", "skipped", "bounced")
# What an outbox row announces (docs/outbound-mail.md); each has its templates in
# helpdesk/outbound/templates/mail/. `sla_breach`, `sla_digest` (one SLA check's
# breaches for one recipient in one mail, about no single ticket) and `escalation`
# go to staff, the others to customers; `email_code` (the code that proves a
# WhatsApp customer reads a mailbox, about no ticket) to an address a customer named.
NOTIFICATION_KINDS = (
    "created",
    "reply",
    "status",
    "resolved",
    "sla_breach",
    "escalation",
    "sla_digest",
    "email_code",
)
# Mail that only staff receive: a staff member's mail reply to one of these is about
# the ticket, not to the customer, so it becomes an internal note (a digest's names
# no ticket: docs/outbound-mail.md).
STAFF_NOTIFICATION_KINDS = ("sla_breach", "escalation", "sla_digest")
# The reason the queue's bulk form records with each change: words for the history,
# which staff read, never mailed to the customer as if written to them.
BULK_FORM_REASON = "bulk action"


def unalias(name: str, value: str) -> str:
    """The stored value `value` means for field `name`: `normal` is `medium` (SPEC §4)
    wherever a priority is given, a ticket's or a queue filter's."""
    return PRIORITY_ALIASES.get(value, value) if name == "priority" else value
