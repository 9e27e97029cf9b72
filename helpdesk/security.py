"""Security headers and cookie flags for every response, and which client to believe.

The Content-Security-Policy allows scripts and styles only from our own origin (no
`unsafe-inline`), images also as `data:`; no framing (`frame-ancestors 'none'`)
and forms post only to ourselves. Mail HTML is shown sanitized (nh3) on top of it.

Behind `PROXY_HOPS` reverse proxies the client's address, scheme and host are read
from the X-Forwarded-* headers those proxies append (werkzeug's ProxyFix, trusting
exactly that many entries). Without it every client would share the proxy's address
and so one login and tracker budget; with it on a directly exposed server, anyone
could pick their own address by sending the header. So it is 0 unless set.
"""

from __future__ import annotations

from flask import Flask, Response
from werkzeug.middleware.proxy_fix import ProxyFix

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


def init_app(app: Flask) -> None:
    hops = int(app.config["PROXY_HOPS"])
    if hops:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops
        )
    secure = bool(app.config["SECURE_COOKIES"])
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=secure,
        SESSION_COOKIE_NAME="helpdesk_session",
    )

    @app.after_request
    def _headers(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        if secure:
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        return response
