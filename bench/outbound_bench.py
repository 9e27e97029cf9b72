"""Notifications delivered per second by the outbound sender, beside plain SMTP.

What it measures: a private PostgreSQL server (fsync on) holds N tickets (2,000 by
default), each opened by a different customer, so the outbox holds N queued
acknowledgments (distinct recipients: the per-recipient rate limit does not
skip any). W sender processes (1 and 4 by default; each one `outbound.Sender`,
as in a gateway, with its default batch size) drain it together after a common
start barrier into a real SMTP sink (aiosmtpd, `tests/support/sink.py`, in this
process): claim a batch `FOR UPDATE SKIP LOCKED`, render each row (template,
signed Message-ID) on its first claim, send it, mark it `sent` in its own
transaction. A worker stops when a claim finds nothing; the rate is N divided by
the time from the start to the last worker's end. Each worker count gets a fresh
copy of the seeded database (`CREATE DATABASE … TEMPLATE`).

Checked after each run: every row is `sent`, the sink received exactly N mails,
and no Message-ID arrived twice (exactly once, with W senders competing).

The ceiling, measured in the same run with the same worker counts: W processes
send the same number of already rendered mails (one of the run's own
acknowledgments, its Message-ID varied) to the same sink with smtplib, one
connection per batch of the sender's batch size — SMTP delivery with no database
and no rendering. ratio = sender / ceiling.

Run from the project root:  .venv/bin/python -m bench.outbound_bench [--notifications 2000] [--workers 1,4]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import queue
import smtplib
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier

from sqlalchemy import func, select

from bench.postgres import admin, migrate, server_settings
from bench.report import markdown_table, plain_table, positive_counts
from bench.workers import Run, WorkerResult
from config import Config, TestingConfig
from helpdesk import create_app
from helpdesk.extensions import db
from helpdesk.models import OutboxMessage
from helpdesk.services import Actor, TicketsService
from mailgateway.outbound import Sender
from tests.support.pgserver import PostgresServer
from tests.support.sink import Sink

SETUP_TIMEOUT = 300.0
BATCH = Config.OUTBOUND_BATCH_SIZE
DESCRIPTION = "The printer on floor 3 is out of toner again. Could someone order new ones?"


@dataclass(frozen=True)
class Row:
    workers: int
    sender: Run
    ceiling: Run
    exactly_once: bool


# -- workers (spawned processes) ---------------------------------------------------


def _sender_worker(url: str, smtp_url: str, _share: int, _template: bytes, barrier: Barrier) -> WorkerResult:
    app = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=url, OUTBOUND_SMTP_URL=smtp_url)
    sender = Sender(app)
    with app.app_context():  # connect before the start line
        db.session.execute(select(1))
        db.session.remove()
    barrier.wait(SETUP_TIMEOUT)
    started = time.monotonic()
    claimed = 0
    while batch := sender.run_once():
        claimed += batch
    return WorkerResult(claimed, started, time.monotonic())


def _smtp_worker(_url: str, smtp_url: str, share: int, template: bytes, barrier: Barrier) -> WorkerResult:
    host, port = smtp_url.removeprefix("smtp://").split(":")
    head, marker, tail = template.partition(b"\nMessage-ID: <")  # vary its local part
    if not marker:
        raise RuntimeError("the template mail has no Message-ID")
    barrier.wait(SETUP_TIMEOUT)
    started = time.monotonic()
    sent = 0
    while sent < share:
        with smtplib.SMTP(host, int(port), local_hostname="bench.example", timeout=60) as relay:
            for _ in range(min(BATCH, share - sent)):
                sent += 1
                relay.sendmail(
                    "support@helpdesk.test",
                    ["customer@example.com"],
                    head + marker + b"%d-%d." % (os.getpid(), sent) + tail,
                )
    return WorkerResult(sent, started, time.monotonic())


_WORKERS = {"sender": _sender_worker, "smtp": _smtp_worker}


def _worker_main(
    kind: str,
    url: str,
    smtp_url: str,
    share: int,
    template: bytes,
    barrier: Barrier,
    results: Queue[WorkerResult | str],
) -> None:
    try:
        results.put(_WORKERS[kind](url, smtp_url, share, template, barrier))
    except BaseException:
        barrier.abort()
        results.put(traceback.format_exc())


def measure(kind: str, url: str, sink: Sink, workers: int, count: int, template: bytes = b"") -> Run:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(workers)
    results: Queue[WorkerResult | str] = ctx.Queue()
    shares = [count // workers + (1 if index < count % workers else 0) for index in range(workers)]
    processes = [
        ctx.Process(
            target=_worker_main,
            name=f"bench-{kind}-{index}",
            args=(kind, url, sink.url, shares[index], template, barrier, results),
        )
        for index in range(workers)
    ]
    for process in processes:
        process.start()
    outcomes: list[WorkerResult | str] = []
    try:
        while len(outcomes) < workers:
            try:
                outcomes.append(results.get(timeout=1.0))
            except queue.Empty:
                crashed = [p.name for p in processes if p.exitcode not in (None, 0)]
                if crashed:
                    raise RuntimeError(f"{kind} workers crashed: {crashed}") from None
    finally:
        for process in processes:
            process.join(timeout=60)
    failures = [outcome for outcome in outcomes if isinstance(outcome, str)]
    if failures:
        raise RuntimeError(f"{len(failures)} {kind} worker(s) failed; first:\n{failures[0]}")
    done = [outcome for outcome in outcomes if isinstance(outcome, WorkerResult)]
    elapsed = max(r.finished for r in done) - min(r.started for r in done)
    return Run(workers, count, elapsed)


# -- the parent ------------------------------------------------------------------


def seed(url: str, count: int) -> None:
    """`count` tickets by `count` different customers: as many queued acknowledgments."""
    app = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=url)
    with app.app_context():
        service = TicketsService.from_config(db.session, app.config)
        for n in range(count):
            email = f"customer{n}@example.com"
            service.open_ticket(
                subject=f"Toner {n}",
                description=DESCRIPTION,
                requester_email=email,
                channel="email",
                actor=Actor.customer(email),
            )
            if n % 200 == 199:
                db.session.commit()
        db.session.commit()
        queued = db.session.execute(select(func.count(OutboxMessage.id))).scalar_one()
        db.session.remove()
        db.engine.dispose()
    if queued != count:
        raise RuntimeError(f"{queued} notifications queued for {count} tickets")


def sent_rows(url: str) -> int:
    row = admin(url, "SELECT count(*) FROM outbox WHERE state = 'sent'")[0]
    return int(row[0]) if row else 0


HEADERS = (
    "sender processes",
    "notifications/s",
    "plain SMTP mails/s",
    "ratio",
    "all sent, each exactly once",
)


def _cells(row: Row) -> tuple[str, ...]:
    return (
        str(row.workers),
        f"{row.sender.rate:.1f}",
        f"{row.ceiling.rate:.1f}",
        f"{row.sender.rate / row.ceiling.rate:.2f}",
        "yes" if row.exactly_once else "NO",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.outbound_bench", description="Outbound notifications/s vs plain SMTP."
    )
    parser.add_argument("--notifications", type=int, default=2000)
    parser.add_argument(
        "--workers",
        type=positive_counts,
        default=[1, 4],
        help="comma-separated sender process counts (default 1,4)",
    )
    args = parser.parse_args(argv)
    if args.notifications < 1:
        raise SystemExit("--notifications must be at least 1")
    server = PostgresServer(durable=True).start()
    rows: list[Row] = []
    try:
        template_url = server.create_database("outbound_template")
        migrate(template_url)
        started = time.perf_counter()
        seed(template_url, args.notifications)
        settings = server_settings(template_url)
        print(
            f"{settings}; seeded {args.notifications} queued acknowledgments in "
            f"{time.perf_counter() - started:.1f} s",
            flush=True,
        )
        for workers in args.workers:
            name = f"outbound_{workers}"
            admin(server.url(), f"CREATE DATABASE {name} TEMPLATE outbound_template")
            url = server.url(name)
            admin(url, "VACUUM ANALYZE", "CHECKPOINT")
            sink = Sink().start()
            try:
                run = measure("sender", url, sink, workers, args.notifications)
                ids = sink.message_ids()
                template = sink.received[0].data
            finally:
                sink.stop()
            exactly_once = (
                sent_rows(url) == args.notifications == len(sink.received) == len(ids)
                and max(ids.values()) == 1
            )
            ceiling_sink = Sink().start()
            try:
                ceiling = measure("smtp", url, ceiling_sink, workers, args.notifications, template)
                if len(ceiling_sink.received) != args.notifications:
                    raise RuntimeError("the plain SMTP run lost mail")
            finally:
                ceiling_sink.stop()
            print(
                f"{workers} sender process(es): {run.rate:.1f} notifications/s "
                f"({run.elapsed:.2f} s); plain SMTP {ceiling.rate:.1f} mails/s; "
                f"exactly once: {exactly_once}",
                flush=True,
            )
            rows.append(Row(workers, run, ceiling, exactly_once))
    finally:
        server.stop()
    cells = [_cells(row) for row in rows]
    caption = (
        f"Outbound notifications delivered per second into a local aiosmtpd sink "
        f"({args.notifications} queued acknowledgments; {settings}; batch {BATCH}); "
        f"ceiling: the same count of rendered mails sent with smtplib, no database; "
        f"ratio = sender / ceiling"
    )
    print()
    print(caption)
    print(plain_table(HEADERS, cells))
    print()
    print(f"**{caption}.**")
    print()
    print(markdown_table(HEADERS, cells))
    return 0 if all(row.exactly_once for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
