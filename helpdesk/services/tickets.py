"""TicketsService: the only way to open a ticket, add a message or change one.

Every channel (portal, API, SMTP, IMAP, CLI) calls it, so the rules — numbering,
the transition table, history rows, customer-reply moves — hold everywhere. It
flushes but never commits: the caller's transaction decides. `open_ticket` takes
the ticket's number, which locks the counter until commit, so the caller should
commit right after it (see `helpdesk.numbering`).

Every change to an existing ticket first locks its row and reloads it
(`lock_for_change`), so two changes at once run one after the other and the second
is judged against the first one's result (docs/lifecycle.md, "Concurrent changes").
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from config import LANGUAGES, Config
from helpdesk import addresses, inputs, lifecycle, numbering, service_fields, sla
from helpdesk import vocabulary as v
from helpdesk.clock import now
from helpdesk.database import adopt
from helpdesk.errors import Conflict, InvalidTransition, NotFound, TicketCancelled, ValidationError
from helpdesk.inputs import echoed, has_control, positive_int, unstorable
from helpdesk.models import (
    AssistantCall,
    Attachment,
    ChatConversation,
    Contact,
    IdempotencyKey,
    InboundMail,
    Message,
    OutboxMessage,
    Participant,
    QuarantineItem,
    StaffUser,
    Team,
    Ticket,
    TicketHistory,
)
from helpdesk.services import contacts, history, notifications, teams, visibility
from helpdesk.services.actors import Actor

MAX_SUBJECT = 500
MAX_NAME = 200
MAX_REASON = 2000
# Merges cannot loop, and a merge moves the tickets merged into the merged one to its
# survivor, so a stored chain is one step long; this bounds the walk over a session's
# older copies and the retries of `lock_with_survivor`.
MAX_MERGE_CHAIN = 20
# Escalation works on tickets someone is still working on.
UNESCALATED_STATUSES = ("resolved", "closed", "cancelled")


@dataclass(frozen=True)
class NewAttachment:
    """A file to store with a message; `filename` must already be safe."""

    filename: str
    content_type: str
    data: bytes
    content_id: str | None = None
    is_inline: bool = False

    def row(self) -> dict[str, Any]:
        """The `attachments` columns, without the message it belongs to."""
        return dict(
            filename=self.filename,
            content_type=self.content_type,
            size=len(self.data),
            sha256=hashlib.sha256(self.data).hexdigest(),
            content_id=self.content_id,
            is_inline=self.is_inline,
            data=self.data,
        )


class TicketsService:
    def __init__(
        self,
        session: Session,
        *,
        prefix: str = "TKT-",
        width: int = 6,
        sla_policy: sla.Policy = sla.DEFAULT_POLICY,
        visibility_mode: str = "all",
        max_cc: int = Config.MAX_CC_PARTICIPANTS,
    ) -> None:
        """`max_cc`: the most CC addresses a new ticket takes (`open_ticket`), the cap
        mail's To/Cc have (MAX_CC_PARTICIPANTS)."""
        self.session = session
        self.prefix = prefix
        self.width = width
        self.sla = sla_policy
        self.visibility_mode = visibility_mode
        self.max_cc = max_cc

    @classmethod
    def from_config(cls, session: Session, config: Any) -> TicketsService:
        return cls(
            session,
            prefix=config["TICKET_PREFIX"],
            width=config["TICKET_NUMBER_WIDTH"],
            sla_policy=sla.policy_from_config(config),
            visibility_mode=config["AGENT_VISIBILITY"],
            max_cc=config["MAX_CC_PARTICIPANTS"],
        )

    # -- numbers -------------------------------------------------------------

    def display_number(self, ticket: Ticket) -> str:
        if ticket.number is None:
            raise ValueError("ticket has no number before its creation is complete")
        return numbering.format_number(ticket.number, self.prefix, self.width)

    def get(self, number_text: str | int, *, viewer: Actor | None = None) -> Ticket:
        """Find a ticket by number as a person types it (`tkt-78`, `[TKT-000078]`).

        With a `viewer`, a ticket they may not see (`visibility`) is not found either.
        """
        number = (
            number_text
            if isinstance(number_text, int)
            else numbering.parse_number(str(number_text), self.prefix)
        )
        ticket = None
        if number is not None and number > 0:
            query = visibility.restrict(
                self.session, select(Ticket).where(Ticket.number == number), viewer, self.visibility_mode
            )
            ticket = self.session.execute(query).scalar_one_or_none()
        if ticket is None:
            if isinstance(number_text, int):  # our own number (an idempotency key's replay): as shown
                raise NotFound(f"No ticket {numbering.format_number(number_text, self.prefix, self.width)}.")
            raise NotFound(f"No ticket {echoed(number_text)}.")  # caller text: cleaned, cut
        return ticket

    def lock_numbers(self, numbers: Iterable[object], *, viewer: Actor | None = None) -> None:
        """Lock the tickets named (as `get` reads numbers; others are ignored) for
        change, in id order: a caller about to change several tickets takes them all
        first, so two such callers cannot each hold one the other waits for.

        With a `viewer`, only those they may see are locked, decided in the same
        statement (`visibility.in_statement`): a ticket hidden from them is left
        alone for others to change while the caller works through the rest."""
        wanted = {
            number
            for number in (
                n if isinstance(n, int) else numbering.parse_number(str(n), self.prefix) for n in numbers
            )
            if number is not None and number > 0
        }
        if wanted:
            _lock(
                self.session, Ticket.number.in_(wanted), visibility.in_statement(viewer, self.visibility_mode)
            )

    def lock_seen(self, actor: Actor, *tickets: Ticket) -> None:
        """Lock the tickets for change (`lock_for_change`) as long as `actor` may see
        them, decided in the lock's own statement: one moved out of their sight since
        they read it (to another team, or to a colleague under `own`) is not locked and
        is NotFound, as `get` answers for a ticket they may not see (docs/isp-operations.md,
        "Visibility"). Checked only when the ticket was read, before its lock, a change
        an admin committed in between was no obstacle: the agent changed a ticket they
        could no longer open."""
        locked = lock_for_change(
            self.session, *tickets, within=visibility.in_statement(actor, self.visibility_mode)
        )
        for ticket in tickets:
            if ticket.id not in locked:
                raise NotFound(f"No ticket {self.display_number(ticket)}.")

    # -- creation ------------------------------------------------------------

    def open_ticket(
        self,
        *,
        subject: str,
        description: str,
        requester_email: str,
        channel: str,
        actor: Actor,
        requester_name: str = "",
        priority: str | None = None,
        category: str | None = None,
        is_email_originated: bool = False,
        organization_id: int | None = None,
        assignee_id: int | None = None,
        cc: Iterable[tuple[str, str]] = (),
        linked_ticket: Ticket | None = None,
        body_html: str | None = None,
        inbound_mail_id: int | None = None,
        attachments: Sequence[NewAttachment] = (),
        acknowledge: bool = True,
        source: str | None = None,
        conversation_id: str | None = None,
        chat_conversation: int | None = None,
        assistant_call: int | None = None,
        idempotency_key: int | None = None,
        ticket_type: str | None = None,
        service_address: object = "",
        affected_services: object = (),
        device_serials: object = (),
        team: str | None = None,
        note: tuple[Actor, str] | None = None,
        description_required: bool = True,
        requester_is_contact: bool = False,
    ) -> Ticket:
        """Store a new ticket with its first message and give it the next number.

        The first message keeps the request as it arrived (for a mail: the raw-mail
        reference and sanitized HTML); `description` is its text. The requester's
        acknowledgment is queued in the same statement as the ticket, so it costs
        the locked counter row nothing (see `helpdesk.numbering`); `acknowledge`
        False leaves it out (mail a mailing list distributed: docs/mail-gateway.md).
        `source` says who opened it (`v.SOURCES`); unsaid, the actor does: a customer,
        an agent, or the system. The service fields are read by `service_fields`
        from whatever shape the channel has (form text or JSON lists). The ticket
        goes to the `team` named, else to the one its type routes to (`teams`).
        `chat_conversation` is the id of the `chat_conversations` row the caller
        claimed for it (`services.chat.claim`), pointed at the ticket as a mail is;
        `assistant_call` likewise the `assistant_calls` row (`services.assistant`),
        and `idempotency_key` the `idempotency_keys` row of an API call
        (`services.idempotency.claim`).
        `note` is an internal note (its author, its text) written right after the
        first message, in the same statement: the mail gateway's for staff on what it
        left out of the mail (docs/mail-gateway.md, "What is stored").

        A subject or a description with nothing to read (only spaces, control or
        invisible characters: `inputs.nothing_to_read`) is none, whatever the
        channel: "is required". `description_required` False takes one that says
        nothing (a chat's transcript, whose subject stands in: docs/integrations.md).

        The requester's and the CCs' addresses are read by `_address`: as written
        when they come from a mail (`is_email_originated`), else as
        `addresses.named` takes an address someone names (an address literal is
        refused, a fullwidth domain folded). `requester_is_contact` says the
        requester's address is a contact's already (a chat's, the assistant's, a
        workflow's customer named by id): taken as stored, that contact.
        """
        errors: dict[str, str] = {}
        # As mail's subjects are: one line, no controls; one showing nothing is none.
        subject = inputs.readable_line(subject or "")
        if not subject:
            errors["subject"] = "is required"
        elif len(subject) > MAX_SUBJECT:
            errors["subject"] = f"must be at most {MAX_SUBJECT} characters"
        if not isinstance(description, str) or unstorable(description):
            errors["description"] = "must be text"
        elif description_required and inputs.nothing_to_read(description):
            errors["description"] = "is required"
        else:
            description = inputs.without_tags(description)  # hidden text (docs/security.md)
        if note is not None and (not note[1].strip() or unstorable(note[1])):
            errors["body"] = "must be text"
        email = addresses.normalize(requester_email)
        if not email:
            errors["requester_email"] = "is required"
        else:
            named = (
                _address(email, as_written=True)
                if is_email_originated or requester_is_contact
                else contacts.named_address(self.session, email)
            )
            if named is None:
                errors["requester_email"] = addresses.INVALID
            email = named or ""
        if len(requester_name or "") > MAX_NAME:
            errors["requester_name"] = f"must be at most {MAX_NAME} characters"
        priority = self._check_choice("priority", priority or "medium", errors)
        category = self._check_choice("category", category or "support", errors)
        if channel not in v.CHANNELS:
            errors["channel"] = f"must be one of {', '.join(v.CHANNELS)}"
        source = source or _source_of(actor)
        if source not in v.SOURCES:
            errors["source"] = f"must be one of {', '.join(v.SOURCES)}"
        if assignee_id is not None:
            self._check_assignee(assignee_id, errors)
        service = dict(
            ticket_type=service_fields.ticket_type(ticket_type or v.DEFAULT_TICKET_TYPE, errors),
            service_address=service_fields.service_address(service_address, errors),
            affected_services=service_fields.affected_services(affected_services, errors),
            device_serials=service_fields.device_serials(device_serials, errors),
        )
        cc = list(cc)
        if len(cc) > self.max_cc:
            # Each public reply mails every participant, naming the others: N outbox
            # rows of N - 1 addresses. Mail cuts its To/Cc to the same cap; a caller
            # naming more is refused, its addresses not even read.
            errors["cc"] = f"must be at most {self.max_cc} addresses"
            cc = []
        # A stand-in address (a WhatsApp customer's, `…@phone.invalid`) is never a
        # CC of a new ticket: whoever takes part reaches the ticket by that number,
        # and anyone can write one into a mail's Cc (docs/integrations.md).
        cc = [(address, name) for address, name in cc if not addresses.is_reserved_invalid(address)]
        participants = self._participants(cc, (email,), errors, as_written=is_email_originated)
        team_id = self._team_id(team, errors) if team is not None else None
        if errors:
            raise ValidationError(errors)
        if team is None:
            team_id = teams.route(self.session, service["ticket_type"])

        requester = self._contact(email, requester_name)
        if actor.is_customer and actor.email == email:
            contacts.heard_from(self.session, requester, channel)
        created = now()
        first_due, resolution_due = self.sla.due_times(priority, created)
        values: dict[str, Any] = dict(
            subject=subject,
            description=description,
            status="new",
            priority=priority,
            category=category,
            channel=channel,
            source=source,
            conversation_id=conversation_id,
            **service,
            is_email_originated=is_email_originated,
            requester_id=requester.id,
            organization_id=organization_id or requester.organization_id,
            assignee_id=assignee_id,
            team_id=team_id,
            linked_ticket_id=linked_ticket.id if linked_ticket else None,
            created_at=created,
            updated_at=created,
            first_response_due_at=first_due,
            resolution_due_at=resolution_due,
            first_responded_at=None,
            first_response_breached=None,
            resolution_breached=None,
            pending_since=None,
            pending_seconds=0,
            resolved_at=None,
            closed_at=None,
            last_customer_reply_at=None,
        )
        message = dict(
            kind="reply",
            author_staff_id=actor.staff_id,
            author_contact_id=requester.id if actor.is_customer else None,
            author_label=actor.label,
            channel=channel,
            body=description,
            body_html=body_html,
            inbound_mail_id=inbound_mail_id,
            created_at=created,
        )
        history = dict(
            field="status",
            old_value=None,
            new_value="new",
            actor_staff_id=actor.staff_id,
            actor_label=actor.label,
            reason=f"created via {channel}",
            automated=False,
            created_at=created,
        )
        dependents = [(Message.__table__, message), (TicketHistory.__table__, history)]
        for cc_email, cc_name in participants:
            dependents.append((Participant.__table__, dict(email=cc_email, name=cc_name)))
        # To the requester as their contact is stored, which may be the other spelling
        # of the address given (`notifications.acknowledgment`).
        acknowledgment = notifications.acknowledgment(requester.email, actor) if acknowledge else None
        if acknowledgment is not None:
            dependents.append((OutboxMessage.__table__, acknowledgment))
        # The inbound mail it came from is pointed at the ticket in the same statement:
        # nothing may run between taking the number and the caller's commit.
        linked = [(InboundMail.__table__, inbound_mail_id)] if inbound_mail_id else []
        if chat_conversation is not None:
            linked.append((ChatConversation.__table__, chat_conversation))
        if assistant_call is not None:
            linked.append((AssistantCall.__table__, assistant_call))
        if idempotency_key is not None:
            linked.append((IdempotencyKey.__table__, idempotency_key))
        following = []
        if note is not None:
            author, body = note
            following.append(
                (
                    Message.__table__,
                    dict(message, kind="note", author_staff_id=author.staff_id, author_contact_id=None)
                    | dict(author_label=author.label, body=body, body_html=None, inbound_mail_id=None),
                )
            )
        ticket_id, number = numbering.insert_numbered(
            self.session,
            values,
            dependents,
            linked,
            [(Attachment.__table__, item.row()) for item in attachments],
            following,
        )
        return self._persistent(Ticket(id=ticket_id, number=number, **values), requester)

    # -- messages ------------------------------------------------------------

    def add_message(
        self,
        ticket: Ticket,
        *,
        body: str,
        actor: Actor,
        channel: str,
        internal: bool = False,
        body_html: str | None = None,
        inbound_mail_id: int | None = None,
        attachments: Sequence[NewAttachment] = (),
    ) -> Message:
        """Append a public reply or an internal note; the message returned names the
        ticket it was written on.

        A customer's reply moves `pending_customer → in_progress` and
        `resolved`/`closed → reopened` (automated); the first public staff reply
        marks the first response and, like every public staff reply, is queued for
        the requester and the CC participants (`services.notifications`).

        A customer's message to a merged ticket is written on its survivor, judged
        under the lock: a merge committed after the caller read the ticket must not
        reopen the merged one (docs/lifecycle.md, "Concurrent changes"), whichever
        channel it came by. Staff write on the ticket they name, merged or not.
        """
        if not isinstance(body, str) or inputs.nothing_to_read(body):  # only invisible characters: none
            raise ValidationError({"body": "is required"})
        if unstorable(body) or unstorable(body_html):  # a NUL: PostgreSQL refuses it
            raise ValidationError({"body": "must be text"})
        body = inputs.without_tags(body)  # hidden text for the assistant (docs/security.md)
        if internal and actor.is_customer:
            raise ValidationError({"internal": "customers cannot write internal notes"})
        if actor.is_customer:
            ticket = lock_with_survivor(self.session, ticket)
        else:
            self.lock_seen(actor, ticket)
        if ticket.status == "cancelled" and not internal:
            raise TicketCancelled()
        created = now()
        contact_id = None
        if actor.is_customer and actor.email:
            # Most replies come from the requester, who is loaded with the ticket (in
            # any spelling of an internationalised domain, `contacts.by_email`).
            requester = ticket.requester
            contact = (
                requester
                if requester is not None
                and requester.email in addresses.either_form(addresses.normalize(actor.email))
                else self._contact(actor.email, "")
            )
            contacts.heard_from(self.session, contact, channel)
            contact_id = contact.id
        elif actor.is_staff and channel == "email" and actor.email:
            # The gateway writes as staff only with proof the mail is theirs: their
            # mailbox works (docs/outbound-mail.md, "Loop rules").
            contacts.clear_undeliverable(self.session, actor.email, actor)
        message = Message(
            ticket_id=ticket.id,
            kind="note" if internal else "reply",
            author_staff_id=actor.staff_id,
            author_contact_id=contact_id,
            author_label=actor.label,
            channel=channel,
            body=body,
            body_html=body_html,
            inbound_mail_id=inbound_mail_id,
            created_at=created,
        )
        self.session.add(message)
        if attachments:
            self.session.flush()
            self._store_attachments(message.id, attachments)
        if actor.is_customer:
            ticket.last_customer_reply_at = created
            target = lifecycle.ON_CUSTOMER_REPLY.get(ticket.status)
            if target:
                self._move(ticket, target, actor, "customer replied", automated=True)
        elif actor.is_staff and not internal and ticket.first_responded_at is None:
            sla.record_first_response(ticket, created)
        ticket.updated_at = created
        notifications.queue_reply(self.session, ticket, message, actor)
        self.session.flush()
        return message

    # -- changes -------------------------------------------------------------

    def change_status(
        self,
        ticket: Ticket,
        target: str,
        *,
        actor: Actor,
        reason: str = "",
        automated: bool = False,
    ) -> Ticket:
        if target not in v.STATUSES:
            raise ValidationError({"status": f"must be one of {', '.join(v.STATUSES)}"})
        problem = _reason_problem(reason)
        if problem:
            raise ValidationError({"reason": problem})
        self.lock_seen(actor, ticket)
        self._refuse_merged(ticket)
        if not lifecycle.can_move(ticket.status, target):
            raise InvalidTransition(ticket.status, target, lifecycle.allowed_targets(ticket.status))
        old = ticket.status
        self._move(ticket, target, actor, reason, automated)
        notifications.queue_status_change(
            self.session, ticket, old, target, actor=actor, reason=reason, automated=automated
        )
        self.session.flush()
        return ticket

    def mark_viewed(self, ticket: Ticket, *, actor: Actor) -> bool:
        """An agent opening a `new` ticket moves it to `open` (automated, docs/lifecycle.md)."""
        if ticket.status != "new" or not actor.is_staff:
            return False  # every view of a ticket but its first takes no lock
        self.lock_seen(actor, ticket)
        if ticket.status != "new":  # another agent opened it a moment ago
            return False
        self._move(ticket, "open", actor, "opened by an agent", automated=True)
        self.session.flush()
        return True

    def update(
        self,
        ticket: Ticket,
        *,
        actor: Actor,
        priority: str | None = None,
        category: str | None = None,
        assignee_id: int | None | str = "unchanged",
        ticket_type: str | None = None,
        service_address: object = None,
        affected_services: object = None,
        device_serials: object = None,
        team: str | None = None,
    ) -> Ticket:
        """Change priority, category, assignee (`assignee_id=None` unassigns), the
        ticket type, the service fields and/or the team (a name; "" for none);
        None leaves a field as it is."""
        errors: dict[str, str] = {}
        if priority is not None:
            priority = self._check_choice("priority", priority, errors)
        if category is not None:
            category = self._check_choice("category", category, errors)
        if assignee_id not in ("unchanged", None):
            self._check_assignee(assignee_id, errors)
        if ticket_type is not None:
            ticket_type = service_fields.ticket_type(ticket_type, errors)
        team_id = self._team_id(team, errors) if team else None
        service: dict[str, str] = {}
        for name, value, read in (
            ("service_address", service_address, service_fields.service_address),
            ("affected_services", affected_services, service_fields.affected_services),
            ("device_serials", device_serials, service_fields.device_serials),
        ):
            if value is not None:
                service[name] = read(value, errors)
        if errors:
            raise ValidationError(errors)
        self.lock_seen(actor, ticket)
        if ticket_type is not None and ticket_type != ticket.ticket_type:
            history.record(self.session, ticket.id, "ticket_type", ticket.ticket_type, ticket_type, actor)
            ticket.ticket_type = ticket_type
        for name, stored in service.items():
            setattr(ticket, name, stored)
        if team is not None and team_id != ticket.team_id:
            new_team = self.session.get(Team, team_id) if team_id is not None else None
            history.record(
                self.session,
                ticket.id,
                "team",
                ticket.team.name if ticket.team else None,
                new_team.name if new_team else None,
                actor,
            )
            ticket.team_id = team_id
            ticket.team = new_team
        if priority is not None and priority != ticket.priority:
            history.record(self.session, ticket.id, "priority", ticket.priority, priority, actor)
            ticket.priority = priority
            self._set_due_times(ticket)
        if category is not None and category != ticket.category:
            history.record(self.session, ticket.id, "category", ticket.category, category, actor)
            ticket.category = category
        if assignee_id != "unchanged" and assignee_id != ticket.assignee_id:
            old = ticket.assignee.email if ticket.assignee else None
            new_user = self.session.get(StaffUser, assignee_id) if assignee_id else None
            history.record(
                self.session, ticket.id, "assignee", old, new_user.email if new_user else None, actor
            )
            ticket.assignee_id = assignee_id  # type: ignore[assignment]
            ticket.assignee = new_user
        ticket.updated_at = now()
        self.session.flush()
        return ticket

    def escalate(
        self,
        ticket: Ticket,
        level: object,
        *,
        actor: Actor,
        reason: object,
        assignee_id: int | None | str = "unchanged",
    ) -> Ticket:
        """Raise the ticket to a higher support level (docs/isp-operations.md,
        "Escalation"), optionally handing it to someone at that level, who is told
        by mail. Escalation only goes up, and only while the ticket is being worked
        on; the reason is required, since the next level starts by reading it."""
        errors: dict[str, str] = {}
        if level not in v.ESCALATION_LEVELS:
            errors["level"] = f"must be one of {', '.join(v.ESCALATION_LEVELS)}"
        problem = _reason_problem(reason, required=True)
        if problem:
            errors["reason"] = problem
        if assignee_id not in ("unchanged", None):
            self._check_assignee(assignee_id, errors)
        if errors:
            raise ValidationError(errors)
        level, reason = str(level), str(reason).strip()
        self.lock_seen(actor, ticket)
        self._refuse_merged(ticket)
        number = self.display_number(ticket)
        if ticket.status in UNESCALATED_STATUSES:
            raise Conflict(f"{number} is {ticket.status.replace('_', ' ')}; only open tickets are escalated.")
        if v.ESCALATION_LEVELS.index(level) <= v.ESCALATION_LEVELS.index(ticket.escalation_level):
            raise Conflict(f"{number} is already at {ticket.escalation_level}; escalation only goes up.")
        if assignee_id != "unchanged":
            self.update(ticket, actor=actor, assignee_id=assignee_id)
        moment = now()
        history.record(
            self.session,
            ticket.id,
            "escalation",
            ticket.escalation_level,
            level,
            actor,
            reason,
            moment=moment,
        )
        old_level, ticket.escalation_level = ticket.escalation_level, level
        ticket.escalated_at = moment
        ticket.escalated_to_id = ticket.assignee_id if assignee_id != "unchanged" else None
        ticket.updated_at = moment
        if ticket.escalated_to_id is not None:
            notifications.queue_escalation(self.session, ticket, old_level, actor, reason)
        self.session.flush()
        return ticket

    def merge(self, source: Ticket, target: Ticket, *, actor: Actor, reason: object = "") -> Ticket:
        """Merge `source` into `target` (docs/isp-operations.md, "Merge and links")
        and return the survivor: `target`, or the ticket it was itself merged into.

        The merged ticket closes pointing at the survivor; its requester and CC
        participants become CC participants of the survivor, so they keep hearing
        about it, their later mail is theirs to write there and their assistant or
        chat reaches it (a customer known by phone only as well). Both tickets get a
        history row; messages stay where they were written, numbers are untouched.
        The tickets merged into `source` before point at the survivor from now on,
        each with a history row: no merged ticket is more than one step from the
        ticket that carries on for it (docs/isp-operations.md).
        """
        problem = _reason_problem(reason)
        if problem:
            raise ValidationError({"reason": problem})
        assert isinstance(reason, str)
        named = target
        # The survivor is changed too, and so are the tickets merged into the source;
        # locked in the same id-ordered statement as both tickets named, never after
        # them (docs/lifecycle.md).
        target = lock_with_survivor(self.session, named, source, followers_of=source)
        seen = visibility.in_statement(actor, self.visibility_mode)
        if seen is not None:
            # Both tickets named, and the survivor, as the actor may see them now that
            # they are held (`lock_seen`): locked again, in a statement that waits for
            # nothing. The survivor of a ticket the actor sees may be one they may not:
            # it does not exist for them, so neither does the merge (docs/isp-operations.md).
            locked = lock_for_change(self.session, source, named, target, within=seen)
            for ticket in (source, named):
                if ticket.id not in locked:
                    raise NotFound(f"No ticket {self.display_number(ticket)}.")
            if target.id not in locked:
                raise NotFound(f"No ticket {self.display_number(named)} to merge into.")
        merged, into = self.display_number(source), self.display_number(target)
        if source.merged_into_id is not None:
            raise Conflict(
                f"{merged} is already merged into {self.display_number(survivor(self.session, source))}."
            )
        if source.id == target.id:
            raise Conflict(f"{merged} cannot be merged into itself.")
        if "cancelled" in (source.status, target.status):
            raise Conflict("A cancelled ticket is final; it cannot be merged or merged into.")
        moment = now()
        people = [(source.requester.email, source.requester.name)]
        people += [(participant.email, participant.name) for participant in source.participants]
        for email, name in people:
            # A customer known by phone only joins under their stand-in address too:
            # it is never mailed (the outbox skips it), but taking part is also who
            # reaches the survivor by the merged number (`contacts.tickets_of`).
            self.add_participant(target, email, name)
        reason = reason.strip()
        history.record(
            self.session,
            source.id,
            "merge",
            None,
            into,
            actor,
            f"merged into {into}. {reason}".strip(),
            moment=moment,
        )
        history.record(
            self.session,
            target.id,
            "merge",
            None,
            merged,
            actor,
            f"{merged} merged into this ticket. {reason}".strip(),
            moment=moment,
        )
        if source.status != "closed":
            self._move(source, "closed", actor, f"merged into {into}", automated=False)
        source.merged_into_id = target.id
        source.updated_at = target.updated_at = moment
        for follower in _merged_into(self.session, source):  # locked above
            history.record(
                self.session,
                follower.id,
                "merge",
                merged,
                into,
                actor,
                f"{merged} merged into {into}.",
                moment=moment,
            )
            follower.merged_into_id = target.id
            follower.updated_at = moment
        _held_mail_follows(self.session, source, target)
        self.session.flush()
        return target

    def set_language(self, ticket: Ticket, language: object, *, actor: Actor) -> Ticket:
        """The language staff say the customer reads (docs/languages.md): the ticket's
        mail thread goes on in it, and so does whatever else is written to the
        requester (their contact's). The ticket's history records the change."""
        if not isinstance(language, str) or language not in LANGUAGES:
            raise ValidationError({"language": f"must be one of {', '.join(LANGUAGES)}"})
        self.lock_seen(actor, ticket)
        requester = ticket.requester
        if language == ticket.language and language == requester.language:
            return ticket
        if language != ticket.language:
            history.record(self.session, ticket.id, "language", ticket.language or None, language, actor)
            ticket.language = language
            ticket.updated_at = now()
        requester.language = language
        self.session.flush()
        return ticket

    def assign(self, ticket: Ticket, assignee_id: int | None, *, actor: Actor) -> Ticket:
        return self.update(ticket, actor=actor, assignee_id=assignee_id)

    def add_participant(self, ticket: Ticket, email: str, name: str = "") -> None:
        there = [ticket.requester.email, *(p.email for p in ticket.participants)]
        errors: dict[str, str] = {}
        # Addresses a ticket already had (a merge moves them): kept as they are.
        found = self._participants([(email, name)], there, errors, as_written=True)
        if errors:
            raise ValidationError(errors)
        for address, display in found:
            ticket.participants.append(Participant(ticket_id=ticket.id, email=address, name=display))
        self.session.flush()

    # -- internals -----------------------------------------------------------

    def _move(self, ticket: Ticket, target: str, actor: Actor, reason: str, automated: bool) -> None:
        moment = now()
        history.record(
            self.session, ticket.id, "status", ticket.status, target, actor, reason, automated, moment
        )
        # The resolution clock stands still while the ticket waits for the customer
        # and while it is resolved or closed (helpdesk.sla): resume it by pushing the
        # resolution due time back by the paused time. Pushed, not computed again from
        # the priority: one the SLA check raised sets no tighter target (a low ticket
        # raised to medium got medium's 3 days for its 7 and breached again;
        # docs/lifecycle.md).
        paused_since = None
        if ticket.status == sla.WAITING and ticket.pending_since is not None:
            paused_since, ticket.pending_since = ticket.pending_since, None
        elif target == "reopened" and ticket.resolved_at is not None:
            paused_since = ticket.resolved_at
        if paused_since is not None:
            paused = timedelta(seconds=int(self.sla.clock_time(paused_since, moment).total_seconds()))
            ticket.pending_seconds = (ticket.pending_seconds or 0) + int(paused.total_seconds())
            if ticket.resolution_due_at is None:
                self._set_due_times(ticket)
            else:
                ticket.resolution_due_at = self.sla.add(ticket.resolution_due_at, paused)
        if target == sla.WAITING:
            ticket.pending_since = moment
        if target == "resolved":
            ticket.resolved_at = moment
            sla.record_resolution(ticket, moment)
        if target == "closed":
            ticket.closed_at = moment
        if target == "reopened":
            ticket.resolved_at = None
            ticket.closed_at = None
            sla.record_reopening(ticket)
        ticket.status = target
        ticket.updated_at = moment

    def _set_due_times(self, ticket: Ticket) -> None:
        """Due times from the creation time, the priority's targets and the paused time."""
        ticket.first_response_due_at, ticket.resolution_due_at = self.sla.due_times(
            ticket.priority, ticket.created_at, timedelta(seconds=ticket.pending_seconds or 0)
        )

    def _check_choice(self, name: str, value: Any, errors: dict[str, str]) -> str:
        allowed = {"priority": v.PRIORITIES, "category": v.CATEGORIES}[name]
        if not isinstance(value, str):
            errors[name] = "must be text"
            return ""
        value = v.unalias(name, value.strip().lower())
        if value not in allowed:
            errors[name] = f"must be one of {', '.join(allowed)}"
        return value

    def _team_id(self, name: object, errors: dict[str, str]) -> int | None:
        team_id = teams.team_id(self.session, name, lock=True)
        if team_id is None:
            errors["team"] = "is not a team"
        return team_id

    def _refuse_merged(self, ticket: Ticket) -> None:
        """A merged ticket lives on as its survivor: its status and level stay as the
        merge left them (reopened, it was worked as a live ticket while its mail went
        to the survivor; docs/isp-operations.md)."""
        if ticket.merged_into_id is not None:
            into = self.display_number(survivor(self.session, ticket))
            raise Conflict(f"{self.display_number(ticket)} is already merged into {into}.")

    def _check_assignee(self, assignee_id: Any, errors: dict[str, str]) -> None:
        valid_id = isinstance(assignee_id, int) and positive_int(assignee_id) is not None
        user = self.session.get(StaffUser, assignee_id) if valid_id else None
        if user is None or not user.is_active:
            errors["assignee"] = "is not an active staff member"

    def _contact(self, email: str, name: str) -> Contact:
        return contacts.find_or_create(self.session, email, name)

    def _participants(
        self,
        cc: Iterable[tuple[str, str]],
        there: Iterable[str],
        errors: dict[str, str],
        *,
        as_written: bool,
    ) -> list[tuple[str, str]]:
        """Distinct CC addresses other than those `there` already (the requester's,
        the ticket's participants'), read as `_address` reads them. Distinct as
        mailboxes (`addresses.one_spelling_each`: as the relay is given them), so a
        Cc naming `bob@bücher.example` and `bob@xn--bcher-kva.example`, or
        `bob@ｂücher.example` in fullwidth letters, makes one participant, not two
        mailed each reply. One that is no address is refused (in `errors`) with the message
        every channel gives; a CC's display name is only shown, so a long one is
        cut to its column rather than refused."""
        found: dict[str, str] = {}
        for given, name in cc:
            address = _address(addresses.normalize(given), as_written=as_written)
            if address is None:
                errors["cc"] = f"{addresses.normalize(given)[:100]!r} {addresses.INVALID}"
            else:
                found.setdefault(address, addresses.display_name(name)[:MAX_NAME])
        return [(address, found[address]) for address in addresses.one_spelling_each(found, there)]

    def _store_attachments(self, message_id: int, attachments: Sequence[NewAttachment]) -> None:
        for item in attachments:
            self.session.add(Attachment(message_id=message_id, **item.row()))

    def _persistent(self, ticket: Ticket, requester: Contact) -> Ticket:
        """Adopt a ticket row written with Core into the session without reloading it:
        a SELECT would only spend a round trip while the counter row is still locked."""
        adopt(self.session, ticket)
        set_committed_value(ticket, "requester", requester)
        if ticket.assignee_id is None:
            set_committed_value(ticket, "assignee", None)
        return ticket


