"""Configuration: one `Config` read from the environment (and `.env` when present).

Every variable is listed with its default in docs/operations.md. The portal (`wsgi.py`), the
mail gateway (`gateway.py`) and the `flask` commands all build their app from the
same class, so they always agree on the database, the secret and the numbering.
"""

from __future__ import annotations

import math
import os
from datetime import timedelta
from pathlib import Path

from dotenv import load_dotenv
from limits import parse_many
from limits.util import SEPARATORS, SINGLE_EXPR

BASE_DIR = Path(__file__).resolve().parent
# The `.env` is read before any variable, HELPDESK_INSTANCE_DIR included; what the
# environment already holds wins. HELPDESK_ENV_FILE names another file, or none when
# empty: the suite sets it empty (tests/__init__.py) so a developer's `.env` never
# reaches a test or the processes tests start.
ENV_FILE = os.environ.get("HELPDESK_ENV_FILE", str(BASE_DIR / ".env"))
if ENV_FILE:
    load_dotenv(ENV_FILE)

INSTANCE_DIR = Path(os.environ.get("HELPDESK_INSTANCE_DIR", BASE_DIR / "instance"))

# Which tickets agents see (helpdesk.services.visibility): all, their teams' (and
# team-less) ones and their own, or only their own. Admins see all.
VISIBILITY_MODES = ("all", "team", "own")
# The languages the product speaks (helpdesk.languages, docs/languages.md).
LANGUAGES = ("en", "es")
# What a mail from an unknown sender opening a ticket becomes (helpdesk.inbound.ingest).
SENDER_POLICIES = ("quarantine", "reject", "accept")
# A yes/no setting: each word for yes, then its no.
_FLAGS = ("true", "false", "1", "0", "yes", "no", "on", "off")
# Settings outside their choices, read at import and refused when a Config is built
# (`create_app`), where each entry point prints a ConfigurationError as one line.
_REFUSED: list[str] = []


class ConfigurationError(RuntimeError):
    """A setting that keeps the process from starting; its text is the one line the
    entry points print."""


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


def _env_int(name: str, default: int, low: int, high: int) -> int:
    """A whole number from `low` to `high` (docs/operations.md gives each setting's);
    another value is refused, not read: `MAX_MESSAGE_BYTES=25MB` stopped the start
    with a traceback, and `TICKET_NUMBER_WIDTH=-1` started and failed every creation."""
    text = _env(name, str(default))
    try:
        value = int(text)
    except ValueError:  # "25MB", "six", more than 4300 digits
        value = low - 1
    if low <= value <= high:
        return value
    _REFUSED.append(f"{name} must be a whole number from {low} to {high}, not {text!r}")
    return default


def _env_float(name: str, default: float, low: float, high: float) -> float:
    """A number of seconds from `low` to `high`; another value (`2s`, `0`, `nan`) is
    refused: `OUTBOUND_POLL_SECONDS=0` started a sender that kept a core busy."""
    text = _env(name, str(default))
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if math.isfinite(value) and low <= value <= high:
        return value
    _REFUSED.append(f"{name} must be a number of seconds from {low:g} to {high:g}, not {text!r}")
    return default


def _env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    """One of `choices`, whatever the case and spaces; another value is refused (a
    mistyped `reject` must not quietly become the default)."""
    value = _env(name, default).strip().lower()
    if value in choices:
        return value
    _REFUSED.append(f"{name} must be one of {', '.join(choices)}, not {os.environ[name]!r}")
    return default


# The most bytes a size setting may name (docs/operations.md).
_GIB = 1024**3
# The longest duration a setting may name: added to a date, more overflowed (a
# 3000000d session lifetime failed every login).
_LONGEST = timedelta(days=36500)


def _env_duration(name: str, default: str, *, zero: bool = False) -> timedelta:
    """A positive duration (`parse_duration`), or `0` where `zero` says it means
    something; another value is refused, not read: a mistyped `AUTO_CLOSE_AFTER=-7d`
    or `0` closed every resolved ticket at the next run, and `7 days` stopped the
    start with a traceback."""
    text = _env(name, default)
    try:
        duration = parse_duration(text)
    except (ValueError, OverflowError):  # "7 days", "nan"; "inf", "1e20d"
        duration = timedelta(0)
    if timedelta(0) < duration <= _LONGEST or (
        zero and duration == timedelta(0) and text.strip() in ("0", "0s")
    ):
        return duration
    _REFUSED.append(
        f"{name} must be a positive duration of at most 100 years, such as 7d, 36h, 90m or 45s, not {text!r}"
    )
    return parse_duration(default)


