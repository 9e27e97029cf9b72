"""PostgreSQL's time per new-ticket mail, statement by statement: what each of the
statements `ingest` sends costs the server to plan and to run, and what the
foreign keys' checks inside them cost (issue 19, docs/benchmarks.md, "where
PostgreSQL's CPU goes").

A private durable PostgreSQL with `pg_stat_statements` loaded (planning tracked,
nested statements too, so the foreign keys' internal queries show on their own
lines), a fresh database copied from the migrated template, the first 20 mails
uncounted, then the seeded mails fed in order through
`helpdesk.inbound.ingest.ingest` in process (`bench.pipeline_stages.measure`).
Times are the server's wall-clock time in planning and executing (a backend
running alone on a core: its CPU, except waits such as the commit's WAL flush);
the backend's CPU for the same mails is printed beside them, and what the
statements do not account for (receiving and parsing each statement, the
protocol, transaction start and end) is the difference. A nested statement's time
is also in the statement that ran it.

With `--perf FILE` the server runs without `pg_stat_statements` and the backend is
recorded over the counted mails with `perf record -g` instead; each sample is
charged to one of a few parts its stack passes through (`PARTS`: the
words' `to_tsvector`, the foreign keys' checks, each kind of index insert, TOAST,
heap writes, the commit's WAL flush, parsing, planning, the executor, the network),
and the backend's CPU is shared out in proportion. `perf report -i FILE` reads the
rest.

Run from the project root (about 20 s each):
    .venv/bin/python -m bench.pg_statements_bench [--shape plain4k] [--mails 420]
    .venv/bin/python -m bench.pg_statements_bench --perf /tmp/backend.perf
"""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import psycopg2

from bench import pipeline_stages
from bench.cpu import postgres_split
from bench.postgres import admin, server_settings
from bench.realistic_mail import describe, generate
from bench.report import markdown_table, plain_table
from bench.smtp_bench import CUSTOMER_LIMITS_NEVER_REACHED, prepare_database
from config import TestingConfig
from helpdesk import create_app
from helpdesk.extensions import db
from tests.support.pgserver import PostgresServer

WARMUP = 20
DATABASE = "bench_statements"
HEADERS = ("statement", "calls/mail", "plan ms/mail", "execute ms/mail", "nested", "rows/call")


def _label(query: str) -> str:
    """A statement's first words, enough to tell which it is."""
    text = re.sub(r"\s+", " ", query).strip()
    return text if len(text) <= 90 else text[:87] + "..."


def _perf(url: str, out: Path) -> subprocess.Popen[bytes]:
    """`perf record` attached to the gateway's backend (the other connection to the database)."""
    (row,) = admin(
        url,
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    assert row is not None
    profiler = subprocess.Popen(
        ["perf", "record", "-q", "-F", "4000", "-g", "-p", str(row[0]), "-o", str(out)],
        stdout=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # perf attaches before the first counted mail
    return profiler


def statements(url: str, mails: int) -> list[tuple[str, ...]]:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT query, sum(calls), sum(total_plan_time), sum(total_exec_time), "
                "bool_and(NOT toplevel), "
                "sum(rows) FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database "
                "WHERE datname = current_database()) AND query NOT LIKE '%pg_stat_statements%' "
                "GROUP BY query ORDER BY sum(total_plan_time) + sum(total_exec_time) DESC"
            )
            found = cur.fetchall()
    finally:
        conn.close()
    return [
        (
            _label(query),
            f"{calls / mails:.2f}",
            f"{plan / mails:.3f}",
            f"{execute / mails:.3f}",
            "yes" if nested else "",
            f"{rows / calls:.1f}" if calls else "",
        )
        for query, calls, plan, execute, nested, rows in found
    ]


# What a sample of the backend's profile is charged to: the first of these whose
# function is anywhere on its stack, else "other". The order puts a part before
# the parts it runs inside of (the words' parsing inside the executor's insert, a
# foreign key's check inside the executor, TOAST inside the heap's insert).
PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("words: to_tsvector (the stored column)", ("to_tsvector_byid",)),
    ("foreign-key checks", ("RI_FKey_check", "SPI_execute_snapshot", "ri_PerformCheck")),
    ("GIN index inserts (words, trigrams)", ("gininsert",)),
    ("btree index inserts", ("btinsert",)),
    ("hash index inserts", ("hashinsert",)),
    (
        "TOAST and lz4 compression",
        ("heap_toast_insert_or_update", "toast_compress_datum", "LZ4_compress_fast_extState"),
    ),
    ("CHECK and NOT NULL constraints", ("ExecConstraints",)),
    ("heap inserts and updates", ("heap_insert", "heap_update", "heap_multi_insert")),
    ("commit: WAL flush", ("XLogFlush",)),
    ("commit: the rest", ("CommitTransactionCommand", "StartTransactionCommand")),
    ("parse (lexer, grammar)", ("raw_parser",)),
    ("analyze and rewrite", ("pg_analyze_and_rewrite_fixedparams", "parse_analyze_fixedparams")),
    ("plan", ("pg_plan_queries",)),
    ("executor start and end", ("standard_ExecutorStart", "standard_ExecutorEnd", "PortalDrop")),
    ("executor: the rest", ("standard_ExecutorRun", "standard_ExecutorFinish")),
    ("network and protocol", ("secure_read", "secure_write", "pq_getbyte", "pq_flush", "__send")),
)