def _address(address: str, *, as_written: bool) -> str | None:
    """A requester's or a CC's (normalized) address as a ticket takes it, or None when
    it is none. Read out of a mail, or a contact's already, it is kept as written
    (`as_written`; docs/mail-gateway.md); named by a person or a program (the portal,
    the staff and workflow APIs), it is taken as `addresses.named` takes it: the
    domain as IDNA maps it, no address literal (docs/integrations.md, "Who the
    customer is")."""
    if as_written:
        return address if addresses.is_valid(address) else None
    return addresses.named(address)


def kept_ticket(ticket_id: int, number: int) -> Select[int]:
    """What finds a new ticket again when its commit's answer was lost
    (`database.commit_or_found`, docs/web.md "A lost answer"): its id and number."""
    return select(Ticket.id).where(Ticket.id == ticket_id, Ticket.number == number)


def kept_message(message: Message) -> Select[int]:
    """As `kept_ticket`, for a message added to a ticket."""
    return select(Message.id).where(Message.id == message.id, Message.ticket_id == message.ticket_id)


def lock_for_change(
    session: Session, *tickets: Ticket, within: ColumnElement[bool] | None = None
) -> set[int]:
    """Lock the tickets' rows until the transaction ends and reload them, in id order;
    the ids locked. With `within` (a condition on `tickets`: `visibility.in_statement`),
    only those that meet it, as they are once held.

    Every read-validate-write of a ticket starts here: a change made meanwhile by
    another worker is waited for and then seen (`populate_existing` overwrites the
    session's copy), so the checks that follow (the transition table, merged,
    cancelled) judge the ticket as it is, and the UPDATE overwrites nothing unseen.
    PostgreSQL: `FOR NO KEY UPDATE` (what an UPDATE takes anyway), which does not stop
    other transactions from inserting rows that point at the ticket, such as
    messages, history or a new ticket linked to it while the number counter is
    locked. SQLite renders no lock: a transaction holds the database's write lock
    from its first statement (`helpdesk.database`). Locking a ticket again in the same
    transaction costs one query and waits for nothing.
    """
    wanted = Ticket.id.in_(sorted({ticket.id for ticket in tickets}))
    return {ticket.id for ticket in _lock(session, wanted, within)}


