"""What the services write in English, in the reader's language (the portal's
staff; a customer whose assistant call a service refused): a domain error's
message, a form field's problem, a history row's reason and values
(docs/languages.md, "What the portal translates").

The services speak English, with a stable `code` on every error: the API hands
their messages on as they are, and some of what they write is stored (the reason
of a history row). The portal reads them back here. Each text a service writes
is listed in KNOWN as the service writes it, `%(name)s` where the service puts a
value, and marked for the catalogs; a text that has the shape of one is shown in
the reader's language with its values as they were (a ticket status among them
read as its label, a count as the reader's number). Anything else, such as a reason someone typed, is shown as
written. tests/test_staff_languages.py reads the raise statements of the services
the portal calls and fails on a text missing here, so a new message cannot slip
through in English.

The shapes are matched with plain string search, no regular expression: nothing
here backtracks over text someone typed.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from helpdesk import languages
from helpdesk.errors import DomainError, ValidationError
from helpdesk.languages import N_

# Every English text of the services the portal shows (module docstring). Values
# that are codes of the product's vocabulary ("must be one of low, medium, …") are
# what a form sends and stay as they are.
KNOWN = (
    # helpdesk.errors
    N_("Invalid input."),
    N_("Cannot move a ticket from %(current)s to %(requested)s; allowed: %(allowed)s."),
    # a field's problem (ValidationError.fields), after the field's name
    N_("is required"),
    N_("is wrong"),
    N_("must be text"),
    N_("must be at most %(count)s characters"),
    N_("must be at most %(count)s addresses"),
    N_("must be at least %(count)s characters"),
    N_("must not contain control characters"),
    N_("must be text of at most %(count)s characters"),
    N_("must be 1 to %(count)s printable characters"),
    N_("must be one of %(choices)s"),
    N_("must be a list of %(choices)s"),
    N_("must name 1 to %(count)s tickets"),
    N_("must not contain NUL characters or lone surrogates"),
    N_("is not a valid email address"),
    N_("%(address)s is not a valid email address"),
    N_("is not a valid email address (a@b.c) nor a domain (@b.c)"),
    N_("a domain rule looks like @example.com"),
    N_("names a host by its IP address: mail from it is held whatever the rules say"),
    N_("is not a team"),
    N_("is not a staff member"),
    N_("is not an active staff member"),
    N_("is this ticket itself"),
    N_("customers cannot write internal notes"),
    N_("the ticket is cancelled; only notes can be added"),
    N_("must be 1-50 lowercase letters, digits and underscores, starting with a letter"),
    N_("each must be letters, digits, - and _ (at most %(length)s characters), at most %(count)s tags"),
    N_(
        "must be a list of at most %(count)s serial numbers of letters and digits (and : . _ / -), "
        "each at most %(length)s characters"
    ),
    N_("must be an IANA time zone such as America/Mexico_City"),
    N_("at most %(count)s files may be attached to one message"),
    N_("%(name)s is %(size)s bytes; a file may have at most %(limit)s"),
    N_("the files have %(size)s bytes together; at most %(limit)s in all"),
    # helpdesk.services.tickets
    N_("No ticket %(number)s."),
    N_("%(number)s is %(status)s; only open tickets are escalated."),
    N_("%(number)s is already at %(level)s; escalation only goes up."),
    N_("%(number)s is already merged into %(into)s."),
    N_("%(number)s cannot be merged into itself."),
    N_("A cancelled ticket is final; it cannot be merged or merged into."),
    N_("The tickets were merged again while being changed; try again."),
    N_("The tickets' merges go on too long to follow; ask an admin to check them."),
    # helpdesk.services.senders, staff, teams, integrations, canned
    N_("%(pattern)s is already authorized."),
    N_("No rule %(pattern)s."),
    N_("A staff user %(email)s already exists."),
    N_("%(email)s is the only admin; make someone else admin first."),
    N_("No team %(name)s."),
    N_("There is already a team %(name)s."),
    N_("Team %(name)s still has tickets; move them to another team first."),
    N_("Ticket types are routed to %(name)s; route them elsewhere first."),
    N_("No staff member %(id)s."),
    N_("An integration named %(name)s already exists."),
    N_("No integration named %(name)s."),
    N_("No canned reply %(id)s."),
    N_("Only admins change shared canned replies."),
    N_("Only staff have canned replies."),
    N_("Only admins add shared canned replies."),
    # helpdesk.services.satisfaction (the assistant's rate_ticket tool passes them on)
    N_("This ticket is closed; its rating can no longer be changed."),
    N_("A ticket can be rated once it is resolved."),
    N_("Someone else on this ticket has rated it; their rating stands."),
    N_("must be a whole number from 1 to 5"),
    # helpdesk.inbound.quarantine
    N_("No quarantine item %(id)s."),
    N_("Cannot approve item %(id)s: %(reason)s."),
    N_(
        "Cannot approve item %(id)s: the mail gateway never read this mail from its mailbox, "
        "so nothing of it is stored here to approve; its reason says where it is."
    ),
    N_(
        "Cannot approve item %(id)s: a process reading this mail apart did not end well, as "
        "the mail gateway's processes did not; reject it, or download it to look at it."
    ),
    N_("Quarantine item %(id)s was already %(state)s."),
    # the reasons history rows record (helpdesk.services.tickets, lifecycle_jobs;
    # the portal's bulk form)
    N_("created via %(channel)s"),
    N_("customer replied"),
    N_("opened by an agent"),
    N_("merged into %(number)s"),
    N_("merged into %(number)s. %(reason)s"),
    N_("%(number)s merged into this ticket."),
    N_("%(number)s merged into this ticket. %(reason)s"),
    N_("%(number)s merged into %(into)s."),
    N_("bulk action"),
    "First response was due %(time)s UTC.",  # shown as SHOWN_AS says
    "Resolution was due %(time)s UTC.",
    N_("Escalated from %(old)s to %(new)s by %(who)s:"),  # a staff alert's first line
    N_("no reply for %(duration)s after it was resolved"),
    N_("SLA breached (SLA_BREACH_RAISES_PRIORITY)"),
    # an author's label (helpdesk.services.actors), the gateway's among them
    N_("%(who)s (unverified sender)"),
    N_("mail gateway"),
    # the lines of the gateway's note for staff on a mail (helpdesk.inbound.parser,
    # storage, ingest; docs/mail-gateway.md, "What is stored")
    N_("%(name)s (%(size)s bytes) not stored: larger than %(limit)s bytes; it is in the original mail."),
    N_(
        "%(name)s (%(size)s bytes) not stored: attachments exceed %(limit)s bytes in total; "
        "it is in the original mail."
    ),
    N_(
        "1 more attachment not stored: more than %(limit)s in one mail (MAX_ATTACHMENTS); "
        "it is in the original mail."
    ),
    N_(
        "%(count)s more attachments not stored: more than %(limit)s in one mail (MAX_ATTACHMENTS); "
        "they are in the original mail."
    ),
    N_(
        "%(count)s more To/Cc addresses were not added as participants: more than %(limit)s "
        "(MAX_CC_PARTICIPANTS)."
    ),
    N_("Only the header of this mail was read: %(reason)s. The whole mail is kept as it arrived."),
    N_("Only the first %(count)s characters of the HTML were read as text (MAX_HTML_TO_TEXT_CHARS)."),
    N_(
        "An enclosed message was not read as text: the mail's budget for reading enclosed "
        "messages again (three times its size) was spent. It is kept as an attachment."
    ),
    N_("The sender was taken from %(where)s: the mail has no From header."),
    N_("The sender was taken from %(where)s: the From header (%(from)s) names no address."),
    N_(
        "The Message-ID of this mail was already used by another mail (inbound mail #%(id)s); "
        "it was kept as a mail of its own, not as a duplicate."
    ),
)
# Known texts shown otherwise than they are written: a time the service wrote in
# UTC is shown in the reader's zone, which names itself.
SHOWN_AS = {
    "First response was due %(time)s UTC.": N_("First response was due %(time)s."),
    "Resolution was due %(time)s UTC.": N_("Resolution was due %(time)s."),
}
# Form fields as ValidationError names them, in words, lower case: "The %(field)s …".
FIELD_LABELS = {
    "subject": N_("subject"),
    "description": N_("description"),
    "requester_email": N_("requester email"),
    "requester_name": N_("requester name"),
    "priority": N_("priority"),
    "category": N_("category"),
    "channel": N_("channel"),
    "source": N_("source"),
    "assignee": N_("assignee"),
    "ticket_type": N_("type"),
    "service_address": N_("service address"),
    "affected_services": N_("affected services"),
    "device_serials": N_("device serials"),
    "team": N_("team"),
    "cc": N_("cc"),
    "body": N_("body"),
    "internal": N_("internal note"),
    "status": N_("status"),
    "level": N_("level"),
    "reason": N_("reason"),
    "name": N_("name"),
    "staff_id": N_("staff member"),
    "role": N_("role"),
    "email": N_("email"),
    "password": N_("password"),
    "current_password": N_("current password"),
    "new_password": N_("new password"),
    "pattern": N_("address or @domain"),
    "organization": N_("organization"),
    "title": N_("title"),
    "attachments": N_("attachments"),
    "tags": N_("tags"),
    "ticket": N_("ticket"),
    "tickets": N_("tickets"),
    "action": N_("action"),
    "kind": N_("kind"),
    "language": N_("language"),
    "timezone": N_("time zone"),
}
# The targets an SLA history row names as breached (helpdesk.sla).
SLA_TARGET_LABELS = {
    "first_response_breached": N_("First response breached"),
    "resolution_breached": N_("Resolution breached"),
}
_FINAL = N_("none (final state)")  # InvalidTransition's "allowed" for a final status
_PLACEHOLDER = re.compile(r"%\((\w+)\)s")  # applied to KNOWN only, never to input
MAX_COUNT_CHARS = 32  # a count the services write is far shorter; longer is shown as written


@dataclass(frozen=True)
class _Shape:
    """A known text cut at its placeholders: `pieces` has one more item than `names`."""

    text: str
    pieces: tuple[str, ...]
    names: tuple[str, ...]

    @property
    def weight(self) -> int:
        """The more literal text a shape has, the more it says: it wins a tie."""
        return sum(map(len, self.pieces))

    def values(self, text: str) -> dict[str, str] | None:
        """The placeholders' values if `text` has this shape (each value not empty,
        the first occurrence of the piece after it ending it), else None."""
        first, rest = self.pieces[0], self.pieces[1:]
        if not text.startswith(first):
            return None
        if not self.names:
            return {} if text == first else None
        found: dict[str, str] = {}
        position = len(first)
        for index, (name, piece) in enumerate(zip(self.names, rest, strict=True)):
            if index == len(rest) - 1:
                end = len(text) - len(piece)
                if not text.endswith(piece) or end <= position:
                    return None
            else:
                end = text.find(piece, position + 1)
                if end < 0:
                    return None
            found[name] = text[position:end]
            position = end + len(piece)
        return found


@functools.cache
def _shapes() -> tuple[_Shape, ...]:
    shapes = []
    for text in KNOWN:
        parts = _PLACEHOLDER.split(text)
        shapes.append(_Shape(text, tuple(parts[0::2]), tuple(parts[1::2])))
    return tuple(sorted(shapes, key=lambda shape: -shape.weight))


def said(text: str) -> str:
    """`text` in the reader's language if it is one of KNOWN, else as it is."""
    for shape in _shapes():
        values = shape.values(text)
        if values is not None:
            shown = {name: _VALUES.get(name, _as_is)(value) for name, value in values.items()}
            text = SHOWN_AS.get(shape.text, shape.text)
            return languages.translate(text, **shown) if shown else languages.translate(text)
    return text


