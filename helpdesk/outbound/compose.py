"""Notification mail as it leaves the helpdesk (docs/outbound-mail.md).

Content comes from templates, plain text plus an HTML alternative, one pair per
kind (`created`, `reply`, `status`, `resolved`, `email_code`, and the staff mail
`sla_breach`, `sla_digest` and `escalation`) in `helpdesk/outbound/templates/mail/`; a file of the same name
in `MAIL_TEMPLATES_DIR/<language>/`, else in `MAIL_TEMPLATES_DIR`, overrides the
built-in one.

Each row is written in its reader's language (docs/languages.md): customer mail in
the ticket's, which the first customer mail fixes (the requester's language then,
else `DEFAULT_LANGUAGE`) so a thread never changes language halfway, with times in
`BUSINESS_TIMEZONE`; staff mail in the recipient's chosen language and zone. The
templates' texts come from the gettext catalogs (`jinja2.ext.i18n`, one
environment per language).

Headers:
- Threading (RFC 5322 §3.6.4): a signed Message-ID (`message_ids`), In-Reply-To
  the customer's last message on the ticket (or, with none, our previous mail to
  this recipient), References from the thread's first message to that parent.
  Each id is written as it came, folded only between ids (`MessageIdList`): the
  email package would write a long one (Outlook's) as RFC 2047 encoded words, and
  an id 7-bit mail cannot carry is left out.
  Reply-To is the support address's plus-address for the ticket
  (`support+TKT-000078@…`), which the gateway matches even when a mail client
  drops the other headers; the subject carries `[TKT-000078]` too. An SLA digest
  is about many tickets and threads onto none: no In-Reply-To, no ticket in its
  subject, Message-ID or Reply-To (the support address itself).
- Loops (RFC 3834): `Auto-Submitted: auto-replied` on every automatic mail, as
  the product contract asks (docs/outbound-mail.md says why not `auto-generated`
  for notices that answer no mail); none on a public reply, which a person wrote
  (RFC 3834 §5 reserves the field for automatic mail). Every mail carries
  `X-Auto-Response-Suppress: All` (Exchange's out-of-office replies stay quiet)
  and `X-Loop: <support address>`, which `automail` recognises when our own mail
  comes back.

A public reply's attachments (files staff attached, helpdesk.services.uploads) go
with it (`with_files`, by the sender just before the mail is sent), under their
stored names; the type they were uploaded with is only used
when it is a plain `type/subtype` that is no MIME structure of its own.
"""

from __future__ import annotations

import base64
import copy
import email.policy
import functools
import logging
import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.policy import Policy
from email.utils import format_datetime, parseaddr
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, select_autoescape
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session, object_session
from sqlalchemy.orm.attributes import set_committed_value

from config import LANGUAGES
from helpdesk import addresses, customer_links, languages, sla, wording
from helpdesk import vocabulary as v
from helpdesk.languages import (
    CATEGORY_LABELS,
    FALLBACK,
    N_,
    PRIORITY_LABELS,
    STATUS_LABELS,
    format_duration,
    format_when,
    gettext_in,
    label,
)
from helpdesk.message_ids import NO_TICKET, Signer
from helpdesk.models import Attachment, InboundMail, Message, OutboxMessage, StaffUser, Ticket
from helpdesk.numbering import display_number
from helpdesk.return_paths import ReturnPaths
from helpdesk.services import contacts, notifications

log = logging.getLogger(__name__)

BUILT_IN_TEMPLATES = Path(__file__).resolve().parent / "templates" / "mail"
MAX_REFERENCES = 10

# Staff should see at a glance that an alert is not customer mail.
SUBJECT_PREFIXES = {"sla_breach": N_("SLA breach:"), "escalation": N_("Escalated:")}
DIGEST_SUBJECT_CHARS = 60  # of each ticket's subject in an SLA digest
# The running statuses (`sla.FINISHED` are not): the digest's link to the queue
# shows the breached tickets still being worked on.
_RUNNING_STATUSES = tuple(status for status in v.STATUSES if status not in sla.FINISHED)


@functools.cache
def staff_alert_prefixes() -> tuple[str, ...]:
    """Every `SUBJECT_PREFIXES` text in every language the helpdesk writes, casefolded:
    how inbound mail recognises an alert's subject when it answers none of our
    Message-IDs (a forward carries none; `matching.names_staff_alert`)."""
    return tuple(
        sorted(
            {
                gettext_in(language, prefix).casefold()
                for language in LANGUAGES
                for prefix in SUBJECT_PREFIXES.values()
            }
        )
    )


