"""Mail server URLs from the configuration: `IMAP_URL` and `OUTBOUND_SMTP_URL`.

One reader for both, so they take credentials and TLS the same way:
`scheme://user:pass@host:port/path?starttls=true`, where the plain scheme
(`imap`, `smtp`) may be upgraded with STARTTLS and the TLS scheme (`imaps`,
`smtps`) is TLS from the first byte. User names and passwords are
percent-encoded (`@`, `:`, `/`, `,`, `#` and `%`).

Anything else is refused with `InvalidServerUrl`, which the gateway prints as the
reason it will not start: no other exception may escape, and nothing is read that
a connection would fail on, or send as a second command line, at every retry
(control characters, text that is not UTF-8, a host no resolver takes, port 0;
docs/operations.md).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from helpdesk import addresses

_TRUE = {"1", "true", "yes", "on", "required"}
_FALSE = {"0", "false", "no", "off", ""}


class InvalidServerUrl(ValueError):
    """A server URL from the configuration cannot be read; the gateway refuses to start."""


@dataclass(frozen=True)
class ServerUrl:
    host: str
    port: int
    username: str | None
    password: str | None
    path: str  # unquoted, without the leading slash
    tls: bool  # TLS from the first byte (imaps://, smtps://)
    starttls: bool  # plain connection upgraded with STARTTLS, required then


@dataclass(frozen=True)
class Schemes:
    """How one setting spells its schemes, and their default ports."""

    setting: str  # "IMAP_URL"
    plain: str  # "imap"
    secure: str  # "imaps"
    plain_port: int
    secure_port: int
    credentials_required: bool


def parse_server_url(url: str, schemes: Schemes) -> ServerUrl:
    name = schemes.setting
    url = url.strip()
    if _has_control_character(url):  # urlsplit drops tabs and line ends without a word
        raise InvalidServerUrl(f"{name} has a control character")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # "Invalid IPv6 URL", a netloc NFKC turns into another
        raise InvalidServerUrl(f"{name} is not a URL: {exc}") from None
    if parts.fragment or "#" in url:
        raise InvalidServerUrl(f"{name} has a '#': percent-encode it (%23) in a user name or password")
    if parts.scheme not in (schemes.plain, schemes.secure):
        raise InvalidServerUrl(
            f"{name} must start with {schemes.plain}:// or {schemes.secure}://, not {url.split(':')[0]!r}"
        )
    host = _host(name, parts.hostname, parts.netloc)
    if (parts.username is None) != (parts.password is None) or (
        schemes.credentials_required and parts.username is None
    ):
        raise InvalidServerUrl(f"{name} needs user:password@ (percent-encoded)")
    try:
        port = parts.port
    except ValueError:
        raise InvalidServerUrl(f"{name} has an invalid port") from None
    if port == 0:
        raise InvalidServerUrl(f"{name} has an invalid port")
    options = {
        key: values[-1].lower() for key, values in parse_qs(parts.query, keep_blank_values=True).items()
    }
    unknown = set(options) - {"starttls"}
    if unknown:
        raise InvalidServerUrl(f"{name} has unknown options: {', '.join(sorted(unknown))}")
    starttls_option = options.get("starttls", "false")
    if starttls_option not in _TRUE | _FALSE:
        raise InvalidServerUrl(f"{name} option starttls must be true or false")
    tls = parts.scheme == schemes.secure
    starttls = starttls_option in _TRUE
    if tls and starttls:
        raise InvalidServerUrl(
            f"{schemes.secure}:// is already TLS; starttls applies to {schemes.plain}:// only"
        )
    return ServerUrl(
        host=host,
        port=port or (schemes.secure_port if tls else schemes.plain_port),
        username=_decoded(name, "user name", parts.username),
        password=_decoded(name, "password", parts.password),
        path=_decoded(name, "path", parts.path.lstrip("/")) or "",
        tls=tls,
        starttls=starttls,
    )


def _has_control_character(text: str) -> bool:
    return any(ord(char) < 32 or ord(char) == 127 for char in text)


def _decoded(name: str, part: str, value: str | None) -> str | None:
    """A percent-decoded part; refused when it holds a control character (a line end
    in a LOGIN or SELECT is a second command) or is not UTF-8 (a byte of the
    environment that is not: nothing could send it)."""
    if value is None:
        return None
    try:
        text = unquote(value, errors="strict")  # "%ff" is refused here, not at every login
        text.encode("utf-8")  # and so is a lone surrogate (os.environ's undecodable bytes)
    except UnicodeError:
        raise InvalidServerUrl(f"{name} has a {part} that is not UTF-8") from None
    if _has_control_character(text):
        raise InvalidServerUrl(f"{name} has a control character in its {part}")
    return text


def _host(name: str, hostname: str | None, netloc: str) -> str:
    """The host as a resolver takes it: an IPv6 address in brackets (nothing but a
    port after them), or a name of letters, digits, `-`, `_` and dots in labels of
    1-63 characters, in its IDNA 2008 ASCII form (`addresses.domain_to_ascii`;
    docs/operations.md)."""
    if not hostname:
        raise InvalidServerUrl(f"{name} has no host")
    invalid = InvalidServerUrl(f"{name} has an invalid host: {hostname!r}")
    if "[" in netloc:
        after = netloc.rpartition("]")[2]
        if after and not after.startswith(":"):  # urlsplit drops it without a word
            raise invalid
        try:
            ipaddress.IPv6Address(hostname)
        except ValueError:
            raise invalid from None
        return hostname
    if not all(char.isalnum() or char in "-_." for char in hostname):
        raise invalid
    # In its ASCII form: smtplib, imaplib and ssl would write a Unicode name with
    # Python's IDNA 2003 codec, and connect to `strasse.example` for `straße.example`.
    ascii_host = addresses.domain_to_ascii(hostname)
    if ascii_host is None:
        raise invalid
    return ascii_host
