"""PostgreSQL's CPU per new-ticket mail, by part: what each index, the foreign keys,
the rows a new ticket writes and the commit's flush cost (issue 19,
docs/benchmarks.md, "where PostgreSQL's CPU goes").

One private durable PostgreSQL (`bench.postgres`); for every run a fresh database
copied from the migrated template (`bench.smtp_bench.prepare_database`), one
variant's statements applied to that copy only, then the same seeded mails fed in
order, in process, through `helpdesk.inbound.ingest.ingest` as
`bench.pipeline_stages.measure` does (the first 20 uncounted). The product's code
runs unchanged; a variant removes a part from the scratch database:

- an index dropped, or the column of the description's words (migration 0039) with
  its index, so no `to_tsvector` is computed either;
- every foreign key dropped (their checks are PostgreSQL's internal triggers; the
  schema has no other triggers), or every CHECK constraint (each statement reads
  its table's constraints from the catalog and prepares them anew);
- a table's rows skipped by a `BEFORE INSERT` trigger returning NULL (history,
  participants, the acknowledgment's outbox row: nothing reads them back in the
  statement that writes them); `no-op triggers` is the same triggers returning the
  row, so what the trigger itself costs can be told apart;
- the inbound record kept out: `inbound_mails` becomes a view whose `INSTEAD OF`
  trigger hands back an id and a time and stores nothing (the foreign keys to it
  dropped), or only its raw bytes kept out;
- `synchronous_commit = off` for the database: the commit does not wait for its WAL
  to be flushed (the WAL writer flushes it), which splits the flush from the rest.

PostgreSQL's CPU is read from `/proc` (`bench.cpu.postgres_split`): the backend the
gateway's connection runs in, and the rest of the server (WAL writer,
checkpointer, autovacuum, reaped processes). GIN indexes take new entries into a
pending list that a later VACUUM (or a full list) merges, so a run would leave
part of their cost unpaid: after each run the written tables are vacuumed and the
backend's CPU for it is counted as "VACUUM after", per mail. The variants run in
a different order each round and every variant is compared with the baseline of
its own round (paired), since the machine's speed drifts more than most parts
cost.

Run from the project root (one shape, two rounds: about a minute and a half):
    .venv/bin/python -m bench.pg_parts_bench --shape plain4k --rounds 2 [--save FILE]
`--save` adds the runs to FILE (JSON lines) and reports on every run the file holds, so
several short invocations pool into one table.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg2

from bench import pipeline_stages
from bench.cpu import postgres_split, process_cpu
from bench.postgres import admin, server_settings
from bench.realistic_mail import SHAPES, announced, generate
from bench.report import markdown_table, median_range, paired, plain_table, pooled, shuffled_rounds
from bench.smtp_bench import CUSTOMER_LIMITS_NEVER_REACHED, prepare_database
from config import TestingConfig
from helpdesk import create_app
from helpdesk.extensions import db
from tests.support.pgserver import PostgresServer

MAILS = 220
WARMUP = 20
DATABASE = "bench_parts"
BASELINE = "baseline (as migrated)"
WRITTEN = ("tickets", "messages", "inbound_mails", "outbox", "ticket_history", "participants", "contacts")


def _drop_indexes(table: str, where: str) -> str:
    """Drop `table`'s indexes that match `where` (a condition on pg_indexes)."""
    return (
        "DO $$ DECLARE r record; BEGIN FOR r IN SELECT indexname FROM pg_indexes "
        f"WHERE schemaname = 'public' AND tablename = '{table}' AND {where} "
        "LOOP EXECUTE format('DROP INDEX %I', r.indexname); END LOOP; END $$"
    )


def _secondary(table: str) -> str:
    """Every index of `table` that no constraint owns (primary key, unique keys stay)."""
    return _drop_indexes(table, "indexdef NOT LIKE 'CREATE UNIQUE%'")


DROP_FOREIGN_KEYS = (
    "DO $$ DECLARE r record; BEGIN FOR r IN SELECT conrelid::regclass AS t, conname FROM pg_constraint "
    "WHERE contype = 'f' AND connamespace = 'public'::regnamespace "
    "LOOP EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', r.t, r.conname); END LOOP; END $$"
)
DROP_CHECKS = (
    "DO $$ DECLARE r record; BEGIN FOR r IN SELECT conrelid::regclass AS t, conname FROM pg_constraint "
    "WHERE contype = 'c' AND connamespace = 'public'::regnamespace "
    "LOOP EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', r.t, r.conname); END LOOP; END $$"
)
SKIP_ROW = "CREATE FUNCTION bench_skip() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$"
KEEP_ROW = "CREATE FUNCTION bench_keep() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$"