_THREAD_OUTCOMES = ("created", "appended")
_MIME_TOKEN = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")
_STRUCTURAL_TYPES = ("multipart", "message")  # a body of parts, which a file is not
_SENT_STATES = ("sending", "sent", "bounced")
MAX_LINE = 998  # RFC 5322 §2.1.1, CRLF not counted
# RFC 5322 §3.2.3 atext: a word of these is an atom, written as it is in a name.
_ATEXT = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~")
MAX_WORD = 75  # RFC 2047 §2: no encoded word is longer; no plain one either
# UTF-8 octets per encoded word: 60 base64 characters, 72 with `=?utf-8?b?` and `?=`.
_ENCODED_WORD_OCTETS = 45
# A msg-id as we write it (RFC 5322 §3.6.4): `<id-left@id-right>` in angle brackets,
# id-left atext and dots, id-right atext and dots or a `[literal]` of dtext; short
# enough to share a line with "In-Reply-To: " (`_writable_ids`). No class holds `@`,
# so there is one way to match and the match is linear.
_ID_TEXT = r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.]+"
_WRITABLE_ID = re.compile(rf"<{_ID_TEXT}@(?:{_ID_TEXT}|\[[!-Z^-~]*\])>")
_MAX_ID = MAX_LINE - len("In-Reply-To: ")
_ENCODED_WORD_START = "=?"  # RFC 2047 §2


class Preformatted(BaseHeader):
    """A header as we composed it: the words of its value as given, a fold only
    between two words (a run of spaces), never inside one. Nothing is parsed, so
    nothing is decoded or rewritten on the way out."""

    max_count = 1

    @classmethod
    def parse(cls, value: str, kwds: dict[str, Any]) -> None:
        kwds["decoded"] = value  # nothing decoded
        kwds["parse_tree"] = None  # nothing reads it: fold() writes the value

    def fold(self, *, policy: Policy) -> str:
        limit = policy.max_line_length or MAX_LINE
        label = f"{self.name}:"
        lines = [label]
        for token in self.split():
            if lines[-1] != label and len(lines[-1]) + 1 + len(token) > limit:
                lines.append("")
            lines[-1] += f" {token}"
        return policy.linesep.join(lines) + policy.linesep


class MessageIdList(Preformatted):
    """In-Reply-To and References as we write them: the `<id>` tokens as given, a fold
    only between two ids (RFC 5322 §3.6.4), never inside one, so a long id stays whole.

    The email package holds both fields as unstructured text: it wrote an id longer
    than a line as RFC 2047 encoded words, which no mail client threads on, and it
    decoded text in an id that reads as an encoded word, line breaks and all, into
    header lines of our mail (docs/outbound-mail.md, docs/security.md)."""


class AddressList(Preformatted):
    """From, To, Cc and Reply-To as `_mailbox` writes them: each name in plain words
    or RFC 2047 encoded words, each address whole.

    The email package parses an address header when it is set: it decoded an encoded
    word in a name (`formataddr` makes one of every name beyond ASCII) and wrote the
    decoded text back unquoted, so a customer named `José <victim@attacker.example>`
    was mailed `To: =?utf-8?q?Jos=C3=A9?= <victim@attacker.example> <ann@…>`, which
    mail readers address to the attacker; and folding a quoted name longer than a
    line dropped its quotes (docs/security.md, docs/outbound-mail.md)."""


def _header_factory() -> HeaderRegistry:
    registry = HeaderRegistry()
    for name in ("In-Reply-To", "References"):
        registry.map_to_type(name, MessageIdList)
    for name in ("From", "To", "Cc", "Reply-To"):
        registry.map_to_type(name, AddressList)
    return registry


# Bodies in 7 bits (quoted-printable or base64): the sender declares no
# `BODY=8BITMIME` (RFC 6152 §3), and a text whose lines all fit 78 octets went as raw
# 8-bit UTF-8, which a relay or next hop without 8BITMIME may refuse or strip.
MAIL_POLICY = email.policy.SMTP.clone(header_factory=_header_factory(), cte_type="7bit")
# RFC 6531 mail, for a recipient whose mailbox name is beyond ASCII (`josé@…`):
# headers in UTF-8, sent only to a relay that offers SMTPUTF8; its bodies 7-bit too.
SMTPUTF8_POLICY = MAIL_POLICY.clone(utf8=True)


@dataclass(frozen=True)
class MailFile:
    """A file that goes with a public reply's mail (`Composer.with_files`)."""

    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class ThreadHint:
    """What the sender read of a row's ticket once for its batch: whether tickets
    were merged into it, and whether it may have mail to thread to (a customer's
    mail with a Message-ID, our own earlier row, or another row of the batch). A
    ticket with neither has no thread, and `Composer._thread` reads nothing
    (docs/outbound-mail.md, "Headers")."""

    merged: bool
    earlier: bool


@dataclass(frozen=True)
class Reader:
    """Whom a row is written for: the language and the time zone of its text."""

    language: str
    zone: str


