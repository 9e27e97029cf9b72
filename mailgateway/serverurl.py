"""Mail server URLs from the configuration: `IMAP_URL` and `OUTBOUND_SMTP_URL`.

One reader for both, so they take credentials and TLS the same way:
`scheme://user:pass@host:port/path?starttls=true`, where the plain scheme
(`imap`, `smtp`) may be upgraded with STARTTLS and the TLS scheme (`imaps`,
`smtps`) is TLS from the first byte. User names and passwords are
percent-encoded (`@`, `:`, `/`, `,` and `%`).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

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
    parts = urlsplit(url.strip())
    if parts.scheme not in (schemes.plain, schemes.secure):
        raise InvalidServerUrl(
            f"{name} must start with {schemes.plain}:// or {schemes.secure}://, not {url.split(':')[0]!r}"
        )
    if not parts.hostname:
        raise InvalidServerUrl(f"{name} has no host")
    if (parts.username is None) != (parts.password is None) or (
        schemes.credentials_required and parts.username is None
    ):
        raise InvalidServerUrl(f"{name} needs user:password@ (percent-encoded)")
    try:
        port = parts.port
    except ValueError:
        raise InvalidServerUrl(f"{name} has an invalid port") from None
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
        host=parts.hostname,
        port=port or (schemes.secure_port if tls else schemes.plain_port),
        username=unquote(parts.username) if parts.username is not None else None,
        password=unquote(parts.password) if parts.password is not None else None,
        path=unquote(parts.path.lstrip("/")),
        tls=tls,
        starttls=starttls,
    )
