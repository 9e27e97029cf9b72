"""Tickets, messages and history as the API's JSON (docs/web.md).

Times are ISO 8601 in UTC with a `Z`; ticket numbers are shown formatted
(`TKT-000078`). Staff appear as `{id, name, email}`.
"""

from __future__ import annotations

from typing import Any

from flask import current_app

from helpdesk import html, lifecycle, service_fields, sla
from helpdesk.auth import current_actor
from helpdesk.clock import iso as when
from helpdesk.clock import now
from helpdesk.extensions import db
from helpdesk.models import Attachment, SatisfactionRating, StaffUser, Ticket, TicketHistory
from helpdesk.numbering import display_number
from helpdesk.services import links, thread


def number(ticket: Ticket) -> str:
    return display_number(ticket.number, current_app.config)


def staff_json(user: StaffUser | None) -> dict[str, Any] | None:
    if user is None:
        return None
    return {"id": user.id, "name": user.name, "email": user.email}


# How much of each description `GET /tickets` carries (docs/web.md): a mail's may be
# 25 MB, and a page of 100 such made an answer of gigabytes. The ticket's own GET
# carries the whole.
LISTED_DESCRIPTION_CHARS = 2_000


def ticket_json(
    ticket: Ticket,
    *,
    detail: bool = False,
    listed: bool = False,
    before: int | None = None,
    description: tuple[str, bool] | None = None,
) -> dict[str, Any]:
    """A ticket as the API shows it; `listed`: as `GET /tickets` lists it, its
    description cut to LISTED_DESCRIPTION_CHARS from `Ticket.description_start`
    (which `QueueService.list_tickets` loads; the whole one is never read).
    `description`: the description already cut, and whether it was (the chat's
    answer, `assistant.answered_description`); the whole one is then never read.
    `detail` carries the first message and the newest `thread.PAGE_SIZE` (older
    than message `before`, when given), as the ticket page shows them, each text,
    and the description, cut to `thread.CHARS_SHOWN` in SQL (the whole at
    `GET /tickets/<number>/messages/<id>`; the description is the first message's)."""
    if description is not None:
        text, cut = description
    elif listed:
        start = ticket.description_start or ""
        text, cut = start[:LISTED_DESCRIPTION_CHARS], len(start) > LISTED_DESCRIPTION_CHARS
    elif detail:
        text, cut = thread.description(db.session, ticket)
    else:
        text, cut = ticket.description, False
    data: dict[str, Any] = {
        "number": number(ticket),
        "subject": ticket.subject,
        "description": text,
        "description_truncated": cut,
        "status": ticket.status,
        "priority": ticket.priority,
        "category": ticket.category,
        "channel": ticket.channel,
        "source": ticket.source,
        "conversation_id": ticket.conversation_id,
        "ticket_type": ticket.ticket_type,
        "service_address": ticket.service_address,
        "affected_services": service_fields.as_list(ticket.affected_services, ","),
        "device_serials": service_fields.as_list(ticket.device_serials, "\n"),
        "is_email_originated": ticket.is_email_originated,
        "requester_email": ticket.requester.email,
        "requester_name": ticket.requester.name,
        "assignee": staff_json(ticket.assignee),
        "team": ticket.team.name if ticket.team else None,
        "tags": [tag.name for tag in ticket.tags],
        "merged_into": number(ticket.merged_into) if ticket.merged_into else None,
        "escalation_level": ticket.escalation_level,
        # The language its customer mail is written in; null until fixed (docs/languages.md).
        "language": ticket.language or None,
        "escalated_at": when(ticket.escalated_at),
        "created_at": when(ticket.created_at),
        "updated_at": when(ticket.updated_at),
        "allowed_transitions": list(lifecycle.allowed_targets(ticket.status)),
        "sla": {
            "state": sla.state(ticket, now()),
            "first_response_due_at": when(ticket.first_response_due_at),
            "first_responded_at": when(ticket.first_responded_at),
            "first_response_breached": ticket.first_response_breached,
            "resolution_due_at": when(ticket.resolution_due_at),
            "resolved_at": when(ticket.resolved_at),
            "resolution_breached": ticket.resolution_breached,
        },
    }
    if detail:
        data.update(
            organization=ticket.organization.name if ticket.organization else None,
            cc=[p.email for p in ticket.participants],
            linked_ticket=number(ticket.linked_ticket) if ticket.linked_ticket else None,
            closed_at=when(ticket.closed_at),
            **_thread_json(ticket, before),
            history=[history_json(h) for h in ticket.history],
            satisfaction=rating_json(ticket.satisfaction, ticket),
            escalated_to=staff_json(ticket.escalated_to),
            related=[
                number(other)
                for other in links.related(
                    db.session, ticket, current_actor(), current_app.config["AGENT_VISIBILITY"]
                )
            ],
        )
    return data


def _thread_json(ticket: Ticket, before: int | None) -> dict[str, Any]:
    """`messages` and how many of the ticket's it left out (`messages_older`, between
    the first and the oldest of the newest; `GET /tickets/<number>?before=<id>` reads
    them), so a ticket of thousands of messages is not an answer of megabytes."""
    page = thread.page(db.session, ticket, before=before)
    return {
        "messages": [message_json(shown) for shown in page.shown],
        "messages_total": page.total,
        "messages_older": page.older,
    }


def rating_json(rating: SatisfactionRating | None, ticket: Ticket) -> dict[str, Any] | None:
    if rating is None:
        return None
    return {
        "rating": rating.rating,
        "comment": rating.comment,
        "via": rating.via,
        # The CC participant who rated, else the requester (docs/integrations.md).
        "rated_by": rating.participant_email or ticket.requester.email,
        "agent": staff_json(rating.agent),
        "rated_at": when(rating.updated_at),
    }


def message_json(shown: thread.Shown) -> dict[str, Any]:
    """A message as `shown`: whole (`thread.Shown.whole`), or cut as a thread shows it."""
    message = shown.message
    return {
        "id": message.id,
        "kind": message.kind,
        "author": message.author_label,
        "author_type": (
            "staff" if message.author_staff_id else "customer" if message.author_contact_id else "system"
        ),
        "channel": message.channel,
        "body": shown.body,
        "body_truncated": shown.body_truncated,
        # Sanitized when stored, and again here as the portal does when it shows it,
        # so rows an older version stored are served clean too (docs/security.md).
        "body_html": html.clean(shown.body_html) if shown.body_html else shown.body_html,
        "body_html_truncated": shown.body_html_truncated,
        "created_at": when(message.created_at),
        "attachments": [attachment_json(a) for a in message.attachments],
    }


def attachment_json(attachment: Attachment) -> dict[str, Any]:
    return {
        "id": attachment.id,
        "filename": attachment.filename,
        "content_type": attachment.content_type,
        "size": attachment.size,
        "inline": attachment.is_inline,
    }


def history_json(row: TicketHistory) -> dict[str, Any]:
    return {
        "field": row.field,
        "from": row.old_value,
        "to": row.new_value,
        "actor": row.actor_label,
        "reason": row.reason,
        "automated": row.automated,
        "created_at": when(row.created_at),
    }
