"""Ticket creations per second through `TicketsService` on PostgreSQL, beside a raw ceiling.

What it measures: N worker processes (1, 4 and 16 by default) each loop for a fixed
wall-clock time doing what every channel does to open a ticket —
`TicketsService.open_ticket(...)` then `db.session.commit()` — against a private
PostgreSQL server with fsync on. Rate = committed creations / elapsed time. After each
service run the numbers are checked gap-free (docs/numbering.md).

The ceiling, measured in the same run with the same worker counts and duration, is the
same transaction written by hand with psycopg2, one connection per worker process:
`UPDATE ticket_counter … RETURNING`, INSERT the ticket with that number, INSERT its first
message, COMMIT. Gap-free numbering means every creation holds the single counter row's
lock until its commit is durable, so creations serialize on "take the lock … flush the
commit" however many workers there are; the raw transaction is the least client work a
gap-free creation can do (no ORM, no extra statements or round trips), so it shows what
this schema and this durability setting allow on this machine, and the ratio shows how
much of it the service keeps. (It is a cost floor, not a proof of a bound: the raw
version takes the lock first, the service takes it last.)

Workers are OS processes (multiprocessing "spawn"), not threads: the machine has two
cores and threads would share the GIL, measuring the interpreter instead of the database.

Run from the project root:  .venv/bin/python -m bench.numbering_bench [--seconds 5] [--workers 1,4,16]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import queue
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from typing import Any, Literal

import psycopg2

from bench.postgres import admin, migrate, server_settings
from bench.report import markdown_table, plain_table, positive_counts
from bench.workers import Run, WorkerResult
from config import TestingConfig
from helpdesk import addresses, create_app, sla
from helpdesk.clock import now
from helpdesk.extensions import db
from helpdesk.services import Actor, TicketsService
from tests.support.pgserver import PostgresServer

Kind = Literal["service", "raw"]

CEILING = (
    "raw psycopg2 transaction: counter UPDATE … RETURNING + ticket INSERT + "
    "message INSERT + COMMIT, one connection per worker process"
)
DESCRIPTION = "Benchmark ticket: the printer on floor 3 is out of toner again."
RAW_REQUESTER = "bench-raw@example.com"
SETUP_TIMEOUT = 300.0  # seconds for every worker to import, connect and warm up

_TAKE = "UPDATE ticket_counter SET next_value = next_value + 1 WHERE id = 1 RETURNING next_value - 1"
_INSERT_TICKET = (
    "INSERT INTO tickets (number, subject, description, status, priority, category, "
    "channel, source, is_email_originated, requester_id, created_at, updated_at, "
    "first_response_due_at, resolution_due_at, pending_seconds) "
    "VALUES (%(number)s, %(subject)s, %(description)s, 'new', 'medium', 'support', "
    "'web', 'agent', false, %(requester)s, %(created)s, %(created)s, %(first_due)s, "
    "%(resolution_due)s, 0) RETURNING id"
)
_INSERT_MESSAGE = (
    "INSERT INTO messages (ticket_id, kind, author_label, channel, body, created_at) "
    "VALUES (%(ticket)s, 'reply', 'bench', 'web', %(description)s, %(created)s)"
)


@dataclass(frozen=True)
class GapCheck:
    rows: int
    numbered: int
    low: int | None
    high: int | None
    committed: int  # creations the workers reported as committed

    @property
    def gap_free(self) -> bool:
        if self.rows == 0 or self.low is None or self.high is None:
            return False
        return self.numbered == self.rows and self.high - self.low + 1 == self.rows

    def describe(self) -> str:
        if self.gap_free and self.rows == self.committed:
            return "yes"
        verdict = "yes" if self.gap_free else "NO"
        return (
            f"{verdict} ({self.rows} rows, {self.numbered} numbered, "
            f"{self.low}..{self.high}, {self.committed} reported)"
        )


@dataclass(frozen=True)
class Row:
    workers: int
    service: Run
    raw: Run
    gaps: GapCheck

    @property
    def ratio(self) -> float:
        return self.service.rate / self.raw.rate if self.raw.rate > 0 else 0.0


# -- workers (run in spawned processes) ----------------------------------------


def _timed_loop(
    create: Callable[[int], None], commit: Callable[[], None], seconds: float, barrier: Barrier
) -> WorkerResult:
    barrier.wait(SETUP_TIMEOUT)
    started = time.monotonic()
    deadline = started + seconds
    count = 0
    while time.monotonic() < deadline:
        create(count + 1)
        commit()
        count += 1
    return WorkerResult(count, started, time.monotonic())


def _service_worker(
    url: str, index: int, seconds: float, _requester_id: int, barrier: Barrier
) -> WorkerResult:
    app = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=url)
    email = f"bench{index}@example.com"
    # A customer, as for mail: such a creation also queues the acknowledgment.
    actor = Actor.customer(email)
    with app.app_context():

        def create(n: int) -> None:
            service = TicketsService.from_config(db.session, app.config)
            service.open_ticket(
                subject=f"Bench ticket {index}-{n}",
                description=DESCRIPTION,
                requester_email=email,
                channel="email",
                actor=actor,
            )

        # Warm-up outside the timed window: connect, compile the statements. Rolled
        # back, so it takes no number.
        create(0)
        db.session.rollback()
        try:
            return _timed_loop(create, db.session.commit, seconds, barrier)
        finally:
            db.session.remove()
            db.engine.dispose()


def _raw_worker(url: str, index: int, seconds: float, requester_id: int, barrier: Barrier) -> WorkerResult:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:

            def create(n: int) -> None:
                cur.execute(_TAKE)
                number = _one(cur.fetchone())
                created = now()
                first_due, resolution_due = sla.DEFAULT_POLICY.due_times("medium", created)
                cur.execute(
                    _INSERT_TICKET,
                    {
                        "number": number,
                        "subject": f"Bench ticket {index}-{n}",
                        "description": DESCRIPTION,
                        "requester": requester_id,
                        "created": created,
                        "first_due": first_due,
                        "resolution_due": resolution_due,
                    },
                )
                ticket_id = _one(cur.fetchone())
                cur.execute(
                    _INSERT_MESSAGE,
                    {
                        "ticket": ticket_id,
                        "description": DESCRIPTION,
                        "created": created,
                    },
                )

            create(0)  # warm-up, rolled back like the service's
            conn.rollback()
            return _timed_loop(create, conn.commit, seconds, barrier)
    finally:
        conn.close()


_WORKERS: dict[Kind, Callable[[str, int, float, int, Barrier], WorkerResult]] = {
    "service": _service_worker,
    "raw": _raw_worker,
}


def _worker_main(
    kind: Kind,
    url: str,
    index: int,
    seconds: float,
    requester_id: int,
    barrier: Barrier,
    results: Queue[tuple[int, WorkerResult | str]],
) -> None:
    try:
        results.put((index, _WORKERS[kind](url, index, seconds, requester_id, barrier)))
    except BaseException:
        barrier.abort()  # release the others instead of leaving them at the start line
        results.put((index, traceback.format_exc()))


def _one(row: tuple[Any, ...] | None) -> Any:
    if row is None:
        raise RuntimeError("statement returned no row")
    return row[0]


# -- the parent: server, schema, runs ------------------------------------------


def measure(kind: Kind, url: str, workers: int, seconds: float, requester_id: int) -> Run:
    """Start `workers` processes, let them go together, and collect their counts."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(workers)
    results: Queue[tuple[int, WorkerResult | str]] = ctx.Queue()
    processes = [
        ctx.Process(
            target=_worker_main,
            name=f"bench-{kind}-{index}",
            args=(kind, url, index, seconds, requester_id, barrier, results),
        )
        for index in range(workers)
    ]
    for process in processes:
        process.start()
    outcomes: dict[int, WorkerResult | str] = {}
    give_up = time.monotonic() + SETUP_TIMEOUT + seconds + 120
    try:
        while len(outcomes) < workers:
            try:
                index, outcome = results.get(timeout=1.0)
                outcomes[index] = outcome
            except queue.Empty:
                crashed = [p.name for p in processes if p.exitcode not in (None, 0)]
                if crashed or time.monotonic() > give_up:
                    raise RuntimeError(f"{kind} workers did not report: {crashed or 'timeout'}") from None
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()
                process.join()
    failures = [outcome for outcome in outcomes.values() if isinstance(outcome, str)]
    if failures:
        raise RuntimeError(f"{len(failures)} {kind} worker(s) failed; first:\n{failures[0]}")
    finished = [outcome for outcome in outcomes.values() if isinstance(outcome, WorkerResult)]
    elapsed = max(r.finished for r in finished) - min(r.started for r in finished)
    return Run(workers, sum(r.count for r in finished), elapsed)