def lock_with_survivor(
    session: Session, ticket: Ticket, *others: Ticket, followers_of: Ticket | None = None
) -> Ticket:
    """Lock `ticket`, the ticket that carries on for it (`survivor`) and `others` for
    change, in one id-ordered statement, and return the survivor as it is now. With
    `followers_of`, the tickets merged into that one are locked in it too (a merge
    moves them to its survivor).

    Every other change takes its tickets in id order (`lock_for_change`,
    `lock_numbers`). Locking the survivor in a second statement, after tickets with
    higher ids, held one of them while waiting for it: a bulk action naming the
    survivor and one of those tickets deadlocked with it on PostgreSQL. So the chain
    is read without locks first and checked again under them; if a merge committed
    in between moved the survivor on, the locks just taken are given back (rolled
    back to their savepoint, which releases the row locks taken in it) and the new
    set is taken, again in id order. Locks the caller held before stay held.
    """
    for _ in range(MAX_MERGE_CHAIN):
        followers = _merged_into(session, followers_of) if followers_of is not None else []
        wanted = {ticket, survivor(session, ticket), *others, *followers}
        savepoint = session.begin_nested()
        try:
            lock_for_change(session, *wanted)
            found = survivor(session, ticket)
            if followers_of is not None:
                followers = _merged_into(session, followers_of)
        except BaseException:
            savepoint.rollback()
            raise
        if found in wanted and wanted.issuperset(followers):
            savepoint.commit()
            return found
        savepoint.rollback()  # merged again meanwhile: lock the new chain instead
    raise Conflict("The tickets were merged again while being changed; try again.")