def template_environment(override_dir: str, language: str = FALLBACK) -> Environment:
    """The templates of mail in `language`: the operator's for that language
    (`<override_dir>/<language>/`), then the operator's for every language (when
    the folder exists), then the built-in ones; `_()`, `pgettext()` and `{% trans %}`
    translate into `language` through its catalog."""
    loaders = [FileSystemLoader(str(BUILT_IN_TEMPLATES))]
    if override_dir and Path(override_dir).is_dir():
        loaders.insert(0, FileSystemLoader(override_dir))
        loaders.insert(0, FileSystemLoader(str(Path(override_dir) / language)))  # may not exist: skipped
    environment = Environment(
        loader=ChoiceLoader(loaders),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,  # a typo in an operator's template fails the row, visibly
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        extensions=["jinja2.ext.i18n"],
    )
    # The i18n extension adds this method to the environment.
    environment.install_gettext_translations(languages.catalog(language), newstyle=True)  # type: ignore[attr-defined]
    # A count as this language writes it, in a sentence too (`languages.number`).
    environment.filters["number"] = functools.partial(languages.format_number, language=language)
    return environment


class Composer:
    def __init__(self, config: Mapping[str, Any]) -> None:
        self.signer = Signer.from_config(config)
        self.override_dir: str = config["MAIL_TEMPLATES_DIR"]
        self.environments: dict[str, Environment] = {}  # by language, built when first needed
        self.config = config
        self.support: str = config["SUPPORT_ADDRESSES"][0]
        self.from_header: str = config["OUTBOUND_FROM"]
        # OUTBOUND_FROM's address: ours, never mailed. It is no longer the envelope
        # sender: each row has its own, a signed plus-address of a support address
        # (VERP), so a bounce proves which row failed (docs/outbound-mail.md).
        from_name, from_address = parseaddr(self.from_header)
        self.envelope_from = from_address or self.support
        self.from_name = addresses.display_name(from_name)  # written as text (`_mailbox`)
        self.return_paths = ReturnPaths.from_config(config)
        self.portal_url: str = config["PORTAL_URL"]
        self.auto_close_after: timedelta = config["AUTO_CLOSE_AFTER"]
        self.sla = sla.policy_from_config(config)
        self.default_language = _known_language(config["DEFAULT_LANGUAGE"], FALLBACK)
        self.business_zone: str = config["BUSINESS_TIMEZONE"]

    def templates(self, language: str) -> Environment:
        if language not in self.environments:
            self.environments[language] = template_environment(self.override_dir, language)
        return self.environments[language]

    def render(self, session: Session, row: OutboxMessage, hint: ThreadHint | None = None) -> None:
        """Fill the row's subject, bodies and threading headers, once.

        Done when a row is first claimed, not when it is queued: a new ticket has
        no id or number yet when its acknowledgment is queued. Afterwards the row
        keeps what was rendered, so every retry sends the same mail. `hint`: what
        the sender's batch read says of the ticket's thread (`ThreadHint`).
        """
        if row.kind == "sla_digest":
            self._render_digest(session, row)
            return
        if row.kind == "email_code":
            self._render_code(row)
            return
        ticket = session.get(Ticket, row.ticket_id)
        if ticket is None:
            raise ValueError(f"outbox #{row.id} names no ticket")
        number = display_number(ticket.number, self.config)
        # A customer whose ticket was merged into this one reads their own subject, in
        # their own thread's language.
        subject, own_language = (
            (ticket.subject, "")
            if row.kind in v.STAFF_NOTIFICATION_KINDS
            else notifications.own_thread(session, ticket, row.to_address)
        )
        reader = self.reader(session, ticket, row, own_language)
        context = self._context(session, ticket, row, number, reader, subject)
        prefix = SUBJECT_PREFIXES.get(row.kind)
        shown_prefix = f"{gettext_in(reader.language, prefix)} " if prefix else ""
        row.subject = f"[{number}] {shown_prefix}{' '.join(subject.split())}"[:1000]
        templates = self.templates(reader.language)
        row.body_text = templates.get_template(f"{row.kind}.txt").render(context)
        row.body_html = templates.get_template(f"{row.kind}.html").render(context)
        row.message_id = self.signer.make(ticket.id, row.id, row.to_address)
        parent, references = self._thread(session, row, hint)
        row.in_reply_to = parent
        row.references = " ".join(f"<{mid}>" for mid in references) or None

    def sign_again_if_not_ascii(self, row: OutboxMessage) -> None:
        """A row rendered before our Message-IDs were written in the ASCII form of an
        internationalised `MESSAGE_ID_DOMAIN` holds one in the raw domain: it failed
        to render then, and failed again at every `flask outbox retry`, since a
        retry sends the row's stored id. It gets the id it is made with now (the
        same row, recipient and ticket), which replies verify against; it was never
        sent, so nobody holds the old one (docs/outbound-mail.md, "Headers")."""
        if row.message_id is not None and not row.message_id.isascii():
            ticket_id = row.ticket_id if row.ticket_id is not None else NO_TICKET
            row.message_id = self.signer.make(ticket_id, row.id, row.to_address)

    def _render_digest(self, session: Session, row: OutboxMessage) -> None:
        """An SLA digest (`notifications.digest_reason`): the listed tickets as they
        are now, each target missed in the recipient's language and zone, the count
        of the rest, and the queue of breached tickets still being worked on."""
        reader = self._staff_reader(session, row.to_address)
        language = reader.language
        total, entries = notifications.digest_entries(row.status_reason or "")
        tickets = session.execute(select(Ticket).where(Ticket.id.in_(list(entries)))).scalars()
        listed = []
        with languages.reading(language, reader.zone):
            for ticket in sorted(tickets, key=lambda ticket: ticket.number):
                number = display_number(ticket.number, self.config)
                listed.append(
                    {
                        "number": number,
                        "subject": _cut(" ".join(ticket.subject.split()), DIGEST_SUBJECT_CHARS),
                        "targets": [wording.said(line) for line in entries[ticket.id]],
                        "url": f"{self.portal_url}/tickets/{number}",
                    }
                )
        queue_filter = "&".join(["sla=breached", *(f"status={status}" for status in _RUNNING_STATUSES)])
        row.subject = _digest_subject(language, total)
        context = {
            "language": language,
            "title": row.subject,
            "recipient_name": self._staff_name(session, row.to_address),
            "count": total,
            "tickets": listed,
            "more": total - len(listed),
            "over": notifications.SLA_DIGEST_OVER,
            "queue_url": f"{self.portal_url}/tickets?{queue_filter}",
        }
        templates = self.templates(language)
        row.body_text = templates.get_template("sla_digest.txt").render(context)
        row.body_html = templates.get_template("sla_digest.html").render(context)
        row.message_id = self.signer.make(NO_TICKET, row.id, row.to_address)
        row.in_reply_to, row.references = None, None

    def _render_code(self, row: OutboxMessage) -> None:
        """The code that proves a WhatsApp customer reads this mailbox, in the language
        they spoke (`notifications.code_entries`). About no ticket: nothing to thread
        onto, no ticket in its subject or Message-ID, no status link. The row's
        stored text goes once read: the rendered mail is the only copy kept."""
        language, code, minutes = notifications.code_entries(row.status_reason or "")
        if not code:  # emptied by an earlier skip: a mail without its code proves nothing
            raise ValueError("the verification code is gone from the row; the customer asks for a new one")
        notifications.forget_code(row)
        language = _known_language(language, self.default_language)
        subject = gettext_in(language, N_("Your verification code: %(code)s"), code=code)
        context = {"language": language, "title": subject, "code": code, "minutes": minutes}
        templates = self.templates(language)
        # Written to the row only once all of it rendered: a template that fails
        # leaves no copy of a code that never went out.
        text = templates.get_template("email_code.txt").render(context)
        html = templates.get_template("email_code.html").render(context)
        row.subject, row.body_text, row.body_html = subject, text, html
        row.message_id = self.signer.make(NO_TICKET, row.id, row.to_address)
        row.in_reply_to, row.references = None, None

    def build(self, row: OutboxMessage, ticket: Ticket | None, moment: datetime) -> EmailMessage:
        """The mail for a rendered row; `ticket` is None for a digest's or a code's,
        which are about no single ticket."""
        number = display_number(ticket.number, self.config) if ticket is not None else None
        recipient = addresses.on_the_wire(row.to_address)
        if recipient is None:  # the sender skips these before building (docs/outbound-mail.md)
            raise ValueError(f"{row.to_address} has no ASCII form")
        utf8 = addresses.needs_smtputf8(recipient)
        message = EmailMessage(policy=SMTPUTF8_POLICY if utf8 else MAIL_POLICY)
        message["From"] = _mailbox(self.from_name, addresses.wire_or_stored(self.envelope_from), utf8)
        # Cleaned again here: rows stored before names were cleaned on the way in.
        name = addresses.display_name(self._recipient_name(ticket, row))
        message["To"] = _mailbox(name, recipient, utf8)
        cc = _cc(row, utf8)
        if cc:
            message["Cc"] = cc
        message["Reply-To"] = addresses.wire_or_stored(
            self.reply_address(number) if number is not None else self.support
        )
        message["Subject"] = _undecodable(row.subject or number or "")
        message["Date"] = format_datetime(moment.replace(tzinfo=timezone.utc))
        message["Message-ID"] = f"<{row.message_id}>"
        parent = _writable_ids(f"<{row.in_reply_to}>" if row.in_reply_to else "")
        if parent:
            message["In-Reply-To"] = parent
        references = _writable_ids(row.references or "")
        if references:
            message["References"] = references
        auto_submitted = self.auto_submitted(row.kind)
        if auto_submitted:
            message["Auto-Submitted"] = auto_submitted
        message["X-Auto-Response-Suppress"] = "All"
        message["X-Loop"] = addresses.wire_or_stored(self.support)
        message.set_content(row.body_text or "")
        if row.body_html:
            message.add_alternative(row.body_html, subtype="html")
        return message

    @staticmethod
    def files_of(row: OutboxMessage) -> int | None:
        """The message whose files go with the row's mail (`with_files`): a public
        reply's; a note is never mailed, nor its files."""
        return row.reply_id if row.reply is not None and row.reply.kind == "reply" else None

    @staticmethod
    def files(session: Session, reply_id: int | None) -> list[MailFile]:
        """The files of the reply `reply_id` (`files_of`), bytes and all, in the order
        they were attached."""
        if reply_id is None:
            return []
        rows = session.execute(
            select(Attachment.filename, Attachment.content_type, Attachment.data)
            .where(Attachment.message_id == reply_id)
            .order_by(Attachment.id)
        ).all()
        return [MailFile(filename, content_type, data) for filename, content_type, data in rows]

    @staticmethod
    def with_files(message: EmailMessage, files: list[MailFile]) -> EmailMessage:
        """`message` as `build` made it, with `files` attached: a copy, so the built
        mail stays as small as it was. The sender attaches one mail's files at a
        time, just before sending it and after its claim committed: attached in the
        claim, a batch's files held the database (on SQLite, its one write lock)
        while they were encoded, and all their bytes at once (docs/outbound-mail.md)."""
        if not files:
            return message
        message = copy.deepcopy(message)
        for item in files:
            maintype, subtype = _mail_type(item.content_type)
            message.add_attachment(item.data, maintype=maintype, subtype=subtype, filename=item.filename)
        return message

    def reply_address(self, number: str) -> str:
        local, _, domain = self.support.partition("@")
        return f"{local}+{number}@{domain}"

    @staticmethod
    def auto_submitted(kind: str) -> str | None:
        """Every automatic mail says `auto-replied` (the product contract; RFC 3834
        would say `auto-generated` for a notice that answers no mail, and either keeps
        a responder quiet); a person's reply says nothing."""
        return None if kind == "reply" else "auto-replied"

    def reader(self, session: Session, ticket: Ticket, row: OutboxMessage, own_language: str = "") -> Reader:
        """Staff mail: the recipient's language and zone, else the defaults. Customer
        mail: `own_language`, the language of a merged ticket whose conversation is
        the recipient's (`notifications.own_thread`), else the ticket's (fixed now if
        this is its first customer mail), in `BUSINESS_TIMEZONE`."""
        if row.kind in v.STAFF_NOTIFICATION_KINDS:
            return self._staff_reader(session, row.to_address)
        if own_language:
            return Reader(_known_language(own_language, self.default_language), self._zone(""))
        return Reader(self._thread_language(session, ticket), self._zone(""))

    def _staff_reader(self, session: Session, address: str) -> Reader:
        chosen = session.execute(
            select(StaffUser.language, StaffUser.timezone).where(StaffUser.email == address)
        ).first()
        language, zone = chosen if chosen is not None else ("", "")
        return Reader(_known_language(language, self.default_language), self._zone(zone))

    def fix_languages(self, session: Session, tickets: Iterable[Ticket]) -> None:
        """Fix the language of each of `tickets` whose first customer mail is about to
        be rendered (`_thread_language`), in ticket-id order, before any is: two
        senders fixing the same tickets then lock them in one order. Fixed as each
        row was rendered, in the batch's order, each could hold a ticket the other
        waited for, and PostgreSQL aborted one claim as a deadlock."""
        for ticket in sorted(tickets, key=lambda ticket: ticket.id):
            self._thread_language(session, ticket)

    def _thread_language(self, session: Session, ticket: Ticket) -> str:
        """The language of the ticket's customer mail. The first customer mail fixes
        it, in a statement that only writes an empty value: two senders rendering a
        ticket's first mails at once agree on the one that was written first. Its
        `updated_at` stays: nothing a person did changed the ticket."""
        if not ticket.language:
            fixed = session.execute(
                update(Ticket)
                .where(Ticket.id == ticket.id, Ticket.language == "")
                .values(
                    language=languages.of_contact(ticket.requester, self.config), updated_at=Ticket.updated_at
                )
                .returning(Ticket.language)
                .execution_options(synchronize_session=False)
            ).scalar()
            if fixed is None:  # another sender fixed it first: theirs holds
                fixed = session.execute(select(Ticket.language).where(Ticket.id == ticket.id)).scalar_one()
            set_committed_value(ticket, "language", fixed)
        return _known_language(ticket.language, self.default_language)

    def _zone(self, chosen: str) -> str:
        """A staff member's zone when it is one, else `BUSINESS_TIMEZONE`."""
        if chosen:
            try:
                ZoneInfo(chosen)
                return chosen
            except (ZoneInfoNotFoundError, ValueError):
                pass
        return self.business_zone

    def _context(
        self, session: Session, ticket: Ticket, row: OutboxMessage, number: str, reader: Reader, subject: str
    ) -> dict[str, Any]:
        language = reader.language
        reply = None
        if row.reply is not None:
            author = row.reply.author_staff
            reply = {"body": row.reply.body, "author": author.name if author else row.reply.author_label}
        return {
            "language": language,
            "number": number,
            "subject": subject,
            "priority": label(PRIORITY_LABELS[ticket.priority], language),
            "category": label(CATEGORY_LABELS[ticket.category], language),
            "opened_at": format_when(ticket.created_at, language, reader.zone),
            "recipient_name": self._recipient_name(ticket, row),
            "track_url": f"{self.portal_url}/track",
            "reply_address": self.reply_address(number),
            "first_response": self._first_response(ticket.priority, language),
            "auto_close_after": format_duration(self.auto_close_after, language),
            "reply": reply,
            "old_status": _status_words(row.old_status, language),
            "new_status": _status_words(row.new_status, language),
            "waiting_for_you": row.new_status == "pending_customer",
            "reason": _reason(row, reader),
            "ticket_url": f"{self.portal_url}/tickets/{number}",
            "status_url": self._link("status", ticket, row),
            "rating_url": self._link("rating", ticket, row) if row.kind == "resolved" else None,
        }

    def _link(self, purpose: str, ticket: Ticket, row: OutboxMessage) -> str | None:
        """A customer's tokenized link (helpdesk.customer_links); staff alerts get none."""
        if row.kind in v.STAFF_NOTIFICATION_KINDS:
            return None
        return customer_links.url(self.config, purpose, ticket.id, row.to_address)

    def _first_response(self, priority: str, language: str) -> str:
        """The first-response target as the acknowledgment promises it."""
        target = format_duration(self.sla.first_response[priority], language)
        if self.sla.calendar is None:
            return target
        return gettext_in(language, N_("%(duration)s (counted in business hours)"), duration=target)

    @classmethod
    def _recipient_name(cls, ticket: Ticket | None, row: OutboxMessage) -> str:
        if ticket is not None:
            if row.to_address == ticket.requester.email:
                return ticket.requester.name
            for participant in ticket.participants:
                if participant.email == row.to_address:
                    return participant.name
        if row.kind in v.STAFF_NOTIFICATION_KINDS:
            session = object_session(row)
            if session is not None:
                return cls._staff_name(session, row.to_address)
        return ""

    @staticmethod
    def _staff_name(session: Session, address: str) -> str:
        return session.execute(select(StaffUser.name).where(StaffUser.email == address)).scalar() or ""

    def _thread(
        self, session: Session, row: OutboxMessage, hint: ThreadHint | None = None
    ) -> tuple[str | None, list[str]]:
        """In-Reply-To and References: the customer's last mail on the ticket before
        this row was queued is the parent; our earlier mail to the same recipient
        fills the thread (and is the parent when the customer never mailed, e.g. a
        portal ticket). References keep the first message and the newest ones.
        A customer's mail is one filed as a customer's public message: a mail from
        a staff address (kept as an internal note, with or without proof) is no
        part of the customer's thread, and its Message-ID is never sent to them
        (docs/outbound-mail.md).

        The customer's mails and our rows are two tables, so only their times can
        order them: both are stamped by the database's clock (`clock.database_clock`;
        the mail's in `ingest`), whichever host wrote them. A mail stamped by a host
        11 minutes ahead looked newer than the notices that answer it, and was left
        out of their thread.

        On a ticket others were merged into, each recipient's thread is their own:
        their own mail on those tickets (from their address in either spelling of
        an internationalised domain) and ours to them. The customers' mail of one
        conversation is no longer one thread, and nobody is sent the Message-ID of
        someone else's mail.

        Only the ids written are read: from each table its newest MAX_REFERENCES and,
        when there are more, its oldest. Every mail and row of the ticket was read
        for each copy, in the sender's claim (docs/outbound-mail.md). They are read
        in order from the indexes on (ticket_id, received_at) and (ticket_id,
        created_at), each mail's message looked up by (ticket_id, inbound_mail_id):
        joined and made distinct, every mail of the ticket was fetched and sorted
        first, 70–120 ms at 20,000 mails (docs/benchmarks.md).

        With a `hint` from the sender's batch read, merges are not asked again, and
        a ticket with no mail to thread to is not read at all."""
        if hint is not None and not hint.merged and not hint.earlier:
            return None, []
        merged = (
            hint.merged
            if hint is not None
            else bool(session.execute(select(notifications.merged_into(row.ticket_id).exists())).scalar())
        )

        def on_tickets(column: Any) -> Any:
            if not merged:
                return column == row.ticket_id
            return or_(column == row.ticket_id, column.in_(notifications.merged_into(row.ticket_id)))

        ours = on_tickets(InboundMail.ticket_id)
        if merged:
            # The recipient's own mail, written in either spelling of an
            # internationalised domain (`contacts.spelt_as`): rows name the contact
            # as stored, a mail its sender as their program wrote them.
            ours = and_(ours, contacts.spelt_as(func.lower(InboundMail.from_address), row.to_address.lower()))
        # A customer's public message: never a staff member's mail, which is kept
        # as an internal note (or a public reply the customer was sent our own mail
        # for); with the ticket, so the index on (ticket_id, inbound_mail_id) finds it.
        filed_as_customers = (
            select(Message.id)
            .where(
                Message.inbound_mail_id == InboundMail.id,
                on_tickets(Message.ticket_id),
                Message.kind == "reply",
                Message.author_staff_id.is_(None),
            )
            .exists()
        )
        received = _ends(
            session,
            select(InboundMail.received_at, InboundMail.id, InboundMail.message_id).where(
                ours,
                InboundMail.message_id.is_not(None),
                InboundMail.outcome.in_(_THREAD_OUTCOMES),
                InboundMail.received_at <= row.created_at,
                filed_as_customers,
            ),
            InboundMail.received_at,
            InboundMail.id,
        )
        # Our rows after the customer's last mail answer no mail of theirs yet: the
        # thread ends at that mail.
        until = max(received)[0] if received else row.created_at
        sent = _ends(
            session,
            select(OutboxMessage.created_at, OutboxMessage.id, OutboxMessage.message_id).where(
                on_tickets(OutboxMessage.ticket_id),
                OutboxMessage.to_address == row.to_address,
                OutboxMessage.id != row.id,
                OutboxMessage.message_id.is_not(None),
                OutboxMessage.state.in_(_SENT_STATES),
                OutboxMessage.created_at <= until,
            ),
            OutboxMessage.created_at,
            OutboxMessage.id,
        )
        # By time, then our row before the customer's mail of the same moment.
        thread = sorted(
            [(at, 1, key, mid) for at, key, mid in received] + [(at, 0, key, mid) for at, key, mid in sent]
        )
        if not thread:
            return None, []
        ids = [mid for _, _, _, mid in thread]
        references = list(dict.fromkeys([ids[0], *ids[-(MAX_REFERENCES - 1) :]]))
        return ids[-1], references


