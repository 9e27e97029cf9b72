"""Security headers and cookie flags for every response, and which client to believe.

The Content-Security-Policy allows scripts and styles only from our own origin (no
`unsafe-inline`), images also as `data:`; no framing (`frame-ancestors 'none'`)
and forms post only to ourselves. Mail HTML is shown sanitized (nh3) on top of it.
Every answer but a static file is sent `Cache-Control: private, no-store` unless its
view chose otherwise (docs/security.md, "Caching"): the ticket page, the API's
ticket and a login's tokens are no one's to keep.

Behind `PROXY_HOPS` reverse proxies the client's address, scheme and host are read
from the X-Forwarded-* headers those proxies append (werkzeug's ProxyFix, trusting
exactly that many entries). Without it every client would share the proxy's address
and so one login and tracker budget; with it on a directly exposed server, anyone
could pick their own address by sending the header. So it is 0 unless set.

Limits per client address count an IPv6 client by its network (`client_key`): one
host holds a whole /64 and may take a new address for every request.

The portal refuses what another site's page asks of it in the background
(`sent_by_another_site`, Fetch Metadata): `SameSite=Lax` keeps the cookie from
other sites' images and frames, but not from a sibling host's.
"""

from __future__ import annotations

import ipaddress

from flask import Flask, Response, current_app, request
from werkzeug.middleware.proxy_fix import ProxyFix

from config import ConfigurationError

CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)

# What a browser or a proxy may keep of an answer with private data: nothing.
PRIVATE = "private, no-store"


def init_app(app: Flask) -> None:
    app.config["RATE_LIMIT_IPV6_PREFIX"] = _ipv6_prefix(app.config["RATE_LIMIT_IPV6_PREFIX"])
    hops = int(app.config["PROXY_HOPS"])
    if hops:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops
        )
    secure = bool(app.config["SECURE_COOKIES"])
    # Over HTTPS the `__Host-` name: a browser keeps such a cookie only when it is
    # Secure, for Path=/ and without a Domain, so no sibling host can set one of
    # the same name beside ours (docs/security.md, "Sessions and tokens"). Over
    # plain http the prefix would be refused, so the name has none there.
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=secure,
        SESSION_COOKIE_NAME="__Host-helpdesk_session" if secure else "helpdesk_session",
        SESSION_COOKIE_PATH="/",
        SESSION_COOKIE_DOMAIN=None,
    )

    @app.after_request
    def _headers(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        if request.endpoint != "static":
            response.headers.setdefault("Cache-Control", PRIVATE)
        if secure:
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        return response


def sent_by_another_site() -> bool:
    """Whether a page of another site made this request in the background, as the
    browser says in its Fetch Metadata headers (`Sec-Fetch-Site`, `-Mode`, `-Dest`):
    anything but a same-origin request, one the person made themselves (typed,
    bookmarked), or a top-level GET navigation (a link followed). A sibling host
    (`pages.isp.example` beside `helpdesk.isp.example`) is the same *site*, so the
    browser sends the portal's `SameSite=Lax` cookie with its `<img>`, `<iframe>` and
    `fetch` requests; each ran the staff view it named, in that staff member's name
    (docs/security.md, "Requests from other sites"). Browsers send the headers to
    HTTPS origins (and localhost) only: without them (plain HTTP, an older browser,
    a program) nothing is refused."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is None or site in ("same-origin", "none"):
        return False
    return not (
        request.method in ("GET", "HEAD")
        and request.headers.get("Sec-Fetch-Mode") == "navigate"
        and request.headers.get("Sec-Fetch-Dest", "document") == "document"
    )


def client_key() -> str:
    """Who a limit per client address counts (docs/security.md, "Limits per client
    address"): an IPv4 address as it is, an IPv6 one as its network of
    `RATE_LIMIT_IPV6_PREFIX` bits, an IPv4 address written as IPv6 (`::ffff:a.b.c.d`)
    as that IPv4 address. The address is the one `PROXY_HOPS` lets us believe; one
    that does not parse (a proxy may forward anything) is counted as it is written."""
    return limit_key(request.remote_addr or "127.0.0.1", current_app.config["RATE_LIMIT_IPV6_PREFIX"])


def limit_key(text: str, ipv6_prefix: int) -> str:
    """`client_key` of the address `text`, also written as some proxies forward it:
    in brackets, with a port (`[2001:db8::5]:443`, `192.0.2.9:5555`); counted as
    written, a new source port or the brackets made a new client."""
    try:
        address = ipaddress.ip_address(_without_port(text))
    except ValueError:
        return text
    if isinstance(address, ipaddress.IPv4Address):
        return str(address)
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    # From the bytes: a zone (`fe80::1%eth0`) names no other network.
    return str(ipaddress.IPv6Network((address.packed, ipv6_prefix), strict=False))


def _without_port(text: str) -> str:
    """`text` without the brackets of `[v6]` or `[v6]:port`, or the port of
    `v4:port` (one colon: an IPv6 address has at least two)."""
    if text.startswith("["):
        end = text.find("]")
        return text[1:end] if end > 0 else text
    if text.count(":") == 1:
        return text.partition(":")[0]
    return text


def _ipv6_prefix(value: object) -> int:
    """`RATE_LIMIT_IPV6_PREFIX` as bits, 32 to 128: a shorter prefix would count a
    whole provider as one client, and an IPv6 address has 128."""
    text = "" if isinstance(value, bool) else str(value).strip()  # True is no number of bits
    if not (text.isascii() and text.isdigit() and len(text) <= 3 and 32 <= int(text) <= 128):
        raise ConfigurationError(
            f"RATE_LIMIT_IPV6_PREFIX must be a number of bits from 32 to 128, not {value!r}"
        )
    return int(text)
