"""Who reads which language, the catalogs the words come from, and times and
durations as each reader reads them (docs/languages.md).

Texts are written in English in the code and templates and translated through
gettext catalogs (`helpdesk/translations/<language>/LC_MESSAGES/messages.po`,
compiled by `make translations`). English is the source language and needs no
catalog; every other language in `LANGUAGES` must have a compiled one, and a
missing one is an error at startup (`check_catalogs`), never a product that
quietly speaks English.

Who reads what:
- a web request: the language the view chose with `use` (a staff member's
  preference, the tracker's switch, a customer's contact), else the browser's
  `Accept-Language`, else `DEFAULT_LANGUAGE`; times in the reader's zone (staff
  preference), else `BUSINESS_TIMEZONE`;
- everything written to a customer outside a request (mail, tool messages, chat
  cards, share text) names its language explicitly: `of_contact`, `gettext_in`.

Texts defined before anyone reads them (labels of a status, a priority…) are
marked with `N_` so extraction finds them, and translated when read (`label`).
"""

from __future__ import annotations

import functools
import zoneinfo
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timedelta, timezone
from gettext import NullTranslations
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import flask_babel
from babel import Locale
from babel.dates import format_date, format_time, format_timedelta, get_timezone_gmt
from babel.numbers import format_decimal
from babel.support import Translations
from babel.units import format_unit
from flask import Flask, current_app, g, has_request_context, request

from config import LANGUAGES, ConfigurationError
from helpdesk.models import Contact, Ticket

FALLBACK = "en"  # the source language: the texts as written, no catalog
TRANSLATIONS_DIR = Path(__file__).resolve().parent / "translations"
LANGUAGE_NAMES = {"en": "English", "es": "Español"}  # each in its own words, for choosers

babel = flask_babel.Babel()
# The reader `reading` names, for what is written outside their request.
_reader: ContextVar[tuple[str, str] | None] = ContextVar("reader", default=None)
# The Accept-Language entries read (`browser_language`): browsers send a handful.
MAX_ACCEPTED_LANGUAGES = 32
_DURATION_UNITS = (("duration-day", 86400), ("duration-hour", 3600), ("duration-minute", 60))


class MissingCatalog(RuntimeError):
    """A language the product speaks has no compiled catalog: `make translations`."""


def N_(message: str) -> str:
    """Marks a text for extraction where it is defined; `label` translates it when read."""
    return message


