"""The lifecycle jobs and statistics at 100,000 tickets on PostgreSQL, beside ceilings.

What it measures, against a private PostgreSQL server with fsync on:

1. **SLA check** (`lifecycle_jobs.check_sla` + commit, as `flask sla-check` runs
   it) over 100,000 open tickets, seconds per run, in four situations: nothing
   new is overdue (the steady state between two runs a minute apart), 100 tickets
   newly overdue on both targets (0.1 %: a busy minute), 1,000 (1 %), and 10,000
   (10 %: catching up after the jobs were down for a while). Each run marks 2 breaches per overdue
   ticket, writes their history rows and queues one alert per ticket.
   Ceiling: the same marking as two bare set-based UPDATEs over the same rows
   (`UPDATE tickets SET <flag> = true WHERE <same condition>`, raw psycopg2, one
   transaction) — what marking alone costs; ratio = ceiling / check.
2. **GET /api/v1/stats** through the Flask test client (JWT, JSON) at 100,000
   tickets (60 % answered, 40 % resolved or closed), median and p95 of N calls.
   Ceiling: `SELECT count(*) FROM tickets` (one pass over the table) through
   psycopg2; ratio = ceiling / stats. The statistics need about ten such passes
   (four GROUP BYs, the aggregate with the SLA states, two window-function
   medians, per day, reopens, per agent), so ~0.1 is the natural order.

The 100,000 tickets are seeded with set-based SQL (`generate_series`), not through
the service, so seeding takes seconds.

Run from the project root:  .venv/bin/python -m bench.lifecycle_bench [--tickets 100000]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg2

from bench.postgres import admin, migrate, server_settings
from bench.report import markdown_table, plain_table
from config import TestingConfig
from helpdesk import create_app, sla
from helpdesk import vocabulary as v
from helpdesk.clock import now
from helpdesk.extensions import db
from helpdesk.services.lifecycle_jobs import check_sla
from helpdesk.services.staff import StaffService
from tests.support.pgserver import PostgresServer

AGENTS = 10
# (newly overdue tickets, runs); the ceiling needs as many fresh tickets again, and at
# 100,000 tickets 32,000 are running, unanswered and not waiting.
SITUATIONS = ((0, 5), (100, 5), (1_000, 3), (10_000, 1))
_ARRAY = "ARRAY[{}]".format
_SEED = f"""
INSERT INTO tickets (number, subject, description, status, priority, category, channel, source,
    is_email_originated, requester_id, assignee_id, created_at, updated_at,
    first_response_due_at, resolution_due_at, first_responded_at, first_response_breached,
    pending_since, pending_seconds)
SELECT g, 'Bench ticket ' || g, 'The printer on floor 3 is out of toner again.',
    ({_ARRAY("'new','open','in_progress','pending_customer','reopened'")})[1 + g % 5],
    ({_ARRAY(", ".join(f"'{p}'" for p in v.PRIORITIES))})[1 + g % 4],
    ({_ARRAY(", ".join(f"'{c}'" for c in v.CATEGORIES))})[1 + g % 8],
    ({_ARRAY("'web','api','email'")})[1 + g % 3],
    ({_ARRAY("'agent','agent','customer'")})[1 + g % 3], g % 3 = 2, %(requester)s,
    CASE WHEN g % 5 = 0 THEN NULL ELSE 1 + g % {AGENTS} END,
    %(now)s - (g % 43200) * interval '1 minute', %(now)s,
    %(now)s + interval '1 day' + g * interval '1 second',
    %(now)s + interval '2 days' + g * interval '1 second',
    CASE WHEN g % 10 < 6 THEN %(now)s - (g % 43200) * interval '1 minute'
                              + (g % 240) * interval '1 minute' END,
    CASE WHEN g % 10 < 6 THEN false END,
    CASE WHEN g % 5 = 3 THEN %(now)s END, 0
FROM generate_series(1, %(count)s) AS g
""".replace(" % ", " %% ")  # psycopg2 parameters: a literal % is written %%
# Make `count` running, unanswered, undecided tickets overdue on both targets.
_MAKE_OVERDUE = f"""
UPDATE tickets SET first_response_due_at = %(past)s, resolution_due_at = %(past)s
WHERE id IN (SELECT id FROM tickets WHERE {sla.FIRST_RESPONSE_WATCH} AND {sla.RESOLUTION_WATCH}
             ORDER BY id LIMIT %(count)s)