def _env_limit(name: str, default: str) -> str:
    """A rate limit in the `limits` syntax (`10 per minute`, `100/hour;1000/day`),
    each at least 1 in a window from 1 second to 100 years. Flask-Limiter skips a
    limit it cannot read, so a typo (`ten per minute`, `30 a minute`) switched the
    limit off without a word; it is refused instead (docs/operations.md)."""
    text = _env(name, default)
    try:
        items = parse_many(text)
    except ValueError:  # "lots", "30 a minute"
        items = []
    if (
        items
        and not _zero_window(text)
        and all(item.amount >= 1 and item.get_expiry() <= _LONGEST.total_seconds() for item in items)
    ):
        return text
    _REFUSED.append(
        f"{name} must be a rate limit such as '10 per minute' or '10/minute;100/hour', "
        f"at least 1 in a window from 1 second to 100 years, not {text!r}"
    )
    return default


def _zero_window(text: str) -> bool:
    """Whether a limit `parse_many` took names a window of 0 (`10 per 0 minutes`),
    which it reads as a window of 1. The text is split and matched by the library's
    own expressions, so each part is read as it read it."""
    for part in SEPARATORS.split(text):
        found = SINGLE_EXPR.match(part)
        if found is not None and found.group(3) is not None and int(found.group(3)) == 0:
            return True
    return False


def _env_targets(name: str) -> dict[str, timedelta]:
    """SLA targets (`parse_targets`); a value that is not priority=duration pairs,
    each positive and at most 100 years, is refused (`urgent` alone stopped the
    start with a traceback). The priorities' names are checked by helpdesk.sla."""
    text = _env(name, "")
    try:
        targets = parse_targets(text)
    except (ValueError, OverflowError):  # "urgent", "high=soon"; "high=1e20d"
        targets = {"": timedelta(0)}
    if all(timedelta(0) < duration <= _LONGEST for duration in targets.values()):
        return targets
    _REFUSED.append(
        f"{name} must be priority=duration pairs such as urgent=15m,high=1h, each positive and "
        f"at most 100 years, not {text!r}"
    )
    return {}


def _env_addresses(name: str, default: str) -> list[str]:
    """At least one address, each local@domain: empty (`SUPPORT_ADDRESSES=,`)
    stopped the start with a traceback."""
    addresses = _env_list(name, default)
    if addresses and all(all(address.rpartition("@")[::2]) for address in addresses):
        return addresses
    _REFUSED.append(
        f"{name} must be one or more addresses such as support@example.com, separated by commas, "
        f"not {os.environ[name]!r}"
    )
    return [default]


def _env_listen(name: str, default: str) -> str:
    """`host:port` with a port from 1 to 65535 (the host may be empty: 127.0.0.1);
    `nope` or `:99999` started a gateway that failed with a traceback."""
    text = _env(name, default)
    _, colon, port = text.rpartition(":")
    if colon and port.isascii() and port.isdigit() and 1 <= int(port) <= 65535:
        return text
    _REFUSED.append(
        f"{name} must be host:port with a port from 1 to 65535, such as 127.0.0.1:2525, not {text!r}"
    )
    return default


def _env_flag(name: str, default: bool) -> bool:
    """A yes/no setting; a value that is neither is refused, not read as false."""
    return _env_choice(name, "true" if default else "false", _FLAGS) in _FLAGS[::2]


def _env_list(name: str, default: str) -> list[str]:
    return [part.strip().lower() for part in _env(name, default).split(",") if part.strip()]


def parse_duration(text: str) -> timedelta:
    """Read `7d`, `36h`, `90m`, `45s` or a bare number of seconds.

    Operators write durations by hand in `.env`; a unit suffix avoids the classic
    "was that seconds or minutes?" mistake.
    """
    text = text.strip().lower()
    units = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
    if text and text[-1] in units:
        return timedelta(**{units[text[-1]]: float(text[:-1])})
    return timedelta(seconds=float(text))