def _ends(session: Session, query: Any, at: Any, key: Any) -> list[tuple[datetime, int, str]]:
    """The newest MAX_REFERENCES rows of `query` (time, id, Message-ID) by `at` then
    `key`, and its oldest when there are more: what a thread's References keep."""
    rows = [
        tuple(found) for found in session.execute(query.order_by(at.desc(), key.desc()).limit(MAX_REFERENCES))
    ]
    if len(rows) == MAX_REFERENCES:
        oldest = session.execute(query.order_by(at, key).limit(1)).first()
        if oldest is not None and tuple(oldest) not in rows:
            rows.append(tuple(oldest))
    return rows


def _known_language(language: str, otherwise: str) -> str:
    return language if language in LANGUAGES else otherwise


def _digest_subject(language: str, count: int) -> str:
    """No ticket reference in it: answered or forwarded, a digest names no ticket."""
    text = languages.catalog(language).ngettext(
        "SLA breaches: %(count)s ticket", "SLA breaches: %(count)s tickets", count
    )
    return text % {"count": languages.format_number(count, language)}


def _cut(text: str, limit: int) -> str:
    """`text`, or its first `limit` characters and an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "\N{HORIZONTAL ELLIPSIS}"


def _status_words(status: str | None, language: str) -> str:
    return label(STATUS_LABELS[status], language) if status in STATUS_LABELS else status or ""


def _reason(row: OutboxMessage, reader: Reader) -> str:
    """The row's reason as its reader reads it. A customer's status mail shows what
    staff wrote, as written. The staff alerts' own sentences are stored in English
    (sla.Breach.describe, notifications.queue_escalation) and read back by
    helpdesk.wording, as the portal reads them, in the recipient's language and
    zone; what staff typed below an escalation's first line stays as written."""
    reason = row.status_reason or ""
    with languages.reading(reader.language, reader.zone):
        if row.kind == "sla_breach":
            return "\n".join(wording.said(line) for line in reason.split("\n"))
        if row.kind == "escalation":
            first, newline, rest = reason.partition("\n")
            return wording.said(first) + newline + rest
    return reason


