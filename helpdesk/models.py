"""The data model (SQLAlchemy 2.0 typed mappings).

Times are naive UTC (see `helpdesk.clock`). Allowed values of the string
"enumerations" live in `helpdesk.vocabulary`, and check constraints repeat them in
the database so a bad write from anywhere fails loudly.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, deferred, mapped_column, query_expression, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from helpdesk import addresses, sla
from helpdesk import vocabulary as v
from helpdesk.clock import DatabaseClock, now
from helpdesk.extensions import Model


def _one_of(column: str, values: tuple[str, ...], name: str) -> CheckConstraint:
    quoted = ", ".join(f"'{value}'" for value in values)
    return CheckConstraint(f"{column} IN ({quoted})", name=name)


class Organization(Model):
    __tablename__ = "organizations"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)

    sender_rules: Mapped[list[AuthorizedSender]] = relationship(back_populates="organization")


def _mailbox_of_email(context: Any) -> str | None:
    """`Contact.mailbox` of the row being inserted, from its address."""
    email = context.get_current_parameters().get("email")
    return addresses.mailbox(email) if email else None


class Contact(Model):
    """A customer, known by email address (stored lower-case) and maybe by phone.

    Someone known only by phone (a WhatsApp user) gets the address
    `<digits>@phone.invalid`: the `.invalid` top-level domain is reserved never to
    exist (RFC 2606), so nothing is ever mailed there, and the address column stays
    the one key every channel shares (helpdesk.services.contacts)."""

    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    # The mailbox `email` reaches (`addresses.mailbox`: no +detail, lower-case, the
    # domain's IDNA form, Gmail's dots dropped), written with the row: the
    # per-customer limits count the tickets of every contact of one mailbox, so
    # `robot+t1@` and `robot+t2@` are one customer there
    # (helpdesk.services.customer_limits). A stand-in address is a mailbox of its
    # own. An address never changes, so neither does this but when the rule does
    # (migration 0030 wrote the Gmail keys again).
    mailbox: Mapped[Optional[str]] = mapped_column(String(320), index=True, default=_mailbox_of_email)
    name: Mapped[str] = mapped_column(String(200), default="")
    organization_id: Mapped[Optional[int]] = mapped_column(ForeignKey("organizations.id"))
    undeliverable_since: Mapped[Optional[datetime]] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)
    # E.164 (helpdesk.phones); a WhatsApp id is one. An identity: recorded only from
    # a number the channel proves (docs/integrations.md, "Who the customer is").
    phone: Mapped[Optional[str]] = mapped_column(String(16), unique=True)
    # The language the customer reads (`es`, `en`…); "" until someone says.
    language: Mapped[str] = mapped_column(String(10), default="", server_default="")

    organization: Mapped[Optional[Organization]] = relationship()


class AuthorizedSender(Model):
    """May open tickets by mail: an exact address (`a@b.c`) or a domain (`@b.c`)."""

    __tablename__ = "authorized_senders"

    id: Mapped[int] = mapped_column(primary_key=True)
    pattern: Mapped[str] = mapped_column(String(320), unique=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)

    organization: Mapped[Organization] = relationship(back_populates="sender_rules")

    @property
    def is_domain(self) -> bool:
        return self.pattern.startswith("@")


class StaffUser(Model):
    __tablename__ = "staff_users"
    __table_args__ = (_one_of("role", v.ROLES, "role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    password_hash: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)
    # Portal sessions and API tokens carry the version they were issued under; moving
    # it ends them all (StaffService.end_sessions, docs/security.md).
    session_version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # What the portal is read in (helpdesk.languages): "" follows the browser, then
    # DEFAULT_LANGUAGE; an IANA zone, "" for BUSINESS_TIMEZONE.
    language: Mapped[str] = mapped_column(String(10), default="", server_default="")
    timezone: Mapped[str] = mapped_column(String(64), default="", server_default="")

    def set_password(self, password: str) -> None:
        self.password_hash = self.hash_password(password)

    @staticmethod
    def hash_password(password: str) -> str:
        return generate_password_hash(password)

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)


class Tag(Model):
    """A label staff put on tickets to find them together (docs/isp-operations.md)."""

    __tablename__ = "tags"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(40), unique=True)


class TicketTag(Model):
    __tablename__ = "ticket_tags"
    # A tag's tickets straight from the index (the queue's tag filter), as the
    # primary key gives a ticket's tags.
    __table_args__ = (Index("ix_ticket_tags_tag_id_ticket_id", "tag_id", "ticket_id"),)

    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), primary_key=True)
    tag_id: Mapped[int] = mapped_column(ForeignKey("tags.id"), primary_key=True)


class TicketLink(Model):
    """Two related tickets, stored once with the smaller id first and read both ways."""

    __tablename__ = "ticket_links"
    __table_args__ = (CheckConstraint("low_id < high_id", name="ordered"),)

    low_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), primary_key=True)
    high_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), primary_key=True, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)


class Team(Model):
    """A group of agents that tickets are routed to (docs/isp-operations.md)."""

    __tablename__ = "teams"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)

    members: Mapped[list[StaffUser]] = relationship(
        secondary="team_members", order_by="StaffUser.name", viewonly=True
    )


class TeamMember(Model):
    __tablename__ = "team_members"

    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"), primary_key=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id"), primary_key=True, index=True)


class TeamRoute(Model):
    """Where new tickets of one type go; a type without a row goes to no team."""

    __tablename__ = "team_routes"
    __table_args__ = (_one_of("ticket_type", v.TICKET_TYPES, "ticket_type"),)

    ticket_type: Mapped[str] = mapped_column(String(30), primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"))


class CannedReply(Model):
    """A reply staff insert on the ticket page and adapt (helpdesk.services.canned):
    personal to its owner, or shared by everyone when `owner_id` is NULL."""

    __tablename__ = "canned_replies"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(100))
    body: Mapped[str] = mapped_column(Text)
    owner_id: Mapped[Optional[int]] = mapped_column(ForeignKey("staff_users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=now, onupdate=now)


class TicketCounter(Model):
    """The one row that hands out ticket numbers (see `helpdesk.numbering`)."""

    __tablename__ = "ticket_counter"

    id: Mapped[int] = mapped_column(primary_key=True)
    next_value: Mapped[int] = mapped_column(BigInteger)


class Ticket(Model):
    __tablename__ = "tickets"
    __table_args__ = (
        _one_of("status", v.STATUSES, "status"),
        _one_of("priority", v.PRIORITIES, "priority"),
        _one_of("category", v.CATEGORIES, "category"),
        _one_of("channel", v.CHANNELS, "channel"),
        _one_of("source", v.SOURCES, "source"),
        _one_of("ticket_type", v.TICKET_TYPES, "ticket_type"),
        _one_of("escalation_level", v.ESCALATION_LEVELS, "escalation_level"),
        Index("ix_tickets_status_created_at", "status", "created_at"),
        # A team's tickets, and the ids alone for counting them without the rows
        # (the queue's count under AGENT_VISIBILITY=team, helpdesk.services.queue).
        Index("ix_tickets_team_id_id", "team_id", "id"),
        # The SLA check's two scans (helpdesk.sla): only undecided, running tickets.
        Index(
            "ix_tickets_first_response_watch",
            "first_response_due_at",
            sqlite_where=text(sla.FIRST_RESPONSE_WATCH),
            postgresql_where=text(sla.FIRST_RESPONSE_WATCH),
        ),
        Index(
            "ix_tickets_resolution_watch",
            "resolution_due_at",
            sqlite_where=text(sla.RESOLUTION_WATCH),
            postgresql_where=text(sla.RESOLUTION_WATCH),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[int] = mapped_column(BigInteger, unique=True)  # see helpdesk.numbering
    subject: Mapped[str] = mapped_column(String(500))
    # A mail's whole text (up to MAX_MESSAGE_BYTES, 25 MB): read only where a ticket
    # shows it, never by the lists that load many tickets (the queue, bulk actions,
    # links, outbound batches). Accessing it costs one more query on that ticket.
    description: Mapped[str] = mapped_column(Text, default="", deferred=True)
    # Set only where a query asks for it (`QueueService.list_tickets` for the API's
    # list): the description's first characters, read in SQL (docs/web.md).
    description_start: Mapped[Optional[str]] = query_expression()
    status: Mapped[str] = mapped_column(String(20), default="new", index=True)
    priority: Mapped[str] = mapped_column(String(10), default="medium", index=True)
    category: Mapped[str] = mapped_column(String(20), default="support", index=True)
    channel: Mapped[str] = mapped_column(String(10))
    source: Mapped[str] = mapped_column(String(10), index=True)
    # The ISP's service fields (helpdesk.service_fields; docs/isp-operations.md).
    ticket_type: Mapped[str] = mapped_column(String(30), default=v.DEFAULT_TICKET_TYPE, index=True)
    service_address: Mapped[str] = mapped_column(String(500), default="")
    affected_services: Mapped[str] = mapped_column(String(40), default="")  # `internet,tv`
    device_serials: Mapped[str] = mapped_column(Text, default="")  # one per line
    # The chat or assistant conversation it came from, as the integration names it.
    conversation_id: Mapped[Optional[str]] = mapped_column(String(200))
    # The language its customer mail is written in, fixed by the first one so a
    # thread keeps one language (helpdesk.languages); "" until then.
    language: Mapped[str] = mapped_column(String(10), default="", server_default="")
    is_email_originated: Mapped[bool] = mapped_column(Boolean, default=False)
    requester_id: Mapped[int] = mapped_column(ForeignKey("contacts.id"), index=True)
    organization_id: Mapped[Optional[int]] = mapped_column(ForeignKey("organizations.id"), index=True)
    assignee_id: Mapped[Optional[int]] = mapped_column(ForeignKey("staff_users.id"), index=True)
    team_id: Mapped[Optional[int]] = mapped_column(ForeignKey("teams.id"))
    # Escalation (helpdesk.services.tickets.escalate): the level, since when, to whom.
    escalation_level: Mapped[str] = mapped_column(String(2), default="L1", index=True)
    escalated_at: Mapped[Optional[datetime]] = mapped_column(DateTime)
    escalated_to_id: Mapped[Optional[int]] = mapped_column(ForeignKey("staff_users.id"))
    linked_ticket_id: Mapped[Optional[int]] = mapped_column(ForeignKey("tickets.id"))
    # The ticket this one was merged into (helpdesk.services.merging): closed, and
    # whatever comes for it goes there.
    merged_into_id: Mapped[Optional[int]] = mapped_column(ForeignKey("tickets.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now, index=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=now, onupdate=now, index=True)

    # SLA (targets per priority; see docs/lifecycle.md).
    first_response_due_at: Mapped[Optional[datetime]] = mapped_column(DateTime)
    resolution_due_at: Mapped[Optional[datetime]] = mapped_column(DateTime)
    first_responded_at: Mapped[Optional[datetime]] = mapped_column(DateTime)
    first_response_breached: Mapped[Optional[bool]] = mapped_column(Boolean)
    resolution_breached: Mapped[Optional[bool]] = mapped_column(Boolean)
    # Since when the ticket waits for the customer; `pending_seconds` is all the time
    # the resolution clock stood still (waiting, or resolved before a reopening),
    # counted on the SLA calendar.
    pending_since: Mapped[Optional[datetime]] = mapped_column(DateTime)
    pending_seconds: Mapped[int] = mapped_column(Integer, default=0)
    resolved_at: Mapped[Optional[datetime]] = mapped_column(DateTime)
    closed_at: Mapped[Optional[datetime]] = mapped_column(DateTime)
    last_customer_reply_at: Mapped[Optional[datetime]] = mapped_column(DateTime)

    requester: Mapped[Contact] = relationship(lazy="joined")
    organization: Mapped[Optional[Organization]] = relationship()
    assignee: Mapped[Optional[StaffUser]] = relationship(lazy="joined", foreign_keys=[assignee_id])
    team: Mapped[Optional[Team]] = relationship(lazy="joined")
    escalated_to: Mapped[Optional[StaffUser]] = relationship(foreign_keys=[escalated_to_id])
    linked_ticket: Mapped[Optional[Ticket]] = relationship(remote_side=[id], foreign_keys=[linked_ticket_id])
    merged_into: Mapped[Optional[Ticket]] = relationship(remote_side=[id], foreign_keys=[merged_into_id])
    tags: Mapped[list[Tag]] = relationship(secondary="ticket_tags", order_by="Tag.name", viewonly=True)
    messages: Mapped[list[Message]] = relationship(
        back_populates="ticket", order_by="Message.id", cascade="all, delete-orphan"
    )
    history: Mapped[list[TicketHistory]] = relationship(
        back_populates="ticket", order_by="TicketHistory.id", cascade="all, delete-orphan"
    )
    participants: Mapped[list[Participant]] = relationship(
        back_populates="ticket", order_by="Participant.id", cascade="all, delete-orphan"
    )
    # Read-only here: ratings are written by helpdesk.services.satisfaction.
    satisfaction: Mapped[Optional[SatisfactionRating]] = relationship(viewonly=True)


class Participant(Model):
    """A CC'd address that follows the ticket and may reply to it."""

    __tablename__ = "participants"
    __table_args__ = (UniqueConstraint("ticket_id", "email", name="uq_participants_ticket_email"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"))
    email: Mapped[str] = mapped_column(String(320), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")

    ticket: Mapped[Ticket] = relationship(back_populates="participants")


class Message(Model):
    """A public reply or an internal note; the ticket's first message is the request."""

    __tablename__ = "messages"
    __table_args__ = (
        _one_of("kind", v.MESSAGE_KINDS, "kind"),
        # A ticket's messages, and the one filed from a mail of it: the sender's
        # threading asks whether each of the ticket's newest mails was filed as a
        # customer's message (`compose`). It took the place of the index on
        # ticket_id alone, so a message's INSERT writes no more index entries
        # (migration 0045, docs/benchmarks.md).
        Index("ix_messages_ticket_id_inbound_mail_id", "ticket_id", "inbound_mail_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"))
    kind: Mapped[str] = mapped_column(String(10))
    author_staff_id: Mapped[Optional[int]] = mapped_column(ForeignKey("staff_users.id"))
    author_contact_id: Mapped[Optional[int]] = mapped_column(ForeignKey("contacts.id"))
    # Display form of whoever wrote it ("Ann <ann@example.com>", "system").
    author_label: Mapped[str] = mapped_column(String(400))
    channel: Mapped[str] = mapped_column(String(10))
    body: Mapped[str] = mapped_column(Text, default="")
    body_html: Mapped[Optional[str]] = mapped_column(Text)  # sanitized, never raw
    inbound_mail_id: Mapped[Optional[int]] = mapped_column(ForeignKey("inbound_mails.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)

    ticket: Mapped[Ticket] = relationship(back_populates="messages")
    author_staff: Mapped[Optional[StaffUser]] = relationship()
    author_contact: Mapped[Optional[Contact]] = relationship()
    inbound_mail: Mapped[Optional[InboundMail]] = relationship()
    attachments: Mapped[list[Attachment]] = relationship(
        back_populates="message", order_by="Attachment.id", cascade="all, delete-orphan"
    )


class Attachment(Model):
    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), index=True)
    filename: Mapped[str] = mapped_column(String(255))  # already made safe
    content_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    content_id: Mapped[Optional[str]] = mapped_column(String(255))  # for inline cid: images
    is_inline: Mapped[bool] = mapped_column(Boolean, default=False)
    data: Mapped[bytes] = deferred(mapped_column(LargeBinary))

    message: Mapped[Message] = relationship(back_populates="attachments")


class TicketHistory(Model):
    """One change of one field: status, assignee, priority or category.

    Status rows are the status history (docs/lifecycle.md: from, to, who, when, reason,
    automated); the other fields share the table so the ticket page can show one
    timeline.
    """

    __tablename__ = "ticket_history"
    __table_args__ = (_one_of("field", v.HISTORY_FIELDS, "field"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    field: Mapped[str] = mapped_column(String(20))
    old_value: Mapped[Optional[str]] = mapped_column(String(320))
    new_value: Mapped[Optional[str]] = mapped_column(String(320))
    actor_staff_id: Mapped[Optional[int]] = mapped_column(ForeignKey("staff_users.id"))
    actor_label: Mapped[str] = mapped_column(String(400))
    reason: Mapped[str] = mapped_column(Text, default="")
    automated: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)

    ticket: Mapped[Ticket] = relationship(back_populates="history")


class InboundMail(Model):
    """Every mail the gateway accepted, with what became of it.

    `dedup_key` is the normalized Message-ID, or `sha256:<hex>` of its content
    (the author's fields and the body when it has a Date, else the raw bytes,
    `dedup.dedup_key`) when the mail has none; its uniqueness is what makes a second
    delivery (SMTP retry, IMAP re-scan, both channels) a no-op. Another mail under a key already
    taken gets its own, that key and the hash of its content (`dedup.beside_key`,
    docs/mail-gateway.md "Duplicates"), so two rows may share a Message-ID.
    """

    __tablename__ = "inbound_mails"
    __table_args__ = (
        _one_of("outcome", v.INBOUND_OUTCOMES, "outcome"),
        _one_of("channel", v.INBOUND_CHANNELS, "channel"),
        # Replies and held follow-ups look up the mail they answer by Message-ID
        # (`matching`, `ingest`). A hash index on PostgreSQL: equality is all they
        # ask, and a b-tree refuses entries past a third of a page, which a long
        # non-ASCII Message-ID can reach (migration 0029).
        Index("ix_inbound_mails_message_id", "message_id", postgresql_using="hash"),
        # A ticket's mails in the order received: the sender's threading reads a
        # ticket's newest and oldest ones (`compose`), from the index rather than by
        # sorting every mail of the ticket. In place of the index on ticket_id alone
        # (migration 0045, docs/benchmarks.md).
        Index("ix_inbound_mails_ticket_id_received_at", "ticket_id", "received_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    dedup_key: Mapped[str] = mapped_column(String(1000), unique=True)
    message_id: Mapped[Optional[str]] = mapped_column(String(1000))
    channel: Mapped[str] = mapped_column(String(10))
    # Where it came in (SPEC §10, docs/web.md "Mail flow"): the IMAP mailbox's key
    # (`user@host:port/MAILBOX`, no password) or the SMTP listener ("smtp " and its
    # SMTP_LISTEN); NULL for mail recorded before migration 0043 and for mail no
    # entry point named a source for.
    source: Mapped[Optional[str]] = mapped_column(String(500))
    mail_from: Mapped[str] = mapped_column(String(320), default="")
    from_address: Mapped[str] = mapped_column(String(320), default="")
    # Which header the sender was read from, or "envelope"; "" when none named one
    # (docs/mail-gateway.md, vocabulary.SENDER_SOURCES).
    from_source: Mapped[str] = mapped_column(String(20), default="")
    recipients: Mapped[str] = mapped_column(Text, default="")  # comma-separated
    subject: Mapped[str] = mapped_column(String(1000), default="")
    size: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(Text, default="")
    ticket_id: Mapped[Optional[int]] = mapped_column(ForeignKey("tickets.id"))
    # By the database's clock (`ingest`): threading orders it with the outbox's times.
    # The database's clock, as the outbox rows that answer it are queued: threading
    # orders the two (`compose`), and a writer that names no time still stamps it.
    received_at: Mapped[datetime] = mapped_column(DateTime, default=DatabaseClock(), index=True)
    raw: Mapped[bytes] = deferred(mapped_column(LargeBinary))

    ticket: Mapped[Optional[Ticket]] = relationship()


class QuarantineItem(Model):
    """A mail held for a person to decide on; the raw bytes stay on its inbound row."""

    __tablename__ = "quarantine_items"
    __table_args__ = (_one_of("state", v.QUARANTINE_STATES, "state"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    inbound_mail_id: Mapped[int] = mapped_column(ForeignKey("inbound_mails.id"), unique=True)
    reason: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    decided_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("staff_users.id"))
    decided_at: Mapped[Optional[datetime]] = mapped_column(DateTime)
    ticket_id: Mapped[Optional[int]] = mapped_column(ForeignKey("tickets.id"))
    # No ticket_id, and no telling that it names none: the mail could not be read
    # whole (unparseable, over a cap) or matched, so only admins review it under
    # AGENT_VISIBILITY team or own (`inbound.quarantine`).
    ticket_unknown: Mapped[bool] = mapped_column(Boolean, default=False)
    # Naming no ticket, the held mail it answers (In-Reply-To/References), recorded
    # when held: its direct parent (held by earlier versions: the thread's root). It is
    # reviewed like the held mail up its thread (`inbound.quarantine._hiding`).
    follows_item_id: Mapped[Optional[int]] = mapped_column(ForeignKey("quarantine_items.id"), index=True)
    # Whether that item's sender is this one's (`addresses.mailbox`): only one's own
    # held mail passes on its named or unknown ticket; another sender's passes on only
    # the ticket it was approved into, so nobody chooses who reviews others' mail.
    follows_own: Mapped[bool] = mapped_column(Boolean, default=False)
    # Held since, by the database's clock as its mail's `received_at`: items held on
    # different hosts are listed and compared together.
    created_at: Mapped[datetime] = mapped_column(DateTime, default=DatabaseClock())

    inbound_mail: Mapped[InboundMail] = relationship()
    ticket: Mapped[Optional[Ticket]] = relationship()


class OutboxMessage(Model):
    """A notification to one recipient, written in the transaction that caused it.

    The row records the event (kind, the reply it carries, the status change);
    the sender (`mailgateway.outbound`) renders subject, bodies and the signed
    Message-ID when it first claims the row, because a new ticket's number and id
    do not exist yet when its acknowledgment is queued. The rendered mail is kept,
    so a retry sends exactly the same message (same Message-ID) and staff can see
    what went out. `last_error` says why a row failed, was skipped or bounced.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        _one_of("state", v.OUTBOX_STATES, "state"),
        _one_of("kind", v.NOTIFICATION_KINDS, "kind"),
        Index("ix_outbox_state_next_attempt_at", "state", "next_attempt_at"),
        Index("ix_outbox_to_mailbox_claimed_at", "to_mailbox", "claimed_at"),
        # A ticket's rows in the order queued: threading reads the newest and oldest
        # sent to a recipient (`compose`). In place of the index on ticket_id alone
        # (migration 0045, docs/benchmarks.md).
        Index("ix_outbox_ticket_id_created_at", "ticket_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[Optional[int]] = mapped_column(ForeignKey("tickets.id"))
    kind: Mapped[str] = mapped_column(String(30))
    to_address: Mapped[str] = mapped_column(String(320))
    # The mailbox `to_address` reaches (`addresses.mailbox`), written at each claim:
    # the per-recipient limit counts by it, so plus-addresses and spellings are one.
    to_mailbox: Mapped[Optional[str]] = mapped_column(String(320))
    # The other recipients of the same notification, shown in the Cc header only:
    # each recipient gets its own copy with its own signed Message-ID.
    cc_addresses: Mapped[str] = mapped_column(Text, default="")
    reply_id: Mapped[Optional[int]] = mapped_column(ForeignKey("messages.id"))
    old_status: Mapped[Optional[str]] = mapped_column(String(20))
    new_status: Mapped[Optional[str]] = mapped_column(String(20))
    status_reason: Mapped[str] = mapped_column(Text, default="")
    subject: Mapped[Optional[str]] = mapped_column(String(1000))
    body_text: Mapped[Optional[str]] = mapped_column(Text)
    body_html: Mapped[Optional[str]] = mapped_column(Text)
    message_id: Mapped[Optional[str]] = mapped_column(String(1000), unique=True)
    in_reply_to: Mapped[Optional[str]] = mapped_column(String(1000))
    references: Mapped[Optional[str]] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Every time on the row is the database's clock (docs/outbound-mail.md, One
    # clock): the sender judges them on another host. A writer names them or leaves
    # them to this default, never the host's `now()`.
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime, default=DatabaseClock())
    claimed_at: Mapped[Optional[datetime]] = mapped_column(DateTime)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=DatabaseClock())
    sent_at: Mapped[Optional[datetime]] = mapped_column(DateTime)
    bounced_at: Mapped[Optional[datetime]] = mapped_column(DateTime)

    ticket: Mapped[Optional[Ticket]] = relationship()
    reply: Mapped[Optional[Message]] = relationship()


class EmailProof(Model):
    """A code mailed to an address a WhatsApp customer named, proving they read that
    mailbox before their number is bound to it (docs/integrations.md, "Who the
    customer is"; helpdesk.services.email_proofs). Only the code's keyed hash is
    kept. A row is also a request: the limits per number and per mailbox count the
    rows of the last hour, so spent rows stay until they are a day old."""

    __tablename__ = "email_proofs"

    id: Mapped[int] = mapped_column(primary_key=True)
    phone: Mapped[str] = mapped_column(String(16), index=True)
    email: Mapped[str] = mapped_column(String(320))
    mailbox: Mapped[str] = mapped_column(String(320), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    wrong_tries: Mapped[int] = mapped_column(Integer, default=0)
    # Used, replaced by a newer request, or out of tries: never checked again.
    spent: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now, index=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime)


class InboundDuplicates(Model):
    """Deliveries per channel and source that were a mail received before (an SMTP
    retry, the IMAP copy of an SMTP mail): they write no `InboundMail`, so they are
    counted here (SPEC §10), one row per channel and source (migrations 0033, 0043).
    `source` as `InboundMail.source`, "" where that is NULL: the count kept before
    migration 0043, or deliveries no entry point named a source for."""

    __tablename__ = "inbound_duplicates"

    channel: Mapped[str] = mapped_column(String(10), primary_key=True)
    source: Mapped[str] = mapped_column(String(500), primary_key=True, default="")
    count: Mapped[int] = mapped_column(BigInteger)


class ImapMailboxState(Model):
    """How far the IMAP poller got in one mailbox (`mailgateway.imap`).

    `last_uid` is only valid together with `uidvalidity`: when the server reports
    another UIDVALIDITY the poller rescans the whole mailbox and relies on the
    inbound dedup key, not on remembered UIDs. The times and the error make a
    stuck mailbox visible.
    """

    __tablename__ = "imap_mailboxes"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(500), unique=True)  # user@host:port/MAILBOX
    uidvalidity: Mapped[Optional[int]] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    last_poll_at: Mapped[Optional[datetime]] = mapped_column(DateTime)
    last_success_at: Mapped[Optional[datetime]] = mapped_column(DateTime)
    last_error: Mapped[str] = mapped_column(Text, default="")
    last_error_at: Mapped[Optional[datetime]] = mapped_column(DateTime)
    # The gateway polling it (`host:pid:…`) and until when, unless it renews: one
    # gateway at a time per mailbox, another takes over when the lease runs out.
    owner: Mapped[str] = mapped_column(String(200), default="", server_default="")
    lease_until: Mapped[Optional[datetime]] = mapped_column(DateTime)
    # Mail begun and not finished, kept here because a mail that kills the gateway
    # takes the poller's memory with it (migration 0047): the last UID of the batch
    # begun last, and the message begun alone last with how many gateway processes
    # began it (docs/mail-gateway.md, "A mail that kills the gateway").
    taking_until: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    taking_uid: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    taking_processes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class SatisfactionRating(Model):
    """The customer's rating of a resolved ticket (docs/integrations.md): one per
    ticket, changeable until the ticket closes. `agent_id` is whoever held the
    ticket when it was rated, so statistics credit the agent who resolved it even
    if it is reassigned later. `participant_email` is the CC participant who rated,
    or empty when the requester did (every rating from before migration 0037 is
    theirs): only the one who rated sees the comment (docs/security.md)."""

    __tablename__ = "satisfaction_ratings"
    __table_args__ = (
        CheckConstraint("rating BETWEEN 1 AND 5", name="rating"),
        _one_of("via", v.RATING_CHANNELS, "via"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), unique=True)
    agent_id: Mapped[Optional[int]] = mapped_column(ForeignKey("staff_users.id"), index=True)
    rating: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str] = mapped_column(Text, default="")
    via: Mapped[str] = mapped_column(String(10))
    participant_email: Mapped[Optional[str]] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now, index=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=now)

    agent: Mapped[Optional[StaffUser]] = relationship()


class Integration(Model):
    """A system that calls the API for customers (a chat widget, an assistant, a
    workflow), with a long-lived bearer token stored only as its SHA-256: the token
    carries 256 random bits, so a fast hash is as good as a slow one and the lookup
    is one indexed equality (helpdesk.services.integrations)."""

    __tablename__ = "integrations"
    __table_args__ = (_one_of("kind", v.INTEGRATION_KINDS, "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)
    revoked_at: Mapped[Optional[datetime]] = mapped_column(DateTime)


class ChatConversation(Model):
    """The ticket a chat integration's conversation opened (docs/integrations.md,
    "Chat"): one per integration and conversation id, so a widget posting the
    conversation again gets that ticket back instead of a second one. The row is
    claimed (`insert_ignoring`) before the ticket's number is taken and pointed at
    the ticket in the numbered statement, so `ticket_id` is empty only inside the
    transaction that opens the ticket."""

    __tablename__ = "chat_conversations"
    __table_args__ = (UniqueConstraint("integration_id", "conversation_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    integration_id: Mapped[int] = mapped_column(ForeignKey("integrations.id"))
    conversation_id: Mapped[str] = mapped_column(String(200))
    ticket_id: Mapped[Optional[int]] = mapped_column(ForeignKey("tickets.id"))


class AssistantCall(Model):
    """The ticket an assistant integration's `create_ticket_report` call opened
    (docs/integrations.md, "The assistant's tools"): one per integration and tool
    call id, so a runtime submitting the call again (the same arguments, within a
    day) gets that ticket back instead of a second one. Claimed and pointed at the
    ticket as `ChatConversation` is. A `verify_email` call that mailed a code is
    kept too, with no ticket (its digest names the code's row), and an
    `add_ticket_comment` call with the ticket its comment went to (its digest
    names the message)."""

    __tablename__ = "assistant_calls"
    __table_args__ = (UniqueConstraint("integration_id", "call_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    integration_id: Mapped[int] = mapped_column(ForeignKey("integrations.id"))
    call_id: Mapped[str] = mapped_column(String(200))
    digest: Mapped[str] = mapped_column(String(64))  # SHA-256 of the call's arguments
    created_at: Mapped[datetime] = mapped_column(DateTime)
    ticket_id: Mapped[Optional[int]] = mapped_column(ForeignKey("tickets.id"))


class IdempotencyKey(Model):
    """An API call done under an `Idempotency-Key` header (docs/web.md,
    "Idempotency keys"): one per caller (`staff:<id>` or `integration:<id>`) and
    key, written in the transaction of the ticket or reply it made, so it exists
    exactly when that write was committed. `digest` is SHA-256 of the call's method,
    path and body; the same key with another digest is refused. Rows older than
    `IDEMPOTENCY_KEY_LIFETIME` are spent: the gateway's lifecycle jobs delete them."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("caller", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    caller: Mapped[str] = mapped_column(String(40))
    key: Mapped[str] = mapped_column(String(255))
    digest: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=DatabaseClock(), index=True)
    ticket_id: Mapped[Optional[int]] = mapped_column(ForeignKey("tickets.id"))
    message_id: Mapped[Optional[int]] = mapped_column(ForeignKey("messages.id"))


class RevokedToken(Model):
    """An API token revoked before it expired: a rotated refresh token (its `jti`,
    until its expiry) or a family ended by a reused one (`family:<id>`, until the
    longest a member can live). Rows past `expires_at` refuse nothing, since the
    token is refused as expired first: the gateway's lifecycle jobs delete them an
    hour later (`helpdesk.services.revoked_tokens`, docs/security.md)."""

    __tablename__ = "revoked_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    jti: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    revoked_at: Mapped[datetime] = mapped_column(DateTime, default=now)


class RateLimitCounter(Model):
    """One fixed-window rate-limit counter (`helpdesk.limit_storage`): a login or
    tracker budget shared by every web worker. Rows past `expires_at` are spent
    windows; the storage sweeps them."""

    __tablename__ = "rate_limit_counters"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    # Epoch seconds, as the `limits` storage interface speaks them.
    expires_at: Mapped[float] = mapped_column(Float, index=True)
