"""Rate-limit counters in PostgreSQL, shared by every web worker (helpdesk.limit_storage)."""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import func, select

from helpdesk.extensions import db
from helpdesk.limit_storage import DatabaseStorage
from helpdesk.models import RateLimitCounter
from tests import limit_worker
from tests.conftest import make_app, migrate_database, reset_database
from tests.pgserver import PostgresServer
from tests.processes import run_processes


@pytest.fixture(scope="module")
def pg_url(pg_server: PostgresServer) -> str:
    url = pg_server.create_database("limit_storage")
    migrate_database(url)
    return url


@pytest.fixture
def pg_app(pg_url: str) -> Iterator[Flask]:
    app = make_app(pg_url)
    with app.app_context():
        yield app
        db.session.remove()
        reset_database()
        db.session.remove()
        db.engine.dispose()


def test_the_store_follows_the_database(database_url: str, backend: str) -> None:
    expected = "helpdesk-db://" if backend == "postgresql" else "memory://"
    assert make_app(database_url).config["RATELIMIT_STORAGE_URI"] == expected
    assert make_app(database_url, RATELIMIT_STORAGE_URI="memory://").config[
        "RATELIMIT_STORAGE_URI"] == "memory://"


def test_the_database_store_refuses_sqlite(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RuntimeError, match="needs PostgreSQL"):
        make_app(f"sqlite:///{tmp_path / 'x.db'}", RATELIMIT_STORAGE_URI="helpdesk-db://")


def test_counts_within_a_window_and_starts_again_after_it(pg_app: Flask, clock) -> None:  # type: ignore[no-untyped-def]
    storage = DatabaseStorage()
    assert [storage.incr("k", 60) for _ in range(3)] == [1, 2, 3]
    assert storage.incr("k", 60, amount=2) == 5
    assert storage.get("k") == 5
    started = time.time()
    assert storage.get_expiry("k") == pytest.approx(started + 60)
    assert storage.incr("other", 60) == 1

    clock.shift(timedelta(seconds=61))
    assert storage.get("k") == 0
    assert storage.incr("k", 60) == 1
    assert storage.get_expiry("k") == pytest.approx(started + 61 + 60)

    storage.clear("k")
    assert storage.get("k") == 0 and storage.get("other") == 0  # "other" is spent too
    assert storage.check()


def test_spent_windows_are_swept(pg_app: Flask, clock) -> None:  # type: ignore[no-untyped-def]
    storage = DatabaseStorage()
    for key in ("a", "b", "c"):
        storage.incr(key, 10)
    clock.shift(timedelta(seconds=30))
    storage.incr("d", 10)  # within SWEEP_SECONDS of the first sweep: nothing removed
    assert _rows() == 4
    clock.shift(timedelta(seconds=31))
    storage.incr("e", 10)
    assert _rows() == 1  # a-d are spent; only e is left
    assert storage.reset() == 1 and _rows() == 0


def test_a_long_key_is_stored_by_its_digest(pg_app: Flask) -> None:
    storage = DatabaseStorage()
    key = "LIMITER/" + "x" * 400
    assert storage.incr(key, 60) == 1 and storage.incr(key, 60) == 2
    assert storage.get(key) == 2


def test_concurrent_hits_on_one_key_each_get_their_own_count(pg_app: Flask) -> None:
    threads, per_thread = 8, 25
    seen: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def hit() -> None:
        with pg_app.app_context():
            storage = DatabaseStorage()
            start.wait(30)
            counts = [storage.incr("shared", 60) for _ in range(per_thread)]
            db.session.remove()
        with lock:
            seen.extend(counts)

    workers = [threading.Thread(target=hit) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert sorted(seen) == list(range(1, threads * per_thread + 1))
    assert DatabaseStorage().get("shared") == threads * per_thread


def test_another_worker_spends_the_same_login_budget(pg_app: Flask, pg_url: str) -> None:
    """Another OS process spends all but one of the login budget; this process then
    gets exactly one attempt. With per-process counters it would get the full budget."""
    from tests.conftest import _staff_user

    email = _staff_user("agent", "Agnes Agent").email
    db.session.commit()
    limit = int(pg_app.config["LOGIN_RATE_LIMIT"].split()[0])
    (codes,) = run_processes(limit_worker.spend_logins, [(pg_url, email, limit - 1)])
    assert codes == [401] * (limit - 1)
    client = pg_app.test_client()
    here = [client.post("/api/v1/auth/login",
                        json={"email": email, "password": "agent-password-1"}).status_code
            for _ in range(2)]
    assert here == [200, 429]


def _rows() -> int:
    return int(db.session.execute(select(func.count()).select_from(RateLimitCounter)).scalar())