def _trigger(table: str, function: str) -> str:
    return f"CREATE TRIGGER {function} BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION {function}()"


WORDS_INDEX = ("DROP INDEX ix_tickets_description_words",)
WORDS_COLUMN = ("ALTER TABLE tickets DROP COLUMN description_words",)
TRIGRAMS = (_drop_indexes("tickets", "indexdef LIKE '%gin_trgm_ops%'"),)
TICKET_BTREES = (
    _drop_indexes("tickets", "indexdef NOT LIKE 'CREATE UNIQUE%' AND indexdef LIKE '%USING btree%'"),
)
MESSAGE_INDEXES = (_secondary("messages"),)
INBOUND_INDEXES = (_secondary("inbound_mails"),)
SYNC_OFF = (f'ALTER DATABASE "{DATABASE}" SET synchronous_commit = off',)
# The record handed back as if stored: the id from its sequence, the time as given.
INBOUND_VIEW = (
    "ALTER TABLE messages DROP CONSTRAINT fk_messages_inbound_mail_id_inbound_mails",
    "ALTER TABLE quarantine_items DROP CONSTRAINT fk_quarantine_items_inbound_mail_id_inbound_mails",
    "ALTER TABLE inbound_mails RENAME TO bench_inbound_mails",
    "CREATE VIEW inbound_mails AS SELECT * FROM bench_inbound_mails",
    "CREATE FUNCTION bench_pretend() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN "
    "IF TG_OP = 'INSERT' THEN "
    "NEW.id := nextval(pg_get_serial_sequence('bench_inbound_mails', 'id')); "
    "NEW.received_at := coalesce(NEW.received_at, now()); RETURN NEW; END IF; "
    "RETURN NULL; END$$",
    "CREATE TRIGGER bench_pretend INSTEAD OF INSERT OR UPDATE ON inbound_mails "
    "FOR EACH ROW EXECUTE FUNCTION bench_pretend()",
)
NO_RAW = (
    "CREATE FUNCTION bench_no_raw() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN "
    "NEW.raw := ''::bytea; RETURN NEW; END$$",
    _trigger("inbound_mails", "bench_no_raw"),
)
ROW_TABLES = ("ticket_history", "outbox", "participants")

# name -> the statements that remove the part from the scratch database.
VARIANTS: dict[str, tuple[str, ...]] = {
    BASELINE: (),
    "synchronous_commit = off": SYNC_OFF,
    "tickets: words GIN index dropped": WORDS_INDEX,
    "tickets: words column and its index dropped": WORDS_COLUMN,
    "tickets: 3 trigram GIN indexes dropped": TRIGRAMS,
    "tickets: 16 secondary btree indexes dropped": TICKET_BTREES,
    "messages: secondary index dropped": MESSAGE_INDEXES,
    "inbound_mails: 3 secondary indexes dropped": INBOUND_INDEXES,
    "every foreign key dropped": (DROP_FOREIGN_KEYS,),
    "every CHECK constraint dropped": (DROP_CHECKS,),
    "no-op BEFORE INSERT triggers (control)": (KEEP_ROW, *(_trigger(t, "bench_keep") for t in ROW_TABLES)),
    "history row skipped": (SKIP_ROW, _trigger("ticket_history", "bench_skip")),
    "participant rows skipped": (SKIP_ROW, _trigger("participants", "bench_skip")),
    "acknowledgment's outbox row skipped": (SKIP_ROW, _trigger("outbox", "bench_skip")),
    "inbound record's raw bytes not stored": NO_RAW,
    "inbound record not stored (view)": INBOUND_VIEW,
    "all of the indexes, keys, checks and words above, and sync off": (
        *SYNC_OFF,
        *WORDS_COLUMN,
        *TRIGRAMS,
        *TICKET_BTREES,
        *MESSAGE_INDEXES,
        *INBOUND_INDEXES,
        DROP_FOREIGN_KEYS,
        DROP_CHECKS,
    ),
}


@dataclass(frozen=True)
class Sample:
    """One run: ms per counted mail."""

    shape: str
    round: str  # runs of one round share a baseline
    variant: str
    mails: int
    gateway: float
    backend: float  # the gateway's backend
    other: float  # the rest of the server in the same window
    vacuum: float  # VACUUM of the written tables after the run
    outcomes: dict[str, int]

    @property
    def postgres(self) -> float:
        return self.backend + self.other

    @property
    def postgres_and_vacuum(self) -> float:
        return self.postgres + self.vacuum


