"""A separate OS process, standing in for another web worker (for test_limit_storage):
it spends login attempts from the same client address against the shared database."""

from __future__ import annotations

from multiprocessing.synchronize import Barrier


def spend_logins(url: str, email: str, attempts: int, barrier: Barrier, results: "object") -> None:
    from tests.support.app import make_app

    app = make_app(url)
    client = app.test_client()
    barrier.wait(60)
    codes = [
        client.post("/api/v1/auth/login", json={"email": email, "password": "a wrong guess"}).status_code
        for _ in range(attempts)
    ]
    results.put(codes)  # type: ignore[attr-defined]