STATUS_LABELS = {
    "new": N_("New"),
    "open": N_("Open"),
    "in_progress": N_("In progress"),
    "pending_customer": N_("Waiting for your answer"),
    "resolved": N_("Resolved"),
    "closed": N_("Closed"),
    "reopened": N_("Reopened"),
    "cancelled": N_("Cancelled"),
}
PRIORITY_LABELS = {"low": N_("Low"), "medium": N_("Medium"), "high": N_("High"), "urgent": N_("Urgent")}
CATEGORY_LABELS = {
    "support": N_("Support"),
    "technical": N_("Technical support"),
    "billing": N_("Billing"),
    "sales": N_("Sales"),
    "complaint": N_("Complaint"),
    "feature_request": N_("Feature request"),
    "account": N_("Account"),
    "other": N_("Other"),
}
# What staff read for the other values of helpdesk.vocabulary (the portal). A
# status reads as STATUS_LABELS says, except the one a customer reads as theirs.
STAFF_STATUS_LABELS = {**STATUS_LABELS, "pending_customer": N_("Waiting for the customer")}
TICKET_TYPE_LABELS = {
    "general_inquiry": N_("General inquiry"),
    "billing_issue": N_("Billing issue"),
    "technical_support": N_("Technical support"),
    "installation_request": N_("Installation request"),
    "outage_report": N_("Outage report"),
    "service_upgrade": N_("Service upgrade"),
    "service_downgrade": N_("Service downgrade"),
    "cancellation_request": N_("Cancellation request"),
    "equipment_issue": N_("Equipment issue"),
    "speed_issue": N_("Speed issue"),
    "network_issue": N_("Network issue"),
    "connectivity_issue": N_("Connectivity issue"),
}
CHANNEL_LABELS = {
    "web": N_("Web"),
    "api": N_("API"),
    "email": N_("Email"),
    "chat": N_("Chat"),
    "whatsapp": N_("WhatsApp"),
    "phone": N_("Phone"),
    "system": N_("System"),
}
SOURCE_LABELS = {
    "customer": N_("Customer"),
    "agent": N_("Agent"),
    "ai": N_("Assistant (AI)"),
    "system": N_("System"),
}
SLA_STATE_LABELS = {
    "breached": N_("Breached"),
    "due_soon": N_("Due soon"),
    "on_track": N_("On track"),
    "met": N_("Met"),
    "void": N_("Void"),
}
SERVICE_LABELS = {"internet": N_("Internet"), "voip": N_("VoIP"), "tv": N_("TV")}
ROLE_LABELS = {"admin": N_("Admin"), "agent": N_("Agent")}
INTEGRATION_KIND_LABELS = {"assistant": N_("Assistant"), "chat": N_("Chat"), "workflow": N_("Workflow")}
INBOUND_OUTCOME_LABELS = {
    "created": N_("Opened a ticket"),
    "appended": N_("Added to a ticket"),
    "quarantined": N_("Quarantined"),
    "ignored": N_("Ignored"),
    "rejected": N_("Rejected"),
}
OUTBOX_STATE_LABELS = {
    "pending": N_("Pending"),
    "sending": N_("Sending"),
    "sent": N_("Sent"),
    "failed": N_("Failed"),
    "skipped": N_("Skipped"),
    "bounced": N_("Bounced"),
}
QUARANTINE_STATE_LABELS = {
    "pending": N_("Pending"),
    "approved": N_("Approved"),
    "rejected": N_("Rejected"),
    "spam": N_("Spam"),
}
HISTORY_FIELD_LABELS = {
    "status": N_("Status"),
    "assignee": N_("Assignee"),
    "priority": N_("Priority"),
    "category": N_("Category"),
    "sla": N_("SLA"),
    "ticket_type": N_("Type"),
    "team": N_("Team"),
    "escalation": N_("Escalation"),
    "merge": N_("Merge"),
    "link": N_("Related tickets"),
    "tags": N_("Tags"),
    "language": N_("Language"),
    "deliverable": N_("Mail delivery"),
}
# The values of a `deliverable` history row (helpdesk.services.contacts.clear_undeliverable_on).
DELIVERABLE_LABELS = {
    "undeliverable": N_("undeliverable"),
    "deliverable": N_("works again"),
}
# Where an inbound mail's sender was read (helpdesk.vocabulary.SENDER_SOURCES): a
# header's name reads the same in every language.
SENDER_SOURCE_LABELS = {
    "from": "From",
    "sender": "Sender",
    "reply-to": "Reply-To",
    "return-path": "Return-Path",
    "envelope": N_("the SMTP envelope (MAIL FROM)"),
}


def init_app(app: Flask) -> None:
    check_catalogs()
    zone = app.config["BUSINESS_TIMEZONE"]
    if zone not in time_zones():  # read by every time shown, not only by BUSINESS_HOURS
        raise ConfigurationError(
            f"BUSINESS_TIMEZONE must be an IANA time zone such as America/Mexico_City, not {zone!r}"
        )
    babel.init_app(
        app,
        locale_selector=_select_language,
        timezone_selector=_select_timezone,
        default_translation_directories=str(TRANSLATIONS_DIR),
    )
    app.add_template_filter(when, "when")
    app.add_template_filter(duration_words, "duration_words")
    app.add_template_filter(label, "label")
    app.add_template_filter(number, "number")
    app.jinja_env.globals["current_language"] = current_language
    app.jinja_env.globals["LANGUAGE_NAMES"] = LANGUAGE_NAMES


@functools.cache
def time_zones() -> frozenset[str]:
    """The IANA zones this machine knows (read from the system once): the ones a
    staff member may choose and BUSINESS_TIMEZONE may name, so every time can be
    formatted later without failing."""
    return frozenset(zoneinfo.available_timezones())