def field_name(name: str) -> str:
    """A form field as ValidationError names it, in words ("requester email")."""
    known = FIELD_LABELS.get(name)
    return languages.label(known) if known else name.replace("_", " ")


def error_text(exc: DomainError) -> str:
    """A domain error as the portal shows it in a flash message. A ValidationError
    reads like its English `str()`: "Invalid input. subject: is required"."""
    if not isinstance(exc, ValidationError):
        return said(str(exc))
    problems = [
        languages.translate("%(field)s: %(problem)s", field=field_name(name), problem=said(problem))
        for name, problem in exc.fields.items()
    ]
    return " ".join([said(exc.message), "; ".join(problems)]).strip()


def refusal(why: str) -> str:
    """A bulk action's reason for refusing a ticket: the `str()` of a domain error
    (helpdesk.services.bulk), a ValidationError's read back as its one field."""
    prefix = "Invalid input. "
    if why.startswith(prefix):
        name, colon, problem = why[len(prefix) :].partition(": ")
        if colon and (name in FIELD_LABELS or name.replace(" ", "_") in FIELD_LABELS):
            field = field_name(name.replace(" ", "_"))
            problem = languages.translate("%(field)s: %(problem)s", field=field, problem=said(problem))
            return " ".join([said("Invalid input."), problem])
    return said(why)