def create_raw_requester(url: str) -> int:
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "INSERT INTO contacts (email, mailbox, name, created_at) "
                "VALUES (%s, %s, %s, %s) RETURNING id",
                (RAW_REQUESTER, addresses.mailbox(RAW_REQUESTER), "Raw Bench", now()),
            )
            return int(_one(cur.fetchone()))
    finally:
        conn.close()


def reset(url: str) -> None:
    """Empty the ticket tables and restart numbering at 1, so each run starts alike.

    CASCADE also empties the (unused, empty) tables that point at tickets or messages.
    The counter row is vacuumed of the previous run's dead versions, and a checkpoint
    makes every run pay the same full-page writes.
    """
    admin(
        url,
        "TRUNCATE tickets, messages, ticket_history, participants RESTART IDENTITY CASCADE",
        "UPDATE ticket_counter SET next_value = 1 WHERE id = 1",
        "VACUUM ANALYZE ticket_counter",
        "CHECKPOINT",
    )


def check_gaps(url: str, committed: int) -> GapCheck:
    (row,) = admin(url, "SELECT count(*), count(number), min(number), max(number) FROM tickets")
    if row is None:
        raise RuntimeError("count query returned no row")
    rows, numbered, low, high = row
    return GapCheck(int(rows), int(numbered), low, high, committed)