def _lock(session: Session, condition: Any, within: ColumnElement[bool] | None = None) -> Sequence[Ticket]:
    """The tickets that meet `condition` and `within`, locked and reloaded. `within` is
    judged on each row as it is once held: PostgreSQL checks a row another transaction
    changed while this one waited for it again, against its new version."""
    query = select(Ticket).where(condition)
    if within is not None:
        query = query.where(within)
    locking = query.order_by(Ticket.id).with_for_update(of=Ticket, key_share=True)
    return session.execute(locking.execution_options(populate_existing=True)).unique().scalars().all()


def _reason_problem(reason: object, *, required: bool = False) -> str | None:
    """What is wrong with the reason given for a status move, an escalation or a
    merge (it is stored and mailed to the customer), or None. Control characters
    other than tabs and line breaks are refused, as in a password (an escape
    sequence reached the mail's text; docs/lifecycle.md)."""
    if not isinstance(reason, str) or unstorable(reason):
        return "must be text"
    if has_control(reason, lines=True):
        return "must not contain control characters"
    if required and not reason.strip():
        return "is required"
    if len(reason) > MAX_REASON:
        return f"must be at most {MAX_REASON} characters"
    return None


def _held_mail_follows(session: Session, source: Ticket, target: Ticket) -> None:
    """Held mail of the merged ticket is the survivor's from now on, in any state:
    approving mail held naming it lands there, so it is the survivor's content and is
    reviewed by who may see the survivor; and a held follow-up of mail approved into
    it lands there too, so it is judged by the survivor (`inbound.quarantine._hiding`
    reads the ticket of each held mail up a thread: no second walk of the merges).
    Items a reviewer is deciding at this moment are skipped, not waited for (the
    approval locks its item before the tickets, the merge has the tickets): that
    decision judges the item as it found it, and an approval is judged by the
    survivor and records the ticket it landed in anyway (docs/isp-operations.md)."""
    moved = (
        select(QuarantineItem.id)
        .where(QuarantineItem.ticket_id == source.id)
        .with_for_update(skip_locked=True)
    )
    session.execute(
        update(QuarantineItem)
        .where(QuarantineItem.id.in_(moved))
        .values(ticket_id=target.id)
        .execution_options(synchronize_session=False)
    )


