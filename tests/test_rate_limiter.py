"""The rate limiter skips its before-request check only when it has nothing to check.

Each test builds its own `DeclaredLimiter` on a bare Flask app: the app's limiter
is one instance shared by every app the suite creates, and default limits set on it
would stay for all of them.
"""

from __future__ import annotations

from flask import Flask
from flask_limiter.util import get_remote_address

from helpdesk.extensions import DeclaredLimiter


def _app(limiter: DeclaredLimiter) -> Flask:
    app = Flask(__name__)

    @app.get("/open")
    def open_route() -> str:
        return "open"

    @app.get("/guarded")
    @limiter.limit("2 per minute")
    def guarded_route() -> str:
        return "guarded"

    limiter.init_app(app)
    return app


def _codes(app: Flask, path: str, times: int) -> list[int]:
    client = app.test_client()
    return [client.get(path).status_code for _ in range(times)]


def test_a_decorated_limit_applies_without_the_before_request_check() -> None:
    limiter = DeclaredLimiter(key_func=get_remote_address, storage_uri="memory://", default_limits=[])
    app = _app(limiter)
    resolved: list[str | None] = []
    resolve = limiter.limit_manager.resolve_limits

    def counting(flask_app, endpoint=None, *args, **kwargs):  # type: ignore[no-untyped-def]
        resolved.append(endpoint)
        return resolve(flask_app, endpoint, *args, **kwargs)

    limiter.limit_manager.resolve_limits = counting  # type: ignore[method-assign]
    assert _codes(app, "/guarded", 3) == [200, 200, 429]
    assert _codes(app, "/open", 5) == [200] * 5
    # Only the decorated view's own check resolved limits: three requests, once each.
    assert resolved == ["guarded_route"] * 3


def test_a_configured_default_limit_still_applies_to_every_route() -> None:
    limiter = DeclaredLimiter(
        key_func=get_remote_address, storage_uri="memory://", default_limits=["3 per minute"]
    )
    app = _app(limiter)
    assert _codes(app, "/open", 4) == [200, 200, 200, 429]
    assert _codes(app, "/guarded", 3) == [200, 200, 429]


def test_an_application_wide_limit_still_applies() -> None:
    limiter = DeclaredLimiter(
        key_func=get_remote_address, storage_uri="memory://", application_limits=["4 per minute"]
    )
    app = _app(limiter)
    assert _codes(app, "/open", 3) == [200] * 3
    assert _codes(app, "/guarded", 2) == [200, 429]