def _mail_type(content_type: str) -> tuple[str, str]:
    """The attachment's type in the mail: as uploaded (mail programs pick a viewer by
    it), unless malformed or structural, then `application/octet-stream`."""
    maintype, _, subtype = content_type.lower().partition("/")
    well_formed = _MIME_TOKEN.fullmatch(maintype) and _MIME_TOKEN.fullmatch(subtype)
    if maintype in _STRUCTURAL_TYPES or not well_formed:
        return "application", "octet-stream"
    return maintype, subtype


def _cc(row: OutboxMessage, utf8: bool) -> str:
    """The row's CC list as the mail can carry it, each address on the wire
    (`addresses.on_the_wire`). Left out: an address `addresses.is_valid` refuses —
    a row queued before the rule refused an address shaped as an RFC 2047 encoded
    word holds one (docs/security.md): the email package decodes it when the header
    is set, which failed every copy of the reply or named another address — and one
    with no ASCII form, or (in a mail that is not RFC 6531) with a mailbox name
    beyond ASCII. Each participant still gets a copy of their own. Nor is an address
    literal (`bob@[127.0.0.1]`, kept from a mail's Cc) named: its own copy is never
    sent, and a Reply-All would have the customer's server connect to that host."""
    kept = []
    for address in filter(None, (part.strip() for part in row.cc_addresses.split(","))):
        if addresses.is_reserved_invalid(address) or addresses.is_address_literal(address):
            continue  # a stand-in (never mailed, a phone number) or a literal (never mailed)
        wire = addresses.on_the_wire(address) if addresses.is_valid(address) else None
        if wire is not None and (utf8 or not addresses.needs_smtputf8(wire)):
            kept.append(wire)
        else:
            log.warning("outbox #%s: %r left out of Cc: it cannot be written in this mail", row.id, address)
    return ", ".join(kept)