def vocabulary_label(table: Mapping[str, str], code: str | None) -> str:
    """A vocabulary value by its label in `table`, translated; a value the table
    does not know (a newer one, stored data) in words."""
    if not code:
        return "—"
    known = table.get(code)
    return languages.label(known) if known else code.replace("_", " ")


def history_value(field: str, value: str | None) -> str:
    """The old or new value of a history row of `field`, as staff read it."""
    if value is None or value == "":
        return "—"
    table = _HISTORY_VALUES.get(field)
    if table is None:
        return value.replace("_", " ") if field == "team" else value
    return vocabulary_label(table, value)


def _as_is(value: str) -> str:
    return value


def _status(value: str) -> str:
    """A status inside a sentence: its label, in lower case ("in progress")."""
    return vocabulary_label(languages.STAFF_STATUS_LABELS, value.replace(" ", "_")).lower()


def _statuses(value: str) -> str:
    if value == _FINAL:
        return languages.translate(_FINAL)
    return ", ".join(_status(one) for one in value.split(", "))


def _choices(value: str) -> str:
    """The values a field takes ("low, medium, high"), each by its label where the
    vocabulary has one ("baja, media, alta"), else as the form sends it ("en, es")."""
    return ", ".join(
        languages.label(_LABELS[code]).lower() if code in _LABELS else code for code in value.split(", ")
    )