def parse_targets(text: str) -> dict[str, timedelta]:
    """Read SLA targets such as `urgent=15m,high=1h` into {priority: duration}.

    Only the priorities named are overridden (the rest keep the defaults in docs/lifecycle.md);
    `helpdesk.sla` checks the names, because this module cannot import the
    vocabulary without an import cycle.
    """
    targets: dict[str, timedelta] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        name, separator, duration = part.partition("=")
        if not separator or not name.strip() or not duration.strip():
            raise ValueError(f"SLA target {part.strip()!r} is not priority=duration (e.g. high=1h)")
        targets[name.strip().lower()] = parse_duration(duration)
    return targets


def normalize_database_url(url: str) -> str:
    """Pin PostgreSQL URLs to psycopg2 (SQLAlchemy 2.1 would pick psycopg 3) and
    accept the `postgres://` spelling that hosting providers hand out."""
    for scheme in ("postgres://", "postgresql://"):
        if url.startswith(scheme):
            return "postgresql+psycopg2://" + url[len(scheme) :]
    return url


class Config:
    def __init__(self) -> None:
        """Refuse the first enumerated setting that is none of its choices."""
        if _REFUSED:
            raise ConfigurationError(_REFUSED[0])

    DATABASE_URL = normalize_database_url(_env("DATABASE_URL", f"sqlite:///{INSTANCE_DIR / 'helpdesk.db'}"))
    SQLALCHEMY_DATABASE_URI = DATABASE_URL
    # Unset: generated into the instance folder on SQLite, refused with PostgreSQL
    # (helpdesk.instance).
    SECRET_KEY = os.environ.get("SECRET_KEY") or None
    JWT_SECRET_KEY = os.environ.get("JWT_SECRET_KEY") or None
    JWT_ACCESS_TOKEN_EXPIRES = _env_duration("JWT_ACCESS_TOKEN_EXPIRES", "15m")
    JWT_REFRESH_TOKEN_EXPIRES = _env_duration("JWT_REFRESH_TOKEN_EXPIRES", "30d")

    SUPPORT_ADDRESSES = _env_addresses("SUPPORT_ADDRESSES", "support@helpdesk.test")
    SMTP_LISTEN = _env_listen("SMTP_LISTEN", "127.0.0.1:2525")
    # Processes sharing SMTP_LISTEN (SO_REUSEPORT): parsing and the ORM are CPU work
    # under one GIL per process, so one listener per core by default; at most 4, as
    # each may hold 8 database connections (PostgreSQL's default limit is 100).
    SMTP_PROCESSES = _env_int("SMTP_PROCESSES", min(len(os.sched_getaffinity(0)), 4), 1, 64)
    # SMTP sessions one listener process holds at once, in all and from one client
    # address; past either, 421 (docs/security.md). Each may hold a mail of up to
    # MAX_MESSAGE_BYTES while it arrives, so these bound the listener's memory. 20 per
    # address: the most a default Postfix opens towards one destination.
    SMTP_MAX_CONNECTIONS = _env_int("SMTP_MAX_CONNECTIONS", 100, 1, 100_000)
    SMTP_MAX_CONNECTIONS_PER_IP = _env_int("SMTP_MAX_CONNECTIONS_PER_IP", 20, 1, 100_000)
    # A session is closed after SMTP_TIMEOUT without a command or, in DATA, without
    # bytes (RFC 5321 4.5.3.2.7); one mail's DATA may take SMTP_DATA_TIMEOUT in all.
    SMTP_TIMEOUT = _env_duration("SMTP_TIMEOUT", "5m")
    SMTP_DATA_TIMEOUT = _env_duration("SMTP_DATA_TIMEOUT", "10m")
    # A session's whole time: past it the next command gets 421 (docs/mail-gateway.md).
    SMTP_SESSION_TIMEOUT = _env_duration("SMTP_SESSION_TIMEOUT", "1h")
    MAX_MESSAGE_BYTES = _env_int("MAX_MESSAGE_BYTES", 25 * 1024 * 1024, 1024, _GIB)
    # Recipients of one mail: SMTP answers 452 past it, a record keeps at most this
    # many (RFC 5321 4.5.3.1.8 asks that 100 be accepted; docs/security.md).
    MAX_RECIPIENTS = _env_int("MAX_RECIPIENTS", 100, 1, 100_000)
    MAX_ATTACHMENT_BYTES = _env_int("MAX_ATTACHMENT_BYTES", 10 * 1024 * 1024, 0, _GIB)
    MAX_ATTACHMENTS_TOTAL_BYTES = _env_int("MAX_ATTACHMENTS_TOTAL_BYTES", 20 * 1024 * 1024, 0, _GIB)
    # Caps on the work one mail can cause (helpdesk.inbound.limits; docs/security.md):
    # over the first four a mail is quarantined, over the others
    # it is stored with a note of what was left out.
    MAX_MIME_PARTS = _env_int("MAX_MIME_PARTS", 500, 1, 1_000_000)
    MAX_MIME_DEPTH = _env_int("MAX_MIME_DEPTH", 20, 1, 100)
    MAX_HEADER_FIELDS = _env_int("MAX_HEADER_FIELDS", 1000, 1, 1_000_000)
    MAX_HEADER_BYTES = _env_int("MAX_HEADER_BYTES", 256 * 1024, 1024, _GIB)
    MAX_HTML_TO_TEXT_CHARS = _env_int("MAX_HTML_TO_TEXT_CHARS", 1024 * 1024, 0, _GIB)
    MAX_CC_PARTICIPANTS = _env_int("MAX_CC_PARTICIPANTS", 50, 0, 10_000)
    MAX_ATTACHMENTS = _env_int("MAX_ATTACHMENTS", 100, 0, 100_000)
    UNKNOWN_SENDER_POLICY = _env_choice("UNKNOWN_SENDER_POLICY", "quarantine", SENDER_POLICIES)
    # Held mail waiting for review, in mails and in raw bytes: past either, mail from
    # senders nobody vouched for is refused for now (SMTP 452) instead of held; 0 turns
    # the cap off (helpdesk.inbound.room; docs/mail-gateway.md, "Quarantine room").
    QUARANTINE_MAX_MAILS = _env_int("QUARANTINE_MAX_MAILS", 100_000, 0, 100_000_000)
    QUARANTINE_MAX_BYTES = _env_int("QUARANTINE_MAX_BYTES", 10 * _GIB, 0, 1024 * _GIB)
    TRUSTED_AUTHSERV_ID = _env("TRUSTED_AUTHSERV_ID", "")
    # Right-hand side of the Message-IDs the helpdesk sends. A dedicated name, not the
    # support domain itself: colleagues' mail servers may use that one.
    MESSAGE_ID_DOMAIN = _env("MESSAGE_ID_DOMAIN", "helpdesk." + SUPPORT_ADDRESSES[0].rsplit("@", 1)[-1])

    IMAP_URL = _env("IMAP_URL", "")
    IMAP_POLL_SECONDS = _env_int("IMAP_POLL_SECONDS", 60, 1, 86_400)
    IMAP_PROCESSED_FOLDER = _env("IMAP_PROCESSED_FOLDER", "Processed")
    IMAP_FAILED_FOLDER = _env("IMAP_FAILED_FOLDER", "Failed")
    IMAP_MAX_BACKOFF_SECONDS = _env_int("IMAP_MAX_BACKOFF_SECONDS", 60, 1, 86_400)
    IMAP_INGEST_THREADS = _env_int("IMAP_INGEST_THREADS", 2, 1, 64)
    IMAP_STUCK_AFTER = _env_duration("IMAP_STUCK_AFTER", "15m")
    # How long a gateway's hold on a mailbox lasts unless renewed: with several
    # gateways on one mailbox, the most a dead one delays the others.
    IMAP_LEASE_SECONDS = _env_int("IMAP_LEASE_SECONDS", 60, 1, 3_600)
    OUTBOX_BACKLOG_AFTER = _env_duration("OUTBOX_BACKLOG_AFTER", "30m")
    METRICS_TOKEN = _env("METRICS_TOKEN", "")

    # Outbound notifications (mailgateway.outbound). An empty URL turns the sender
    # off: rows wait in the outbox until a gateway with a URL picks them up.
    # Set but empty turns the sender off (rows wait), so no `_env` fallback here.
    OUTBOUND_SMTP_URL = os.environ.get("OUTBOUND_SMTP_URL", "smtp://127.0.0.1:25").strip()
    OUTBOUND_FROM = _env("OUTBOUND_FROM", f"Helpdesk <{SUPPORT_ADDRESSES[0]}>")
    PORTAL_URL = _env("PORTAL_URL", "http://127.0.0.1:5000").rstrip("/")
    # How long the status and rating links in customer mail keep working (helpdesk.customer_links).
    CUSTOMER_LINK_MAX_AGE = _env_duration("CUSTOMER_LINK_MAX_AGE", "180d")
    MAIL_TEMPLATES_DIR = _env("MAIL_TEMPLATES_DIR", str(INSTANCE_DIR / "mail_templates"))
    OUTBOUND_POLL_SECONDS = _env_float("OUTBOUND_POLL_SECONDS", 2.0, 0.1, 3600)
    OUTBOUND_BATCH_SIZE = _env_int("OUTBOUND_BATCH_SIZE", 20, 1, 10_000)
    OUTBOUND_TIMEOUT_SECONDS = _env_float("OUTBOUND_TIMEOUT_SECONDS", 30.0, 1, 3600)
    OUTBOUND_RETRY_FIRST = _env_duration("OUTBOUND_RETRY_FIRST", "1m")
    OUTBOUND_RETRY_MAX = _env_duration("OUTBOUND_RETRY_MAX", "1h")
    OUTBOUND_GIVE_UP_AFTER = _env_duration("OUTBOUND_GIVE_UP_AFTER", "3d")
    OUTBOUND_LEASE = _env_duration("OUTBOUND_LEASE", "10m")
    OUTBOUND_RATE_WINDOW = _env_duration("OUTBOUND_RATE_WINDOW", "1h")
    OUTBOUND_MAX_AUTO_PER_RECIPIENT = _env_int("OUTBOUND_MAX_AUTO_PER_RECIPIENT", 20, 0, 1_000_000)
    OUTBOUND_MAX_AUTO_PER_TICKET = _env_int("OUTBOUND_MAX_AUTO_PER_TICKET", 10, 0, 1_000_000)

    # Customers on every channel: new tickets per hour and open tickets at once
    # (docs/integrations.md); staff opening tickets for them are not limited.
    CUSTOMER_MAX_TICKETS_PER_HOUR = _env_int("CUSTOMER_MAX_TICKETS_PER_HOUR", 10, 0, 1_000_000)
    CUSTOMER_MAX_OPEN_TICKETS = _env_int("CUSTOMER_MAX_OPEN_TICKETS", 10, 0, 1_000_000)
    # An SLA breach also raises the ticket's priority one step (helpdesk.services.lifecycle_jobs).
    SLA_BREACH_RAISES_PRIORITY = _env_flag("SLA_BREACH_RAISES_PRIORITY", False)
    # How often the queue and ticket pages ask whether something changed (helpdesk.portal.live).
    LIVE_POLL_SECONDS = _env_int("LIVE_POLL_SECONDS", 10, 1, 3_600)
    # How far behind the clock a poll's cursor stays, for changes written before it
    # and committed after it (helpdesk.portal.live; docs/web.md).
    LIVE_LAG_SECONDS = _env_int("LIVE_LAG_SECONDS", 30, 0, 3_600)
    AGENT_VISIBILITY = _env_choice("AGENT_VISIBILITY", "all", VISIBILITY_MODES)
    # The language of customers who did not say theirs, and of staff who did not
    # choose one and whose browser asks for none we speak (`en` or `es`).
    DEFAULT_LANGUAGE = _env_choice("DEFAULT_LANGUAGE", "en", LANGUAGES)

    TICKET_PREFIX = _env("TICKET_PREFIX", "TKT-")
    TICKET_NUMBER_WIDTH = _env_int("TICKET_NUMBER_WIDTH", 6, 1, 18)
    AUTO_CLOSE_AFTER = _env_duration("AUTO_CLOSE_AFTER", "7d")
    # How long an API call's Idempotency-Key is remembered: a retry within it is
    # answered what the first call made (docs/web.md, "Idempotency keys").
    IDEMPOTENCY_KEY_LIFETIME = _env_duration("IDEMPOTENCY_KEY_LIFETIME", "24h")

    # SLA (helpdesk.sla): overrides of the default targets (docs/lifecycle.md), and the business-hours
    # calendar the due times are counted in (unset: around the clock).
    SLA_FIRST_RESPONSE = _env_targets("SLA_FIRST_RESPONSE")
    SLA_RESOLUTION = _env_targets("SLA_RESOLUTION")
    BUSINESS_HOURS = _env("BUSINESS_HOURS", "")
    BUSINESS_TIMEZONE = _env("BUSINESS_TIMEZONE", "UTC")
    BUSINESS_HOLIDAYS = _env_list("BUSINESS_HOLIDAYS", "")
    # How often the gateway runs the SLA check and auto-close; 0 turns them off
    # there (run them from cron with `flask sla-check` / `flask auto-close`).
    LIFECYCLE_JOBS_INTERVAL = _env_duration("LIFECYCLE_JOBS_INTERVAL", "1m", zero=True)

    SQLITE_BUSY_TIMEOUT_MS = _env_int("SQLITE_BUSY_TIMEOUT_MS", 30000, 0, 3_600_000)
    # PostgreSQL connections per process: kept, and opened beyond that under load.
    DB_POOL_SIZE = _env_int("DB_POOL_SIZE", 5, 1, 1_000)
    DB_MAX_OVERFLOW = _env_int("DB_MAX_OVERFLOW", 10, 0, 1_000)

    # Web: request size, cookies, sessions, rate limits (Flask-Limiter syntax).
    MAX_CONTENT_LENGTH = _env_int("MAX_REQUEST_BYTES", 1024 * 1024, 1024, _GIB)
    # Reverse proxies in front of gunicorn whose X-Forwarded-* headers are believed.
    PROXY_HOPS = _env_int("PROXY_HOPS", 0, 0, 10)
    # Bits of an IPv6 address that name one client for the limits per address, 32 to
    # 128 (checked by helpdesk.security): one host usually holds a whole /64.
    RATE_LIMIT_IPV6_PREFIX = _env("RATE_LIMIT_IPV6_PREFIX", "64")
    SECURE_COOKIES = _env_flag("SECURE_COOKIES", True)
    PERMANENT_SESSION_LIFETIME = _env_duration("STAFF_SESSION_LIFETIME", "12h")
    WTF_CSRF_TIME_LIMIT = None  # a CSRF token lives as long as the session it belongs to
    # Failed logins per client address, and per account from any address.
    LOGIN_RATE_LIMIT = _env_limit("LOGIN_RATE_LIMIT", "10 per minute")
    LOGIN_RATE_LIMIT_PER_ACCOUNT = _env_limit("LOGIN_RATE_LIMIT_PER_ACCOUNT", "10 per 10 minutes")
    TRACK_RATE_LIMIT_PER_IP = _env_limit("TRACK_RATE_LIMIT_PER_IP", "30 per minute")
    TRACK_RATE_LIMIT_PER_TICKET = _env_limit("TRACK_RATE_LIMIT_PER_TICKET", "10 per minute")
    # API calls per proven caller: one staff member's tokens, one integration's (helpdesk.auth).
    API_RATE_LIMIT = _env_limit("API_RATE_LIMIT", "600 per minute")
    # Calls per customer inside an integration's budget: a request on the chat
    # endpoints, a tool call on the assistant's (helpdesk.api.customer_calls).
    INTEGRATION_CUSTOMER_RATE_LIMIT = _env_limit("INTEGRATION_CUSTOMER_RATE_LIMIT", "60 per minute")
    # Unset: the database with PostgreSQL, memory with SQLite (helpdesk.limit_storage).
    RATELIMIT_STORAGE_URI = _env("RATELIMIT_STORAGE_URI", "")
    RATELIMIT_HEADERS_ENABLED = True


class TestingConfig(Config):
    """The suite runs once on SQLite and once on PostgreSQL: the fixture sets
    `TEST_DATABASE_URL`, falling back to an in-memory-free temp file chosen there."""

    TESTING = True
    DATABASE_URL = normalize_database_url(_env("TEST_DATABASE_URL", "sqlite://"))
    SQLALCHEMY_DATABASE_URI = DATABASE_URL
    SECRET_KEY = "testing-secret-key-not-for-production-use"
    JWT_SECRET_KEY = "testing-jwt-secret-key-not-for-production-use"
    SUPPORT_ADDRESSES = ["support@helpdesk.test"]
    MESSAGE_ID_DOMAIN = "helpdesk.helpdesk.test"
    UNKNOWN_SENDER_POLICY = "quarantine"
    TRUSTED_AUTHSERV_ID = ""
    SECURE_COOKIES = False  # the test client talks plain http
    OUTBOUND_SMTP_URL = ""  # tests point the sender at their own SMTP sink
    OUTBOUND_FROM = "Helpdesk <support@helpdesk.test>"
    PORTAL_URL = "http://helpdesk.test"
    MAIL_TEMPLATES_DIR = ""