def survivor(session: Session, ticket: Ticket) -> Ticket:
    """The ticket that carries on for `ticket`: itself, or the one it was merged
    into (one step as stored; a session's older copies may take a few more).

    Never a ticket that is itself merged: should the walk end on one, this is a
    Conflict. It returned that ticket, and a chain of more than MAX_MERGE_CHAIN
    merges (each allowed alone, before merges moved the tickets merged into the
    merged one) had a customer's message reopen it and merges go into it."""
    for _ in range(MAX_MERGE_CHAIN):
        if ticket.merged_into_id is None:
            return ticket
        merged_into = session.get(Ticket, ticket.merged_into_id)
        if merged_into is None:
            return ticket
        ticket = merged_into
    if ticket.merged_into_id is None:
        return ticket
    raise Conflict("The tickets' merges go on too long to follow; ask an admin to check them.")


def _merged_into(session: Session, ticket: Ticket) -> list[Ticket]:
    """The tickets merged into `ticket`, read now (not the session's copies)."""
    return list(session.execute(select(Ticket).where(Ticket.merged_into_id == ticket.id)).scalars())


def reached_by(session: Session, contact: Contact, ticket: Ticket) -> Ticket | None:
    """The ticket a customer reaches by the number of `ticket`, one of theirs
    (assistant tools, chat lookups): itself, or once merged its survivor where they
    take part in it (`contacts.tickets_of`; the merge makes them a participant).
    None for a survivor they have no part in (a merge before phone-only customers
    became participants): it is a stranger's ticket, whose state is not theirs."""
    if ticket.merged_into_id is None:
        return ticket
    found = survivor(session, ticket)
    return found if customer_reaches(session, contact, found.id) else None


def customer_reaches(session: Session, contact: Contact, ticket_id: int) -> bool:
    """Whether the ticket is the customer's to reach: theirs, or one they take part in."""
    return (
        session.execute(
            select(Ticket.id).where(Ticket.id == ticket_id, contacts.tickets_of(contact))
        ).scalar_one_or_none()
        is not None
    )


def _source_of(actor: Actor) -> str:
    if actor.is_customer:
        return "customer"
    return "agent" if actor.staff_id is not None else "system"