def profile_parts(data: Path) -> list[tuple[str, int]]:
    """Samples of `perf record -g` output charged to `PARTS`, largest first."""
    script = subprocess.run(
        ["perf", "script", "-i", str(data), "-F", "ip,sym"], capture_output=True, text=True, check=True
    ).stdout
    counts: dict[str, int] = dict.fromkeys([name for name, _ in PARTS] + ["other"], 0)
    lookup = {symbol: name for name, symbols in PARTS for symbol in symbols}
    for sample in script.split("\n\n"):
        frames = [line.split()[-1] for line in sample.splitlines() if line.strip()]
        if not frames:
            continue
        found = {lookup[f] for f in frames if f in lookup}
        counts[next((name for name, _ in PARTS if name in found), "other")] += 1
    return sorted(counts.items(), key=lambda item: -item[1])


def _load_statements(pg: PostgresServer) -> None:
    admin(pg.url(), "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
    pg.pause()
    pg.resume()
    admin(
        pg.url(),
        "ALTER SYSTEM SET pg_stat_statements.track = 'all'",
        "ALTER SYSTEM SET pg_stat_statements.track_planning = on",
        "SELECT pg_reload_conf()",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pg_statements_bench")
    parser.add_argument("--shape", choices=("plain4k", "realistic"), default="plain4k")
    parser.add_argument("--mails", type=int, default=420, help=f"{WARMUP} of them uncounted")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--perf",
        type=Path,
        help="record the backend with `perf record -g` into this file instead of counting statements",
    )
    args = parser.parse_args(argv)
    mails = generate(args.shape, args.mails, seed=args.seed)
    pg = PostgresServer(durable=True).start()
    try:
        if not args.perf:
            _load_statements(pg)
        print(server_settings(pg.url()), flush=True)
        print(f"{args.shape}: {describe(mails)}", flush=True)
        url = prepare_database(pg, DATABASE)
        if not args.perf:
            admin(url, "CREATE EXTENSION pg_stat_statements")
        app = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=url, **CUSTOMER_LIMITS_NEVER_REACHED)
        try:
            pipeline_stages.measure(app, args.shape, mails[:WARMUP], channel="smtp", postgres_cpu=float)
            if not args.perf:
                admin(url, "SELECT pg_stat_statements_reset()")
            profiler = _perf(url, args.perf) if args.perf else None
            before = postgres_split(pg.data, DATABASE)[0]
            split = pipeline_stages.measure(
                app, args.shape, mails[WARMUP:], channel="smtp", postgres_cpu=float, warmup=0
            )
            backend = postgres_split(pg.data, DATABASE)[0] - before
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)
                profiler.wait()
        finally:
            with app.app_context():
                db.session.remove()
                db.engine.dispose()
        rows = [] if args.perf else statements(url, split.mails)
    finally:
        pg.stop()
    backend_ms = 1000 * backend / split.mails
    print(
        f"\n{split.mails} mails ({', '.join(f'{n} {o}' for o, n in split.outcomes.items())}): "
        f"the backend's CPU {backend_ms:.2f} ms/mail, the gateway's {split.per_mail_ms(split.total):.2f}"
    )
    if args.perf:
        parts = profile_parts(args.perf)
        total = sum(n for _, n in parts)
        rows = [(name, f"{100 * n / total:.1f}", f"{backend_ms * n / total:.2f}") for name, n in parts]
        headers: tuple[str, ...] = ("part of the backend's profile", "% of samples", "ms/mail")
        print(f"The backend's profile ({total} samples), each sample charged to one part:")
    else:
        headers = HEADERS
        print("Per statement (pg_stat_statements, server time):")
    print(plain_table(headers, rows))
    print()
    print(markdown_table(headers, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