def _mailbox(name: str, address: str, utf8: bool) -> str:
    """`name <address>` as an address header carries it (`AddressList`), or the bare
    address without a name. Every reader sees exactly `name` and one address: the
    name is written as plain words when each is an atom (RFC 5322 §3.2.3; in RFC 6531
    mail also printable characters beyond ASCII, RFC 6532 §3.2), otherwise whole as
    RFC 2047 encoded words, which a reader decodes into the name and never into
    addresses. So is a name with `=?` in it, which a reader would otherwise decode
    (docs/outbound-mail.md)."""
    if not name:
        return address
    words = name.split()
    plain = "=?" not in name and all(
        len(word) <= MAX_WORD and all(_in_atom(char, utf8) for char in word) for word in words
    )
    phrase = " ".join(words) if plain else " ".join(_encoded_words(" ".join(words)))
    return f"{phrase} <{address}>"


def _in_atom(char: str, utf8: bool) -> bool:
    return char in _ATEXT or (utf8 and not char.isascii() and char.isprintable() and not char.isspace())


def _encoded_words(text: str) -> list[str]:
    """`text` as RFC 2047 `B` encoded words of UTF-8, each at most 75 characters and
    each holding whole characters (§5), in one pass over the text."""
    chunks: list[bytes] = []
    chunk = b""
    for char in text:
        octets = char.encode("utf-8", "replace")  # a lone surrogate has no UTF-8: `?`
        if chunk and len(chunk) + len(octets) > _ENCODED_WORD_OCTETS:
            chunks.append(chunk)
            chunk = b""
        chunk += octets
    chunks.append(chunk)
    return [f"=?utf-8?b?{base64.b64encode(part).decode('ascii')}?=" for part in chunks]


def _writable_ids(ids: str) -> str:
    """The `<id>` tokens of `ids` that are msg-ids 7-bit mail carries as they are. An
    id from a customer's mail with other characters (8-bit headers), longer than a
    line, not shaped as a msg-id (no `@`, two, a `:`) or holding an encoded word
    (RFC 2047 allows none in a msg-id; a reader that decodes one finds a line break
    or a character beyond ASCII in our header) is left out: the rest of the mail
    still goes (docs/outbound-mail.md, "Headers")."""
    return " ".join(
        token
        for token in ids.split()
        if len(token) <= _MAX_ID and _ENCODED_WORD_START not in token and _WRITABLE_ID.fullmatch(token)
    )


def _undecodable(text: str) -> str:
    """`text` as a header shows it, with nothing the email package would decode.

    Assigning a header parses its value, and text that reads as an RFC 2047 encoded
    word (`=?utf-8?b?…?=`, which a customer can send double-encoded) is decoded, line
    breaks and all, into header lines of our mail (docs/security.md). A zero-width
    space after each `=` before `?` keeps it text; readers see the same characters."""
    return text.replace("=?", "=\N{ZERO WIDTH SPACE}?")