# -- output ----------------------------------------------------------------------

HEADERS = ("workers", "service tickets/s", "raw SQL tickets/s", "ratio", "gap-free")


def _cells(row: Row) -> tuple[str, ...]:
    return (
        str(row.workers),
        f"{row.service.rate:.1f}",
        f"{row.raw.rate:.1f}",
        f"{row.ratio:.2f}",
        row.gaps.describe(),
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.numbering_bench",
        description="Ticket creations/s through TicketsService vs a raw SQL ceiling.",
    )
    parser.add_argument(
        "--seconds", type=float, default=5.0, help="wall-clock duration of each run (default 5)"
    )
    parser.add_argument(
        "--workers",
        type=positive_counts,
        default=[1, 4, 16],
        help="comma-separated worker process counts (default 1,4,16)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.seconds <= 0:
        raise SystemExit("--seconds must be positive")
    rows: list[Row] = []
    server = PostgresServer(durable=True).start()
    try:
        url = server.create_database("bench")
        migrate(url)
        requester_id = create_raw_requester(url)
        settings = server_settings(url)
        print(f"{settings}; {args.seconds:g} s per run", flush=True)
        for workers in args.workers:
            reset(url)
            service = measure("service", url, workers, args.seconds, requester_id)
            gaps = check_gaps(url, service.count)
            print(
                f"service {workers:>3} workers: {service.count} tickets in "
                f"{service.elapsed:.2f} s = {service.rate:.1f}/s, gap-free: {gaps.describe()}",
                flush=True,
            )
            reset(url)
            raw = measure("raw", url, workers, args.seconds, requester_id)
            raw_gaps = check_gaps(url, raw.count)
            print(
                f"raw     {workers:>3} workers: {raw.count} tickets in "
                f"{raw.elapsed:.2f} s = {raw.rate:.1f}/s, gap-free: {raw_gaps.describe()}",
                flush=True,
            )
            rows.append(Row(workers, service, raw, gaps))
    finally:
        server.stop()

    print()
    print(f"Ticket creations/s through TicketsService ({settings}; {args.seconds:g} s per run)")
    print(f"Ceiling: {CEILING}")
    print("ratio = service / raw")
    print()
    print(plain_table(HEADERS, [_cells(row) for row in rows]))
    print()
    print(f"**Ceiling:** {CEILING}. {settings}; {args.seconds:g} s per run; ratio = service / raw.")
    print()
    print(markdown_table(HEADERS, [_cells(row) for row in rows]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