def check_catalogs() -> None:
    for language in LANGUAGES:
        catalog(language)


@functools.cache
def catalog(language: str) -> NullTranslations:
    """The compiled catalog of a language the product speaks (English: the texts as written)."""
    if language == FALLBACK:
        return NullTranslations()
    if language not in LANGUAGES:
        raise ValueError(f"not a language of this product: {language!r}")
    loaded = Translations.load(str(TRANSLATIONS_DIR), [language])
    if not isinstance(loaded, Translations):
        raise MissingCatalog(
            f"no compiled catalog for {language!r} under {TRANSLATIONS_DIR}: run `make translations`"
        )
    return loaded


def gettext_in(language: str, message: str, **values: Any) -> str:
    """`message` in `language`, outside any request (mail, tool messages, cards).
    `values` fill the `%(name)s` placeholders after translation, as gettext does."""
    text = catalog(language).gettext(message)
    return text % values if values else text


def label(message: str, language: str | None = None) -> str:
    """A text marked with `N_`, in `language` or the request's."""
    return gettext_in(language or current_language(), message)


def of_contact(contact: Contact, config: Mapping[str, Any]) -> str:
    """The language to write to this customer in: theirs, else the configured
    default (a value no texts exist in falls back to English rather than failing)."""
    language = contact.language or config["DEFAULT_LANGUAGE"]
    return language if language in LANGUAGES else FALLBACK


def of_ticket(ticket: Ticket, config: Mapping[str, Any]) -> str:
    """The language of a ticket's customer mail: its own once its first customer
    mail fixed it, else the one that mail will fix (`of_contact` of its requester)."""
    if ticket.language in LANGUAGES:
        return ticket.language
    return of_contact(ticket.requester, config)


def use(language: str | None = None, zone: str | None = None) -> None:
    """What the rest of this request is read in; `None` or "" keeps the default.
    Views call it as soon as they know the reader (a staff member's preferences,
    a customer's contact or choice)."""
    if language:
        g.language = language if language in LANGUAGES else FALLBACK
    if zone:
        g.zone = zone
    flask_babel.refresh()


@contextmanager
def reading(language: str, zone: str) -> Iterator[None]:
    """Everything read inside is for one reader named here, in a request or out of
    one: a staff alert's sentences in its recipient's language and zone, a tool's
    refusal in its customer's. `translate`, `label` and the filters follow it."""
    token = _reader.set((language, zone))
    try:
        yield
    finally:
        _reader.reset(token)


def translate(message: str, **values: Any) -> str:
    """`message` in the current reader's language (`gettext_in` for them)."""
    return gettext_in(current_language(), message, **values)


def current_language() -> str:
    """The reader's (`reading`), else the request's language (outside a request: the default)."""
    chosen = _reader.get()
    if chosen is not None:
        return chosen[0]
    if not has_request_context():
        return str(current_app.config["DEFAULT_LANGUAGE"])
    locale = flask_babel.get_locale()
    return locale.language if locale is not None else FALLBACK


def current_zone() -> str:
    chosen = _reader.get()
    if chosen is not None:
        return chosen[1]
    return str(g.get("zone") or current_app.config["BUSINESS_TIMEZONE"])


def browser_language() -> str | None:
    """The language of the product the request's `Accept-Language` prefers, if it
    names one (a browser asking for Portuguese only names none): each tag counts
    as its main language ("es-419" is "es") with its own q-value, the highest
    q wins and, among equal ones, the one named first (docs/languages.md). A
    wildcard (`*`, "anything else") names none: taken as a match, it chose the
    first language we speak over the contact's. Only the first
    `MAX_ACCEPTED_LANGUAGES` entries are read (a browser sends a handful)."""
    header = request.headers.get("Accept-Language", "")
    entries = header.split(",", MAX_ACCEPTED_LANGUAGES)[:MAX_ACCEPTED_LANGUAGES]
    best: tuple[float, str] | None = None
    for entry in entries:
        tag, _, parameters = entry.partition(";")
        language = main_language(tag)
        if language is None:
            continue
        quality = _quality(parameters)
        if quality is not None and quality > 0 and (best is None or quality > best[0]):
            best = (quality, language)
    return best[1] if best else None