class _Clock:
    """`pipeline_stages.measure`'s PostgreSQL clock, keeping the split of each reading."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.readings: list[tuple[float, float]] = []

    def __call__(self) -> float:
        backend, other = postgres_split(self.data, DATABASE)
        self.readings.append((backend, other))
        return backend + other


def vacuum_cpu(url: str) -> float:
    """CPU seconds of the backend that vacuums the tables a new ticket writes."""
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT pg_backend_pid(), array_agg(relname::text) FROM pg_class "
                "WHERE relkind = 'r' AND relname = ANY(%s)",
                (list(WRITTEN),),
            )
            row = cur.fetchone()
            assert row is not None
            pid, tables = row
            before = process_cpu(pid)
            cur.execute("VACUUM " + ", ".join(tables))
            return process_cpu(pid) - before
    finally:
        conn.close()


def run(pg: PostgresServer, shape: str, mails: Sequence, variant: str, round_id: str) -> Sample:
    url = prepare_database(pg, DATABASE)
    if VARIANTS[variant]:
        admin(url, *VARIANTS[variant], "VACUUM ANALYZE", "CHECKPOINT")
    app = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=url, **CUSTOMER_LIMITS_NEVER_REACHED)
    clock = _Clock(pg.data)
    try:
        split = pipeline_stages.measure(app, shape, mails, channel="smtp", postgres_cpu=clock, warmup=WARMUP)
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
    (backend_0, other_0), (backend_1, other_1) = clock.readings[0], clock.readings[-1]
    return Sample(
        shape,
        round_id,
        variant,
        split.mails,
        split.per_mail_ms(split.total),
        split.per_mail_ms(backend_1 - backend_0),
        split.per_mail_ms(other_1 - other_0),
        split.per_mail_ms(vacuum_cpu(url)),
        split.outcomes,
    )


HEADERS = (
    "shape",
    "variant",
    "runs",
    "PostgreSQL CPU ms/mail",
    "of it the backend",
    "VACUUM after",
    "PG + VACUUM, paired vs baseline",
    "PG in run, paired",
    "gateway CPU ms/mail",
    "outcomes",
)


def rows(samples: Sequence[Sample]) -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []
    for shape in SHAPES:
        of_shape = [s for s in samples if s.shape == shape]
        for variant in VARIANTS:
            runs = [s for s in of_shape if s.variant == variant]
            if not runs:
                continue
            outcomes = sorted({", ".join(f"{n} {o}" for o, n in sorted(s.outcomes.items())) for s in runs})
            found.append(
                (
                    shape,
                    variant,
                    str(len(runs)),
                    median_range([s.postgres for s in runs]),
                    median_range([s.backend for s in runs]),
                    median_range([s.vacuum for s in runs]),
                    paired(of_shape, variant, BASELINE, lambda s: s.postgres_and_vacuum),
                    paired(of_shape, variant, BASELINE, lambda s: s.postgres),
                    median_range([s.gateway for s in runs]),
                    " / ".join(outcomes),
                )
            )
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pg_parts_bench")
    parser.add_argument("--shape", choices=("plain4k", "realistic"), action="append", help="(both)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--mails", type=int, default=MAILS, help=f"per run, {WARMUP} of them uncounted")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--variant", action="append", choices=tuple(VARIANTS), help="(all; the baseline always)"
    )
    parser.add_argument(
        "--save", type=Path, help="add the runs to this JSON-lines file and report on all it holds"
    )
    args = parser.parse_args(argv)
    shapes = args.shape or ["plain4k", "realistic"]
    variants = [BASELINE, *(v for v in args.variant or VARIANTS if v != BASELINE)]
    pg = PostgresServer(durable=True).start()
    started = time.monotonic()
    try:
        print(server_settings(pg.url()), flush=True)
        samples = shuffled_rounds(
            shapes,
            lambda shape: announced(shape, generate(shape, args.mails, seed=args.seed)),
            args.rounds,
            variants,
            lambda shape, mails, variant, round_id: run(pg, shape, mails, variant, round_id),
            lambda sample: (
                f"PG {sample.postgres:.2f} (backend {sample.backend:.2f}) "
                f"+ VACUUM {sample.vacuum:.2f}, gateway {sample.gateway:.2f} ms/mail"
            ),
        )
    finally:
        pg.stop()
    print(f"{time.monotonic() - started:.0f} s")
    table = rows(pooled(args.save, samples, Sample))
    print(f"\nPostgreSQL CPU per new-ticket mail by part, ms ({args.mails - WARMUP} counted mails a run):")
    print(plain_table(HEADERS, table))
    print()
    print(markdown_table(HEADERS, table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
