"""Rate-limit counters in the app's database, so every web worker shares them.

Flask-Limiter keeps its counters in a `limits` storage. The in-memory one is per
process: under gunicorn every worker counts on its own, so N workers allow N times
the configured logins and tracker lookups. PostgreSQL is the one store every worker,
and every host behind a load balancer, already shares, so with PostgreSQL the
default `RATELIMIT_STORAGE_URI` is this storage's `helpdesk-db://`. Redis or
Memcached stay available by setting it.

SQLite keeps `memory://`: every transaction there takes the database's write lock,
so a counter written beside a request's open transaction would wait for it.

Fixed windows only, Flask-Limiter's default strategy. A hit is its own short
transaction on a pooled connection, committed at once: a request that is refused,
fails or rolls back has still been counted. Reading a window (the X-RateLimit
headers) uses the request's own session rather than a second connection.

The login budgets count an attempt before its password is checked and give the
place back when the attempt did not fail (docs/security.md, "Password guessing"):
`give_back` takes it back in whichever store holds the counters.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from flask import Flask
from limits.storage import MemcachedStorage, Storage
from sqlalchemy import bindparam, case, delete, func, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql import Executable

from config import ConfigurationError
from helpdesk.extensions import db
from helpdesk.models import RateLimitCounter

SCHEME = "helpdesk-db"

COUNTERS = RateLimitCounter.__table__
MAX_KEY = 255
# Spent windows are deleted at most this often per process, by whichever call comes.
SWEEP_SECONDS = 60.0


def _increment() -> Executable:
    """Add to a key's count in one statement; a spent window starts again at the
    amount. Concurrent calls on one key queue on its row, so none is lost."""
    statement = postgresql.insert(COUNTERS).values(
        key=bindparam("key"), count=bindparam("amount"), expires_at=bindparam("expires_at")
    )
    spent = COUNTERS.c.expires_at <= bindparam("now")
    return statement.on_conflict_do_update(
        index_elements=[COUNTERS.c.key],
        set_={
            "count": case(
                (spent, statement.excluded.count), else_=COUNTERS.c.count + statement.excluded.count
            ),
            "expires_at": case((spent, statement.excluded.expires_at), else_=COUNTERS.c.expires_at),
        },
    ).returning(COUNTERS.c.count)


_INCREMENT = _increment()
_LIVE = select(COUNTERS.c.count, COUNTERS.c.expires_at).where(
    COUNTERS.c.key == bindparam("key"), COUNTERS.c.expires_at > bindparam("now")
)
_SWEEP = delete(COUNTERS).where(COUNTERS.c.expires_at <= bindparam("now"))
# Never below nothing, never into a spent window or a key without one.
_DECREMENT = (
    update(COUNTERS)
    .where(COUNTERS.c.key == bindparam("counter"), COUNTERS.c.expires_at > bindparam("now"))
    .values(count=func.greatest(COUNTERS.c.count - bindparam("taken"), 0))
    .returning(COUNTERS.c.count)
)


def init_app(app: Flask) -> None:
    """Choose the counters' store unless the operator did (before the limiter starts)."""
    database = make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    on_postgresql = database.get_backend_name() == "postgresql"
    uri = app.config.get("RATELIMIT_STORAGE_URI") or (f"{SCHEME}://" if on_postgresql else "memory://")
    if uri.startswith(f"{SCHEME}:") and not on_postgresql:
        raise RuntimeError(
            f"RATELIMIT_STORAGE_URI={uri} needs PostgreSQL; "
            "with SQLite use memory:// or a shared store (redis://…)"
        )
    if uri.startswith(f"{SCHEME}:"):
        _room_for_a_counter(app.config["SQLALCHEMY_ENGINE_OPTIONS"])
    app.config["RATELIMIT_STORAGE_URI"] = uri


def _room_for_a_counter(engine_options: dict[str, Any]) -> None:
    """Refuse a pool of one connection (DB_POOL_SIZE=1, DB_MAX_OVERFLOW=0): a request
    holds its session's connection while a hit takes a second one from the same pool
    (its own transaction, so that it counts whatever the request does), and with
    none left every login and API call waited for itself until the pool's timeout,
    then failed with a 500 (docs/operations.md, "Running on several machines")."""
    size, overflow = engine_options["pool_size"], engine_options["max_overflow"]
    if overflow >= 0 and size + overflow < 2:
        raise ConfigurationError(
            f"DB_POOL_SIZE + DB_MAX_OVERFLOW is {size + overflow}; with the rate-limit counters in the "
            "database it must be at least 2: a request holds one connection and counts on another."
        )


class DatabaseStorage(Storage):
    """The `limits` storage interface over `rate_limit_counters`."""

    STORAGE_SCHEME = [SCHEME]

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options: Any) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self._swept_at = 0.0

    @property
    def base_exceptions(self) -> type[Exception]:
        return SQLAlchemyError

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = time.time()
        with db.engine.begin() as connection:
            if now - self._swept_at >= SWEEP_SECONDS:
                connection.execute(_SWEEP, {"now": now})
                self._swept_at = now
            count = connection.execute(
                _INCREMENT,
                {"key": _stored(key), "amount": amount, "expires_at": now + expiry, "now": now},
            ).scalar_one()
        return int(count)

    def decr(self, key: str, amount: int = 1) -> int:
        """Take back from the key's current window (as the memory store's `decr`)."""
        with db.engine.begin() as connection:
            count = connection.execute(
                _DECREMENT, {"counter": _stored(key), "taken": amount, "now": time.time()}
            ).scalar_one_or_none()
        return int(count or 0)

    def get(self, key: str) -> int:
        row = _live(key)
        return int(row.count) if row is not None else 0

    def get_expiry(self, key: str) -> float:
        row = _live(key)
        return float(row.expires_at) if row is not None else time.time()

    def check(self) -> bool:
        try:
            with db.engine.connect() as connection:
                connection.execute(select(1))
        except SQLAlchemyError:
            return False
        return True

    def reset(self) -> int | None:
        with db.engine.begin() as connection:
            return connection.execute(delete(COUNTERS)).rowcount

    def clear(self, key: str) -> None:
        with db.engine.begin() as connection:
            connection.execute(delete(COUNTERS).where(COUNTERS.c.key == _stored(key)))


def give_back(storage: Storage, key: str, expiry: int, amount: int = 1) -> None:
    """Take back `amount` of a hit from `key` in any store Flask-Limiter may use. The
    memory store and this one have `decr` (never below 0, no new window); memcached's
    own decr does the same; Redis and MongoDB take a negative increment."""
    decrement = getattr(storage, "decr", None)
    if decrement is not None:
        decrement(key, amount)
    elif isinstance(storage, MemcachedStorage):
        storage.call_memcached_func(storage.storage.decr, key, amount, noreply=False)
    else:
        storage.incr(key, expiry, amount=-amount)


def _live(key: str) -> Any:
    """The key's current window (count, expires_at), or None when it has none."""
    return db.session.connection().execute(_LIVE, {"key": _stored(key), "now": time.time()}).first()


def _stored(key: str) -> str:
    """Keys are Flask-Limiter's (prefix, client address, scope, limit); one longer
    than the column is stored by its digest rather than refused."""
    if len(key) <= MAX_KEY:
        return key
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()