def _time(value: str) -> str:
    """A history reason's time ("2026-03-02 08:15", UTC) in the reader's zone."""
    try:
        return languages.when(datetime.strptime(value, "%Y-%m-%d %H:%M"))
    except ValueError:
        return value


def _duration(value: str) -> str:
    """helpdesk.clock.describe's words ("3 days") in the reader's language."""
    count, _, unit = value.partition(" ")
    size = {"day": 86400, "hour": 3600, "minute": 60}.get(unit.removesuffix("s"))
    if not count.isdigit() or size is None:
        return value
    return languages.duration_words(timedelta(seconds=int(count) * size))


def _count(value: str) -> str:
    """A count the service wrote ("5000", "10,485,760") as the reader's number
    ("5.000"); anything else, a grouping that is not English's among it, as it is
    (docs/languages.md, "Counts in sentences")."""
    digits = value.replace(",", "")
    if not (digits.isascii() and digits.isdigit()) or len(value) > MAX_COUNT_CHARS:
        return value
    count = int(digits)
    if "," in value and f"{count:,}" != value:
        return value
    return languages.number(count)


_VALUES: dict[str, Callable[[str], str]] = {
    "choices": _choices,
    "status": _status,
    "current": _status,
    "requested": _status,
    "allowed": _statuses,
    "channel": lambda value: vocabulary_label(languages.CHANNEL_LABELS, value),
    "state": lambda value: vocabulary_label(languages.QUARANTINE_STATE_LABELS, value),
    "time": _time,
    "duration": _duration,
    # counts: a limit, a size in bytes, how many were left out (never an id: "item 1234")
    "count": _count,
    "size": _count,
    "limit": _count,
    "length": _count,
    "where": languages.translate,  # a header's name as it is, "the SMTP envelope (MAIL FROM)" translated
}
# Every vocabulary value with a label, for a list of choices (a value means the same
# in every table it is in: "system", "chat", "pending").
_LABELS: dict[str, str] = {
    code: text
    for table in (
        languages.STAFF_STATUS_LABELS,
        languages.PRIORITY_LABELS,
        languages.CATEGORY_LABELS,
        languages.TICKET_TYPE_LABELS,
        languages.CHANNEL_LABELS,
        languages.SOURCE_LABELS,
        languages.SERVICE_LABELS,
        languages.ROLE_LABELS,
        languages.INTEGRATION_KIND_LABELS,
    )
    for code, text in table.items()
}
_HISTORY_VALUES: dict[str, Mapping[str, str]] = {
    "status": languages.STAFF_STATUS_LABELS,
    "priority": languages.PRIORITY_LABELS,
    "category": languages.CATEGORY_LABELS,
    "ticket_type": languages.TICKET_TYPE_LABELS,
    "sla": SLA_TARGET_LABELS,
    "language": languages.LANGUAGE_NAMES,
    "deliverable": languages.DELIVERABLE_LABELS,
}