"""
_WATCHED = f"SELECT count(*) FROM tickets WHERE {sla.FIRST_RESPONSE_WATCH} AND {sla.RESOLUTION_WATCH}"
_CEILING = (
    f"UPDATE tickets SET first_response_breached = true WHERE {sla.FIRST_RESPONSE_WATCH} "
    "AND first_response_due_at <= %(now)s",
    f"UPDATE tickets SET resolution_breached = true WHERE {sla.RESOLUTION_WATCH} "
    "AND resolution_due_at <= %(now)s",
)
# For the statistics: 40 % resolved or closed, as a helpdesk's history looks.
_RESOLVE_SOME = """
UPDATE tickets SET status = CASE WHEN id % 2 = 0 THEN 'resolved' ELSE 'closed' END,
    resolved_at = created_at + (id % 4320) * interval '1 minute',
    resolution_breached = (id % 7 = 0), pending_since = NULL,
    first_responded_at = COALESCE(first_responded_at, created_at + interval '30 minutes'),
    first_response_breached = COALESCE(first_response_breached, false)
WHERE id % 10 >= 6
"""


@dataclass(frozen=True)
class CheckRow:
    overdue: int
    runs: int
    breaches: int  # marked per run by the check
    check: float  # median seconds per run
    ceiling: float

    @property
    def ratio(self) -> float:
        return self.ceiling / self.check if self.check > 0 else 0.0


@dataclass(frozen=True)
class Latency:
    median: float
    p95: float


def seed(url: str, count: int) -> None:
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "INSERT INTO contacts (email, mailbox, name, created_at) "
                "VALUES ('bench@example.com', 'bench@example.com', 'Bench', %s) RETURNING id",
                (now(),),
            )
            requester = cur.fetchone()[0]  # type: ignore[index]
            cur.execute(_SEED, {"requester": requester, "now": now(), "count": count})
            cur.execute("UPDATE ticket_counter SET next_value = %s WHERE id = 1", (count + 1,))
    finally:
        conn.close()
    admin(url, "VACUUM ANALYZE", "CHECKPOINT")


def _execute(url: str, statement: str, **params: Any) -> int:
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(statement, params or None)
            return cur.rowcount
    finally:
        conn.close()


def make_overdue(url: str, count: int) -> None:
    if count:
        changed = _execute(url, _MAKE_OVERDUE, past=now() - timedelta(minutes=1), count=count)
        assert changed == count, f"only {changed} tickets left to make overdue"


def time_check(app: Any) -> tuple[float, int]:
    with app.app_context():
        started = time.perf_counter()
        result = check_sla(db.session, app.config)
        db.session.commit()
        elapsed = time.perf_counter() - started
        db.session.remove()
    assert result.ran
    return elapsed, len(result.breaches)


def time_ceiling(url: str) -> float:
    conn = psycopg2.connect(url)
    try:
        started = time.perf_counter()
        with conn, conn.cursor() as cur:
            for statement in _CEILING:
                cur.execute(statement, {"now": now()})
        return time.perf_counter() - started
    finally:
        conn.close()


def measure_check(app: Any, url: str, overdue: int, runs: int) -> CheckRow:
    checks: list[float] = []
    ceilings: list[float] = []
    marked = 0
    for _ in range(runs):
        make_overdue(url, overdue)
        elapsed, marked = time_check(app)
        assert marked == 2 * overdue, (marked, overdue)
        checks.append(elapsed)
        make_overdue(url, overdue)
        ceilings.append(time_ceiling(url))
    return CheckRow(overdue, runs, marked, statistics.median(checks), statistics.median(ceilings))


def latency(call: Callable[[], Any], calls: int) -> Latency:
    for _ in range(3):  # warm-up: connections, compiled statements, caches
        call()
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    times.sort()
    return Latency(statistics.median(times), times[min(len(times) - 1, round(0.95 * len(times)) - 1)])


def measure_stats(app: Any, url: str, calls: int) -> tuple[Latency, Latency]:
    with app.app_context():
        client = app.test_client()
        token = client.post(
            "/api/v1/auth/login",
            json={
                "email": "bench-admin@helpdesk.test",
                "password": "bench-password-1",
            },
        ).get_json()["access_token"]

        def stats() -> None:
            response = client.get("/api/v1/stats", headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 200, response.get_data(as_text=True)

        api = latency(stats, calls)
        db.session.remove()
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:

            def count() -> None:
                cur.execute("SELECT count(*) FROM tickets")
                cur.fetchone()

            ceiling = latency(count, calls)
    finally:
        conn.close()
    return api, ceiling


def seed_staff(app: Any) -> None:
    with app.app_context():
        service = StaffService(db.session)
        for n in range(1, AGENTS + 1):  # ids 1 … AGENTS, as the seed assigns them
            service.create(
                email=f"agent{n}@helpdesk.test", name=f"Agent {n}", role="agent", password="bench-password-1"
            )
        service.create(
            email="bench-admin@helpdesk.test", name="Bench Admin", role="admin", password="bench-password-1"
        )  # gets the unassigned tickets' alerts
        db.session.commit()
        db.session.remove()


# -- output ----------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.lifecycle_bench", description="SLA check and stats at scale vs ceilings."
    )
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=20, help="stats calls timed (default 20)")
    args = parser.parse_args(argv)
    server = PostgresServer(durable=True).start()
    try:
        url = server.create_database("bench")
        migrate(url)
        app = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=url)
        seed_staff(app)
        started = time.perf_counter()
        seed(url, args.tickets)
        settings = server_settings(url)
        print(
            f"{settings}; seeded {args.tickets} open tickets in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        check_rows = []
        for overdue, runs in SITUATIONS:
            needed = 2 * overdue * runs  # the check's runs, then the ceiling's
            row = admin(url, _WATCHED)[0]
            left = int(row[0]) if row else 0
            if needed > left:
                print(
                    f"sla-check, {overdue} newly overdue: skipped, it needs {needed} "
                    f"fresh tickets and {left} are left (use more --tickets)",
                    flush=True,
                )
                continue
            row = measure_check(app, url, overdue, runs)
            print(
                f"sla-check, {overdue} newly overdue: {row.check:.4f} s/run (ceiling {row.ceiling:.4f} s)",
                flush=True,
            )
            check_rows.append(row)
        _execute(url, _RESOLVE_SOME)
        admin(url, "VACUUM ANALYZE")
        api, ceiling = measure_stats(app, url, args.calls)
        print(
            f"stats: median {api.median * 1000:.1f} ms, p95 {api.p95 * 1000:.1f} ms "
            f"(count(*) {ceiling.median * 1000:.2f} ms)",
            flush=True,
        )
    finally:
        server.stop()

    check_headers = (
        "newly overdue tickets",
        "breaches marked",
        "sla-check s/run",
        "bare UPDATEs s/run",
        "ratio",
    )
    check_cells = [
        (f"{r.overdue:,}", f"{r.breaches:,}", f"{r.check:.4f}", f"{r.ceiling:.4f}", f"{r.ratio:.2f}")
        for r in check_rows
    ]
    stats_headers = ("call", "median ms", "p95 ms", "count(*) median ms", "ratio")
    stats_cells = [
        (
            "GET /api/v1/stats",
            f"{api.median * 1000:.1f}",
            f"{api.p95 * 1000:.1f}",
            f"{ceiling.median * 1000:.2f}",
            f"{ceiling.median / api.median:.3f}",
        )
    ]
    print()
    print(
        f"SLA check over {args.tickets:,} open tickets ({settings}); median of the runs; "
        "ratio = bare UPDATEs / sla-check"
    )
    print(plain_table(check_headers, check_cells))
    print()
    print(f"GET /api/v1/stats at {args.tickets:,} tickets, {args.calls} calls; ratio = count(*) / stats")
    print(plain_table(stats_headers, stats_cells))
    print()
    print(markdown_table(check_headers, check_cells))
    print()
    print(markdown_table(stats_headers, stats_cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