def main_language(tag: str) -> str | None:
    """The language of the product a language tag names by its main subtag
    (`es-419`, `es_AR` and `ES` are `es`; BCP 47 and the POSIX spelling), or None
    for one we do not speak. Its first two letters were read as the language
    before: `esperanto` was Spanish (docs/languages.md)."""
    language = tag.strip().replace("_", "-").partition("-")[0].lower()
    return language if language in LANGUAGES else None


def _quality(parameters: str) -> float | None:
    """An entry's q-value (RFC 9110: 0 to 1, at most three decimals; none is 1),
    or None for one that is not a number of that shape (the entry is ignored)."""
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() != "q":
            continue
        value = value.strip()
        shaped = value[:1] in ("0", "1") and len(value) <= 5 and value.count(".") <= 1
        if not shaped or value.strip("0123456789."):
            return None
        quality = float(value)
        return quality if quality <= 1 else None
    return 1.0


def _select_language() -> str:
    chosen = g.get("language")
    if chosen:
        return str(chosen)
    return browser_language() or current_app.config["DEFAULT_LANGUAGE"]


def _select_timezone() -> str:
    return current_zone()


def format_when(moment: datetime, language: str, zone: str) -> str:
    """A stored (naive UTC) time as a reader reads it: their date and clock style,
    in their zone, naming the zone ("4 dic 2026, 15:30 CST")."""
    local = moment.replace(tzinfo=timezone.utc).astimezone(ZoneInfo(zone))
    locale = Locale.parse(language)
    pattern = str(locale.datetime_formats["medium"])
    shown = pattern.replace("{1}", format_date(local, "medium", locale=locale)).replace(
        "{0}", format_time(local, "short", locale=locale)
    )
    return f"{shown} {_zone_name(local, locale)}"


def _zone_name(local: datetime, locale: Locale) -> str:
    """The zone's short name where the locale has one ("CST", "UTC"), else its
    offset from UTC ("UTC-06:00"), never a bare "-0600"."""
    short = format_time(local, "z", locale=locale)
    return short if short[:1].isalpha() else "UTC" + get_timezone_gmt(local, "iso8601", locale=locale)


def format_duration(duration: timedelta, language: str) -> str:
    """`timedelta(hours=4)` → "4 hours" / "4 horas": in the largest unit that
    counts it exactly (a day, not 1,440 minutes; 90 minutes, not "2 hours"), else
    in whole minutes."""
    seconds = int(duration.total_seconds())
    for unit, size in _DURATION_UNITS:
        if seconds >= size and seconds % size == 0:
            return format_unit(seconds // size, unit, length="long", locale=language)
    return format_unit(max(1, round(seconds / 60)), "duration-minute", length="long", locale=language)


def format_remaining(duration: timedelta, language: str) -> str:
    """A time left, rounded to its largest unit as people say it: 23 h 59 min 30 s
    is "1 day" / "1 día", 3 h 20 min "3 hours" (a countdown is never exact, so
    `format_duration`'s exact units would say "1,440 minutes")."""
    return format_timedelta(duration, granularity="minute", format="long", locale=language)


def when(moment: datetime | None) -> str:
    """Template filter: a stored time in the request's language and zone; "—" for none."""
    if moment is None:
        return "—"
    return format_when(moment, current_language(), current_zone())


def duration_words(duration: timedelta) -> str:
    """Template filter: a duration in the request's language."""
    return format_duration(duration, current_language())


def format_number(value: int, language: str) -> str:
    """A count as a reader of `language` reads it: "1,234" / "1.234"."""
    return format_decimal(value, locale=language)


def number(value: int) -> str:
    """Template filter: a count in the reader's language ("1,234", "1.234").

    A count inside a sentence that has a plural form is passed twice: `num`, the
    number itself, chooses the form, and `count`, this figure, is what the
    sentence shows, `{% trans num=n, count=n|number %}{{ count }} day{% pluralize num %}…`
    or `ngettext(singular, plural, n, count=number(n))` (docs/languages.md)."""
    return format_number(value, current_language())
