"""Rate-limit counters in PostgreSQL, shared by every web worker (helpdesk.limit_storage)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from flask import Flask
from limits.storage import MemcachedStorage, MemoryStorage
from sqlalchemy import func, select

from config import ConfigurationError
from helpdesk.extensions import db
from helpdesk.limit_storage import DatabaseStorage, give_back
from helpdesk.models import RateLimitCounter, StaffUser
from tests.support import limit_worker
from tests.support.app import make_app
from tests.support.processes import run_processes

# The storage is PostgreSQL's: these tests take the suite's `app` on that backend only.
on_postgresql = pytest.mark.parametrize("backend", ["postgresql"], indirect=True)


def test_the_store_follows_the_database(database_url: str, backend: str) -> None:
    expected = "helpdesk-db://" if backend == "postgresql" else "memory://"
    assert make_app(database_url).config["RATELIMIT_STORAGE_URI"] == expected
    assert (
        make_app(database_url, RATELIMIT_STORAGE_URI="memory://").config["RATELIMIT_STORAGE_URI"]
        == "memory://"
    )


def test_the_database_store_refuses_sqlite(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RuntimeError, match="needs PostgreSQL"):
        make_app(f"sqlite:///{tmp_path / 'x.db'}", RATELIMIT_STORAGE_URI="helpdesk-db://")


@on_postgresql
def test_a_pool_of_one_connection_is_refused_with_the_counters_in_the_database(
    database_url: str, agent: StaffUser
) -> None:
    """A request holds its connection while a hit takes a second from the same pool:
    with DB_POOL_SIZE=1 and DB_MAX_OVERFLOW=0 every login waited for itself until the
    pool's timeout and failed with a 500. Refused at start; two connections serve a
    login and an API call at once (a short pool timeout makes a wait fail fast)."""
    with pytest.raises(ConfigurationError, match=r"DB_POOL_SIZE \+ DB_MAX_OVERFLOW is 1;.* at least 2"):
        make_app(database_url, DB_POOL_SIZE=1, DB_MAX_OVERFLOW=0)
    assert make_app(database_url, DB_POOL_SIZE=1, DB_MAX_OVERFLOW=0, RATELIMIT_STORAGE_URI="memory://")
    two = make_app(
        database_url, DB_POOL_SIZE=1, DB_MAX_OVERFLOW=1, SQLALCHEMY_ENGINE_OPTIONS={"pool_timeout": 5}
    )
    client = two.test_client()
    login = client.post("/api/v1/auth/login", json={"email": agent.email, "password": "agent-password-1"})
    assert login.status_code == 200, login.get_data(as_text=True)
    token = login.get_json()["access_token"]
    assert client.get("/api/v1/tickets", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    with two.app_context():
        db.engine.dispose()


@on_postgresql
def test_counts_within_a_window_and_starts_again_after_it(app: Flask, clock) -> None:  # type: ignore[no-untyped-def]
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


@on_postgresql
def test_a_place_given_back_never_goes_below_nothing_or_opens_a_window(app: Flask, clock) -> None:  # type: ignore[no-untyped-def]
    """The login budgets give back the place of an attempt that did not fail
    (docs/security.md): only from the key's current window, never below 0."""
    storage = DatabaseStorage()
    storage.incr("k", 60, amount=2)
    assert storage.decr("k") == 1 and storage.decr("k", 5) == 0 and storage.get("k") == 0
    assert storage.decr("unknown") == 0 and _rows() == 1  # no row made for it
    storage.incr("k", 60)
    clock.shift(timedelta(seconds=61))
    assert storage.decr("k") == 0
    assert storage.incr("k", 60) == 1  # the spent window was left alone: a new one starts at 1


def test_a_place_is_given_back_in_the_stores_without_a_database() -> None:
    """The memory store (SQLite) counts down with its own decr; memcached refuses a
    negative increment, so its client's decr (which stops at 0) takes it back."""
    memory = MemoryStorage()
    memory.incr("k", 60, amount=2)
    give_back(memory, "k", 60)
    give_back(memory, "unknown", 60)
    assert memory.get("k") == 1 and memory.get("unknown") == 0

    class Client:
        """pymemcache's client, of which only decr is called (pymemcache is not installed)."""

        calls: list[tuple[str, int]] = []

        def decr(self, key: str, value: int, noreply: bool | None = False) -> int | None:
            self.calls.append((key, value))
            return None

    memcached = MemcachedStorage.__new__(MemcachedStorage)
    memcached.local_storage = threading.local()
    memcached.local_storage.storage = Client()
    give_back(memcached, "k", 60)
    assert Client.calls == [("k", 1)]


@on_postgresql
def test_spent_windows_are_swept(app: Flask, clock) -> None:  # type: ignore[no-untyped-def]
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


@on_postgresql
def test_a_long_key_is_stored_by_its_digest(app: Flask) -> None:
    storage = DatabaseStorage()
    key = "LIMITER/" + "x" * 400
    assert storage.incr(key, 60) == 1 and storage.incr(key, 60) == 2
    assert storage.get(key) == 2


@on_postgresql
def test_concurrent_hits_on_one_key_each_get_their_own_count(app: Flask) -> None:
    threads, per_thread = 8, 25
    seen: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def hit() -> None:
        with app.app_context():
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


@on_postgresql
def test_another_worker_spends_the_same_login_budget(app: Flask, database_url: str, agent: StaffUser) -> None:
    """Another OS process spends all but one of the failed-login budget; this process
    then gets exactly one more failure, and after it even the right password waits.
    With per-process counters it would get the full budget."""
    email = agent.email
    limit = int(app.config["LOGIN_RATE_LIMIT"].split()[0])
    (codes,) = run_processes(limit_worker.spend_logins, [(database_url, email, limit - 1)])
    assert codes == [401] * (limit - 1)
    client = app.test_client()
    here = [
        client.post("/api/v1/auth/login", json={"email": email, "password": password}).status_code
        for password in ("another wrong guess", "agent-password-1")
    ]
    assert here == [401, 429]


def _rows() -> int:
    return int(db.session.execute(select(func.count()).select_from(RateLimitCounter)).scalar())
