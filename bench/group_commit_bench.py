"""Group commit measured in process: N new mails in one transaction instead of one
transaction each, and what that saves the gateway and PostgreSQL per mail (issue
19, docs/benchmarks.md, "where PostgreSQL's CPU goes, and group commit").

The product commits every mail on its own (`helpdesk.inbound.ingest.ingest`: its
record and its effect in one transaction, `250` only after it). This benchmark-only
variant runs, for each mail, exactly what `ingest` runs between its first statement
and its commit (`parse` with the envelope's sender, `dedup_keys`, `_process_new`:
decide, the customer's limits, the inbound record, the ticket) and commits once
every N mails, with a SAVEPOINT around each mail (what a real group commit would
need to keep one mail's failure from undoing the others) or without (the bound of
the gain). What it leaves out of `ingest` is only bookkeeping after the commit
(the retry memory, the log line). One app context per group, as a collector that
took N mails from the SMTP sessions and answered them after the commit would hold.
"ingest" is the product's function itself, one mail a call.

Each run: a fresh durable database copied from the migrated template, the first
20 mails through `ingest` one by one (connections, caches), then the counted mails
in groups. Measured: the gateway thread's CPU (`time.thread_time`), the backend's
CPU to the nanosecond and the rest of PostgreSQL's (`bench.cpu.postgres_split`),
and the wall time, each per counted mail. The variants run in a new order each
round and are compared with "ingest" of the same round.

Run from the project root (both shapes, two rounds: about a minute and a half):
    .venv/bin/python -m bench.group_commit_bench [--rounds 2] [--save FILE]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from flask import Flask

from bench.cpu import postgres_split
from bench.postgres import server_settings
from bench.realistic_mail import GeneratedMail, announced, generate
from bench.report import markdown_table, median_range, paired, plain_table, pooled, shuffled_rounds
from bench.smtp_bench import CUSTOMER_LIMITS_NEVER_REACHED, prepare_database
from config import TestingConfig
from helpdesk import create_app
from helpdesk.extensions import db
from helpdesk.inbound import ingest as pipeline
from helpdesk.inbound.dedup import dedup_keys
from helpdesk.inbound.limits import MailLimits
from helpdesk.inbound.parser import parse
from tests.support.mail import SUPPORT
from tests.support.pgserver import PostgresServer

WARMUP = 20
COUNTED = 192  # a multiple of every group size
DATABASE = "bench_group_commit"
INGEST = "ingest (as is)"
# name -> (mails per transaction, a SAVEPOINT around each mail)
VARIANTS: dict[str, tuple[int, bool]] = {
    INGEST: (1, False),
    "1 a transaction": (1, False),
    "1 a transaction, savepoint": (1, True),
    "4 a transaction": (4, False),
    "4 a transaction, savepoint": (4, True),
    "16 a transaction": (16, False),
    "16 a transaction, savepoint": (16, True),
}


@dataclass(frozen=True)
class Sample:
    """One run: ms per counted mail."""

    shape: str
    round: str
    variant: str
    mails: int
    gateway: float
    backend: float
    other: float
    wall: float
    outcomes: dict[str, int]

    @property
    def postgres(self) -> float:
        return self.backend + self.other

    @property
    def both(self) -> float:
        return self.gateway + self.postgres


def _envelope(mail: GeneratedMail) -> pipeline.Envelope:
    return pipeline.Envelope(mail.sender, (SUPPORT,), "smtp")


def ingest_group(app: Flask, group: Sequence[GeneratedMail], savepoints: bool) -> list[pipeline.Outcome]:
    """The mails of `group` as `ingest` handles each, in one transaction."""
    config = app.config
    outcomes = []
    with app.app_context():
        session = db.session
        for generated in group:
            envelope = _envelope(generated).within(config["MAX_RECIPIENTS"])
            mail = pipeline.with_envelope_sender(
                parse(generated.raw, MailLimits.from_config(config)), envelope
            )
            key = dedup_keys(mail).key
            if savepoints:
                with session.begin_nested():
                    result = pipeline._process_new(session, mail, key, envelope, config)
            else:
                result = pipeline._process_new(session, mail, key, envelope, config)
            outcomes.append(result.outcome)
        session.commit()
    return outcomes


def run(
    pg: PostgresServer, shape: str, mails: Sequence[GeneratedMail], variant: str, round_id: str
) -> Sample:
    url = prepare_database(pg, DATABASE)
    app = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=url, **CUSTOMER_LIMITS_NEVER_REACHED)
    size, savepoints = VARIANTS[variant]
    outcomes: Counter[str] = Counter()
    try:
        for mail in mails[:WARMUP]:
            with app.app_context():
                pipeline.ingest(mail.raw, _envelope(mail), app.config)
        counted = mails[WARMUP:]
        backend, other = postgres_split(pg.data, DATABASE)
        cpu, wall = time.thread_time(), time.perf_counter()
        for start in range(0, len(counted), size):
            group = counted[start : start + size]
            if variant == INGEST:
                with app.app_context():
                    found = [pipeline.ingest(group[0].raw, _envelope(group[0]), app.config).outcome]
            else:
                found = ingest_group(app, group, savepoints)
            outcomes.update(outcome.value for outcome in found)
        cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
        backend_after, other_after = postgres_split(pg.data, DATABASE)
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
    ms = 1000.0 / len(counted)
    return Sample(
        shape,
        round_id,
        variant,
        len(counted),
        cpu * ms,
        (backend_after - backend) * ms,
        (other_after - other) * ms,
        wall * ms,
        dict(outcomes),
    )


HEADERS = (
    "shape",
    "variant",
    "runs",
    "gateway CPU ms/mail",
    "paired vs ingest",
    "PostgreSQL CPU ms/mail",
    "of it the backend",
    "paired vs ingest",
    "both, paired",
    "wall ms/mail",
    "outcomes",
)


def rows(samples: Sequence[Sample]) -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []
    for shape in ("plain4k", "realistic"):
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
                    median_range([s.gateway for s in runs]),
                    paired(of_shape, variant, INGEST, lambda s: s.gateway),
                    median_range([s.postgres for s in runs]),
                    median_range([s.backend for s in runs]),
                    paired(of_shape, variant, INGEST, lambda s: s.postgres),
                    paired(of_shape, variant, INGEST, lambda s: s.both),
                    median_range([s.wall for s in runs]),
                    " / ".join(outcomes),
                )
            )
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.group_commit_bench")
    parser.add_argument("--shape", choices=("plain4k", "realistic"), action="append", help="(both)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--save", type=Path, help="add the runs to this JSON-lines file and report on all it holds"
    )
    args = parser.parse_args(argv)
    shapes = args.shape or ["plain4k", "realistic"]
    pg = PostgresServer(durable=True).start()
    started = time.monotonic()
    try:
        print(server_settings(pg.url()), flush=True)
        samples = shuffled_rounds(
            shapes,
            lambda shape: announced(shape, generate(shape, WARMUP + COUNTED, seed=args.seed)),
            args.rounds,
            list(VARIANTS),
            lambda shape, mails, variant, round_id: run(pg, shape, mails, variant, round_id),
            lambda sample: (
                f"gateway {sample.gateway:.2f}, PG {sample.postgres:.2f} "
                f"(backend {sample.backend:.2f}), wall {sample.wall:.2f} ms/mail"
            ),
        )
    finally:
        pg.stop()
    print(f"{time.monotonic() - started:.0f} s")
    table = rows(pooled(args.save, samples, Sample))
    print(f"\nGroup commit in process, ms per new mail ({COUNTED} counted mails a run):")
    print(plain_table(HEADERS, table))
    print()
    print(markdown_table(HEADERS, table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
